//! HOTP (RFC 4226) and TOTP (RFC 6238). Verification compares codes in constant time and
//! returns the time step that matched, so the caller can refuse a step used before (single use
//! is enforced by the store, atomically, not here).

use ring::hmac;
use subtle::ConstantTimeEq;

/// The HMAC behind the one-time password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// RFC 6238 default and what authenticator apps expect.
    Sha1,
    /// HMAC-SHA-256.
    Sha256,
    /// HMAC-SHA-512.
    Sha512,
}

impl Algorithm {
    fn ring(self) -> hmac::Algorithm {
        match self {
            // SHA-1 is what RFC 6238 apps implement; HMAC-SHA-1 is not affected by SHA-1
            // collisions.
            Algorithm::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            Algorithm::Sha256 => hmac::HMAC_SHA256,
            Algorithm::Sha512 => hmac::HMAC_SHA512,
        }
    }

    /// The `algorithm=` value of an `otpauth://` URI.
    pub fn uri_name(self) -> &'static str {
        match self {
            Algorithm::Sha1 => "SHA1",
            Algorithm::Sha256 => "SHA256",
            Algorithm::Sha512 => "SHA512",
        }
    }
}

/// TOTP parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// HMAC.
    pub algorithm: Algorithm,
    /// Code length (6 or 8).
    pub digits: u32,
    /// Time step in seconds.
    pub period: u64,
    /// Steps of tolerance either side of now.
    pub skew: u64,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            algorithm: Algorithm::Sha1,
            digits: 6,
            period: 30,
            skew: 1,
        }
    }
}

/// RFC 4226 HOTP value for `counter`, as a zero-padded decimal string.
pub fn hotp(alg: Algorithm, secret: &[u8], counter: u64, digits: u32) -> String {
    let key = hmac::Key::new(alg.ring(), secret);
    let tag = hmac::sign(&key, &counter.to_be_bytes());
    let mac = tag.as_ref();
    // Dynamic truncation (RFC 4226 §5.3); the last byte always exists for these HMACs.
    let offset = usize::from(mac[mac.len() - 1] & 0x0f);
    let bin = (u32::from(mac[offset] & 0x7f) << 24)
        | (u32::from(mac[offset + 1]) << 16)
        | (u32::from(mac[offset + 2]) << 8)
        | u32::from(mac[offset + 3]);
    let modulo = 10u64.pow(digits);
    format!(
        "{:0width$}",
        u64::from(bin) % modulo,
        width = digits as usize
    )
}

/// The time step containing `unix_secs`.
pub fn step(p: &Params, unix_secs: u64) -> u64 {
    unix_secs / p.period
}

/// RFC 6238 TOTP value at `unix_secs`.
pub fn totp(p: &Params, secret: &[u8], unix_secs: u64) -> String {
    hotp(p.algorithm, secret, step(p, unix_secs), p.digits)
}

/// Checks `code` against the steps within `skew` of now. Every candidate is computed and
/// compared in constant time (no early exit on a match); returns the matching step.
/// Malformed input (wrong length, non-digits) never matches.
pub fn verify(p: &Params, secret: &[u8], code: &str, unix_secs: u64) -> Option<u64> {
    let code = code.trim();
    let well_formed = code.len() == p.digits as usize && code.bytes().all(|b| b.is_ascii_digit());
    let now = step(p, unix_secs);
    let mut found = None;
    for s in now.saturating_sub(p.skew)..=now.saturating_add(p.skew) {
        let expected = hotp(p.algorithm, secret, s, p.digits);
        let eq: bool = expected.as_bytes().ct_eq(code.as_bytes()).into();
        if eq && well_formed && found.is_none() {
            found = Some(s);
        }
    }
    found
}

/// A fresh random secret of 20 bytes (160 bits, RFC 4226's recommendation).
pub fn generate_secret() -> Result<Vec<u8>, ring::error::Unspecified> {
    use ring::rand::SecureRandom;
    let mut s = vec![0u8; 20];
    ring::rand::SystemRandom::new().fill(&mut s)?;
    Ok(s)
}

/// Base32 (RFC 4648, no padding), as authenticator apps take secrets.
pub fn base32(secret: &[u8]) -> String {
    data_encoding::BASE32_NOPAD.encode(secret)
}

/// Parses a base32 secret as typed by a person (spaces and case ignored).
pub fn from_base32(s: &str) -> Option<Vec<u8>> {
    let cleaned: String = s
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '=')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    data_encoding::BASE32_NOPAD.decode(cleaned.as_bytes()).ok()
}

