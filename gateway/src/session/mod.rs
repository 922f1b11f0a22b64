//! Sessions: an encrypted cookie that carries only a random session id, and a store that keeps
//! the identity server-side (so Entra users with hundreds of groups still fit in a header), with
//! idle and absolute timeouts and revocation by provider subject or provider session id.

pub mod codec;
pub mod cookies;
pub mod instrumented;
pub mod redis_store;
pub mod store;

pub use codec::CookieCodec;
pub use store::{Ended, MemoryStore, Notices, SessionStore, StoreError};

use portcullis_policy::input::Identity;
use serde::{Deserialize, Serialize};

/// What the cookie carries (encrypted): the id to look up, nothing else.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionCookie {
    /// Random session id (128 bits).
    pub sid: String,
}

/// One signed-in session, kept in the store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SessionRecord {
    /// Who the user is, as the policy engine sees it.
    pub identity: Identity,
    /// Provider id from the config.
    pub idp: String,
    /// `sub` at the provider.
    pub sub: String,
    /// `sid` claim of the provider session, for back-channel logout.
    #[serde(default)]
    pub idp_sid: Option<String>,
    /// Login time, unix seconds.
    pub created: i64,
    /// Last request, unix seconds (updated at most once a minute).
    pub last_seen: i64,
    /// Refresh token, if the provider issued one.
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// When the access token expires (unix seconds): the session refreshes after that.
    #[serde(default)]
    pub refresh_at: Option<i64>,
    /// Raw ID token, as `id_token_hint` for RP-initiated logout.
    #[serde(default)]
    pub id_token: Option<String>,
    /// Token a logout form must echo (CSRF protection).
    pub csrf: String,
}

/// Cookie names: `__Host-` on HTTPS (host-only, path `/`, Secure), plain names on HTTP.
pub fn cookie_name(tls: bool, pre_auth: bool) -> &'static str {
    if pre_auth {
        cookies::GatewayCookie::PreAuth.name(tls)
    } else {
        cookies::GatewayCookie::Session.name(tls)
    }
}

/// A `Set-Cookie` value with the attributes every Portcullis cookie has.
pub fn set_cookie(name: &str, value: &str, tls: bool, max_age: Option<i64>) -> String {
    let mut s = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
    if tls {
        s.push_str("; Secure");
    }
    if let Some(a) = max_age {
        s.push_str(&format!("; Max-Age={a}"));
    }
    s
}

/// A `Set-Cookie` value that deletes `name`.
pub fn clear_cookie(name: &str, tls: bool) -> String {
    set_cookie(name, "", tls, Some(0))
}

/// Every value of cookie `name` in the request (several `Cookie` headers with h2).
pub fn cookie_values<'a>(headers: &'a http::HeaderMap, name: &'a str) -> Vec<&'a str> {
    cookies::values(headers, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_prefix_only_on_https_and_attributes_always() {
        let c = set_cookie(cookie_name(true, false), "v", true, None);
        assert!(c.starts_with("__Host-portcullis=v; Path=/; HttpOnly; SameSite=Lax; Secure"));
        assert!(!c.contains("Domain"));
        let p = set_cookie(cookie_name(false, false), "v", false, Some(5));
        assert_eq!(p, "portcullis=v; Path=/; HttpOnly; SameSite=Lax; Max-Age=5");
    }

    #[test]
    fn cookies_are_read_from_every_header() {
        let mut h = http::HeaderMap::new();
        h.append("cookie", "a=1; portcullis=x".parse().unwrap());
        h.append("cookie", "portcullis=y".parse().unwrap());
        assert_eq!(cookie_values(&h, "portcullis"), vec!["x", "y"]);
    }
}
