use super::*;
use crate::saml::testkit::*;

fn keys() -> TrustedKeys {
    TrustedKeys {
        certs: vec![der(IDP_CRT)],
        allow_sha1: false,
    }
}

fn check(xml: &str) -> Result<(), SamlError> {
    let doc = xml::parse(xml).unwrap();
    let root = doc.document_element().unwrap();
    verify(&doc, root, &keys())
}

fn signed_assertion() -> String {
    strip_decl(&sign(&Resp::default().assertion(), IDP_KEY))
}

#[test]
fn a_signed_element_verifies_and_a_key_from_the_message_is_ignored() {
    check(&signed_assertion()).unwrap();
    // Signed by an attacker who also puts their certificate in KeyInfo: refused.
    let forged = sign(&Resp::default().assertion(), ATTACKER_KEY);
    let cert: String = ATTACKER_CRT
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let with_keyinfo = forged.replace(
        "</ds:SignatureValue>",
        &format!("</ds:SignatureValue><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>"),
    );
    assert!(check(&with_keyinfo).is_err());
    // No trusted key at all: never "nothing to check".
    let text = signed_assertion();
    let doc = xml::parse(&text).unwrap();
    let root = doc.document_element().unwrap();
    let none = TrustedKeys {
        certs: vec![],
        allow_sha1: false,
    };
    assert!(verify(&doc, root, &none).is_err());
}

#[test]
fn the_reference_must_be_this_elements_id_with_saml_transforms_only() {
    let good = signed_assertion();
    // Re-pointing the reference breaks the signature, and is refused before that.
    let other = good.replace("URI=\"#_assert1\"", "URI=\"#_other\"");
    assert!(matches!(check(&other), Err(SamlError::Signature(m)) if m.contains("reference")));
    let whole = good.replace("URI=\"#_assert1\"", "URI=\"\"");
    assert!(check(&whole).is_err());
    let xpath = good.replace(
        "http://www.w3.org/2000/09/xmldsig#enveloped-signature",
        "http://www.w3.org/TR/1999/REC-xpath-19991116",
    );
    assert!(matches!(check(&xpath), Err(SamlError::Signature(m)) if m.contains("transforms")));
    let comments = good.replace(
        "<ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/>",
        "<ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#WithComments\"/>",
    );
    assert!(check(&comments).is_err());
}

#[test]
fn a_duplicate_id_anywhere_is_refused() {
    let good = signed_assertion();
    let dup = good.replace(
        "</saml:Issuer>",
        "</saml:Issuer><saml:Advice><saml:Assertion ID=\"_assert1\"/></saml:Advice>",
    );
    assert!(check(&dup).is_err());
}

#[test]
fn two_signatures_on_one_element_are_refused() {
    let good = signed_assertion();
    let start = good.find("<ds:Signature").unwrap();
    let end = good.find("</ds:Signature>").unwrap() + "</ds:Signature>".len();
    let sig = &good[start..end];
    let twice = good.replacen(sig, &format!("{sig}{sig}"), 1);
    assert!(matches!(check(&twice), Err(SamlError::Signature(m)) if m.contains("more than one")));
}
