//! The hash chain and signed checkpoints.
//!
//! Record hash: SHA-256 over a domain tag and the length-prefixed fields
//! `time, kind, actor, data, prev_hash`; `prev_hash` of the first record is 64 zeros. The chain
//! (each record naming its predecessor's hash) fixes the order; the storage position (`seq`)
//! is only where a record sits, so an inserted, deleted or moved record breaks a link.
//!
//! Checkpoint (signed tree head): `count` records, the hash of record `count`, the time and the
//! signing key id, signed with Ed25519 over
//! `portcullis-audit-checkpoint/v1\n{count}\n{head_hash}\n{time}\n{key_id}`.

use base64::Engine;
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// `prev_hash` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An event to record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    /// `config.loaded`, `config.rejected`, `auth.login`, `auth.logout`, `session.revoked`,
    /// `mfa.enrolled`, `mfa.verified`, `mfa.failed`, `mfa.lockout`, `policy.denied`, `admin.*`,
    /// `scim.*`.
    pub kind: String,
    /// Who did it (user, `system`, admin name), when known.
    pub actor: Option<String>,
    /// Event details as a JSON object.
    pub data: serde_json::Value,
}

/// A stored record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    /// Storage position (1, 2, …).
    pub seq: i64,
    /// RFC 3339 time.
    pub time: String,
    /// Event kind.
    pub kind: String,
    /// Actor.
    pub actor: Option<String>,
    /// Details, JSON text exactly as hashed.
    pub data: String,
    /// Hash of the previous record.
    pub prev_hash: String,
    /// Hash of this record.
    pub hash: String,
}

/// A signed tree head.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Checkpoint {
    /// Records covered.
    pub count: i64,
    /// Hash of record `count`.
    pub head_hash: String,
    /// RFC 3339 time of signing.
    pub time: String,
    /// Signing key id.
    pub key_id: String,
    /// Base64 Ed25519 signature.
    pub signature: String,
}

/// A published verification key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PublicKey {
    /// Id (first 16 hex digits of SHA-256 of the raw key).
    pub key_id: String,
    /// Always `Ed25519`.
    pub alg: String,
    /// Base64 of the 32-byte key.
    pub public_key: String,
    /// When it was first used.
    pub created: String,
}

fn field(h: &mut Sha256, v: &[u8]) {
    h.update((v.len() as u64).to_be_bytes());
    h.update(v);
}

/// The hash of a record's content and its predecessor.
pub fn record_hash(time: &str, kind: &str, actor: Option<&str>, data: &str, prev: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"portcullis-audit/v1\0");
    field(&mut h, time.as_bytes());
    field(&mut h, kind.as_bytes());
    match actor {
        Some(a) => {
            h.update([1]);
            field(&mut h, a.as_bytes());
        }
        None => h.update([0]),
    }
    field(&mut h, data.as_bytes());
    field(&mut h, prev.as_bytes());
    hex::encode(h.finalize())
}

impl Record {
    /// Recomputes this record's hash from its stored fields.
    pub fn computed_hash(&self) -> String {
        record_hash(
            &self.time,
            &self.kind,
            self.actor.as_deref(),
            &self.data,
            &self.prev_hash,
        )
    }
}

/// The id of a verification key.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

/// The published form of a key.
pub fn public_key(key: &VerifyingKey, created: &str) -> PublicKey {
    PublicKey {
        key_id: key_id(key),
        alg: "Ed25519".into(),
        public_key: base64::engine::general_purpose::STANDARD.encode(key.as_bytes()),
        created: created.into(),
    }
}

fn message(count: i64, head: &str, time: &str, key_id: &str) -> Vec<u8> {
    format!("portcullis-audit-checkpoint/v1\n{count}\n{head}\n{time}\n{key_id}").into_bytes()
}

/// Signs a checkpoint.
pub fn sign(key: &SigningKey, count: i64, head_hash: &str, time: &str) -> Checkpoint {
    let kid = key_id(&key.verifying_key());
    let sig = key.sign(&message(count, head_hash, time, &kid));
    Checkpoint {
        count,
        head_hash: head_hash.into(),
        time: time.into(),
        key_id: kid,
        signature: base64::engine::general_purpose::STANDARD.encode(sig.to_bytes()),
    }
}

/// Why a checkpoint signature is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No key with the checkpoint's id is trusted.
    #[error("signed by unknown key {0}")]
    UnknownKey(String),
    /// The key or signature is not well-formed.
    #[error("malformed key or signature")]
    Malformed,
    /// The signature does not match the checkpoint's fields.
    #[error("signature does not verify")]
    Invalid,
}

/// Checks a checkpoint's signature against the trusted keys.
pub fn verify_signature(cp: &Checkpoint, keys: &[PublicKey]) -> Result<(), SignatureError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = keys
        .iter()
        .find(|k| k.key_id == cp.key_id)
        .ok_or_else(|| SignatureError::UnknownKey(cp.key_id.clone()))?;
    let raw: [u8; 32] = b64
        .decode(&key.public_key)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or(SignatureError::Malformed)?;
    let vk = VerifyingKey::from_bytes(&raw).map_err(|_| SignatureError::Malformed)?;
    if key_id(&vk) != cp.key_id {
        return Err(SignatureError::Malformed);
    }
    let sig: [u8; 64] = b64
        .decode(&cp.signature)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or(SignatureError::Malformed)?;
    vk.verify(
        &message(cp.count, &cp.head_hash, &cp.time, &cp.key_id),
        &ed25519_dalek::Signature::from_bytes(&sig),
    )
    .map_err(|_| SignatureError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_covers_every_field() {
        let base = record_hash("t", "k", Some("a"), "{}", GENESIS);
        assert_ne!(base, record_hash("t2", "k", Some("a"), "{}", GENESIS));
        assert_ne!(base, record_hash("t", "k2", Some("a"), "{}", GENESIS));
        assert_ne!(base, record_hash("t", "k", None, "{}", GENESIS));
        assert_ne!(base, record_hash("t", "k", Some(""), "{}", GENESIS));
        assert_ne!(base, record_hash("t", "k", Some("a"), "{ }", GENESIS));
        assert_ne!(base, record_hash("t", "k", Some("a"), "{}", &base));
        // Length prefixes: moving bytes between fields changes the hash.
        assert_ne!(
            record_hash("ab", "c", None, "", GENESIS),
            record_hash("a", "bc", None, "", GENESIS)
        );
    }

    #[test]
    fn checkpoints_verify_only_with_the_right_key_and_fields() {
        let k = SigningKey::from_bytes(&[7; 32]);
        let other = SigningKey::from_bytes(&[8; 32]);
        let keys = vec![public_key(&k.verifying_key(), "now")];
        let cp = sign(&k, 3, "abc", "2026-01-01T00:00:00Z");
        assert_eq!(verify_signature(&cp, &keys), Ok(()));
        let mut bad = cp.clone();
        bad.count = 4;
        assert_eq!(verify_signature(&bad, &keys), Err(SignatureError::Invalid));
        let forged = sign(&other, 3, "abc", "2026-01-01T00:00:00Z");
        assert!(matches!(
            verify_signature(&forged, &keys),
            Err(SignatureError::UnknownKey(_))
        ));
        let mut swapped = forged.clone();
        swapped.key_id = cp.key_id.clone();
        assert_eq!(
            verify_signature(&swapped, &keys),
            Err(SignatureError::Invalid)
        );
    }
}
