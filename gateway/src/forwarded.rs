//! Who the client is, and what the upstream is told about it. Forwarding headers are believed
//! only from `server.trusted_proxies`; from anyone else they are replaced, whatever their
//! spelling, so an attacker cannot choose the client IP that logs and IP rules see.

use ipnet::IpNet;
use pingora_http::RequestHeader;
use std::net::IpAddr;

/// Whether `ip` is one of the trusted proxies.
pub fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|n| n.contains(&canonical(ip)))
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Every line of header `name` joined with `, ` (RFC 9110 §5.3: a list header may be split over
/// several lines, and a proxy such as HAProxy's `option forwardfor` appends its own line, so
/// reading only the first would let the client's line choose). `None` when absent; a line that
/// is not visible ASCII makes the whole value unusable (`Some("")` parses as nothing).
pub fn joined(headers: &http::HeaderMap, name: &str) -> Option<String> {
    let mut out: Option<String> = None;
    for v in headers.get_all(name).iter() {
        let v = v.to_str().unwrap_or("");
        match &mut out {
            None => out = Some(v.to_string()),
            Some(s) => {
                s.push_str(", ");
                s.push_str(v);
            }
        }
    }
    out
}

/// The client address: the peer itself, or — when the peer is a trusted proxy — the right-most
/// address in `X-Forwarded-For` that is not a trusted proxy.
pub fn client_ip(peer: IpAddr, xff: Option<&str>, trusted: &[IpNet]) -> IpAddr {
    let peer = canonical(peer);
    if !is_trusted(peer, trusted) {
        return peer;
    }
    let Some(xff) = xff else { return peer };
    let mut last = peer;
    for part in xff.rsplit(',') {
        let Ok(ip) = part.trim().parse::<IpAddr>() else {
            // An unparsable hop ends what we can believe.
            return last;
        };
        let ip = canonical(ip);
        if !is_trusted(ip, trusted) {
            return ip;
        }
        last = ip;
    }
    last
}

/// Whether `name`, lower-cased with `_` and `.` folded to `-` (the spelling CGI, Rack and PHP
/// stacks map every variant to), starts with `prefix` (given folded). Checked byte by byte so
/// the per-request scan of every header allocates nothing.
pub fn folded_starts_with(name: &str, prefix: &str) -> bool {
    let fold = |b: u8| match b {
        b'_' | b'.' => b'-',
        b => b.to_ascii_lowercase(),
    };
    name.len() >= prefix.len() && name.bytes().zip(prefix.bytes()).all(|(a, b)| fold(a) == b)
}

/// Removes every header whose folded name satisfies `pred`, returning how many were removed.
pub fn remove_headers_where(req: &mut RequestHeader, pred: impl Fn(&str) -> bool) -> usize {
    let doomed: Vec<http::header::HeaderName> = req
        .headers
        .keys()
        .filter(|k| pred(k.as_str()))
        .cloned()
        .collect();
    for name in &doomed {
        req.remove_header(name);
    }
    doomed.len()
}

/// What the gateway tells the upstream about the original request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded {
    /// Value of `X-Forwarded-For`.
    pub for_chain: String,
    /// `http` or `https`.
    pub proto: String,
    /// The original Host.
    pub host: String,
}

/// Builds the forwarding headers. From a trusted proxy its chain and proto/host are extended;
/// from anyone else they are ignored.
pub fn forwarded(
    peer: IpAddr,
    trusted_peer: bool,
    incoming: &RequestHeader,
    tls: bool,
    host: &str,
) -> Forwarded {
    let header = |n: &str| {
        incoming
            .headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let peer = canonical(peer).to_string();
    let own_proto = if tls { "https" } else { "http" };
    if trusted_peer {
        Forwarded {
            for_chain: match joined(&incoming.headers, "x-forwarded-for") {
                Some(prev) if !prev.trim().is_empty() => format!("{prev}, {peer}"),
                _ => peer,
            },
            proto: trusted_proto(&incoming.headers)
                .unwrap_or(own_proto)
                .to_string(),
            host: header("x-forwarded-host").unwrap_or(host).to_string(),
        }
    } else {
        Forwarded {
            for_chain: peer,
            proto: own_proto.to_string(),
            host: host.to_string(),
        }
    }
}

/// The scheme a trusted TLS-terminating proxy says the client used: the first hop of
/// `X-Forwarded-Proto` when it is `http` or `https`. Call only for a trusted peer.
pub fn trusted_proto(headers: &http::HeaderMap) -> Option<&'static str> {
    let v = headers.get("x-forwarded-proto")?.to_str().ok()?;
    match v.split(',').next()?.trim() {
        p if p.eq_ignore_ascii_case("https") => Some("https"),
        p if p.eq_ignore_ascii_case("http") => Some("http"),
        _ => None,
    }
}

