//! One-time codes delivered by a channel (email, SMS): one abstraction for both. A code is six
//! digits drawn uniformly from the OS CSPRNG; it is never stored: the pending code travels in a
//! cookie sealed with the session keys and holds only an HMAC of the code (keyed by a key
//! derived from `mfa.encryption_key`, bound to the user, channel and a random nonce) with its
//! expiry. Verification recomputes the HMAC and compares in constant time. Single use across
//! replicas is the nonce claimed in the MFA store (see [`super::otp_store`]), so a pending
//! cookie replayed to any replica after success is refused.

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use portcullis_policy::input::Identity;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use subtle::ConstantTimeEq;
use thiserror::Error;

/// Number of digits of a code.
pub const DIGITS: usize = 6;

/// Why a code could not be delivered. Never carries the code or the message text.
#[derive(Debug, Error)]
pub enum DeliveryError {
    /// The destination (address, number) is not usable.
    #[error("destination refused: {0}")]
    Destination(String),
    /// The SMTP exchange failed (connection, TLS, authentication, refusal).
    #[error("smtp: {0}")]
    Smtp(String),
    /// The SMS provider could not be reached (connection, TLS, timeout).
    #[error("sms provider unreachable: {0}")]
    Transport(String),
    /// The SMS provider answered with a non-success status.
    #[error("sms provider answered {0}")]
    Provider(u16),
    /// The channel is misconfigured (found at start).
    #[error("{0}")]
    Config(String),
}

/// Something that can deliver a code to a destination.
#[async_trait]
pub trait Deliver: Send + Sync {
    /// Sends `code` (valid `minutes`) to `to`.
    async fn deliver(&self, to: &str, code: &str, minutes: u64) -> Result<(), DeliveryError>;
}

/// A configured channel.
pub struct Channel {
    /// `email` or `sms`: the method recorded in the session and the factor in events.
    pub name: &'static str,
    /// Code lifetime.
    pub ttl: Duration,
    /// Whether the provider must have said the destination is verified
    /// (`mfa.{email,sms}.require_verified`, see [`destination`]).
    pub require_verified: bool,
    /// The sender.
    pub sender: Box<dyn Deliver>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Channel({}, {:?})", self.name, self.ttl)
    }
}

impl Channel {
    /// Whole minutes of the code lifetime as shown to the user (at least 1).
    pub fn minutes(&self) -> u64 {
        self.ttl.as_secs().div_ceil(60).max(1)
    }
}

fn claim_bool(id: &Identity, name: &str) -> Option<bool> {
    match id.claims.get(name)? {
        serde_json::Value::Bool(b) => Some(*b),
        serde_json::Value::String(s) => Some(s == "true"),
        _ => None,
    }
}

/// Where `channel` sends codes for this identity: the session email for `email`, the phone
/// claim for `sms` — only when the provider vouched for it. A code sent to an address or number
/// nobody verified proves nothing about the user (an attacker who registered the victim's name
/// with their own mailbox would pass), so with `require_verified` (the default,
/// `mfa.{email,sms}.require_verified`) an absent `email_verified` / `phone_number_verified`
/// counts as unverified (security-relevant, fail closed). Without it, only an explicit `false`
/// refuses — for providers such as Entra ID that never send the claim but only issue addresses
/// they manage.
pub fn destination(channel: &str, id: &Identity, require_verified: bool) -> Option<String> {
    let (value, verified) = match channel {
        "email" => (id.email.clone(), "email_verified"),
        "sms" => (
            id.claims
                .get("phone_number")
                .and_then(|v| v.as_str())
                .map(str::to_string),
            "phone_number_verified",
        ),
        _ => return None,
    };
    match claim_bool(id, verified) {
        Some(true) => {}
        None if !require_verified => {}
        _ => return None,
    }
    value.filter(|v| !v.trim().is_empty())
}

/// The destination as shown on the page: enough to recognise it, not to harvest it.
pub fn mask(to: &str) -> String {
    if let Some((local, domain)) = to.split_once('@') {
        let first: String = local.chars().take(1).collect();
        return format!("{first}•••@{domain}");
    }
    let digits: Vec<char> = to.chars().filter(char::is_ascii_digit).collect();
    let tail: String = digits[digits.len().saturating_sub(2)..].iter().collect();
    format!("•••{tail}")
}

