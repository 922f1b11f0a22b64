//! One request to a `/.portcullis/*` endpoint, built once by the dispatcher
//! (`request/endpoints.rs`) and handed to every handler — sign-in, MFA, SCIM — so that handlers
//! are plain async functions over a value, testable without pingora, and no handler reads the
//! socket (or parses the query, or bounds the body) its own way.

use crate::errors::GatewayError;
use crate::sso::AuthError;
use std::collections::HashMap;
use std::net::IpAddr;

/// Largest body a sign-in or MFA endpoint reads (forms and WebAuthn ceremonies).
pub const MAX_BODY: usize = 64 * 1024;

/// Why a request body is not available.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// Longer than the endpoint accepts (announced, or found while reading: reading stops).
    TooLarge,
    /// The connection failed mid-body.
    Unreadable,
    /// A form or JSON body that is not UTF-8.
    NotUtf8,
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for BodyError {}

impl BodyError {
    /// What the client is told.
    pub fn message(self) -> &'static str {
        match self {
            BodyError::TooLarge => "body too large",
            BodyError::Unreadable => "unreadable body",
            BodyError::NotUtf8 => "body is not UTF-8",
        }
    }
}

impl From<BodyError> for GatewayError {
    /// A sign-in or MFA endpoint answers an unusable body with 400 (SCIM maps it to its own
    /// error schema instead).
    fn from(e: BodyError) -> Self {
        AuthError::BadRequest(e.message()).into()
    }
}

/// What a `/.portcullis/*` handler may know about its request.
#[derive(Debug, Clone)]
pub struct LocalRequest {
    /// HTTP method.
    pub method: http::Method,
    /// Decoded, normalised path (`/.portcullis/mfa/verify`).
    pub path: String,
    /// Raw query string, without `?` (SCIM parses its own; callbacks pass it on verbatim).
    pub query: String,
    /// The query decoded as `application/x-www-form-urlencoded` (the last value of a name wins).
    pub params: HashMap<String, String>,
    /// Request headers (cookies, `Authorization`, `If-Match`, content type).
    pub headers: http::HeaderMap,
    /// The body, read once up to the endpoint's bound, or why it could not be.
    pub body: Result<Vec<u8>, BodyError>,
    /// `scheme://host[:port]` of this request.
    pub origin: String,
    /// Over TLS (directly, or at a trusted proxy in front).
    pub tls: bool,
    /// The client's address (limits and audit events).
    pub client_ip: IpAddr,
}

impl LocalRequest {
    /// A request for `target` (`path?query`) with no headers and an empty body, over HTTPS
    /// from 127.0.0.1 to `https://gateway.test`: tests and tools change the fields they need.
    pub fn new(method: http::Method, target: &str) -> Self {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        Self {
            method,
            path: path.to_string(),
            query: query.to_string(),
            params: parse_query(query),
            headers: http::HeaderMap::new(),
            body: Ok(Vec::new()),
            origin: "https://gateway.test".to_string(),
            tls: true,
            client_ip: IpAddr::from([127, 0, 0, 1]),
        }
    }

    /// The decoded query parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    /// The header `name` when it is visible ASCII.
    pub fn header(&self, name: impl http::header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body bytes.
    pub fn bytes(&self) -> Result<&[u8], BodyError> {
        self.body.as_deref().map_err(|e| *e)
    }

    /// The body as text (forms, JSON ceremonies).
    pub fn text(&self) -> Result<&str, BodyError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| BodyError::NotUtf8)
    }

    /// The body decoded as a URL-encoded form.
    pub fn form(&self) -> Result<HashMap<String, String>, BodyError> {
        Ok(parse_query(self.text()?))
    }
}

/// `a=1&b=%20` decoded into a map.
fn parse_query(q: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(q.as_bytes())
        .into_owned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_is_split_and_its_query_decoded() {
        let r = LocalRequest::new(http::Method::GET, "/.portcullis/login?rd=%2Fa%3Fb&idp=x+y");
        assert_eq!(r.path, "/.portcullis/login");
        assert_eq!(r.query, "rd=%2Fa%3Fb&idp=x+y");
        assert_eq!(r.param("rd"), Some("/a?b"));
        assert_eq!(r.param("idp"), Some("x y"));
        assert_eq!(r.param("none"), None);
    }

    #[test]
    fn body_errors_reach_every_reader() {
        let mut r = LocalRequest::new(http::Method::POST, "/x");
        r.body = Ok(vec![0xff, 0xfe]);
        assert_eq!(r.bytes(), Ok(&[0xff, 0xfe][..]));
        assert_eq!(r.text(), Err(BodyError::NotUtf8));
        assert_eq!(r.form(), Err(BodyError::NotUtf8));
        r.body = Err(BodyError::TooLarge);
        assert_eq!(r.bytes(), Err(BodyError::TooLarge));
        assert_eq!(r.form(), Err(BodyError::TooLarge));
        r.body = Ok(b"csrf=a%26b&code=1".to_vec());
        let f = r.form().unwrap();
        assert_eq!(f["csrf"], "a&b");
        assert_eq!(f["code"], "1");
    }
}
