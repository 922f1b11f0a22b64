//! Recovery codes: shown once, stored only as Argon2id hashes (PHC strings), single use. A code
//! is `xxxx-xxxx-xxxx` (60 random bits, base32 lower case); its first group is stored in clear
//! as a lookup prefix so that one code costs one Argon2 verification, not ten.

use ring::rand::{SecureRandom, SystemRandom};

/// A new recovery code.
pub fn generate() -> Option<String> {
    let mut b = [0u8; 8];
    SystemRandom::new().fill(&mut b).ok()?;
    let s = data_encoding::BASE32_NOPAD.encode(&b).to_ascii_lowercase();
    // 8 bytes → 13 chars; use 12 (60 bits).
    Some(format!("{}-{}-{}", &s[0..4], &s[4..8], &s[8..12]))
}

/// Normalises typed input: case, spaces and dashes ignored.
pub fn normalise(code: &str) -> Option<String> {
    let c: String = code
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (c.len() == 12
        && c.bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)))
    .then(|| format!("{}-{}-{}", &c[0..4], &c[4..8], &c[8..12]))
}

/// The lookup prefix of a normalised code.
pub fn prefix(code: &str) -> &str {
    code.get(0..4).unwrap_or("")
}

/// Argon2id PHC hash of a code.
pub fn hash(code: &str) -> Option<String> {
    crate::password::hash(code)
}

/// Whether `code` matches the PHC hash (constant time inside Argon2's comparison).
pub fn verify(code: &str, phc: &str) -> bool {
    crate::password::verify(code, Some(phc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_hash_verify_and_normalise() {
        let c = generate().unwrap();
        assert_eq!(c.len(), 14);
        assert_eq!(normalise(&c.to_uppercase().replace('-', " ")).unwrap(), c);
        assert_eq!(normalise("short"), None);
        assert_ne!(generate().unwrap(), c);
        let h = hash(&c).unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(!h.contains(&c));
        assert!(verify(&c, &h));
        assert!(!verify(&generate().unwrap(), &h));
        assert!(!verify(&c, "not a hash"));
    }
}