/// A pending code, sealed in a cookie: no code, only its HMAC.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Pending {
    /// The user it was sent for.
    pub user: String,
    /// `email` or `sms`.
    pub channel: String,
    /// Random, 128 bits: the single-use handle recorded in the store.
    pub nonce: String,
    /// HMAC-SHA-256 of the code, base64url.
    pub mac: String,
    /// Expiry, unix seconds.
    pub exp: i64,
}

/// The outcome of checking a typed code against a pending one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Right code, in time (the caller still has to claim the nonce).
    Right,
    /// Wrong code (or malformed input).
    Wrong,
    /// The code expired.
    Expired,
}

/// Computes and checks code HMACs.
pub struct Codes {
    key: hmac::Key,
    rng: SystemRandom,
}

impl std::fmt::Debug for Codes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Codes(..)")
    }
}

impl Codes {
    /// Derives the HMAC key from `mfa.encryption_key` (domain-separated, so the sealing key
    /// itself is never used for anything but sealing).
    pub fn new(encryption_key: &[u8]) -> Self {
        let root = hmac::Key::new(hmac::HMAC_SHA256, encryption_key);
        let derived = hmac::sign(&root, b"portcullis one-time code mac v1");
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()),
            rng: SystemRandom::new(),
        }
    }

    fn mac(&self, user: &str, channel: &str, nonce: &str, code: &str) -> Vec<u8> {
        let mut ctx = hmac::Context::with_key(&self.key);
        // Length-prefixed so no two field lists give the same input.
        for part in [user, channel, nonce, code] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part.as_bytes());
        }
        ctx.sign().as_ref().to_vec()
    }

    /// A uniformly random code of [`DIGITS`] digits (rejection sampling: no modulo bias).
    pub fn generate(&self) -> Option<String> {
        let modulo = 10u32.pow(DIGITS as u32);
        let limit = u32::MAX - u32::MAX % modulo;
        loop {
            let mut b = [0u8; 4];
            self.rng.fill(&mut b).ok()?;
            let v = u32::from_be_bytes(b);
            if v < limit {
                return Some(format!("{:0width$}", v % modulo, width = DIGITS));
            }
        }
    }

    /// A new code for `user` on `channel`, and what to seal in the cookie.
    pub fn issue(
        &self,
        user: &str,
        channel: &str,
        ttl: Duration,
        now: i64,
    ) -> Option<(String, Pending)> {
        let code = self.generate()?;
        let mut n = [0u8; 16];
        self.rng.fill(&mut n).ok()?;
        let nonce = B64.encode(n);
        let mac = B64.encode(self.mac(user, channel, &nonce, &code));
        let ttl = i64::try_from(ttl.as_secs()).unwrap_or(600);
        Some((
            code,
            Pending {
                user: user.to_string(),
                channel: channel.to_string(),
                nonce,
                mac,
                exp: now + ttl,
            },
        ))
    }

    /// Checks `typed` (spaces ignored) for `user` on `channel`. The HMAC is always computed
    /// and compared in constant time, whatever the input looks like.
    pub fn check(&self, p: &Pending, user: &str, channel: &str, typed: &str, now: i64) -> Check {
        let typed: String = typed.chars().filter(|c| !c.is_whitespace()).collect();
        let well_formed = typed.len() == DIGITS && typed.bytes().all(|b| b.is_ascii_digit());
        let expected = B64.decode(&p.mac).unwrap_or_default();
        let got = self.mac(user, channel, &p.nonce, &typed);
        let same: bool = got.ct_eq(&expected).into();
        let bound = p.user == user && p.channel == channel;
        if !(same && well_formed && bound) {
            Check::Wrong
        } else if p.exp <= now {
            Check::Expired
        } else {
            Check::Right
        }
    }
}

/// Fills `{{name}}` placeholders; each value goes through `escape` first (JSON, URL, none).
pub fn render(template: &str, vars: &[(&str, &str)], escape: impl Fn(&str) -> String) -> String {
    let mut out = template.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("{{{{{k}}}}}"), &escape(v));
    }
    out
}

