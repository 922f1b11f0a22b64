//! TOTP as the tests compute it, independently of the gateway (RFC 6238 with ring), and the
//! page fields the enrolment shows: shared by the TOTP and the combined-factor suites.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Decodes an RFC 4648 base32 string (upper case, no padding), as the pages show TOTP keys.
pub fn base32_decode(s: &str) -> Vec<u8> {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut buf, mut bits, mut out) = (0u64, 0u32, Vec::new());
    for c in s.bytes() {
        let v = A.iter().position(|a| *a == c).expect("base32") as u64;
        buf = (buf << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    out
}

/// RFC 6238, SHA-1, 6 digits, 30 s — computed independently of the gateway.
pub fn totp(secret: &[u8], unix: u64) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let mac = ring::hmac::sign(&key, &(unix / 30).to_be_bytes());
    let m = mac.as_ref();
    let o = (m[19] & 0x0f) as usize;
    let bin = (u32::from(m[o] & 0x7f) << 24)
        | (u32::from(m[o + 1]) << 16)
        | (u32::from(m[o + 2]) << 8)
        | u32::from(m[o + 3]);
    format!("{:06}", bin % 1_000_000)
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Waits until a fresh 30 s step starts (at least `margin` seconds left in it).
pub async fn fresh_step(margin: u64) {
    while 30 - now() % 30 < margin {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The text of the element with `id` on `page` (the TOTP key, the `otpauth://` URI).
pub fn field<'a>(page: &'a str, id: &str) -> &'a str {
    let start = page
        .find(&format!("id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no #{id} in {page}"))
        + id.len()
        + 6;
    let end = page[start..].find('<').unwrap() + start;
    &page[start..end]
}
