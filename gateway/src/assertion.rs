//! The signed assertion sent to upstreams in `X-Portcullis-Assertion`: an ES256 JWT with the
//! identity, `aud` = route (or its configured audience), and a short `exp`. Keys are P-256;
//! the first signs, all are published at `/.portcullis/jwks.json`, so a new key can be
//! published before it signs and an old one kept until its last assertion expired.

use crate::config::auth_model::AssertionConfig;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use portcullis_policy::input::Identity;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::json;
use sha2::Digest;

/// Whether `der` is a PKCS#8 P-256 key ring can sign with (config validation).
pub fn check_key(der: &[u8]) -> bool {
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &SystemRandom::new()).is_ok()
}

struct SigningKey {
    kid: String,
    pair: EcdsaKeyPair,
}

/// Signs assertions and publishes the verification keys.
pub struct Assertions {
    keys: Vec<SigningKey>,
    jwks: String,
    ttl: i64,
    issuer: String,
    rng: SystemRandom,
    /// Signed assertions reused for half their lifetime: an ES256 signature costs tens of
    /// microseconds, more than the rest of the request path together.
    cache: std::sync::Mutex<std::collections::HashMap<u64, Cached>>,
    /// `iat`/`exp` and cache reuse read this clock (the gateway's).
    clock: crate::clock::Clock,
}

struct Cached {
    user: String,
    aud: String,
    token: String,
    reuse_until: i64,
}

/// Bound on cached assertions; the cache is simply emptied when it is full.
const CACHE_MAX: usize = 10_000;

fn cache_key(identity: &Identity, aud: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (
        &identity.user,
        &identity.email,
        &identity.groups,
        &identity.roles,
        &identity.tenant,
        &identity.department,
        aud,
    )
        .hash(&mut h);
    identity
        .claims
        .get("idp")
        .map(|v| v.to_string())
        .hash(&mut h);
    identity
        .claims
        .get("groups_overage")
        .map(|v| v.to_string())
        .hash(&mut h);
    h.finish()
}

impl std::fmt::Debug for Assertions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Assertions({} keys)", self.keys.len())
    }
}

impl Assertions {
    /// Loads the configured keys, or generates one; on the real clock.
    pub fn new(cfg: &AssertionConfig) -> Option<Self> {
        Self::with_clock(cfg, crate::clock::Clock::system())
    }

    /// Loads the configured keys, or generates one; times assertions by `clock`.
    pub fn with_clock(cfg: &AssertionConfig, clock: crate::clock::Clock) -> Option<Self> {
        let rng = SystemRandom::new();
        let mut ders = cfg.keys.clone();
        if ders.is_empty() {
            let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).ok()?;
            ders.push(doc.as_ref().to_vec());
        }
        let mut keys = Vec::new();
        let mut jwk = Vec::new();
        for der in &ders {
            let pair =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng).ok()?;
            let public = pair.public_key().as_ref();
            // Uncompressed SEC1 point: 0x04 || x (32) || y (32).
            if public.len() != 65 {
                return None;
            }
            let kid = B64.encode(&sha2::Sha256::digest(public)[..12]);
            jwk.push(json!({
                "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
                "x": B64.encode(&public[1..33]), "y": B64.encode(&public[33..65]),
            }));
            keys.push(SigningKey { kid, pair });
        }
        Some(Self {
            keys,
            jwks: json!({ "keys": jwk }).to_string(),
            ttl: i64::try_from(cfg.ttl.as_secs()).unwrap_or(60),
            issuer: cfg.issuer.clone(),
            rng,
            cache: std::sync::Mutex::new(std::collections::HashMap::new()),
            clock,
        })
    }

    /// The JWKS document.
    pub fn jwks(&self) -> &str {
        &self.jwks
    }

    /// An assertion for `identity` with audience `aud`: a cached one while it is in the first
    /// half of its lifetime, otherwise a freshly signed one.
    pub fn sign(&self, identity: &Identity, aud: &str) -> Option<String> {
        let now = self.clock.unix();
        let key = cache_key(identity, aud);
        if let Ok(cache) = self.cache.lock() {
            if let Some(c) = cache.get(&key) {
                if now < c.reuse_until && c.user == identity.user && c.aud == aud {
                    return Some(c.token.clone());
                }
            }
        }
        let token = self.sign_fresh(identity, aud, now)?;
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            cache.insert(
                key,
                Cached {
                    user: identity.user.clone(),
                    aud: aud.to_string(),
                    token: token.clone(),
                    reuse_until: now + self.ttl / 2,
                },
            );
        }
        Some(token)
    }

    fn sign_fresh(&self, identity: &Identity, aud: &str, now: i64) -> Option<String> {
        let key = self.keys.first()?;
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": key.kid});
        let mut claims = json!({
            "iss": self.issuer, "sub": identity.user, "aud": aud,
            "iat": now, "nbf": now, "exp": now + self.ttl,
            "email": identity.email, "groups": identity.groups, "roles": identity.roles,
            "tenant": identity.tenant, "department": identity.department,
        });
        if let (Some(obj), Some(idp)) = (claims.as_object_mut(), identity.claims.get("idp")) {
            obj.insert("idp".to_string(), idp.clone());
            if let Some(o) = identity.claims.get("groups_overage") {
                obj.insert("groups_overage".to_string(), o.clone());
            }
        }
        crate::idp::jws::compact(&header, &claims, |input| {
            key.pair
                .sign(&self.rng, input)
                .ok()
                .map(|s| s.as_ref().to_vec())
        })
    }
}