/// Request headers that ask an upstream framework to act on another path or method than the
/// one the gateway judged (IIS/Symfony `X-Original-URL`/`X-Rewrite-URL`, Rack/Express/Laravel
/// method overrides), in folded spelling. The client's copies are removed on every route.
const OVERRIDE_HEADERS: [&str; 8] = [
    "x-original-url",
    "x-rewrite-url",
    "x-original-uri",
    "x-original-method",
    "x-original-host",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Removes every path and method override header (any spelling); returns how many.
pub fn strip_overrides(req: &mut RequestHeader) -> usize {
    remove_headers_where(req, |n| {
        OVERRIDE_HEADERS
            .iter()
            .any(|o| n.len() == o.len() && folded_starts_with(n, o))
    })
}

/// Replaces all forwarding headers on the upstream request with `f`.
pub fn apply(req: &mut RequestHeader, f: &Forwarded) -> pingora::Result<()> {
    remove_headers_where(req, |n| {
        folded_starts_with(n, "x-forwarded-")
            || (n.len() == 9 && folded_starts_with(n, "forwarded"))
            || (n.len() == 9 && folded_starts_with(n, "x-real-ip"))
    });
    req.insert_header("x-forwarded-for", f.for_chain.as_str())?;
    req.insert_header("x-forwarded-proto", f.proto.as_str())?;
    req.insert_header("x-forwarded-host", f.host.as_str())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(v: &[&str]) -> Vec<IpNet> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_claims() {
        let t = nets(&["10.0.0.0/8"]);
        let peer: IpAddr = "198.51.100.7".parse().unwrap();
        assert_eq!(client_ip(peer, Some("1.2.3.4"), &t), peer);
    }

    #[test]
    fn trusted_chain_yields_rightmost_untrusted() {
        let t = nets(&["10.0.0.0/8"]);
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let ip = client_ip(peer, Some("6.6.6.6, 203.0.113.9, 10.0.0.2"), &t);
        assert_eq!(ip, "203.0.113.9".parse::<IpAddr>().unwrap());
        assert_eq!(
            client_ip(peer, Some("junk, 10.0.0.3"), &t),
            "10.0.0.3".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(peer, None, &t), peer);
        let mapped: IpAddr = "::ffff:10.1.1.1".parse().unwrap();
        assert_eq!(
            client_ip(mapped, Some("192.0.2.1"), &t),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn every_forwarded_for_line_counts() {
        let t = nets(&["10.0.0.0/8"]);
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.append_header("x-forwarded-for", "10.1.1.1").unwrap();
        req.append_header("x-forwarded-for", "198.51.100.7")
            .unwrap();
        let xff = joined(&req.headers, "x-forwarded-for");
        assert_eq!(xff.as_deref(), Some("10.1.1.1, 198.51.100.7"));
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(
            client_ip(peer, xff.as_deref(), &t),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        let f = forwarded(peer, true, &req, false, "app");
        assert_eq!(f.for_chain, "10.1.1.1, 198.51.100.7, 10.0.0.1");
    }

    #[test]
    fn overrides_are_removed_in_every_spelling() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        for n in [
            "X-Original-URL",
            "x_rewrite_url",
            "X-HTTP-Method-Override",
            "x.http.method",
            "X-Method-Override",
        ] {
            req.append_header(n.to_string(), "/admin").unwrap();
        }
        req.append_header("x-original-url-kept", "1").unwrap();
        assert_eq!(strip_overrides(&mut req), 5);
        assert_eq!(req.headers.len(), 1);
    }

    #[test]
    fn spoofed_spellings_are_removed() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        for n in [
            "X-Forwarded-For",
            "x_forwarded_for",
            "X.Forwarded.Host",
            "Forwarded",
            "X-Real-IP",
        ] {
            req.append_header(n.to_string(), "6.6.6.6").unwrap();
        }
        let f = forwarded("192.0.2.1".parse().unwrap(), false, &req, true, "app");
        apply(&mut req, &f).unwrap();
        assert_eq!(req.headers.len(), 3);
        assert_eq!(req.headers.get("x-forwarded-for").unwrap(), "192.0.2.1");
        assert_eq!(req.headers.get("x-forwarded-proto").unwrap(), "https");
        assert_eq!(req.headers.get("x-forwarded-host").unwrap(), "app");
    }
}