/// The text of a code message: `{{code}}` and `{{minutes}}` filled.
pub fn message(template: &str, code: &str, minutes: u64) -> String {
    render(
        template,
        &[("code", code), ("minutes", &minutes.to_string())],
        str::to_string,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn codes_are_six_random_digits() {
        let c = Codes::new(&[9; 32]);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let code = c.generate().unwrap();
            assert_eq!(code.len(), 6);
            assert!(code.bytes().all(|b| b.is_ascii_digit()));
            seen.insert(code);
        }
        assert!(seen.len() > 190, "codes repeat too often: {}", seen.len());
    }

    #[test]
    fn issue_and_check_bind_user_channel_and_expiry() {
        let c = Codes::new(&[9; 32]);
        let (code, p) = c
            .issue("ann", "email", Duration::from_secs(300), NOW)
            .unwrap();
        assert_eq!(p.exp, NOW + 300);
        assert!(!p.mac.contains(&code), "only a MAC is kept");
        let ser = serde_json::to_string(&p).unwrap();
        assert!(!ser.contains(&code), "{ser}");
        assert_eq!(c.check(&p, "ann", "email", &code, NOW + 1), Check::Right);
        assert_eq!(
            c.check(
                &p,
                "ann",
                "email",
                &format!(" {} {} ", &code[..3], &code[3..]),
                NOW
            ),
            Check::Right,
            "spaces ignored"
        );
        let wrong = if code == "000000" { "000001" } else { "000000" };
        assert_eq!(c.check(&p, "ann", "email", wrong, NOW), Check::Wrong);
        assert_eq!(
            c.check(&p, "bob", "email", &code, NOW),
            Check::Wrong,
            "other user"
        );
        assert_eq!(
            c.check(&p, "ann", "sms", &code, NOW),
            Check::Wrong,
            "other channel"
        );
        assert_eq!(
            c.check(&p, "ann", "email", &code, NOW + 300),
            Check::Expired
        );
        assert_eq!(c.check(&p, "ann", "email", "", NOW), Check::Wrong);
        assert_eq!(
            c.check(&p, "ann", "email", &format!("{code}0"), NOW),
            Check::Wrong
        );
        let other_key = Codes::new(&[8; 32]);
        assert_eq!(
            other_key.check(&p, "ann", "email", &code, NOW),
            Check::Wrong
        );
        let mut moved = p.clone();
        moved.nonce = "other".into();
        assert_eq!(
            c.check(&moved, "ann", "email", &code, NOW),
            Check::Wrong,
            "nonce bound"
        );
        let (_, p2) = c
            .issue("ann", "email", Duration::from_secs(300), NOW)
            .unwrap();
        assert_ne!(p.nonce, p2.nonce);
    }

    #[test]
    fn templates_fill_placeholders() {
        assert_eq!(
            message("Code {{code}}, {{minutes}} min. {{code}}", "123456", 10),
            "Code 123456, 10 min. 123456"
        );
        assert_eq!(
            render("{\"to\":\"{{phone}}\"}", &[("phone", "a\"b")], |s| s
                .replace('"', "\\\"")),
            "{\"to\":\"a\\\"b\"}"
        );
        assert_eq!(
            render("{{other}}", &[("code", "1")], str::to_string),
            "{{other}}"
        );
    }

    #[test]
    fn destinations_respect_verified_flags_and_are_masked() {
        let mut id = Identity {
            user: "ann".into(),
            email: Some("ann@example.com".into()),
            ..Default::default()
        };
        // L14: an absent flag is unverified unless require_verified is off.
        assert_eq!(destination("email", &id, true), None, "absent = unverified");
        assert_eq!(
            destination("email", &id, false).as_deref(),
            Some("ann@example.com")
        );
        assert_eq!(destination("sms", &id, false), None, "no phone claim");
        id.claims.insert("phone_number".into(), "+15550100".into());
        assert_eq!(destination("sms", &id, true), None, "absent = unverified");
        assert_eq!(destination("sms", &id, false).as_deref(), Some("+15550100"));
        id.claims.insert("email_verified".into(), false.into());
        id.claims
            .insert("phone_number_verified".into(), "false".into());
        for strict in [true, false] {
            assert_eq!(destination("email", &id, strict), None, "unverified email");
            assert_eq!(destination("sms", &id, strict), None, "unverified phone");
        }
        id.claims.insert("email_verified".into(), true.into());
        id.claims
            .insert("phone_number_verified".into(), "true".into());
        assert!(destination("email", &id, true).is_some());
        assert!(destination("sms", &id, true).is_some());
        assert_eq!(destination("fax", &id, false), None);
        assert_eq!(mask("ann@example.com"), "a•••@example.com");
        assert_eq!(mask("+15550100"), "•••00");
    }
}