/// Every identity header the gateway may set, and the assertion's. Forward-auth answers
/// carry all of them (empty when not vouched for) so a front proxy that copies or overwrites
/// them never lets a client-sent one through to the app.
pub const ALL_IDENTITY_HEADERS: [&str; 6] = [
    "x-portcullis-user",
    "x-portcullis-email",
    "x-portcullis-groups",
    "x-portcullis-roles",
    "x-portcullis-tenant",
    "x-portcullis-assertion",
];

/// Header values the upstream gets, derived from the session identity. Values are cleaned of
/// control characters so a claim can never split or forge a header.
pub fn identity_headers(identity: &Identity) -> Vec<(&'static str, String)> {
    let clean = |s: &str| -> String { s.chars().filter(|c| !c.is_control()).collect() };
    let mut h = vec![("x-portcullis-user", clean(&identity.user))];
    if let Some(e) = &identity.email {
        h.push(("x-portcullis-email", clean(e)));
    }
    if !identity.groups.is_empty() {
        h.push(("x-portcullis-groups", clean(&identity.groups.join(","))));
    }
    if !identity.roles.is_empty() {
        h.push(("x-portcullis-roles", clean(&identity.roles.join(","))));
    }
    if let Some(t) = &identity.tenant {
        h.push(("x-portcullis-tenant", clean(t)));
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn verify(jwks: &str, token: &str) -> bool {
        let jwks: serde_json::Value = serde_json::from_str(jwks).unwrap();
        let (input, sig) = token.rsplit_once('.').unwrap();
        let header: serde_json::Value =
            serde_json::from_slice(&B64.decode(input.split('.').next().unwrap()).unwrap()).unwrap();
        let key = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == header["kid"])
            .unwrap();
        let mut point = vec![4u8];
        point.extend(B64.decode(key["x"].as_str().unwrap()).unwrap());
        point.extend(B64.decode(key["y"].as_str().unwrap()).unwrap());
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, point)
            .verify(input.as_bytes(), &B64.decode(sig).unwrap())
            .is_ok()
    }

    fn cfg(keys: Vec<Vec<u8>>) -> AssertionConfig {
        AssertionConfig {
            keys,
            ttl: Duration::from_secs(30),
            issuer: "portcullis".into(),
        }
    }

    #[test]
    fn assertion_verifies_with_the_published_key_and_carries_the_identity() {
        let a = Assertions::new(&cfg(vec![])).unwrap();
        let id = Identity {
            user: "alice".into(),
            groups: vec!["eng".into()],
            ..Default::default()
        };
        let t = a.sign(&id, "app").unwrap();
        assert!(verify(a.jwks(), &t));
        let claims: serde_json::Value =
            serde_json::from_slice(&B64.decode(t.split('.').nth(1).unwrap()).unwrap()).unwrap();
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["aud"], "app");
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
            30
        );
        let mut bad = t.clone();
        bad.replace_range(t.len() - 3.., "AAA");
        assert!(!verify(a.jwks(), &bad));
    }

    #[test]
    fn rotation_publishes_old_and_new_keys_and_signs_with_the_first() {
        let rng = SystemRandom::new();
        let k1 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap()
            .as_ref()
            .to_vec();
        let k2 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap()
            .as_ref()
            .to_vec();
        let old = Assertions::new(&cfg(vec![k1.clone()])).unwrap();
        let rotated = Assertions::new(&cfg(vec![k2, k1])).unwrap();
        let id = Identity::default();
        let before = old.sign(&id, "a").unwrap();
        assert!(
            verify(rotated.jwks(), &before),
            "old assertions still verify"
        );
        let after = rotated.sign(&id, "a").unwrap();
        assert!(verify(rotated.jwks(), &after));
        assert!(!check_key(b"not a key"));
    }

    #[test]
    fn header_values_cannot_be_split() {
        let id = Identity {
            user: "eve\r\nX-Portcullis-Roles: admin".into(),
            ..Default::default()
        };
        let h = identity_headers(&id);
        assert_eq!(h.len(), 1);
        assert!(!h[0].1.contains('\n'));
    }

    #[test]
    fn assertions_are_reused_only_for_the_same_identity_and_audience() {
        let a = Assertions::new(&cfg(vec![])).unwrap();
        let alice = Identity {
            user: "alice".into(),
            groups: vec!["eng".into()],
            ..Default::default()
        };
        let t1 = a.sign(&alice, "app").unwrap();
        assert_eq!(
            a.sign(&alice, "app").unwrap(),
            t1,
            "reused within half the ttl"
        );
        assert_ne!(
            a.sign(&alice, "other").unwrap(),
            t1,
            "audience is part of the key"
        );
        let mut promoted = alice.clone();
        promoted.groups.push("admins".into());
        let t2 = a.sign(&promoted, "app").unwrap();
        assert_ne!(t2, t1, "a changed identity gets a new assertion");
        let claims: serde_json::Value =
            serde_json::from_slice(&B64.decode(t2.split('.').nth(1).unwrap()).unwrap()).unwrap();
        assert_eq!(claims["groups"], serde_json::json!(["eng", "admins"]));
    }
}
