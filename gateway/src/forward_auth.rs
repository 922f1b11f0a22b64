//! Which request a forward-auth check is about. nginx `auth_request`, Traefik `forwardAuth`,
//! Caddy `forward_auth` and Envoy HTTP `ext_authz` each describe the client's original request
//! in their own header family. The gateway reads exactly one family — the one of the proxy
//! named in `forward_auth.mode` — and only from a peer in `server.trusted_proxies`.
//!
//! Why so strict: a front proxy copies the client's headers into the check request (nginx's
//! auth subrequest inherits all of them; Traefik copies them), so any header the proxy does not
//! itself set is the client's choice. A precedence chain across families (`X-Original-URL`
//! before `X-Forwarded-Uri`…) let a client name a public URL while fetching a private one.
//! With one family the proxy overwrites every header that is read; the README lists, per
//! proxy, which headers its config must set.

use http::{HeaderMap, Method};
use ipnet::IpNet;
use serde::Deserialize;
use std::net::IpAddr;
use thiserror::Error;

/// The endpoint, and the prefix under which Envoy appends the original path.
pub const ENDPOINT: &str = "/.portcullis/auth";

/// Longest value accepted in any header that describes the original request (431 above it).
/// Route lookup is linear, but nothing legitimate is this long and parsing it costs CPU.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;

/// `forward_auth:` as written in the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardAuthSpec {
    /// `nginx | traefik | caddy | envoy`: which proxy sits in front of `/.portcullis/auth`.
    pub mode: String,
}

/// The proxy in front of `/.portcullis/auth`, i.e. which header family describes the original
/// request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// nginx `auth_request`: `X-Original-Method`, `X-Original-Host`, `X-Original-URI`.
    Nginx,
    /// Traefik `forwardAuth`: `X-Forwarded-Method`, `-Proto`, `-Host`, `-Uri`.
    Traefik,
    /// Caddy `forward_auth`: the same family as Traefik.
    Caddy,
    /// Envoy HTTP `ext_authz`: the check request keeps the original method and `Host`, and its
    /// path is `/.portcullis/auth` followed by the original path and query.
    Envoy,
}

/// Validated `forward_auth:`. Without it `/.portcullis/auth` does not exist (404).
#[derive(Debug, Clone)]
pub struct ForwardAuthConfig {
    /// The front proxy.
    pub mode: Mode,
}

/// Validates `forward_auth:`; `trusted_proxies` is `server.trusted_proxies` (it must not be
/// empty: only those peers' descriptions of the original request are believed).
pub fn build(
    spec: ForwardAuthSpec,
    trusted_proxies: &[String],
    problems: &mut crate::config::problems::Problems,
) -> Option<ForwardAuthConfig> {
    let mode = match spec.mode.as_str() {
        "nginx" => Some(Mode::Nginx),
        "traefik" => Some(Mode::Traefik),
        "caddy" => Some(Mode::Caddy),
        "envoy" => Some(Mode::Envoy),
        other => {
            problems.add(
                "forward_auth.mode",
                format!("unknown mode {other:?}: expected nginx, traefik, caddy or envoy"),
            );
            None
        }
    };
    if trusted_proxies.is_empty() {
        problems.add(
            "forward_auth",
            "needs server.trusted_proxies: forward-auth answers only the proxies listed there",
        );
        return None;
    }
    mode.map(|mode| ForwardAuthConfig { mode })
}

