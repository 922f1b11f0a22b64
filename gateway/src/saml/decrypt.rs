//! Encrypted assertions (XML-Enc): AES-128/256 in GCM or CBC mode, the key transported with
//! RSA-OAEP to the SP key. Decryption is bergshamra's; which algorithms may be used is decided
//! here, before any key is touched: RSA PKCS#1 v1.5 key transport (Bleichenbacher's oracle)
//! and references to ciphertext elsewhere (`CipherReference`) are refused.

use super::config::SpKey;
use super::xml::{self, ASSERTION, DSIG, XENC};
use super::SamlError;
use uppsala::{Document, NodeId};

const DATA_ALGS: &[&str] = &[
    "http://www.w3.org/2001/04/xmlenc#aes128-cbc",
    "http://www.w3.org/2001/04/xmlenc#aes256-cbc",
    "http://www.w3.org/2009/xmlenc11#aes128-gcm",
    "http://www.w3.org/2009/xmlenc11#aes256-gcm",
];
const KEY_ALGS: &[&str] = &[
    "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p",
    "http://www.w3.org/2009/xmlenc11#rsa-oaep",
];

/// Checks the algorithms of the `EncryptedAssertion` `enc` of `doc` (see the module doc).
pub fn check_algorithms(doc: &Document<'_>, enc: NodeId) -> Result<(), SamlError> {
    let data = xml::required_child(doc, enc, XENC, "EncryptedData")?;
    let method = xml::required_child(doc, data, XENC, "EncryptionMethod")?;
    let alg = xml::attr(doc, method, "Algorithm").unwrap_or("");
    if !DATA_ALGS.contains(&alg) {
        return Err(SamlError::Refused(format!(
            "assertion encryption {alg:?} is not AES-GCM or AES-CBC"
        )));
    }
    let cipher = xml::required_child(doc, data, XENC, "CipherData")?;
    if xml::only_child(doc, cipher, XENC, "CipherValue")?.is_none() {
        return Err(SamlError::Refused(
            "only inline ciphertext is accepted".into(),
        ));
    }
    // The key: an EncryptedKey inside the EncryptedData's KeyInfo, or next to it.
    let mut keys: Vec<NodeId> = xml::children(doc, enc, XENC, "EncryptedKey").collect();
    if let Some(ki) = xml::only_child(doc, data, DSIG, "KeyInfo")? {
        keys.extend(xml::children(doc, ki, XENC, "EncryptedKey"));
    }
    if keys.is_empty() {
        return Err(SamlError::Refused(
            "no EncryptedKey for the assertion".into(),
        ));
    }
    for k in keys {
        let m = xml::required_child(doc, k, XENC, "EncryptionMethod")?;
        let alg = xml::attr(doc, m, "Algorithm").unwrap_or("");
        if !KEY_ALGS.contains(&alg) {
            return Err(SamlError::Refused(format!(
                "key transport {alg:?} is not RSA-OAEP"
            )));
        }
    }
    Ok(())
}

/// Decrypts the one `EncryptedAssertion` of the response `text` with the SP key; returns the
/// response text with the assertion in clear inside its `EncryptedAssertion` element.
pub fn response(text: &str, key: &SpKey) -> Result<String, SamlError> {
    let doc = xml::parse(text)?;
    let root = doc
        .document_element()
        .ok_or_else(|| SamlError::Malformed("empty document".into()))?;
    let enc = xml::required_child(&doc, root, ASSERTION, "EncryptedAssertion")?;
    check_algorithms(&doc, enc)?;
    // Exactly one EncryptedData in the whole message: bergshamra decrypts the first one, which
    // must therefore be the assertion's.
    let count = doc
        .descendants(root)
        .into_iter()
        .filter(|&n| xml::is(&doc, n, XENC, "EncryptedData"))
        .count();
    if count != 1 {
        return Err(SamlError::Malformed(
            "the Response must hold exactly one EncryptedData".into(),
        ));
    }
    let mut manager = bergshamra::keys::KeysManager::new();
    let k = bergshamra::keys::loader::load_rsa_private_pem(key.pem.as_bytes())
        .map_err(|e| SamlError::Config(format!("SP key unusable for decryption: {e}")))?;
    manager.add_key(k);
    let mut ctx = bergshamra::enc::EncContext::new(manager);
    ctx.disable_cipher_reference = true;
    ctx.max_pbkdf2_iterations = 0;
    bergshamra::enc::decrypt::decrypt(&ctx, text)
        .map_err(|e| SamlError::Refused(format!("the assertion cannot be decrypted: {e}")))
}
