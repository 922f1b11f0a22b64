//! A software authenticator for tests: a P-256 key (ring), "none" attestation, the user
//! present and verified flags, and a signature counter that a test can wind back (a clone).
//! Written from the WebAuthn spec (§6.1 authenticator data, §6.5 attestation object) so the
//! relying party is exercised without a browser.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use webauthn_rs::prelude::{
    CreationChallengeResponse, PublicKeyCredential, RegisterPublicKeyCredential,
    RequestChallengeResponse,
};

/// One credential on a software authenticator.
pub struct SoftKey {
    pkcs8: Vec<u8>,
    cred_id: Vec<u8>,
    /// Signature counter: incremented before each assertion.
    pub counter: u32,
    rp_id: String,
    origin: String,
}

fn sha256(b: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, b)
        .as_ref()
        .to_vec()
}

/// CBOR byte string header + bytes.
fn cbor_bytes(b: &[u8]) -> Vec<u8> {
    let mut v = match b.len() {
        n if n < 24 => vec![0x40 | n as u8],
        n if n < 256 => vec![0x58, n as u8],
        n => vec![0x59, (n >> 8) as u8, n as u8],
    };
    v.extend_from_slice(b);
    v
}

/// CBOR text string (short).
fn cbor_text(s: &str) -> Vec<u8> {
    let mut v = vec![0x60 | s.len() as u8];
    v.extend_from_slice(s.as_bytes());
    v
}

impl SoftKey {
    /// A new credential for `rp_id`, used from `origin`.
    pub fn new(rp_id: &str, origin: &str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .unwrap()
            .as_ref()
            .to_vec();
        let cred_id = sha256(&pkcs8)[..16].to_vec();
        Self {
            pkcs8,
            cred_id,
            counter: 0,
            rp_id: rp_id.into(),
            origin: origin.into(),
        }
    }

    /// The same private key and id with its own counter: a cloned authenticator.
    pub fn clone_with_counter(&self, counter: u32) -> Self {
        Self {
            pkcs8: self.pkcs8.clone(),
            cred_id: self.cred_id.clone(),
            counter,
            rp_id: self.rp_id.clone(),
            origin: self.origin.clone(),
        }
    }

    fn pair(&self) -> EcdsaKeyPair {
        EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_ASN1_SIGNING,
            &self.pkcs8,
            &SystemRandom::new(),
        )
        .unwrap()
    }

    fn client_data(&self, kind: &str, challenge: &serde_json::Value) -> Vec<u8> {
        serde_json::json!({
            "type": kind,
            "challenge": challenge,
            "origin": self.origin,
            "crossOrigin": false,
        })
        .to_string()
        .into_bytes()
    }

    /// Authenticator data: rpIdHash, flags (UP|UV, plus AT with `attested`), counter.
    fn auth_data(&self, attested: Option<&[u8]>) -> Vec<u8> {
        let mut d = sha256(self.rp_id.as_bytes());
        d.push(if attested.is_some() { 0x45 } else { 0x05 });
        d.extend_from_slice(&self.counter.to_be_bytes());
        if let Some(cose) = attested {
            d.extend_from_slice(&[0u8; 16]); // AAGUID
            d.extend_from_slice(&(self.cred_id.len() as u16).to_be_bytes());
            d.extend_from_slice(&self.cred_id);
            d.extend_from_slice(cose);
        }
        d
    }

    /// Answers `navigator.credentials.create`.
    pub fn register(&mut self, ccr: &CreationChallengeResponse) -> RegisterPublicKeyCredential {
        let opts = serde_json::to_value(ccr).unwrap();
        let client_data = self.client_data("webauthn.create", &opts["publicKey"]["challenge"]);
        let public = self.pair().public_key().as_ref().to_vec(); // 0x04 || x || y
                                                                 // COSE_Key {1: 2 (EC2), 3: -7 (ES256), -1: 1 (P-256), -2: x, -3: y}
        let mut cose = vec![0xa5, 0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x21];
        cose.extend(cbor_bytes(&public[1..33]));
        cose.push(0x22);
        cose.extend(cbor_bytes(&public[33..65]));
        let mut att = vec![0xa3];
        att.extend(cbor_text("fmt"));
        att.extend(cbor_text("none"));
        att.extend(cbor_text("attStmt"));
        att.push(0xa0);
        att.extend(cbor_text("authData"));
        att.extend(cbor_bytes(&self.auth_data(Some(&cose))));
        self.credential(serde_json::json!({
            "attestationObject": B64.encode(att),
            "clientDataJSON": B64.encode(client_data),
        }))
    }

    /// Answers `navigator.credentials.get` (counter + 1).
    pub fn assert(&mut self, rcr: &RequestChallengeResponse) -> PublicKeyCredential {
        self.counter += 1;
        let opts = serde_json::to_value(rcr).unwrap();
        let client_data = self.client_data("webauthn.get", &opts["publicKey"]["challenge"]);
        let auth_data = self.auth_data(None);
        let mut signed = auth_data.clone();
        signed.extend(sha256(&client_data));
        let sig = self.pair().sign(&SystemRandom::new(), &signed).unwrap();
        self.credential(serde_json::json!({
            "authenticatorData": B64.encode(auth_data),
            "clientDataJSON": B64.encode(client_data),
            "signature": B64.encode(sig.as_ref()),
            "userHandle": null,
        }))
    }

    /// The `PublicKeyCredential` JSON around an authenticator `response`.
    fn credential<T: serde::de::DeserializeOwned>(&self, response: serde_json::Value) -> T {
        serde_json::from_value(serde_json::json!({
            "id": B64.encode(&self.cred_id),
            "rawId": B64.encode(&self.cred_id),
            "type": "public-key",
            "extensions": {},
            "response": response,
        }))
        .unwrap()
    }
}
