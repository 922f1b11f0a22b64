//! Fuzzes the SAML ACS entry point (`saml::response::verify`, and `peek` which runs first on
//! the same untrusted bytes) with arbitrary XML: it must never panic, and nothing unsigned by
//! the test IdP key can be accepted (the fuzzer cannot sign, so every input is refused).
#![no_main]

use base64::Engine;
use libfuzzer_sys::fuzz_target;
use portcullis::config::auth_model::ClaimNames;
use portcullis::saml::config::{MetadataSource, SamlConfig, SpKey, WantSigned};
use portcullis::saml::metadata::IdpMetadata;
use portcullis::saml::response::{peek, verify, Expect};
use std::sync::{Arc, OnceLock};

const IDP_CRT: &str = include_str!("../../src/saml/testdata/idp.crt");
const SP_KEY: &str = include_str!("../../src/saml/testdata/sp.key");

fn setup() -> &'static (SamlConfig, IdpMetadata) {
    static S: OnceLock<(SamlConfig, IdpMetadata)> = OnceLock::new();
    S.get_or_init(|| {
        let idp = IdpMetadata {
            entity_id: "https://idp.test/metadata".into(),
            sso_url: "https://idp.test/sso".into(),
            slo_url: None,
            signing_certs: vec![portcullis::saml::config::cert_der(IDP_CRT).unwrap()],
        };
        let der = rustls_pemfile::pkcs8_private_keys(&mut SP_KEY.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        let cfg = SamlConfig {
            id: "fuzz".into(),
            metadata: MetadataSource::File(idp.clone()),
            sp_entity_id: "https://gw.test/saml".into(),
            sp_key: Arc::new(SpKey {
                pair: ring::signature::RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).unwrap(),
                pem: SP_KEY.into(),
            }),
            sp_cert: Vec::new(),
            sign_authn_requests: false,
            want_signed: WantSigned::Assertion,
            allow_sha1: false,
            clock_skew: std::time::Duration::from_secs(120),
            allow_idp_initiated: true,
            name_id_format: None,
            acs_url: None,
            sign_metadata: false,
            claims: ClaimNames {
                user: "NameID".into(),
                email: "mail".into(),
                name: "displayName".into(),
                groups: "memberOf".into(),
                roles: "roles".into(),
                tenant: None,
                department: None,
                phone: "mobile".into(),
                trust_email_without_verified_claim: false,
            },
            jit: false,
        };
        (cfg, idp)
    })
}

fuzz_target!(|data: &[u8]| {
    let (cfg, idp) = setup();
    let b64 = base64::engine::general_purpose::STANDARD.encode(data);
    let _ = peek(&b64);
    let ex = Expect {
        cfg,
        idp,
        acs_url: "https://gw.test/.portcullis/saml/acs",
        request_id: None,
        now: 1_796_126_400,
    };
    assert!(verify(&b64, &ex).is_err(), "an unsigned input was accepted");
});
