//! Facts about a request that every step reads: who connected, which host it names, whether
//! it is a browser navigation, and what the TLS handshake verified.

use crate::tls::ClientCertFacts;
use pingora::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora::proxy::Session;
use pingora_http::RequestHeader;
use std::net::{IpAddr, Ipv4Addr};

pub(crate) fn peer_ip(session: &Session) -> IpAddr {
    match session.client_addr() {
        Some(PingoraAddr::Inet(a)) => a.ip(),
        _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
    }
}

/// The issuing CA of the client certificate verified on this connection, if any.
pub(crate) fn client_cert_ca(session: &Session) -> Option<String> {
    session
        .digest()
        .and_then(|d| d.ssl_digest.as_ref())
        .and_then(|d| d.extension.get::<ClientCertFacts>())
        .map(|f| f.ca.clone())
}

/// A browser navigation (HTML `Accept`), as opposed to an API client.
pub(crate) fn is_browser(req: &RequestHeader) -> bool {
    req.headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html"))
}

pub(crate) fn request_host(req: &RequestHeader) -> Option<String> {
    let raw = req
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))?;
    valid_host(raw)
}

/// The first value of query parameter `name`, decoded.
pub(crate) fn query_param(req: &RequestHeader, name: &str) -> Option<String> {
    url::form_urlencoded::parse(req.uri.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A `Host` value the route table may see: a name or address with an optional port.
pub(crate) fn valid_host(raw: &str) -> Option<String> {
    let ok = !raw.is_empty()
        && raw.len() <= 255
        && raw.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']' | b'_')
        });
    ok.then(|| raw.to_string())
}
