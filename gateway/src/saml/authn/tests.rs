use super::*;
use crate::saml::testkit::*;

fn request() -> String {
    AuthnRequest {
        id: "_r1",
        destination: "https://idp.test/sso",
        acs_url: ACS,
        issuer: SP,
        name_id_format: None,
        now: NOW,
    }
    .xml()
}

fn query_of(url: &str) -> &str {
    url.split_once('?').unwrap().1
}

#[test]
fn a_redirect_round_trips_and_its_signature_verifies() {
    let key = sp_key();
    let url = redirect_url(
        "https://idp.test/sso",
        "SAMLRequest",
        &request(),
        Some("rs"),
        Some(&key),
    )
    .unwrap();
    let q = query_of(&url);
    let params: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(q.as_bytes())
            .into_owned()
            .collect();
    assert_eq!(inflate(&params["SAMLRequest"]).unwrap(), request());
    assert_eq!(params["RelayState"], "rs");
    assert_eq!(params["SigAlg"], super::RSA_SHA256);
    verify_redirect(q, &[der(SP_CRT)], false).unwrap();
    // Another key, a changed RelayState, no signature: refused.
    assert!(verify_redirect(q, &[der(IDP_CRT)], false).is_err());
    assert!(verify_redirect(
        &q.replace("RelayState=rs", "RelayState=rt"),
        &[der(SP_CRT)],
        false
    )
    .is_err());
    let unsigned = redirect_url(
        "https://idp.test/sso",
        "SAMLRequest",
        &request(),
        None,
        None,
    )
    .unwrap();
    assert!(matches!(
        verify_redirect(query_of(&unsigned), &[der(SP_CRT)], false),
        Err(SamlError::Unsigned)
    ));
}

#[test]
fn an_endpoint_with_a_query_keeps_it() {
    let url = redirect_url(
        "https://idp.test/sso?tenant=a",
        "SAMLRequest",
        &request(),
        None,
        None,
    )
    .unwrap();
    assert!(url.starts_with("https://idp.test/sso?tenant=a&SAMLRequest="));
}

#[test]
fn a_deflate_bomb_stops_at_the_size_bound() {
    use std::io::Write;
    let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&vec![b'a'; 4 * crate::saml::xml::MAX_XML])
        .unwrap();
    let b = base64::engine::general_purpose::STANDARD.encode(z.finish().unwrap());
    assert!(matches!(inflate(&b), Err(SamlError::Malformed(m)) if m.contains("too large")));
}
