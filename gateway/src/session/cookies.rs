//! The one registry of cookies the gateway sets, and the byte-level `Cookie` header parsing
//! that both reading them and removing them rely on.
//!
//! Every gateway cookie is a bearer credential of some kind (a session id, a pre-auth state,
//! a pending one-time code, a WebAuthn ceremony, a remembered device), so none of them may
//! reach an upstream. Parsing works on bytes, never on `to_str()`: a single non-ASCII byte in
//! someone else's cookie must not make the whole header unreadable, or stripping would be
//! skipped and the session cookie forwarded.

use pingora_http::RequestHeader;

/// A cookie the gateway sets. `name` gives its spelling: `__Host-` on HTTPS (host-only,
/// path `/`, Secure), plain on HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayCookie {
    /// The session id.
    Session,
    /// State, nonce and PKCE verifier between login start and callback.
    PreAuth,
    /// A TOTP secret being enrolled.
    MfaEnrol,
    /// A pending email/SMS one-time code.
    OtpPending,
    /// A WebAuthn ceremony in progress.
    WebauthnCeremony,
    /// A remembered device (an MFA bearer credential).
    RememberedDevice,
    /// A SAML AuthnRequest ID and return URL between the redirect and the ACS (SameSite=None
    /// on HTTPS: the IdP posts the response cross-site).
    SamlPreAuth,
}

impl GatewayCookie {
    /// Every cookie the gateway sets.
    pub const ALL: [GatewayCookie; 7] = [
        GatewayCookie::Session,
        GatewayCookie::PreAuth,
        GatewayCookie::MfaEnrol,
        GatewayCookie::OtpPending,
        GatewayCookie::WebauthnCeremony,
        GatewayCookie::RememberedDevice,
        GatewayCookie::SamlPreAuth,
    ];

    /// The cookie's name on a TLS (`true`) or plain listener.
    pub fn name(self, tls: bool) -> &'static str {
        use GatewayCookie::*;
        match (self, tls) {
            (Session, true) => "__Host-portcullis",
            (Session, false) => "portcullis",
            (PreAuth, true) => "__Host-portcullis-auth",
            (PreAuth, false) => "portcullis-auth",
            (MfaEnrol, true) => "__Host-portcullis-mfa",
            (MfaEnrol, false) => "portcullis-mfa",
            (OtpPending, true) => "__Host-portcullis-otp",
            (OtpPending, false) => "portcullis-otp",
            (WebauthnCeremony, true) => "__Host-portcullis-webauthn",
            (WebauthnCeremony, false) => "portcullis-webauthn",
            (RememberedDevice, true) => "__Host-portcullis-device",
            (RememberedDevice, false) => "portcullis-device",
            (SamlPreAuth, true) => "__Host-portcullis-saml",
            (SamlPreAuth, false) => "portcullis-saml",
        }
    }
}

/// Whether a cookie named `name` belongs to the gateway: any registered name, and — so that a
/// cookie added later cannot be forgotten here — anything named `portcullis`, `portcullis-*`,
/// `__Host-portcullis…` or `__Secure-portcullis…`, compared ASCII case-insensitively (some
/// upstream frameworks fold cookie names).
pub fn is_gateway_cookie(name: &[u8]) -> bool {
    let lower = |b: &[u8], p: &[u8]| b.len() >= p.len() && b[..p.len()].eq_ignore_ascii_case(p);
    let bare = if lower(name, b"__host-") {
        &name[7..]
    } else if lower(name, b"__secure-") {
        &name[9..]
    } else {
        name
    };
    lower(bare, b"portcullis") && (bare.len() == 10 || bare[10] == b'-')
}

/// Every `name=value` pair of every `Cookie` header (h2 clients send several), as raw bytes,
/// with surrounding whitespace trimmed. A pair without `=` has an empty name (RFC 6265bis
/// treats it as a nameless value) — kept, but never mistaken for a gateway cookie.
pub fn pairs(headers: &http::HeaderMap) -> impl Iterator<Item = (&[u8], &[u8])> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .map(<[u8]>::trim_ascii)
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.iter().position(|&b| b == b'=') {
            Some(i) => (kv[..i].trim_ascii(), kv[i + 1..].trim_ascii()),
            None => (&kv[..0], kv),
        })
}

