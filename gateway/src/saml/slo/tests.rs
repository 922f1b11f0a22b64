use super::*;
use crate::saml::testkit::*;

const SLO: &str = "https://gw.test/.portcullis/saml/slo";

fn idp_request(session_index: Option<&str>) -> String {
    // The IdP's request to us: same shape as ours, issued by the IdP.
    logout_request("_lr1", SLO, IDP, "alice@example.com", session_index, NOW)
}

fn query_of(url: &str) -> String {
    url.split_once('?').unwrap().1.to_string()
}

fn idp_key() -> crate::saml::config::SpKey {
    let der = rustls_pemfile::pkcs8_private_keys(&mut IDP_KEY.as_bytes())
        .next()
        .unwrap()
        .unwrap();
    crate::saml::config::SpKey {
        pair: ring::signature::RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).unwrap(),
        pem: IDP_KEY.into(),
    }
}

#[test]
fn a_signed_redirect_logout_request_verifies() {
    let xml = idp_request(Some("_sess1"));
    let url =
        crate::saml::authn::redirect_url(SLO, "SAMLRequest", &xml, Some("r"), Some(&idp_key()))
            .unwrap();
    let q = query_of(&url);
    let r = verify_request(&xml, Binding::Redirect(&q), &cfg(), &idp_meta(), SLO, NOW).unwrap();
    assert_eq!(r.name_id, "alice@example.com");
    assert_eq!(r.session_indexes, vec!["_sess1"]);
    assert_eq!(r.id, "_lr1");
}

#[test]
fn unsigned_forged_or_misdirected_logout_requests_are_refused() {
    let xml = idp_request(None);
    let unsigned = crate::saml::authn::redirect_url(SLO, "SAMLRequest", &xml, None, None).unwrap();
    assert!(verify_request(
        &xml,
        Binding::Redirect(&query_of(&unsigned)),
        &cfg(),
        &idp_meta(),
        SLO,
        NOW
    )
    .is_err());
    // Signed by the SP key (not the IdP's).
    let forged =
        crate::saml::authn::redirect_url(SLO, "SAMLRequest", &xml, None, Some(&sp_key())).unwrap();
    assert!(verify_request(
        &xml,
        Binding::Redirect(&query_of(&forged)),
        &cfg(),
        &idp_meta(),
        SLO,
        NOW
    )
    .is_err());
    // POST without an enveloped signature.
    assert!(matches!(
        verify_request(&xml, Binding::Post, &cfg(), &idp_meta(), SLO, NOW),
        Err(SamlError::Unsigned)
    ));
    // Signed, but for another SP's SLO URL.
    let signed =
        crate::saml::authn::redirect_url(SLO, "SAMLRequest", &xml, None, Some(&idp_key())).unwrap();
    assert!(verify_request(
        &xml,
        Binding::Redirect(&query_of(&signed)),
        &cfg(),
        &idp_meta(),
        "https://other.test/slo",
        NOW
    )
    .is_err());
}

#[test]
fn a_post_logout_request_with_an_enveloped_signature_verifies() {
    let xml = idp_request(None);
    let with_sig = xml.replacen(
        "</saml:Issuer>",
        &format!("</saml:Issuer>{}", sig_template("_lr1", RSA_SHA256, SHA256)),
        1,
    );
    let signed = sign(&with_sig, IDP_KEY);
    let r = verify_request(&signed, Binding::Post, &cfg(), &idp_meta(), SLO, NOW).unwrap();
    assert!(r.session_indexes.is_empty());
}