/// The `otpauth://totp/...` URI an authenticator app scans.
pub fn otpauth_uri(p: &Params, issuer: &str, account: &str, secret: &[u8]) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let label = format!("{}:{}", enc(issuer), enc(account)).replace('+', "%20");
    format!(
        "otpauth://totp/{label}?secret={}&issuer={}&algorithm={}&digits={}&period={}",
        base32(secret),
        enc(issuer).replace('+', "%20"),
        p.algorithm.uri_name(),
        p.digits,
        p.period
    )
}

/// The `otpauth://` URI as an inline SVG QR code (no external asset, no script), or `None`
/// if the URI is too long for a QR code.
pub fn qr_svg(uri: &str) -> Option<String> {
    let code =
        qrcode::QrCode::with_error_correction_level(uri.as_bytes(), qrcode::EcLevel::M).ok()?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build();
    // Inline in HTML: drop the XML declaration.
    let start = svg.find("<svg")?;
    Some(svg[start..].replacen(
        "<svg ",
        "<svg role=\"img\" aria-label=\"QR code for the authenticator app\" id=\"totp-qr\" ",
        1,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED1: &[u8] = b"12345678901234567890";
    const SEED256: &[u8] = b"12345678901234567890123456789012";
    const SEED512: &[u8] = b"1234567890123456789012345678901234567890123456789012345678901234";

    #[test]
    fn rfc4226_appendix_d() {
        let expected = [
            "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583",
            "399871", "520489",
        ];
        for (c, e) in expected.iter().enumerate() {
            assert_eq!(hotp(Algorithm::Sha1, SEED1, c as u64, 6), *e, "count {c}");
        }
    }

    #[test]
    fn rfc6238_appendix_b() {
        let table: &[(u64, &str, &str, &str)] = &[
            (59, "94287082", "46119246", "90693936"),
            (1111111109, "07081804", "68084774", "25091201"),
            (1111111111, "14050471", "67062674", "99943326"),
            (1234567890, "89005924", "91819424", "93441116"),
            (2000000000, "69279037", "90698825", "38618901"),
            (20000000000, "65353130", "77737706", "47863826"),
        ];
        for (t, s1, s256, s512) in table {
            let p = |algorithm| Params {
                algorithm,
                digits: 8,
                ..Params::default()
            };
            assert_eq!(totp(&p(Algorithm::Sha1), SEED1, *t), *s1, "sha1 {t}");
            assert_eq!(
                totp(&p(Algorithm::Sha256), SEED256, *t),
                *s256,
                "sha256 {t}"
            );
            assert_eq!(
                totp(&p(Algorithm::Sha512), SEED512, *t),
                *s512,
                "sha512 {t}"
            );
        }
    }

    #[test]
    fn verify_accepts_one_step_of_skew_only() {
        let p = Params::default();
        let now = 1_700_000_000;
        let code = totp(&p, SEED1, now);
        assert_eq!(verify(&p, SEED1, &code, now), Some(now / 30));
        assert_eq!(verify(&p, SEED1, &code, now + 30), Some(now / 30));
        assert_eq!(verify(&p, SEED1, &code, now - 30), Some(now / 30));
        assert_eq!(verify(&p, SEED1, &code, now + 90), None);
        assert_eq!(verify(&p, SEED1, &code, now - 90), None);
        assert_eq!(verify(&p, SEED1, " 12345", now), None);
        assert_eq!(verify(&p, SEED1, &format!("{code}0"), now), None);
        assert_eq!(verify(&p, SEED1, "", now), None);
        assert_eq!(verify(&p, b"other secret", &code, now), None);
    }

    #[test]
    fn qr_code_is_inline_svg() {
        let svg = qr_svg(&otpauth_uri(&Params::default(), "Acme", "ann", SEED1)).unwrap();
        assert!(svg.starts_with("<svg role=\"img\""), "{svg}");
        assert!(svg.contains("<path") || svg.contains("<rect"), "{svg}");
        assert!(!svg.contains("<?xml") && !svg.contains("<script") && !svg.contains("href"));
        assert!(svg.len() > 1000);
    }

    #[test]
    fn base32_round_trip_and_uri() {
        let s = generate_secret().unwrap();
        assert_eq!(s.len(), 20);
        let b = base32(&s);
        assert_eq!(from_base32(&b.to_lowercase()).unwrap(), s);
        assert_eq!(base32(SEED1), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        let uri = otpauth_uri(&Params::default(), "Acme Co", "ann@example.com", SEED1);
        assert_eq!(uri, "otpauth://totp/Acme%20Co:ann%40example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Acme%20Co&algorithm=SHA1&digits=6&period=30");
    }
}
