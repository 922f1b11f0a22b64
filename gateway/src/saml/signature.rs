//! Strict enveloped XML signatures: "this element is signed by one of these keys", nothing
//! looser. The cryptography and canonicalisation are bergshamra's (pure Rust, W3C XML-DSig);
//! the SAML profile around it is enforced here, before and after, because every XML signature
//! wrapping attack lives in the gap between "a signature in this document is valid" and "the
//! element I am about to read is the one it covers":
//!
//! 1. exactly one `ds:Signature` as a *direct child* of the element (enveloped);
//! 2. its `SignedInfo` has exactly one `Reference`, whose URI is `#` + the element's own `ID`;
//! 3. only the transforms SAML uses (enveloped-signature, exclusive c14n without comments), so
//!    no XPath or XSLT can select something else than the element;
//! 4. signature and digest algorithms from an allow-list (SHA-1 only when configured);
//! 5. that element's ID occurs on no other element of the document (bergshamra refuses
//!    duplicates too; counting here makes the defence ours, not an implementation detail);
//! 6. bergshamra verifies with trusted keys only (`DsigContext::new`: KeyInfo in the message
//!    is ignored) and reports the node the reference resolved to, which must be the element.

use super::xml::{self, DSIG};
use super::SamlError;
use uppsala::{Document, NodeId};

const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";

/// Signature algorithms accepted always (RSA PKCS#1 v1.5 and ECDSA with SHA-2).
const STRONG_SIG: &[&str] = &[
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512",
];
/// SHA-1 signature algorithm: only with `allow_sha1: true`.
pub const RSA_SHA1: &str = "http://www.w3.org/2000/09/xmldsig#rsa-sha1";
const STRONG_DIGEST: &[&str] = &[
    "http://www.w3.org/2001/04/xmlenc#sha256",
    "http://www.w3.org/2001/04/xmldsig-more#sha384",
    "http://www.w3.org/2001/04/xmlenc#sha512",
];
const SHA1_DIGEST: &str = "http://www.w3.org/2000/09/xmldsig#sha1";

/// The keys a message may be signed with: the IdP's signing certificates from its metadata
/// (DER), never a key the message brings along.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKeys {
    /// DER X.509 certificates.
    pub certs: Vec<Vec<u8>>,
    /// Whether RSA-SHA1 / SHA-1 digests are accepted (`allow_sha1`).
    pub allow_sha1: bool,
}

/// Whether `element` carries a `ds:Signature` child (signed or not is for [`verify`] to say).
pub fn has_signature(doc: &Document<'_>, element: NodeId) -> bool {
    xml::children(doc, element, DSIG, "Signature")
        .next()
        .is_some()
}

