use crate::config::load_str;
use crate::saml::testkit::*;
use std::collections::HashMap;

const META: &str = r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="https://idp.test/metadata">
<md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
CERTS
<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.test/sso"/>
</md:IDPSSODescriptor></md:EntityDescriptor>"#;

fn key_descriptor(use_: &str) -> String {
    let b64: String = IDP_CRT
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    format!("<md:KeyDescriptor use=\"{use_}\"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{b64}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>")
}

struct Files(tempfile::TempDir);

impl Files {
    fn new(metadata: &str) -> Self {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("idp.xml"), metadata).unwrap();
        std::fs::write(d.path().join("sp.key"), SP_KEY).unwrap();
        std::fs::write(d.path().join("sp.crt"), SP_CRT).unwrap();
        std::fs::write(d.path().join("idp.crt"), IDP_CRT).unwrap();
        Self(d)
    }
    fn p(&self, name: &str) -> String {
        self.0.path().join(name).display().to_string()
    }
    fn config(&self, extra: &str) -> String {
        format!(
            "session: {{ keys: [\"MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=\"] }}\nidentity_providers:\n  - id: partner\n    type: saml\n    idp_metadata_file: {}\n    sp_entity_id: {SP}\n    sp_key_file: {}\n    sp_cert_file: {}\n{extra}routes:\n  - {{ id: a, path: /, upstream: \"http://127.0.0.1:9\", policy: authenticated, identity_provider: partner }}\n",
            self.p("idp.xml"),
            self.p("sp.key"),
            self.p("sp.crt"),
        )
    }
}

fn load(text: &str) -> Result<crate::config::model::Config, Vec<String>> {
    load_str(text, "c.yaml", &HashMap::new())
        .map_err(|e| e.to_string().lines().map(str::to_string).collect())
}

#[test]
fn a_saml_provider_loads_with_safe_defaults() {
    let f = Files::new(&META.replace("CERTS", &key_descriptor("signing")));
    let c = load(&f.config("")).unwrap();
    let s = &c.saml_providers[0];
    assert_eq!(s.want_signed, crate::saml::config::WantSigned::Assertion);
    assert!(!s.allow_sha1 && !s.allow_idp_initiated && !s.sign_authn_requests);
    assert_eq!(s.clock_skew.as_secs(), 120);
    assert_eq!(s.claims.user, "NameID");
}

#[test]
fn metadata_without_a_signing_certificate_is_a_config_error() {
    for certs in [String::new(), key_descriptor("encryption")] {
        let f = Files::new(&META.replace("CERTS", &certs));
        let errs = load(&f.config("")).unwrap_err().join("\n");
        assert!(
            errs.contains("identity_providers[0].idp_metadata_file")
                && errs.contains("no signing certificate"),
            "{errs}"
        );
    }
}

#[test]
fn every_problem_is_reported_with_its_key_path() {
    let f = Files::new(&META.replace("CERTS", &key_descriptor("signing")));
    let text = f
        .config("    want_signed: neither\n    clock_skew: 10m\n    client_id: x\n    acs_url: https://gw.test/other\n    claims: { nope: x }\n")
        .replace(&f.p("sp.crt"), &f.p("idp.crt"))
        .replace(&f.p("idp.xml"), "/nonexistent/idp.xml");
    let errs = load(&text).unwrap_err().join("\n");
    for needle in [
        "identity_providers[0].want_signed",
        "identity_providers[0].clock_skew",
        "identity_providers[0].client_id",
        "identity_providers[0].acs_url",
        "identity_providers[0].claims.nope",
        "identity_providers[0].sp_cert_file: is not the certificate of sp_key_file",
        "identity_providers[0].idp_metadata_file: cannot read",
    ] {
        assert!(errs.contains(needle), "missing {needle:?} in:\n{errs}");
    }
}

#[test]
fn saml_keys_on_another_provider_type_are_errors() {
    let text = "identity_providers:\n  - { id: corp, type: oidc, issuer: \"https://op.test\", client_id: c, client_secret: s, sp_entity_id: x }\nroutes:\n  - { id: a, path: /, upstream: \"http://127.0.0.1:9\", policy: public }\n";
    let errs = load(text).unwrap_err().join("\n");
    assert!(
        errs.contains("identity_providers[0].sp_entity_id: applies only to type: saml"),
        "{errs}"
    );
}

/// The `type: saml` examples of the README (Entra ID, Okta, the reference) load once their
/// files exist: what the README shows is a config the gateway accepts.
#[test]
fn the_readme_saml_examples_load() {
    let readme = include_str!("../../../../README.md");
    let f = Files::new(&META.replace("CERTS", &key_descriptor("signing")));
    let blocks: Vec<&str> = readme
        .split("```yaml")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .filter(|b| b.contains("type: saml"))
        .collect();
    assert!(blocks.len() >= 3, "reference, Entra ID and Okta examples");
    for block in blocks {
        let mut text =
            String::from("session: { keys: [\"MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=\"] }\n");
        for line in block.lines() {
            let key = line.trim_start().split(':').next().unwrap_or("");
            let indent = &line[..line.len() - line.trim_start().len()];
            let file = match key {
                "idp_metadata_file" => Some(f.p("idp.xml")),
                "sp_key_file" => Some(f.p("sp.key")),
                "sp_cert_file" => Some(f.p("sp.crt")),
                "idp_metadata_signing_cert" => Some(f.p("idp.crt")),
                _ => None,
            };
            match file {
                Some(path) => text.push_str(&format!("{indent}{key}: {path}\n")),
                None => {
                    text.push_str(line);
                    text.push('\n');
                }
            }
        }
        let id = block
            .lines()
            .find_map(|l| l.trim_start().strip_prefix("- id: "))
            .unwrap()
            .trim();
        text.push_str(&format!(
            "routes:\n  - {{ id: a, path: /, upstream: \"http://127.0.0.1:9\", policy: authenticated, identity_provider: {id} }}\n"
        ));
        if let Err(e) = load(&text) {
            panic!("README example {id} does not load: {e:?}\n{text}");
        }
    }
}
