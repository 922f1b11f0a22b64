//! Compact JWS verification for provider-signed tokens that are not ID tokens (back-channel
//! `logout_token`s may lack `sub` and `exp`, which the `openidconnect` ID-token types require).
//! The cryptography is the `openidconnect` crate's own key code; this module only decides
//! which key and algorithm may be used: the algorithm must be on the provider's allow-list
//! (`none` never is), keys come only from the provider's JWKS (or its client secret for HMAC),
//! and `jku`, `x5u`, `jwk` and `x5c` headers are never consulted.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use openidconnect::core::{CoreJsonWebKey, CoreJsonWebKeySet, CoreJwsSigningAlgorithm};
use openidconnect::JsonWebKey;
use serde_json::{Map, Value};
use thiserror::Error;

/// Why a token was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum JwsError {
    /// Not three base64url parts of JSON objects.
    #[error("malformed: {0}")]
    Malformed(&'static str),
    /// The header's `alg` is missing or not on the allow-list.
    #[error("algorithm {0:?} is not allowed")]
    Algorithm(String),
    /// A `crit` header names extensions this verifier does not implement.
    #[error("critical header extensions are not supported")]
    Critical,
    /// No key with the token's `kid` (the caller may refetch the JWKS once).
    #[error("no matching signing key")]
    NoMatchingKey,
    /// A key matched but the signature does not verify.
    #[error("bad signature")]
    BadSignature,
}

/// A verified token's header and claims.
#[derive(Debug)]
pub struct Verified {
    /// JOSE header.
    pub header: Map<String, Value>,
    /// Claims.
    pub claims: Map<String, Value>,
}

fn json_part(part: &str, what: &'static str) -> Result<Map<String, Value>, JwsError> {
    let raw = B64.decode(part).map_err(|_| JwsError::Malformed(what))?;
    serde_json::from_slice(&raw).map_err(|_| JwsError::Malformed(what))
}

/// A compact JWS of `header` and `claims`, signed by `sign` over the signing input (`None`
/// when signing failed).
pub fn compact(
    header: &Value,
    claims: &Value,
    sign: impl FnOnce(&[u8]) -> Option<Vec<u8>>,
) -> Option<String> {
    let input = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    let sig = sign(input.as_bytes())?;
    Some(format!("{input}.{}", B64.encode(sig)))
}

