//! Identity towards upstreams. The rule that never bends: every client-sent `X-Portcullis-*`
//! header, in any spelling (case, `_`, `.`), is removed on every route before anything the
//! gateway vouches for is added — so an upstream can trust those headers unconditionally.

use crate::forwarded::remove_headers_where;
use pingora_http::RequestHeader;

/// Prefix of the headers the gateway owns, in folded spelling.
pub const HEADER_PREFIX: &str = "x-portcullis-";

/// Removes client-supplied identity headers; returns how many there were (worth a log line:
/// nobody legitimate sends them).
pub fn strip_client_identity(req: &mut RequestHeader) -> usize {
    remove_headers_where(req, |n| n.starts_with(HEADER_PREFIX))
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