/// Verifies the enveloped signature of `element` (see the module doc for every rule).
pub fn verify(doc: &Document<'_>, element: NodeId, keys: &TrustedKeys) -> Result<(), SamlError> {
    let bad = |m: &str| SamlError::Signature(m.to_string());
    let id = xml::attr(doc, element, "ID")
        .filter(|i| !i.is_empty())
        .ok_or_else(|| bad("the signed element has no ID"))?;
    let mut sigs = xml::children(doc, element, DSIG, "Signature");
    let sig = sigs.next().ok_or(SamlError::Unsigned)?;
    if sigs.next().is_some() {
        return Err(bad("more than one signature on the element"));
    }
    let info = xml::required_child(doc, sig, DSIG, "SignedInfo")?;
    let c14n = xml::required_child(doc, info, DSIG, "CanonicalizationMethod")?;
    if xml::attr(doc, c14n, "Algorithm") != Some(EXC_C14N) {
        return Err(bad(
            "canonicalisation is not exclusive c14n without comments",
        ));
    }
    let method = xml::required_child(doc, info, DSIG, "SignatureMethod")?;
    let alg = xml::attr(doc, method, "Algorithm").unwrap_or("");
    let sha1_ok = keys.allow_sha1 && alg == RSA_SHA1;
    if !STRONG_SIG.contains(&alg) && !sha1_ok {
        return Err(bad(&format!(
            "signature algorithm {alg:?} is not accepted (SHA-256 or better{})",
            if keys.allow_sha1 { ", or RSA-SHA1" } else { "" }
        )));
    }
    let reference = xml::required_child(doc, info, DSIG, "Reference")?;
    if xml::attr(doc, reference, "URI") != Some(&format!("#{id}")) {
        return Err(bad("the signature does not reference this element"));
    }
    if let Some(transforms) = xml::only_child(doc, reference, DSIG, "Transforms")? {
        let list: Vec<NodeId> = xml::children(doc, transforms, DSIG, "Transform").collect();
        if list.len() > 2
            || list.iter().any(|&t| {
                !matches!(
                    xml::attr(doc, t, "Algorithm"),
                    Some(ENVELOPED) | Some(EXC_C14N)
                )
            })
        {
            return Err(bad(
                "only the enveloped-signature and exclusive c14n transforms are accepted",
            ));
        }
    }
    let digest = xml::required_child(doc, reference, DSIG, "DigestMethod")?;
    let dalg = xml::attr(doc, digest, "Algorithm").unwrap_or("");
    let sha1_digest_ok = keys.allow_sha1 && dalg == SHA1_DIGEST;
    if !STRONG_DIGEST.contains(&dalg) && !sha1_digest_ok {
        return Err(bad(&format!("digest algorithm {dalg:?} is not accepted")));
    }
    if xml::elements_with_id(doc, id) != 1 {
        return Err(bad("the signed element's ID occurs more than once"));
    }
    crypto_check(doc, element, sig, keys)
}

/// The cryptographic check by bergshamra, with the configured keys only.
fn crypto_check(
    doc: &Document<'_>,
    element: NodeId,
    sig: NodeId,
    keys: &TrustedKeys,
) -> Result<(), SamlError> {
    let mut manager = bergshamra::keys::KeysManager::new();
    for der in &keys.certs {
        let key = bergshamra::keys::loader::load_x509_cert_der(der)
            .map_err(|e| SamlError::Config(format!("IdP certificate unusable: {e}")))?;
        manager.add_key(key);
    }
    if manager.is_empty() {
        // Never "no key, so nothing to check": metadata without a signing key is refused
        // when the config is loaded, and again here.
        return Err(SamlError::Config("no IdP signing certificate".into()));
    }
    let ctx = bergshamra::dsig::DsigContext::new(manager);
    let results = bergshamra::dsig::verify::verify_all_document(&ctx, doc)
        .map_err(|e| SamlError::Signature(format!("signature not verifiable: {e}")))?;
    // One result per ds:Signature in document order (bergshamra's contract): ours is the one
    // at our signature's position. Other signatures are not ours to judge: the caller verifies
    // every signature on an element it reads, and reads nothing else.
    let position = doc
        .descendants(doc.root())
        .into_iter()
        .filter(|&n| xml::is(doc, n, DSIG, "Signature"))
        .position(|n| n == sig);
    let ours = position.and_then(|i| results.into_iter().nth(i));
    match ours {
        Some(bergshamra::dsig::VerifyResult::Valid {
            signature_node,
            references,
            ..
        }) if signature_node == sig => {
            let covers = references.len() == 1
                && references[0].digest_verified
                && references[0].resolved_node == Some(element);
            if covers {
                Ok(())
            } else {
                Err(SamlError::Signature(
                    "the signature does not cover exactly this element".into(),
                ))
            }
        }
        Some(bergshamra::dsig::VerifyResult::Invalid { reason }) => {
            Err(SamlError::Signature(format!("invalid signature: {reason}")))
        }
        _ => Err(SamlError::Signature("invalid signature".into())),
    }
}

#[cfg(test)]
mod tests;
