//! What the engine is told about one request. The gateway fills it in; the engine never looks
//! anything up itself (no I/O, no clock), so the same input always gives the same decision.
//!
//! The types deserialize (unknown keys rejected) so that test cases and
//! `portcullis policy explain --input request.json` can be written by hand.

use std::collections::BTreeMap;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Everything one decision depends on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// The signed-in identity; `None` for anonymous requests.
    #[serde(default)]
    pub identity: Option<Identity>,
    /// Facts about the HTTP request.
    #[serde(default)]
    pub request: RequestFacts,
    /// Facts about the client's network position (from the socket, trusted proxies and GeoIP).
    #[serde(default)]
    pub network: NetworkFacts,
    /// Facts about the client device (mTLS certificate, registered device id, user agent).
    #[serde(default)]
    pub device: DeviceFacts,
    /// The current time in UTC, read once by the gateway.
    pub now: DateTime<Utc>,
}

/// The signed-in subject, as the session holds it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// Stable user id.
    pub user: String,
    /// Id of the identity provider that signed this user in (`identity_providers[].id`). Two
    /// providers may both have an `alice`: a route pinned to one provider admits only its
    /// users, and gateway state (MFA factors, devices, lockouts) is keyed by provider and
    /// subject. Absent in sessions written before it existed (the gateway fills it in).
    #[serde(default)]
    pub provider: Option<String>,
    /// Email address, as the identity provider gave it.
    #[serde(default)]
    pub email: Option<String>,
    /// Whether the provider vouched for `email` (OIDC `email_verified: true`). `emails` and
    /// `email_domains` rules match only verified addresses: an address the user typed in at
    /// the provider proves nothing about them (issue 10, M2). Absent — sessions stored before
    /// this field existed, providers that never send the claim — means not verified.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub email_verified: bool,
    /// Groups from the IdP or directory.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Roles granted (not expanded: the engine applies the hierarchy).
    #[serde(default)]
    pub roles: Vec<String>,
    /// Department.
    #[serde(default)]
    pub department: Option<String>,
    /// Home tenant of the identity.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Other claims, JSON values.
    #[serde(default)]
    pub claims: BTreeMap<String, serde_json::Value>,
    /// Authentication events of this session (password, totp, webauthn...) with their times.
    #[serde(default)]
    pub auth_methods: Vec<AuthEvent>,
}

/// One authentication factor used in the session, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthEvent {
    /// Factor name: `pwd`, `totp`, `webauthn`, `email`, `sms`, or what the IdP reported.
    pub method: String,
    /// When it was performed.
    pub at: DateTime<Utc>,
}

/// Facts about the HTTP request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestFacts {
    /// Method, e.g. `GET`.
    #[serde(default)]
    pub method: String,
    /// The normalised path (the same one that is forwarded).
    #[serde(default)]
    pub path: String,
    /// Host header without port.
    #[serde(default)]
    pub host: Option<String>,
    /// Header name (lowercase) → value; repeated headers joined with `, `.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Query parameter → first value.
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// The tenant the request addresses (from host, path or trusted header); `None` if the route
    /// is not tenant-scoped.
    #[serde(default)]
    pub tenant: Option<String>,
}

/// Facts about where the client is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkFacts {
    /// Client address (after trusted-proxy processing).
    #[serde(default)]
    pub client_ip: Option<IpAddr>,
    /// ISO 3166-1 alpha-2 country code.
    #[serde(default)]
    pub country: Option<String>,
    /// ISO 3166-2 region code, e.g. `FR-IDF`.
    #[serde(default)]
    pub region: Option<String>,
    /// Autonomous system number.
    #[serde(default)]
    pub asn: Option<u32>,
}

/// Facts about the client device, established by the gateway.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceFacts {
    /// Name of the configured CA that issued the client certificate verified in the mTLS
    /// handshake; `None` if no (valid) certificate was presented.
    #[serde(default)]
    pub client_cert_ca: Option<String>,
    /// Device id that the gateway confirmed is registered to this user.
    #[serde(default)]
    pub registered_device: Option<String>,
    /// Platform derived from the user agent (see [`platform_from_user_agent`]).
    #[serde(default)]
    pub platform: Option<String>,
}

/// Platforms the `device.platforms` condition accepts.
pub const PLATFORMS: &[&str] = &["windows", "macos", "linux", "ios", "android", "chromeos"];

/// Derives the platform from a `User-Agent` header; pure so the gateway and tests agree.
/// The user agent is client-controlled: use platform rules for hygiene, never as a sole control.
pub fn platform_from_user_agent(ua: &str) -> Option<&'static str> {
    // Order matters: Android UAs contain "Linux", iOS UAs contain "Mac OS X".
    let checks: [(&str, &'static str); 8] = [
        ("Android", "android"),
        ("iPhone", "ios"),
        ("iPad", "ios"),
        ("CrOS", "chromeos"),
        ("Windows", "windows"),
        ("Macintosh", "macos"),
        ("Mac OS X", "macos"),
        ("Linux", "linux"),
    ];
    checks
        .iter()
        .find(|(needle, _)| ua.contains(needle))
        .map(|(_, p)| *p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_agents() {
        let cases = [
            ("Mozilla/5.0 (Windows NT 10.0; Win64; x64)", Some("windows")),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4)",
                Some("macos"),
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X)",
                Some("ios"),
            ),
            ("Mozilla/5.0 (Linux; Android 14; Pixel 8)", Some("android")),
            ("Mozilla/5.0 (X11; Linux x86_64)", Some("linux")),
            ("Mozilla/5.0 (X11; CrOS x86_64 14541.0.0)", Some("chromeos")),
            ("curl/8.5.0", None),
        ];
        for (ua, want) in cases {
            assert_eq!(platform_from_user_agent(ua), want, "{ua}");
        }
    }
}
