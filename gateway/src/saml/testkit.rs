//! Test fixtures: fixed test keys (testdata/, never used outside tests), a SAML Response
//! builder whose every field a test can break, and template signing with bergshamra.

use super::config::{MetadataSource, SamlConfig, SpKey, WantSigned};
use super::metadata::IdpMetadata;
use crate::config::auth_model::ClaimNames;
use base64::Engine;
use std::sync::Arc;
use std::time::Duration;

pub const IDP_KEY: &str = include_str!("testdata/idp.key");
pub const IDP_CRT: &str = include_str!("testdata/idp.crt");
pub const ATTACKER_KEY: &str = include_str!("testdata/attacker.key");
pub const ATTACKER_CRT: &str = include_str!("testdata/attacker.crt");
pub const SP_KEY: &str = include_str!("testdata/sp.key");
pub const SP_CRT: &str = include_str!("testdata/sp.crt");

pub const IDP: &str = "https://idp.test/metadata";
pub const SP: &str = "https://gw.test/.portcullis/saml/metadata";
pub const ACS: &str = "https://gw.test/.portcullis/saml/acs";
pub const REQ: &str = "_req1";
/// "Now" of every test: 2026-12-01T12:00:00Z.
pub const NOW: i64 = 1_796_126_400;

pub const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
pub const SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";

pub fn der(pem: &str) -> Vec<u8> {
    super::config::cert_der(pem).unwrap()
}

pub fn idp_meta() -> IdpMetadata {
    IdpMetadata {
        entity_id: IDP.into(),
        sso_url: "https://idp.test/sso".into(),
        slo_url: Some("https://idp.test/slo".into()),
        signing_certs: vec![der(IDP_CRT)],
    }
}

pub fn sp_key() -> SpKey {
    let der = rustls_pemfile::pkcs8_private_keys(&mut SP_KEY.as_bytes())
        .next()
        .unwrap()
        .unwrap();
    SpKey {
        pair: ring::signature::RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).unwrap(),
        pem: SP_KEY.into(),
    }
}

pub fn cfg() -> SamlConfig {
    SamlConfig {
        id: "partner".into(),
        metadata: MetadataSource::File(idp_meta()),
        sp_entity_id: SP.into(),
        sp_key: Arc::new(sp_key()),
        sp_cert: der(SP_CRT),
        sign_authn_requests: false,
        want_signed: WantSigned::Assertion,
        allow_sha1: false,
        clock_skew: Duration::from_secs(120),
        allow_idp_initiated: false,
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
    }
}

pub fn at(unix: i64) -> String {
    super::authn::instant(unix)
}

/// An enveloped signature template over `#id`.
pub fn sig_template(id: &str, sig_alg: &str, digest_alg: &str) -> String {
    format!(
        "<ds:Signature xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"><ds:SignedInfo>\
         <ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/>\
         <ds:SignatureMethod Algorithm=\"{sig_alg}\"/><ds:Reference URI=\"#{id}\"><ds:Transforms>\
         <ds:Transform Algorithm=\"http://www.w3.org/2000/09/xmldsig#enveloped-signature\"/>\
         <ds:Transform Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/></ds:Transforms>\
         <ds:DigestMethod Algorithm=\"{digest_alg}\"/><ds:DigestValue></ds:DigestValue></ds:Reference>\
         </ds:SignedInfo><ds:SignatureValue></ds:SignatureValue></ds:Signature>"
    )
}

/// Fills every signature template of `xml` with `key_pem`.
pub fn sign(xml: &str, key_pem: &str) -> String {
    let mut m = bergshamra::keys::KeysManager::new();
    m.add_key(bergshamra::keys::loader::load_rsa_private_pem(key_pem.as_bytes()).unwrap());
    let ctx = bergshamra::dsig::DsigContext::new(m);
    bergshamra::dsig::sign::sign(&ctx, xml).unwrap()
}

/// Every field of a response, valid by default.
#[derive(Clone)]
pub struct Resp {
    pub response_id: String,
    pub assertion_id: String,
    pub irt: Option<String>,
    pub destination: Option<String>,
    pub recipient: String,
    pub audience: String,
    pub issuer: String,
    pub status: String,
    pub name_id: String,
    pub not_before: i64,
    pub not_on_or_after: i64,
    pub sign_assertion: bool,
    pub sign_response: bool,
    pub sig_alg: String,
    pub digest_alg: String,
    pub attributes: String,
}