/// Verifies `token` with `jwks` (and `hmac_secret` for HS* when allowed) and returns its
/// header and claims; claim checks are the caller's.
pub fn verify(
    token: &str,
    allowed: &[CoreJwsSigningAlgorithm],
    jwks: &CoreJsonWebKeySet,
    hmac_secret: Option<&str>,
) -> Result<Verified, JwsError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwsError::Malformed("not three parts"));
    };
    let header = json_part(h, "header")?;
    let alg_name = header.get("alg").and_then(Value::as_str).unwrap_or("");
    let alg: CoreJwsSigningAlgorithm = serde_json::from_value(Value::String(alg_name.into()))
        .map_err(|_| JwsError::Algorithm(alg_name.into()))?;
    // Security-relevant: the allow-list decides, and `none` is refused even if listed.
    if alg == CoreJwsSigningAlgorithm::None || !allowed.contains(&alg) {
        return Err(JwsError::Algorithm(alg_name.into()));
    }
    if header.contains_key("crit") {
        return Err(JwsError::Critical);
    }
    let signature = B64
        .decode(s)
        .map_err(|_| JwsError::Malformed("signature"))?;
    let message = &token.as_bytes()[..h.len() + 1 + p.len()];
    let hmac = matches!(
        alg,
        CoreJwsSigningAlgorithm::HmacSha256
            | CoreJwsSigningAlgorithm::HmacSha384
            | CoreJwsSigningAlgorithm::HmacSha512
    );
    let verified = if hmac {
        let secret = hmac_secret.ok_or(JwsError::NoMatchingKey)?;
        CoreJsonWebKey::new_symmetric(secret.as_bytes().to_vec())
            .verify_signature(&alg, message, &signature)
            .is_ok()
    } else {
        let kid = header.get("kid").and_then(Value::as_str);
        let candidates: Vec<_> = jwks
            .keys()
            .iter()
            .filter(|k| kid.is_none() || k.key_id().map(|id| id.as_str()) == kid)
            .collect();
        if candidates.is_empty() {
            return Err(JwsError::NoMatchingKey);
        }
        candidates
            .iter()
            .any(|k| k.verify_signature(&alg, message, &signature).is_ok())
    };
    if !verified {
        return Err(JwsError::BadSignature);
    }
    Ok(Verified {
        header,
        claims: json_part(p, "payload")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

    struct Key {
        pair: EcdsaKeyPair,
        jwks: CoreJsonWebKeySet,
    }

    fn key(kid: &str) -> Key {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let pk = pair.public_key().as_ref();
        let jwks = serde_json::from_value(serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
            "x": B64.encode(&pk[1..33]), "y": B64.encode(&pk[33..65]),
        }]}))
        .unwrap();
        Key { pair, jwks }
    }

    fn sign(k: &Key, header: Value, claims: Value) -> String {
        compact(&header, &claims, |input| {
            Some(
                k.pair
                    .sign(&SystemRandom::new(), input)
                    .unwrap()
                    .as_ref()
                    .to_vec(),
            )
        })
        .unwrap()
    }

    const ES: &[CoreJwsSigningAlgorithm] = &[CoreJwsSigningAlgorithm::EcdsaP256Sha256];

    #[test]
    fn verifies_with_the_published_key_only() {
        let k = key("a");
        let t = sign(
            &k,
            serde_json::json!({"alg": "ES256", "kid": "a"}),
            serde_json::json!({"sid": "s1"}),
        );
        let v = verify(&t, ES, &k.jwks, None).unwrap();
        assert_eq!(v.claims["sid"], "s1");
        let other = key("a");
        assert_eq!(
            verify(&t, ES, &other.jwks, None).unwrap_err(),
            JwsError::BadSignature
        );
        let t2 = sign(
            &k,
            serde_json::json!({"alg": "ES256", "kid": "b"}),
            serde_json::json!({}),
        );
        assert_eq!(
            verify(&t2, ES, &k.jwks, None).unwrap_err(),
            JwsError::NoMatchingKey
        );
    }

    #[test]
    fn algorithm_comes_from_the_allow_list_never_none() {
        let k = key("a");
        let t = sign(
            &k,
            serde_json::json!({"alg": "ES256", "kid": "a"}),
            serde_json::json!({}),
        );
        let rs = &[CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256];
        assert!(matches!(
            verify(&t, rs, &k.jwks, None),
            Err(JwsError::Algorithm(_))
        ));
        let none = format!("{}.{}.", B64.encode(r#"{"alg":"none"}"#), B64.encode("{}"));
        let all = &[
            CoreJwsSigningAlgorithm::None,
            CoreJwsSigningAlgorithm::EcdsaP256Sha256,
        ];
        assert!(matches!(
            verify(&none, all, &k.jwks, None),
            Err(JwsError::Algorithm(_))
        ));
        // HS256 "keyed" with a public key is refused when HS256 is not allowed, and without a
        // client secret there is no HMAC key at all.
        let hs = format!(
            "{}.{}.AAAA",
            B64.encode(r#"{"alg":"HS256"}"#),
            B64.encode("{}")
        );
        assert!(matches!(
            verify(&hs, ES, &k.jwks, None),
            Err(JwsError::Algorithm(_))
        ));
        assert_eq!(
            verify(&hs, &[CoreJwsSigningAlgorithm::HmacSha256], &k.jwks, None).unwrap_err(),
            JwsError::NoMatchingKey
        );
    }

    #[test]
    fn embedded_keys_and_crit_are_not_honoured() {
        let k = key("a");
        let evil = key("a");
        // Signed by `evil`, which it also embeds and points to: still refused.
        let t = sign(
            &evil,
            serde_json::json!({"alg": "ES256", "kid": "a", "jku": "https://evil/jwks",
                "jwk": serde_json::to_value(&evil.jwks.keys()[0]).unwrap()}),
            serde_json::json!({}),
        );
        assert_eq!(
            verify(&t, ES, &k.jwks, None).unwrap_err(),
            JwsError::BadSignature
        );
        let t = sign(
            &k,
            serde_json::json!({"alg": "ES256", "kid": "a", "crit": ["exp"]}),
            serde_json::json!({}),
        );
        assert_eq!(
            verify(&t, ES, &k.jwks, None).unwrap_err(),
            JwsError::Critical
        );
        assert!(matches!(
            verify("a.b", ES, &k.jwks, None),
            Err(JwsError::Malformed(_))
        ));
    }
}
