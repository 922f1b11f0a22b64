//! Argon2id password hashing (PHC strings) for local accounts and recovery codes.
//!
//! Verification always costs one Argon2id evaluation: for an unknown user the presented
//! password is checked against a fixed dummy hash, so the time of the answer does not tell
//! whether the account exists. Inputs are bounded ([`MAX_PASSWORD`]) so a megabyte "password"
//! cannot make the hash expensive to compute.

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use once_cell::sync::Lazy;

/// Longest password accepted (bytes).
pub const MAX_PASSWORD: usize = 1024;
/// Shortest password a local account may set.
pub const MIN_PASSWORD: usize = 12;

/// A hash of a random value nobody knows, with the default parameters: what an unknown user's
/// password is checked against.
static DUMMY: Lazy<Option<String>> = Lazy::new(|| {
    let mut b = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).ok()?;
    hash(&hex::encode(b))
});

/// The Argon2id PHC hash of `secret` (OWASP parameters: the crate's defaults, m=19 MiB, t=2).
pub fn hash(secret: &str) -> Option<String> {
    if secret.len() > MAX_PASSWORD {
        return None;
    }
    Argon2::default()
        .hash_password(secret.as_bytes())
        .ok()
        .map(|h| h.to_string())
}

/// Whether `secret` matches `phc`; with `None` (no such account) the dummy hash is checked and
/// the answer is false. A malformed stored hash is false too (fail closed).
pub fn verify(secret: &str, phc: Option<&str>) -> bool {
    if secret.len() > MAX_PASSWORD {
        return false;
    }
    match phc {
        Some(p) => Argon2::default()
            .verify_password(secret.as_bytes(), p)
            .is_ok(),
        None => {
            if let Some(d) = DUMMY.as_deref() {
                let _ = Argon2::default().verify_password(secret.as_bytes(), d);
            }
            false
        }
    }
}

/// Whether `new` may become the password of the account named `user_name` (a local account's
/// change or an admin's reset): [`MIN_PASSWORD`] to [`MAX_PASSWORD`] bytes, and not the user
/// name (in any case). The reason when not.
pub fn acceptable(new: &str, user_name: &str) -> Result<(), &'static str> {
    if new.len() < MIN_PASSWORD {
        return Err("the new password must be at least 12 bytes long");
    }
    if new.len() > MAX_PASSWORD {
        return Err("the new password must be at most 1024 bytes long");
    }
    if new.trim().eq_ignore_ascii_case(user_name.trim()) {
        return Err("the new password must not be the user name");
    }
    Ok(())
}

/// A random password for an admin's reset, shown once: 120 bits as 24 base32 letters and
/// digits (within the rules of [`acceptable`] for any user name of another length).
pub fn generate() -> Option<String> {
    let mut b = [0u8; 15];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).ok()?;
    Some(data_encoding::BASE32_NOPAD.encode(&b).to_ascii_lowercase())
}

/// [`hash`] off the async workers (an Argon2id evaluation takes tens of milliseconds).
pub async fn hash_blocking(secret: String) -> Option<String> {
    tokio::task::spawn_blocking(move || hash(&secret))
        .await
        .ok()
        .flatten()
}

/// Whether `phc` is an Argon2id PHC string this build can verify (checked when accounts are
/// seeded from a file, so a typo is a start-up error, not a user who can never sign in).
pub fn is_argon2id(phc: &str) -> bool {
    phc.starts_with("$argon2id$") && argon2::PasswordHash::new(phc).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_verify_and_refusals() {
        let h = hash("correct horse battery staple").unwrap();
        assert!(is_argon2id(&h));
        assert!(verify("correct horse battery staple", Some(&h)));
        assert!(!verify("Correct horse battery staple", Some(&h)));
        assert!(!verify("anything", None), "unknown account");
        assert!(!verify("x", Some("not a hash")), "malformed stored hash");
        assert!(!is_argon2id("$argon2i$v=19$m=16,t=2,p=1$c2FsdA$aGFzaA"));
        let long = "a".repeat(MAX_PASSWORD + 1);
        assert_eq!(hash(&long), None);
        assert!(!verify(&long, Some(&h)));
    }

    #[test]
    fn new_password_rules_and_generated_passwords() {
        assert!(acceptable("twelve bytes", "alice").is_ok());
        assert!(acceptable("eleven byte", "alice").is_err());
        assert!(acceptable(&"a".repeat(MAX_PASSWORD), "alice").is_ok());
        assert!(acceptable(&"a".repeat(MAX_PASSWORD + 1), "alice").is_err());
        assert!(acceptable("Alice.Example", "alice.example").is_err());
        let g = generate().unwrap();
        assert_eq!(g.len(), 24);
        assert!(acceptable(&g, "alice").is_ok());
        assert_ne!(g, generate().unwrap());
    }
}
