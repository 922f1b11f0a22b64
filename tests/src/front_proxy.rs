//! What the front-proxy suites share (`forward_auth_proxies.rs` for Traefik, Caddy and Envoy's
//! HTTP ext_authz, `ext_authz.rs` for Envoy's gRPC ext_authz): where the proxy binaries are,
//! the client address that is neither the test's default nor a trusted proxy, the gateway's
//! config, and the client headers that must never change a decision.

use crate::oidc::{OpenIdProvider, CLIENT_ID, CLIENT_SECRET, SESSION_KEY};
use std::net::IpAddr;
use std::path::PathBuf;

/// Where the test's clients connect from: not 127.0.0.1, the one trusted proxy address.
pub const CLIENT_ADDR: [u8; 4] = [127, 0, 0, 3];

/// Client-sent original-URL and forwarding headers (with the public URL they point at) that
/// must not make a protected URL look public.
pub const ORIGINAL_URL_SPOOFS: [(&str, &str); 8] = [
    ("x-original-url", "/pub/x"),
    ("x-original-uri", "/pub/x"),
    ("x-forwarded-uri", "/pub/x"),
    ("x-forwarded-prefix", "/pub"),
    ("x-rewrite-url", "/pub/x"),
    ("x-forwarded-host", "public.host"),
    ("x-forwarded-method", "OPTIONS"),
    ("x-envoy-original-path", "/pub/x"),
];

/// A proxy binary from the venv `tests/run` makes (`target/proxies-venv`), or from PATH (under
/// `CI=1` a missing one fails the test).
pub fn proxy_bin(name: &str) -> Option<PathBuf> {
    let venv = crate::k8s::repo()
        .join("target/proxies-venv/bin")
        .join(name);
    if venv.is_file() {
        return Some(venv);
    }
    crate::k8s::require(name)
}

/// A client connecting from [`CLIENT_ADDR`].
pub fn from_client() -> reqwest::Client {
    crate::client_from(None, Some(IpAddr::from(CLIENT_ADDR)))
}

/// The gateway behind a proxy on `proxy_port`: 127.0.0.1 trusted, `op` as provider `corp`, and
/// four routes (authenticated, public, a group, an address range) to `app`. `server_extra` goes
/// under `server:`, `extra` at the top level (e.g. `forward_auth:`).
pub fn gateway_config(
    server_extra: &str,
    extra: &str,
    proxy_port: u16,
    op: &OpenIdProvider,
    app: &str,
) -> String {
    format!(
        "{}  trusted_proxies: [127.0.0.1/32]
{server_extra}session:
  keys: [\"{SESSION_KEY}\"]
  return_to_allow: [\"http://127.0.0.1:{proxy_port}\"]
identity_providers:
  - {{ id: corp, type: oidc, issuer: \"{}\", client_id: {CLIENT_ID}, client_secret: {CLIENT_SECRET}, scopes: [openid, email, groups] }}
{extra}routes:
  - {{ id: app, path: /, upstream: \"{app}\", policy: authenticated }}
  - {{ id: pub, path: /pub, upstream: \"{app}\", policy: public }}
  - {{ id: finance, path: /finance, upstream: \"{app}\", policy: {{ allow: [ {{ groups: [finance] }} ] }} }}
  - {{ id: intranet, path: /intranet, upstream: \"{app}\", policy: {{ allow: [ {{ source_ip: [10.0.0.0/8] }} ] }} }}
",
        crate::SERVER,
        op.issuer
    )
}
