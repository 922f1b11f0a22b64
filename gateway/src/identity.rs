//! Identity towards upstreams. The rule that never bends: every client-sent `X-Portcullis-*`
//! header, in any spelling (case, `_`, `.`), is removed on every route before anything the
//! gateway vouches for is added — so an upstream can trust those headers unconditionally.

use crate::assertion::identity_headers;
use crate::forwarded::{folded_starts_with, remove_headers_where};
use crate::sso::Sso;
use pingora_http::RequestHeader;
use portcullis_policy::input::Identity;

/// Prefix of the headers the gateway owns, in folded spelling.
pub const HEADER_PREFIX: &str = "x-portcullis-";

/// Removes client-supplied identity headers; returns how many there were (worth a log line:
/// nobody legitimate sends them).
pub fn strip_client_identity(req: &mut RequestHeader) -> usize {
    remove_headers_where(req, |n| folded_starts_with(n, HEADER_PREFIX))
}

/// Sets the identity headers and the signed assertion for `aud`. Call after
/// [`strip_client_identity`].
pub fn set_identity(
    req: &mut RequestHeader,
    sso: &Sso,
    identity: &Identity,
    aud: &str,
) -> pingora::Result<()> {
    for (name, value) in identity_headers(identity) {
        req.insert_header(name, value)?;
    }
    if let Some(token) = sso.assertions.sign(identity, aud) {
        req.insert_header("x-portcullis-assertion", token)?;
    }
    Ok(())
}

/// Removes the gateway's own cookies (every one in the registry, see
/// [`crate::session::cookies`]) from what the upstream sees: an upstream (or whoever reads its
/// logs) must not be able to replay a user's session or remembered device.
pub fn strip_session_cookies(req: &mut RequestHeader) -> pingora::Result<()> {
    crate::session::cookies::strip(req).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_is_stripped() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        for n in [
            "X-Portcullis-User",
            "x_portcullis_user",
            "X.PORTCULLIS.Groups",
            "x-portcullis-assertion",
            "X-Portcullis_Roles",
        ] {
            req.append_header(n.to_string(), "admin").unwrap();
        }
        req.append_header("x-portcullisuser", "kept").unwrap();
        assert_eq!(strip_client_identity(&mut req), 5);
        assert_eq!(req.headers.len(), 1);
    }
}