/// Why a forward-auth check cannot be answered. Each is a refusal (fail closed): the front
/// proxy turns any non-2xx answer into a denial.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ForwardAuthError {
    /// The caller is not in `server.trusted_proxies`.
    #[error("forward-auth answers only server.trusted_proxies")]
    Untrusted,
    /// The proxy did not send a header its mode requires (its config is incomplete).
    #[error("the front proxy did not send {0}")]
    Missing(&'static str),
    /// A header that must be set once by the proxy came several times (a client copy survived).
    #[error("{0} was sent more than once")]
    Repeated(&'static str),
    /// A header is longer than [`MAX_HEADER_BYTES`].
    #[error("{0} is too long")]
    TooLong(&'static str),
    /// A header does not hold what it should (a path not starting with `/`, a bad method…).
    #[error("{0} is not valid")]
    Invalid(&'static str),
    /// The original path is not in normal form: the app would see another path than the one
    /// judged (`..`, `%2e%2e`, `//`, `\`, `;`).
    #[error("the original path is not in normal form")]
    NotNormal,
}

impl ForwardAuthError {
    /// HTTP status of the refusal.
    pub fn status(&self) -> u16 {
        match self {
            ForwardAuthError::Untrusted => 403,
            ForwardAuthError::TooLong(_) => 431,
            _ => 400,
        }
    }
}

/// The client's original request as the front proxy described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Original {
    /// `http` or `https` when known.
    pub proto: Option<String>,
    /// Host (with port when the proxy sent one).
    pub host: String,
    /// The original method.
    pub method: Method,
    /// Raw path and query, as the client sent them.
    pub path_and_query: String,
}

impl Original {
    /// The path without the query.
    pub fn path(&self) -> &str {
        self.path_and_query
            .split_once('?')
            .map_or(self.path_and_query.as_str(), |(p, _)| p)
    }

    /// The query, if any.
    pub fn query(&self) -> Option<&str> {
        self.path_and_query.split_once('?').map(|(_, q)| q)
    }

    /// `proto://host` when the scheme is known: where the browser is, so where it signs in (the
    /// session cookie belongs to this host; the proxy routes `/.portcullis/` to the gateway).
    pub fn origin(&self) -> Option<String> {
        self.proto.as_ref().map(|p| format!("{p}://{}", self.host))
    }

    /// `proto://host/path?query` when the scheme is known (for return URLs).
    pub fn url(&self) -> Option<String> {
        self.proto
            .as_ref()
            .map(|p| format!("{p}://{}{}", self.host, self.path_and_query))
    }
}

/// Whether `path` (already normalised) is the forward-auth endpoint or below it.
pub fn is_forward_auth(path: &str) -> bool {
    path == ENDPOINT
        || path
            .strip_prefix(ENDPOINT)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// `host[:port]` of an absolute URL, as a `Host` header would carry it.
pub fn authority(u: &url::Url) -> Option<String> {
    match (u.host_str(), u.port()) {
        (Some(h), Some(p)) => Some(format!("{h}:{p}")),
        (Some(h), None) => Some(h.to_string()),
        _ => None,
    }
}

/// The single value of header `name`: absent → `None`; repeated, too long or not visible
/// ASCII → an error.
fn single<'a>(h: &'a HeaderMap, name: &'static str) -> Result<Option<&'a str>, ForwardAuthError> {
    let mut all = h.get_all(name).iter();
    let Some(v) = all.next() else {
        return Ok(None);
    };
    if all.next().is_some() {
        return Err(ForwardAuthError::Repeated(name));
    }
    if v.len() > MAX_HEADER_BYTES {
        return Err(ForwardAuthError::TooLong(name));
    }
    let v = v
        .to_str()
        .map_err(|_| ForwardAuthError::Invalid(name))?
        .trim();
    Ok((!v.is_empty()).then_some(v))
}

fn required<'a>(h: &'a HeaderMap, name: &'static str) -> Result<&'a str, ForwardAuthError> {
    single(h, name)?.ok_or(ForwardAuthError::Missing(name))
}

pub(crate) fn path_and_query(v: &str, name: &'static str) -> Result<String, ForwardAuthError> {
    let ok = v.starts_with('/') && !v.starts_with("//") && v.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| v.to_string())
        .ok_or(ForwardAuthError::Invalid(name))
}

pub(crate) fn method(v: &str, name: &'static str) -> Result<Method, ForwardAuthError> {
    let ok = !v.is_empty() && v.len() <= 32 && v.bytes().all(|b| b.is_ascii_uppercase());
    ok.then(|| Method::from_bytes(v.as_bytes()).ok())
        .flatten()
        .ok_or(ForwardAuthError::Invalid(name))
}

pub(crate) fn proto(
    v: Option<&str>,
    name: &'static str,
) -> Result<Option<String>, ForwardAuthError> {
    match v.map(str::to_ascii_lowercase) {
        None => Ok(None),
        Some(p) if p == "http" || p == "https" => Ok(Some(p)),
        Some(_) => Err(ForwardAuthError::Invalid(name)),
    }
}

/// The check request as the gateway received it.
#[derive(Debug, Clone, Copy)]
pub struct CheckRequest<'a> {
    /// Its headers.
    pub headers: &'a HeaderMap,
    /// Its method.
    pub method: &'a Method,
    /// Its raw path and query.
    pub path_and_query: &'a str,
    /// Its `Host`.
    pub host: &'a str,
}

/// Reads the original request from `mode`'s header family, and only from it.
pub fn original(mode: Mode, check: &CheckRequest<'_>) -> Result<Original, ForwardAuthError> {
    let h = check.headers;
    match mode {
        Mode::Nginx => Ok(Original {
            proto: proto(single(h, "x-forwarded-proto")?, "X-Forwarded-Proto")?,
            host: required(h, "x-original-host")?.to_string(),
            method: method(required(h, "x-original-method")?, "X-Original-Method")?,
            path_and_query: path_and_query(required(h, "x-original-uri")?, "X-Original-URI")?,
        }),
        Mode::Traefik | Mode::Caddy => Ok(Original {
            proto: proto(Some(required(h, "x-forwarded-proto")?), "X-Forwarded-Proto")?,
            host: required(h, "x-forwarded-host")?.to_string(),
            method: method(required(h, "x-forwarded-method")?, "X-Forwarded-Method")?,
            path_and_query: path_and_query(required(h, "x-forwarded-uri")?, "X-Forwarded-Uri")?,
        }),
        Mode::Envoy => {
            if check.path_and_query.len() > MAX_HEADER_BYTES {
                return Err(ForwardAuthError::TooLong(":path"));
            }
            let rest = check
                .path_and_query
                .strip_prefix(ENDPOINT)
                .ok_or(ForwardAuthError::Invalid(":path"))?;
            Ok(Original {
                proto: proto(single(h, "x-forwarded-proto")?, "X-Forwarded-Proto")?,
                host: check.host.to_string(),
                method: check.method.clone(),
                path_and_query: path_and_query(rest, ":path")?,
            })
        }
    }
}

/// The original client's address: the right-most address in `X-Forwarded-For` (all its lines
/// joined, RFC 9110 §5.3) that is not a trusted proxy. The caller is a trusted proxy, so the
/// proxy must have appended the client it saw; without that header the client is unknown and
/// the check is refused rather than judged as coming from the proxy itself.
pub fn client_ip(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &[IpNet],
) -> Result<IpAddr, ForwardAuthError> {
    let xff = crate::forwarded::joined(headers, "x-forwarded-for")
        .ok_or(ForwardAuthError::Missing("x-forwarded-for"))?;
    if xff.len() > MAX_HEADER_BYTES {
        return Err(ForwardAuthError::TooLong("x-forwarded-for"));
    }
    Ok(crate::forwarded::client_ip(peer, Some(&xff), trusted))
}

/// Whether normalising `raw` (the original path, not decoded) changed nothing but percent
/// escapes: the front proxy forwards the raw path, so anything the normaliser would resolve
/// (`..`, `%2e%2e`, `//`, `;` stripping) means the app would see another path than the one
/// judged.
pub fn is_normal_form(raw: &str, normalised: &portcullis_policy::path::NormalisedPath) -> bool {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .is_ok_and(|d| d == normalised.decoded())
}

/// Headers of the check request that describe the original request or the hop to the gateway:
/// they are not facts about the client and are removed before the policy sees the headers.
pub fn is_family_header(name: &str) -> bool {
    use crate::forwarded::folded_starts_with;
    folded_starts_with(name, "x-original-") || folded_starts_with(name, "x-forwarded-")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    fn check<'a>(h: &'a HeaderMap, pq: &'a str) -> CheckRequest<'a> {
        CheckRequest {
            headers: h,
            method: &Method::GET,
            path_and_query: pq,
            host: "gw:8443",
        }
    }

    const NGINX: &[(&str, &str)] = &[
        ("x-original-uri", "/admin/x?y=1"),
        ("x-original-host", "app.example.com"),
        ("x-original-method", "DELETE"),
    ];

    #[test]
    fn nginx_reads_only_its_family() {
        let h = headers(NGINX);
        let o = original(Mode::Nginx, &check(&h, ENDPOINT)).unwrap();
        assert_eq!(o.host, "app.example.com");
        assert_eq!(o.path(), "/admin/x");
        assert_eq!(o.query(), Some("y=1"));
        assert_eq!(o.method, Method::DELETE);
        // Another family's headers never change the answer.
        let mut h = headers(NGINX);
        h.insert("x-original-url", "/pub/x".parse().unwrap());
        h.insert("x-forwarded-uri", "/pub/x".parse().unwrap());
        h.insert("x-forwarded-host", "public.example.com".parse().unwrap());
        assert_eq!(original(Mode::Nginx, &check(&h, ENDPOINT)).unwrap(), o);
    }

    #[test]
    fn a_second_copy_of_a_family_header_is_refused() {
        let mut h = headers(NGINX);
        h.append("x-original-uri", "/pub/x".parse().unwrap());
        assert_eq!(
            original(Mode::Nginx, &check(&h, ENDPOINT)),
            Err(ForwardAuthError::Repeated("x-original-uri"))
        );
    }

    #[test]
    fn missing_or_bad_headers_are_refused() {
        let h = headers(&NGINX[..2]);
        assert_eq!(
            original(Mode::Nginx, &check(&h, ENDPOINT)),
            Err(ForwardAuthError::Missing("x-original-method"))
        );
        for (k, v) in [
            ("x-original-uri", "http://evil/"),
            ("x-original-uri", "//evil/x"),
            ("x-original-method", "get"),
        ] {
            let mut h = headers(NGINX);
            h.insert(k, v.parse().unwrap());
            assert!(
                matches!(
                    original(Mode::Nginx, &check(&h, ENDPOINT)),
                    Err(ForwardAuthError::Invalid(_))
                ),
                "{k}: {v}"
            );
        }
        let mut h = headers(NGINX);
        let long = format!("/{}", "a/".repeat(MAX_HEADER_BYTES));
        h.insert("x-original-uri", long.parse().unwrap());
        let e = original(Mode::Nginx, &check(&h, ENDPOINT)).unwrap_err();
        assert_eq!(
            (e.status(), e),
            (431, ForwardAuthError::TooLong("x-original-uri"))
        );
    }

    #[test]
    fn traefik_family_gives_a_return_url() {
        let h = headers(&[
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "app.example.com"),
            ("x-forwarded-uri", "/reports?q=1"),
            ("x-forwarded-method", "POST"),
            ("x-original-uri", "/pub"),
        ]);
        let o = original(Mode::Traefik, &check(&h, ENDPOINT)).unwrap();
        assert_eq!(
            o.url().as_deref(),
            Some("https://app.example.com/reports?q=1")
        );
        assert_eq!(o.method, Method::POST);
    }

    #[test]
    fn envoy_uses_its_own_method_host_and_path() {
        let h = headers(&[("x-original-uri", "/pub")]);
        let o = original(Mode::Envoy, &check(&h, "/.portcullis/auth/app/x?z")).unwrap();
        assert_eq!(o.path_and_query, "/app/x?z");
        assert_eq!(o.host, "gw:8443");
        assert!(original(Mode::Envoy, &check(&h, ENDPOINT)).is_err());
        assert!(is_forward_auth("/.portcullis/auth/app"));
        assert!(!is_forward_auth("/.portcullis/authz"));
    }

    #[test]
    fn client_ip_joins_every_forwarded_for_line() {
        let t: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let h = headers(&[
            ("x-forwarded-for", "10.1.1.1"),
            ("x-forwarded-for", "198.51.100.7"),
        ]);
        assert_eq!(
            client_ip(peer, &h, &t).unwrap(),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip(peer, &HeaderMap::new(), &t),
            Err(ForwardAuthError::Missing("x-forwarded-for"))
        );
    }

    #[test]
    fn only_the_identity_normalisation_is_normal_form() {
        use portcullis_policy::path::{normalise, ParamRule};
        for (raw, normal) in [
            ("/app/x", true),
            ("/app/caf%C3%A9", true),
            ("/pub/../secret", false),
            ("/pub/%2e%2e/secret", false),
            ("//secret", false),
            ("/a/./b", false),
        ] {
            let n = normalise(raw, ParamRule::Strip).unwrap();
            assert_eq!(is_normal_form(raw, &n), normal, "{raw}");
        }
    }
}
