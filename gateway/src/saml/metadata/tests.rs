use super::*;
use crate::saml::testkit::*;

fn idp_xml(extra: &str) -> String {
    let b64: String = IDP_CRT
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    format!(
        "<md:EntityDescriptor xmlns:md=\"{METADATA}\" xmlns:ds=\"{DSIG}\" ID=\"_m1\" entityID=\"{IDP}\">{extra}\
         <md:IDPSSODescriptor protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\">\
         <md:KeyDescriptor><ds:KeyInfo><ds:X509Data><ds:X509Certificate>\n{b64}\n</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>\
         <md:SingleLogoutService Binding=\"{REDIRECT}\" Location=\"https://idp.test/slo\"/>\
         <md:SingleSignOnService Binding=\"{POST}\" Location=\"https://idp.test/post\"/>\
         <md:SingleSignOnService Binding=\"{REDIRECT}\" Location=\"https://idp.test/sso\"/>\
         </md:IDPSSODescriptor></md:EntityDescriptor>"
    )
}

#[test]
fn idp_metadata_gives_entity_endpoints_and_keys() {
    let m = parse_idp(&idp_xml(""), None).unwrap();
    assert_eq!(m, idp_meta());
}

#[test]
fn signed_metadata_is_checked_when_a_signing_cert_is_given() {
    let tpl = idp_xml(&sig_template("_m1", RSA_SHA256, SHA256));
    let signed = sign(&tpl, IDP_KEY);
    parse_idp(&signed, Some(&der(IDP_CRT))).unwrap();
    // Signed by someone else, or not at all: refused.
    let forged = sign(&tpl, ATTACKER_KEY);
    assert!(parse_idp(&forged, Some(&der(IDP_CRT))).is_err());
    assert!(parse_idp(&idp_xml(""), Some(&der(IDP_CRT))).is_err());
    // Altered after signing (another SSO URL): refused.
    let altered = signed.replace("https://idp.test/sso", "https://evil.test/sso");
    assert!(parse_idp(&altered, Some(&der(IDP_CRT))).is_err());
}

#[test]
fn sp_metadata_names_acs_slo_and_certificate() {
    let cert = der(SP_CRT);
    let xml = sp_metadata(
        &SpDescription {
            entity_id: SP,
            acs_url: ACS,
            slo_url: "https://gw.test/.portcullis/saml/slo",
            cert: &cert,
            requests_signed: true,
            name_id_format: Some("urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"),
        },
        "_x",
    );
    let doc = crate::saml::xml::parse(&xml).unwrap();
    let root = doc.document_element().unwrap();
    assert_eq!(xml::attr(&doc, root, "entityID"), Some(SP));
    assert!(xml.contains(&format!("Binding=\"{POST}\" Location=\"{ACS}\"")));
    assert!(xml.contains("AuthnRequestsSigned=\"true\""));
    assert!(xml.contains(&base64::engine::general_purpose::STANDARD.encode(&cert)));
}

#[test]
fn signed_sp_metadata_verifies_with_the_sp_certificate() {
    let cert = der(SP_CRT);
    let d = SpDescription {
        entity_id: SP,
        acs_url: ACS,
        slo_url: "https://gw.test/.portcullis/saml/slo",
        cert: &cert,
        requests_signed: false,
        name_id_format: None,
    };
    let signed = sign_sp_metadata(&sp_metadata(&d, "_md1"), "_md1", &sp_key()).unwrap();
    let doc = crate::saml::xml::parse(&signed).unwrap();
    let root = doc.document_element().unwrap();
    let keys = crate::saml::signature::TrustedKeys {
        certs: vec![cert.clone()],
        allow_sha1: false,
    };
    crate::saml::signature::verify(&doc, root, &keys).unwrap();
    // The signature is the EntityDescriptor's first child (schema order).
    let first = doc
        .children_iter(root)
        .find(|&c| doc.element(c).is_some())
        .unwrap();
    assert!(xml::is(&doc, first, DSIG, "Signature"));
}
