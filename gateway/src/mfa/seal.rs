//! Factor secrets at rest: AES-256-GCM under the configured `mfa.encryption_key`, with the
//! user, factor id and kind as associated data, so a ciphertext copied to another row or user
//! does not open (security-relevant: a database dump alone reveals no TOTP seed).

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use thiserror::Error;

/// Format version prefixed to every sealed value.
const VERSION: u8 = 1;

/// Sealing or opening failed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SealError {
    /// The key is not 32 bytes.
    #[error("encryption key must be 32 bytes")]
    KeyLength,
    /// No randomness available.
    #[error("random source failed")]
    Random,
    /// Wrong key, tampered ciphertext, or sealed for another row.
    #[error("factor secret does not open (wrong key or tampered)")]
    Open,
}

/// The key that seals factor secrets.
pub struct Sealer {
    key: LessSafeKey,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

fn aad(user: &str, id: &str, kind: &str) -> Vec<u8> {
    // Length-prefixed so ("a", "bc") and ("ab", "c") differ.
    let mut v = Vec::new();
    for part in ["portcullis-mfa-v1", user, id, kind] {
        v.extend_from_slice(&(part.len() as u64).to_be_bytes());
        v.extend_from_slice(part.as_bytes());
    }
    v
}

impl Sealer {
    /// A sealer from 32 raw key bytes.
    pub fn new(key: &[u8]) -> Result<Self, SealError> {
        let k = UnboundKey::new(&AES_256_GCM, key).map_err(|_| SealError::KeyLength)?;
        Ok(Self {
            key: LessSafeKey::new(k),
        })
    }

    /// `version || nonce || ciphertext+tag`.
    pub fn seal(
        &self,
        user: &str,
        id: &str,
        kind: &str,
        plain: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| SealError::Random)?;
        let mut buf = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(user, id, kind)),
                &mut buf,
            )
            .map_err(|_| SealError::Random)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + buf.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        Ok(out)
    }

    /// Opens what [`Sealer::seal`] produced for the same user, id and kind.
    pub fn open(
        &self,
        user: &str,
        id: &str,
        kind: &str,
        sealed: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        let (version, rest) = sealed.split_first().ok_or(SealError::Open)?;
        if *version != VERSION || rest.len() < NONCE_LEN {
            return Err(SealError::Open);
        }
        let (nonce, ct) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Open)?;
        let mut buf = ct.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(aad(user, id, kind)), &mut buf)
            .map_err(|_| SealError::Open)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_binds_key_user_id_and_kind() {
        let s = Sealer::new(&[7; 32]).unwrap();
        let c = s.seal("ann", "f1", "totp", b"seed").unwrap();
        assert!(!c.windows(4).any(|w| w == b"seed"));
        assert_eq!(s.open("ann", "f1", "totp", &c).unwrap(), b"seed");
        assert_eq!(s.open("bob", "f1", "totp", &c), Err(SealError::Open));
        assert_eq!(s.open("ann", "f2", "totp", &c), Err(SealError::Open));
        assert_eq!(s.open("ann", "f1", "sms", &c), Err(SealError::Open));
        let other = Sealer::new(&[8; 32]).unwrap();
        assert_eq!(other.open("ann", "f1", "totp", &c), Err(SealError::Open));
        let mut t = c.clone();
        let last = t.len() - 1;
        t[last] ^= 1;
        assert_eq!(s.open("ann", "f1", "totp", &t), Err(SealError::Open));
        assert_eq!(s.open("ann", "f1", "totp", &[]), Err(SealError::Open));
        assert_ne!(
            c,
            s.seal("ann", "f1", "totp", b"seed").unwrap(),
            "fresh nonce"
        );
        assert_eq!(Sealer::new(&[1; 16]).unwrap_err(), SealError::KeyLength);
    }
}
