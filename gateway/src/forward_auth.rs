//! Which request a forward-auth check is about. nginx `auth_request`, Traefik/Caddy
//! `forward_auth` and Envoy `ext_authz` each describe the client's original request in their
//! own way; the gateway reads all of them so that `/.portcullis/auth` can answer with the
//! policy of the route that request would take, not merely "is there a session".
//!
//! The headers are whatever the front proxy set. A client that calls `/.portcullis/auth`
//! directly with invented values learns only whether its own session may reach that URL —
//! the answer is meant for the proxy and grants nothing by itself.

use http::HeaderMap;

/// The endpoint, and the prefix under which Envoy appends the original path.
pub const ENDPOINT: &str = "/.portcullis/auth";

/// The client's original request as the front proxy described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Original {
    /// `http` or `https` when known.
    pub proto: Option<String>,
    /// Host (with port when the proxy sent one).
    pub host: String,
    /// Raw path and query, as the client sent them (normalised later like any request).
    pub path_and_query: String,
}

impl Original {
    /// The path without the query.
    pub fn path(&self) -> &str {
        self.path_and_query
            .split_once('?')
            .map_or(self.path_and_query.as_str(), |(p, _)| p)
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

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn plausible_path(p: &str) -> bool {
    p.starts_with('/') && !p.bytes().any(|b| b.is_ascii_control() || b == b' ')
}

/// `host[:port]` of an absolute URL, as a `Host` header would carry it.
pub fn authority(u: &url::Url) -> Option<String> {
    match (u.host_str(), u.port()) {
        (Some(h), Some(p)) => Some(format!("{h}:{p}")),
        (Some(h), None) => Some(h.to_string()),
        _ => None,
    }
}

/// Reads the original request from, in order: `X-Original-URL` (absolute, or a path),
/// `X-Forwarded-Uri` / `X-Original-URI` with `X-Forwarded-Host` / `X-Original-Host` (or the
/// request's own `Host`), and Envoy's form where the original path follows [`ENDPOINT`] and
/// `Host` is the original host. `None` when the proxy said nothing about it.
///
/// `raw_path_and_query` is this request's own raw target; `own_host` its `Host`.
pub fn original(h: &HeaderMap, raw_path_and_query: &str, own_host: &str) -> Option<Original> {
    let proto = header(h, "x-forwarded-proto")
        .map(|p| p.split(',').next().unwrap_or(p).trim().to_ascii_lowercase())
        .filter(|p| p == "http" || p == "https");
    let host = header(h, "x-forwarded-host")
        .or_else(|| header(h, "x-original-host"))
        .map(|v| v.split(',').next().unwrap_or(v).trim().to_string());
    if let Some(u) = header(h, "x-original-url") {
        if plausible_path(u) {
            return Some(Original {
                proto,
                host: host.unwrap_or_else(|| own_host.to_string()),
                path_and_query: u.to_string(),
            });
        }
        let parsed = url::Url::parse(u).ok()?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return None;
        }
        let authority = authority(&parsed)?;
        let pq = match parsed.query() {
            Some(q) => format!("{}?{q}", parsed.path()),
            None => parsed.path().to_string(),
        };
        return Some(Original {
            proto: Some(parsed.scheme().to_string()),
            host: authority,
            path_and_query: pq,
        });
    }
    if let Some(uri) = header(h, "x-forwarded-uri").or_else(|| header(h, "x-original-uri")) {
        return plausible_path(uri).then(|| Original {
            proto,
            host: host.unwrap_or_else(|| own_host.to_string()),
            path_and_query: uri.to_string(),
        });
    }
    let rest = raw_path_and_query.strip_prefix(ENDPOINT)?;
    if !rest.starts_with('/') {
        return None;
    }
    Some(Original {
        proto,
        host: host.unwrap_or_else(|| own_host.to_string()),
        path_and_query: rest.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn nginx_original_uri_uses_the_forwarded_or_own_host() {
        let o = original(
            &headers(&[("x-original-uri", "/admin/x?y=1")]),
            ENDPOINT,
            "gw:8443",
        )
        .unwrap();
        assert_eq!(o.host, "gw:8443");
        assert_eq!(o.path(), "/admin/x");
        assert_eq!(o.path_and_query, "/admin/x?y=1");
        assert_eq!(o.url(), None);
        let o = original(
            &headers(&[
                ("x-original-uri", "/a"),
                ("x-original-host", "app.example.com"),
            ]),
            ENDPOINT,
            "gw",
        )
        .unwrap();
        assert_eq!(o.host, "app.example.com");
    }

    #[test]
    fn traefik_forwarded_triplet_gives_a_return_url() {
        let o = original(
            &headers(&[
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "app.example.com"),
                ("x-forwarded-uri", "/reports?q=1"),
            ]),
            ENDPOINT,
            "gw",
        )
        .unwrap();
        assert_eq!(
            o.url().as_deref(),
            Some("https://app.example.com/reports?q=1")
        );
    }

    #[test]
    fn absolute_original_url_wins_and_must_be_http() {
        let o = original(
            &headers(&[
                ("x-original-url", "https://app.example.com:8443/p?q"),
                ("x-forwarded-uri", "/other"),
            ]),
            ENDPOINT,
            "gw",
        )
        .unwrap();
        assert_eq!(o.host, "app.example.com:8443");
        assert_eq!(o.path_and_query, "/p?q");
        assert!(original(
            &headers(&[("x-original-url", "javascript:alert(1)")]),
            ENDPOINT,
            "gw"
        )
        .is_none());
    }

    #[test]
    fn envoy_prefix_form_and_nothing_said() {
        let o = original(&HeaderMap::new(), "/.portcullis/auth/app/x?z", "app").unwrap();
        assert_eq!(o.path_and_query, "/app/x?z");
        assert_eq!(o.host, "app");
        assert!(original(&HeaderMap::new(), ENDPOINT, "gw").is_none());
        assert!(original(&HeaderMap::new(), "/.portcullis/authx", "gw").is_none());
        assert!(is_forward_auth("/.portcullis/auth/app"));
        assert!(!is_forward_auth("/.portcullis/authz"));
    }

    #[test]
    fn paths_that_are_not_paths_are_ignored() {
        assert!(original(
            &headers(&[("x-forwarded-uri", "http://evil/")]),
            ENDPOINT,
            "gw"
        )
        .is_none());
    }
}