impl Default for Resp {
    fn default() -> Self {
        Self {
            response_id: "_resp1".into(),
            assertion_id: "_assert1".into(),
            irt: Some(REQ.into()),
            destination: Some(ACS.into()),
            recipient: ACS.into(),
            audience: SP.into(),
            issuer: IDP.into(),
            status: "urn:oasis:names:tc:SAML:2.0:status:Success".into(),
            name_id: "alice@example.com".into(),
            not_before: NOW - 60,
            not_on_or_after: NOW + 300,
            sign_assertion: true,
            sign_response: false,
            sig_alg: RSA_SHA256.into(),
            digest_alg: SHA256.into(),
            attributes: "<saml:Attribute Name=\"mail\"><saml:AttributeValue>alice@example.com</saml:AttributeValue></saml:Attribute>\
                         <saml:Attribute Name=\"memberOf\"><saml:AttributeValue>staff</saml:AttributeValue><saml:AttributeValue>payroll</saml:AttributeValue></saml:Attribute>"
                .into(),
        }
    }
}

impl Resp {
    /// The assertion element (with its signature template when `sign_assertion`).
    pub fn assertion(&self) -> String {
        let irt = self
            .irt
            .as_ref()
            .map(|i| format!(" InResponseTo=\"{i}\""))
            .unwrap_or_default();
        let sig = if self.sign_assertion {
            sig_template(&self.assertion_id, &self.sig_alg, &self.digest_alg)
        } else {
            String::new()
        };
        format!(
            "<saml:Assertion xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"{aid}\" Version=\"2.0\" IssueInstant=\"{now}\">\
             <saml:Issuer>{iss}</saml:Issuer>{sig}\
             <saml:Subject><saml:NameID Format=\"urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress\">{nid}</saml:NameID>\
             <saml:SubjectConfirmation Method=\"urn:oasis:names:tc:SAML:2.0:cm:bearer\">\
             <saml:SubjectConfirmationData NotOnOrAfter=\"{noa}\" Recipient=\"{rcpt}\"{irt}/></saml:SubjectConfirmation></saml:Subject>\
             <saml:Conditions NotBefore=\"{nb}\" NotOnOrAfter=\"{noa}\"><saml:AudienceRestriction><saml:Audience>{aud}</saml:Audience></saml:AudienceRestriction></saml:Conditions>\
             <saml:AuthnStatement AuthnInstant=\"{now}\" SessionIndex=\"_sess1\"><saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>\
             <saml:AttributeStatement>{attrs}</saml:AttributeStatement></saml:Assertion>",
            aid = self.assertion_id,
            now = at(NOW),
            iss = self.issuer,
            nid = self.name_id,
            noa = at(self.not_on_or_after),
            nb = at(self.not_before),
            rcpt = self.recipient,
            aud = self.audience,
            attrs = self.attributes,
        )
    }

    /// The whole response around `assertion` (unsigned templates filled by [`Self::xml`]).
    pub fn wrap(&self, assertion: &str) -> String {
        let irt = self
            .irt
            .as_ref()
            .map(|i| format!(" InResponseTo=\"{i}\""))
            .unwrap_or_default();
        let dest = self
            .destination
            .as_ref()
            .map(|d| format!(" Destination=\"{d}\""))
            .unwrap_or_default();
        let sig = if self.sign_response {
            sig_template(&self.response_id, &self.sig_alg, &self.digest_alg)
        } else {
            String::new()
        };
        format!(
            "<samlp:Response xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"{rid}\" Version=\"2.0\" IssueInstant=\"{now}\"{dest}{irt}>\
             <saml:Issuer>{iss}</saml:Issuer>{sig}<samlp:Status><samlp:StatusCode Value=\"{status}\"/></samlp:Status>{assertion}</samlp:Response>",
            rid = self.response_id,
            now = at(NOW),
            iss = self.issuer,
            status = self.status,
        )
    }

    /// The signed XML, by `key`: the assertion first (inner signatures before outer ones),
    /// then the response.
    pub fn xml_by(&self, key: &str) -> String {
        let assertion = if self.sign_assertion {
            strip_decl(&sign(&self.assertion(), key))
        } else {
            self.assertion()
        };
        let doc = self.wrap(&assertion);
        if self.sign_response {
            sign(&doc, key)
        } else {
            doc
        }
    }

    /// The signed XML, by the IdP.
    pub fn xml(&self) -> String {
        self.xml_by(IDP_KEY)
    }

    /// The signed response, base64 as posted.
    pub fn b64(&self) -> String {
        b64(&self.xml())
    }
}

/// `xml` without a leading XML declaration (to embed a signed element in another document).
pub fn strip_decl(xml: &str) -> String {
    match xml.strip_prefix("<?xml") {
        Some(rest) => rest[rest.find("?>").map_or(0, |i| i + 2)..]
            .trim_start()
            .to_string(),
        None => xml.to_string(),
    }
}

pub fn b64(xml: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(xml)
}
