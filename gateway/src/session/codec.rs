//! The cookie codec: AES-256-GCM with a random 96-bit nonce per cookie. The cookie name is the
//! associated data, so a value minted for one purpose (the pre-auth cookie) is refused for
//! another (the session cookie). The first key encrypts; every key decrypts, so keys rotate by
//! prepending a new one and dropping the old one after the absolute session timeout.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Seals and opens cookie values.
pub struct CookieCodec {
    keys: Vec<LessSafeKey>,
    rng: SystemRandom,
}

impl std::fmt::Debug for CookieCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CookieCodec({} keys)", self.keys.len())
    }
}

/// Largest cookie value accepted for decryption; larger input is refused before any work.
const MAX_COOKIE: usize = 4096;

impl CookieCodec {
    /// A codec over raw 32-byte keys; `None` when the list is empty or a key has the wrong size.
    pub fn new(keys: &[[u8; 32]]) -> Option<Self> {
        let keys = keys
            .iter()
            .map(|k| UnboundKey::new(&AES_256_GCM, k).ok().map(LessSafeKey::new))
            .collect::<Option<Vec<_>>>()?;
        (!keys.is_empty()).then_some(Self {
            keys,
            rng: SystemRandom::new(),
        })
    }

    /// Encrypts `value` (as JSON) for the cookie `name`.
    pub fn seal<T: Serialize>(&self, name: &str, value: &T) -> Option<String> {
        self.seal_bytes(name, &serde_json::to_vec(value).ok()?)
    }

    /// Encrypts raw bytes for the cookie `name` (callers that compress their payload).
    pub fn seal_bytes(&self, name: &str, plain: &[u8]) -> Option<String> {
        let key = self.keys.first()?;
        let mut buf = plain.to_vec();
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(name.as_bytes()),
            &mut buf,
        )
        .ok()?;
        let mut out = Vec::with_capacity(NONCE_LEN + buf.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        Some(B64.encode(out))
    }

    /// Decrypts a cookie value sealed for `name` with any configured key.
    pub fn open<T: DeserializeOwned>(&self, name: &str, value: &str) -> Option<T> {
        serde_json::from_slice(&self.open_bytes(name, value)?).ok()
    }

    /// Decrypts what [`CookieCodec::seal_bytes`] produced for `name`.
    pub fn open_bytes(&self, name: &str, value: &str) -> Option<Vec<u8>> {
        if value.len() > MAX_COOKIE {
            return None;
        }
        let raw = B64.decode(value.as_bytes()).ok()?;
        if raw.len() < NONCE_LEN + 16 {
            return None;
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
        for key in &self.keys {
            let mut buf = ct.to_vec();
            if let Ok(plain) = key.open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(name.as_bytes()),
                &mut buf,
            ) {
                return Some(plain.to_vec());
            }
        }
        None
    }

    /// `n` random bytes, base64url: session ids, state, nonces, CSRF tokens.
    pub fn random_token(&self, n: usize) -> Option<String> {
        let mut b = vec![0u8; n];
        self.rng.fill(&mut b).ok()?;
        Some(B64.encode(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_purpose_binding() {
        let c = CookieCodec::new(&[[7u8; 32]]).unwrap();
        let v = c.seal("__Host-portcullis", &("sid", 42)).unwrap();
        let back: (String, i32) = c.open("__Host-portcullis", &v).unwrap();
        assert_eq!(back, ("sid".to_string(), 42));
        assert!(c
            .open::<(String, i32)>("__Host-portcullis-auth", &v)
            .is_none());
    }

    #[test]
    fn tampering_and_unknown_keys_are_refused() {
        let c = CookieCodec::new(&[[1u8; 32]]).unwrap();
        let v = c.seal("n", &"x").unwrap();
        let mut raw = B64.decode(&v).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        assert!(c.open::<String>("n", &B64.encode(raw)).is_none());
        let other = CookieCodec::new(&[[2u8; 32]]).unwrap();
        assert!(other.open::<String>("n", &v).is_none());
        assert!(c.open::<String>("n", "").is_none());
        assert!(c.open::<String>("n", &"A".repeat(5000)).is_none());
    }

    #[test]
    fn rotation_old_key_decrypts_new_key_encrypts() {
        let old = CookieCodec::new(&[[1u8; 32]]).unwrap();
        let v = old.seal("n", &"x").unwrap();
        let rotated = CookieCodec::new(&[[9u8; 32], [1u8; 32]]).unwrap();
        assert_eq!(rotated.open::<String>("n", &v).as_deref(), Some("x"));
        let fresh = rotated.seal("n", &"y").unwrap();
        assert!(old.open::<String>("n", &fresh).is_none());
        let only_new = CookieCodec::new(&[[9u8; 32]]).unwrap();
        assert_eq!(only_new.open::<String>("n", &fresh).as_deref(), Some("y"));
    }
}
