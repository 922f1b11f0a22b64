//! Messages we send over the HTTP-Redirect binding (AuthnRequest, LogoutRequest,
//! LogoutResponse): the XML, then raw DEFLATE + base64 + URL encoding, and when configured the
//! binding's signature (RSA-SHA256 over `SAMLRequest=…&RelayState=…&SigAlg=…`, exactly as
//! sent), plus the check of such a signature on a message the IdP sends us.

use super::config::SpKey;
use super::xml::{ASSERTION, PROTOCOL};
use super::SamlError;
use crate::auth_endpoints::html_escape as esc;
use base64::Engine;
use std::io::Write;

/// The redirect binding's signature algorithm we use.
pub const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// An xs:dateTime in UTC for `unix` seconds.
pub fn instant(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// What an AuthnRequest says.
pub struct AuthnRequest<'a> {
    /// `ID` (an NCName: starts with `_`).
    pub id: &'a str,
    /// IdP SSO URL (`Destination`).
    pub destination: &'a str,
    /// Our ACS URL.
    pub acs_url: &'a str,
    /// Our entity id (`Issuer`).
    pub issuer: &'a str,
    /// NameID format to ask for.
    pub name_id_format: Option<&'a str>,
    /// Now, unix seconds.
    pub now: i64,
}

impl AuthnRequest<'_> {
    /// The XML.
    pub fn xml(&self) -> String {
        let policy = match self.name_id_format {
            Some(f) => format!(
                "<samlp:NameIDPolicy Format=\"{}\" AllowCreate=\"true\"/>",
                esc(f)
            ),
            None => "<samlp:NameIDPolicy AllowCreate=\"true\"/>".to_string(),
        };
        format!(
            "<samlp:AuthnRequest xmlns:samlp=\"{PROTOCOL}\" xmlns:saml=\"{ASSERTION}\" ID=\"{id}\" Version=\"2.0\" IssueInstant=\"{at}\" Destination=\"{dest}\" AssertionConsumerServiceURL=\"{acs}\" ProtocolBinding=\"{post}\">\
             <saml:Issuer>{iss}</saml:Issuer>{policy}</samlp:AuthnRequest>",
            id = esc(self.id),
            at = instant(self.now),
            dest = esc(self.destination),
            acs = esc(self.acs_url),
            post = super::metadata::POST,
            iss = esc(self.issuer),
        )
    }
}

/// `endpoint` with the message `xml` as parameter `param` (`SAMLRequest`/`SAMLResponse`) over
/// the HTTP-Redirect binding, with `relay_state`, signed with `key` when given.
pub fn redirect_url(
    endpoint: &str,
    param: &str,
    xml: &str,
    relay_state: Option<&str>,
    key: Option<&SpKey>,
) -> Result<String, SamlError> {
    let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(xml.as_bytes())
        .map_err(|_| SamlError::Config("deflate".into()))?;
    let deflated = z
        .finish()
        .map_err(|_| SamlError::Config("deflate".into()))?;
    let enc = |v: &str| url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
    let mut query = format!("{param}={}", enc(&B64.encode(deflated)));
    if let Some(r) = relay_state {
        query.push_str(&format!("&RelayState={}", enc(r)));
    }
    if let Some(k) = key {
        query.push_str(&format!("&SigAlg={}", enc(RSA_SHA256)));
        let sig = sign(k, query.as_bytes())?;
        query.push_str(&format!("&Signature={}", enc(&B64.encode(sig))));
    }
    let sep = if endpoint.contains('?') { '&' } else { '?' };
    Ok(format!("{endpoint}{sep}{query}"))
}

/// RSA-SHA256 (PKCS#1 v1.5) with the SP key.
pub fn sign(key: &SpKey, msg: &[u8]) -> Result<Vec<u8>, SamlError> {
    let mut sig = vec![0u8; key.pair.public().modulus_len()];
    key.pair
        .sign(
            &ring::signature::RSA_PKCS1_SHA256,
            &ring::rand::SystemRandom::new(),
            msg,
            &mut sig,
        )
        .map_err(|_| SamlError::Config("signing failed".into()))?;
    Ok(sig)
}

/// Decodes a message received over the HTTP-Redirect binding (base64 of raw DEFLATE), with the
/// inflated size bounded by [`super::xml::MAX_XML`] (a deflate bomb stops there).
pub fn inflate(b64: &str) -> Result<String, SamlError> {
    use std::io::Read;
    let raw = B64
        .decode(b64.trim())
        .map_err(|_| SamlError::Malformed("not base64".into()))?;
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(raw.as_slice())
        .take(super::xml::MAX_XML as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| SamlError::Malformed("not DEFLATE".into()))?;
    if out.len() > super::xml::MAX_XML {
        return Err(SamlError::Malformed("message too large".into()));
    }
    String::from_utf8(out).map_err(|_| SamlError::Malformed("not UTF-8".into()))
}

/// Checks the HTTP-Redirect binding signature of a message from the IdP: `raw_query` is the
/// query string exactly as received; the signed octets are its `SAMLRequest`/`SAMLResponse`,
/// `RelayState` and `SigAlg` parameters in that order, as sent (not re-encoded). Only
/// RSA-SHA256 or better (RSA-SHA1 with `allow_sha1`), only the IdP's metadata certificates.
pub fn verify_redirect(
    raw_query: &str,
    certs: &[Vec<u8>],
    allow_sha1: bool,
) -> Result<(), SamlError> {
    let find = |name: &str| {
        raw_query
            .split('&')
            .find(|kv| kv.split_once('=').is_some_and(|(k, _)| k == name))
            .map(str::to_string)
    };
    let msg = find("SAMLRequest")
        .or_else(|| find("SAMLResponse"))
        .ok_or_else(|| SamlError::Malformed("no SAML message".into()))?;
    let sig_alg = find("SigAlg").ok_or(SamlError::Unsigned)?;
    let signature = find("Signature").ok_or(SamlError::Unsigned)?;
    let mut signed = msg;
    if let Some(r) = find("RelayState") {
        signed.push('&');
        signed.push_str(&r);
    }
    signed.push('&');
    signed.push_str(&sig_alg);
    let decode = |kv: &str| {
        url::form_urlencoded::parse(kv.as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let alg = match decode(&sig_alg).as_str() {
        RSA_SHA256 => &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384" => {
            &ring::signature::RSA_PKCS1_2048_8192_SHA384
        }
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512" => {
            &ring::signature::RSA_PKCS1_2048_8192_SHA512
        }
        super::signature::RSA_SHA1 if allow_sha1 => {
            &ring::signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY
        }
        other => {
            return Err(SamlError::Signature(format!(
                "redirect signature algorithm {other:?} is not accepted"
            )))
        }
    };
    let sig = B64
        .decode(decode(&signature))
        .map_err(|_| SamlError::Signature("signature is not base64".into()))?;
    let ok = certs.iter().any(|der| {
        x509_parser::parse_x509_certificate(der).is_ok_and(|(_, c)| {
            let key = c
                .tbs_certificate
                .subject_pki
                .subject_public_key
                .data
                .as_ref();
            ring::signature::UnparsedPublicKey::new(alg, key)
                .verify(signed.as_bytes(), &sig)
                .is_ok()
        })
    });
    if ok {
        Ok(())
    } else {
        Err(SamlError::Signature(
            "redirect signature does not verify with the IdP's keys".into(),
        ))
    }
}

#[cfg(test)]
mod tests;