/// Every value of cookie `name` in the request. Values that are not ASCII cannot be the
/// gateway's (its values are base64url) and are skipped, without hiding the other cookies.
pub fn values<'a>(headers: &'a http::HeaderMap, name: &'a str) -> Vec<&'a str> {
    pairs(headers)
        .filter(|(k, _)| *k == name.as_bytes())
        .filter_map(|(_, v)| std::str::from_utf8(v).ok())
        .collect()
}

/// Removes every gateway cookie from what the upstream sees and re-emits the others byte for
/// byte in one `Cookie` header. Never skips: whatever the header holds, no gateway cookie
/// survives. Returns how many were removed.
pub fn strip(req: &mut RequestHeader) -> pingora::Result<usize> {
    let mut kept: Vec<u8> = Vec::new();
    let mut removed = 0;
    let mut any = false;
    for v in req.headers.get_all(http::header::COOKIE).iter() {
        any = true;
        for kv in v.as_bytes().split(|&b| b == b';').map(<[u8]>::trim_ascii) {
            if kv.is_empty() {
                continue;
            }
            let name = kv
                .iter()
                .position(|&b| b == b'=')
                .map_or(&kv[..0], |i| kv[..i].trim_ascii());
            if is_gateway_cookie(name) {
                removed += 1;
                continue;
            }
            if !kept.is_empty() {
                kept.extend_from_slice(b"; ");
            }
            kept.extend_from_slice(kv);
        }
    }
    if !any {
        return Ok(0);
    }
    req.remove_header(&http::header::COOKIE);
    if !kept.is_empty() {
        // Every byte came from a valid header value and `; ` is valid, so this cannot fail;
        // if it somehow did, dropping all cookies is the safe side.
        if let Ok(v) = http::HeaderValue::from_bytes(&kept) {
            req.insert_header(http::header::COOKIE, v)?;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req_with(values: &[&[u8]]) -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        for v in values {
            req.append_header(
                http::header::COOKIE,
                http::HeaderValue::from_bytes(v).unwrap(),
            )
            .unwrap();
        }
        req
    }

    #[test]
    fn every_registered_cookie_is_the_gateways() {
        for c in GatewayCookie::ALL {
            for tls in [true, false] {
                assert!(is_gateway_cookie(c.name(tls).as_bytes()), "{c:?} {tls}");
            }
        }
        for n in [
            "PORTCULLIS",
            "__Secure-portcullis-x",
            "__host-Portcullis-future",
        ] {
            assert!(is_gateway_cookie(n.as_bytes()), "{n}");
        }
        for n in ["portcullisx", "theme", "", "my-portcullis"] {
            assert!(!is_gateway_cookie(n.as_bytes()), "{n}");
        }
    }

    #[test]
    fn a_non_ascii_cookie_does_not_disable_stripping() {
        let mut req = req_with(&[
            "__Host-portcullis=SID; theme=caf\u{e9}".as_bytes(),
            b"portcullis-device=DEV;x=\xff\xfe ; portcullis-otp=1",
        ]);
        assert_eq!(strip(&mut req).unwrap(), 3);
        let all: Vec<_> = req.headers.get_all("cookie").iter().collect();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].as_bytes(), b"theme=caf\xc3\xa9; x=\xff\xfe");
        assert_eq!(values(&req.headers, "theme"), vec!["caf\u{e9}"]);
    }

    #[test]
    fn only_gateway_cookies_means_no_cookie_header() {
        let mut req = req_with(&[b"__Host-portcullis=a", b"portcullis-auth=b"]);
        assert_eq!(strip(&mut req).unwrap(), 2);
        assert!(req.headers.get("cookie").is_none());
        let mut none = req_with(&[]);
        assert_eq!(strip(&mut none).unwrap(), 0);
    }

    #[test]
    fn values_read_past_foreign_bytes() {
        let req = req_with(&[b"a=\xff; __Host-portcullis=SID", b"x"]);
        assert_eq!(values(&req.headers, "__Host-portcullis"), vec!["SID"]);
        assert_eq!(pairs(&req.headers).count(), 3);
    }
}
