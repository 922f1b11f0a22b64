//! `private_key_jwt` client authentication (OpenID Connect Core 9, RFC 7523): the gateway
//! proves it is the registered client with a short JWT signed by its own key instead of a
//! shared secret, so nothing the provider stores could be replayed as the client's password.

use super::jws::compact;
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256,
};
use serde_json::json;

/// Lifetime of one client assertion: long enough for one token request.
const ASSERTION_TTL: i64 = 60;

enum Kind {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

/// The client's signing key (RSA → RS256, P-256 → ES256), loaded once from PEM.
pub struct ClientKey {
    kind: Kind,
    kid: Option<String>,
    rng: SystemRandom,
}

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientKey")
            .field("alg", &self.alg())
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl ClientKey {
    /// From a PEM private key: PKCS#8 RSA or P-256, or PKCS#1 RSA. The error says what the
    /// file is not, for the config report.
    pub fn from_pem(pem: &[u8], kid: Option<String>) -> Result<Self, &'static str> {
        let rng = SystemRandom::new();
        let key = rustls_pemfile::private_key(&mut &pem[..])
            .ok()
            .flatten()
            .ok_or("holds no PEM private key")?;
        let der = key.secret_der();
        let kind = if let Ok(k) =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
        {
            Kind::Ec(k)
        } else if let Ok(k) = RsaKeyPair::from_pkcs8(der).or_else(|_| RsaKeyPair::from_der(der)) {
            Kind::Rsa(k)
        } else {
            return Err("is not an RSA (2048 bits or more) or P-256 private key");
        };
        Ok(Self { kind, kid, rng })
    }

    /// The JWS algorithm this key signs with.
    pub fn alg(&self) -> &'static str {
        match self.kind {
            Kind::Rsa(_) => "RS256",
            Kind::Ec(_) => "ES256",
        }
    }

    /// A fresh client assertion: `iss` = `sub` = client id, `aud` = the token endpoint, a
    /// unique `jti` (providers refuse a reused one) and a one-minute `exp`.
    pub fn client_assertion(&self, client_id: &str, aud: &str, now: i64) -> Option<String> {
        let mut header = json!({"alg": self.alg(), "typ": "JWT"});
        if let Some(kid) = &self.kid {
            header["kid"] = json!(kid);
        }
        let claims = json!({
            "iss": client_id, "sub": client_id, "aud": aud,
            "jti": uuid::Uuid::now_v7().simple().to_string(),
            "iat": now, "exp": now + ASSERTION_TTL,
        });
        compact(&header, &claims, |input| match &self.kind {
            Kind::Ec(k) => k.sign(&self.rng, input).ok().map(|s| s.as_ref().to_vec()),
            Kind::Rsa(k) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(&RSA_PKCS1_SHA256, &self.rng, input, &mut sig)
                    .ok()
                    .map(|()| sig)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openidconnect::core::{CoreJsonWebKeySet, CoreJwsSigningAlgorithm};

    #[test]
    fn ec_assertion_verifies_and_names_the_client() {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let key = ClientKey::from_pem(kp.serialize_pem().as_bytes(), Some("c1".into())).unwrap();
        assert_eq!(key.alg(), "ES256");
        let t = key
            .client_assertion("portcullis", "https://op/token", 1000)
            .unwrap();
        let pk = kp.public_key_raw();
        let b64 =
            |b: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, b);
        let jwks: CoreJsonWebKeySet = serde_json::from_value(json!({"keys": [{
            "kty": "EC", "crv": "P-256", "kid": "c1", "x": b64(&pk[1..33]), "y": b64(&pk[33..65])
        }]}))
        .unwrap();
        let v =
            crate::idp::jws::verify(&t, &[CoreJwsSigningAlgorithm::EcdsaP256Sha256], &jwks, None)
                .unwrap();
        assert_eq!(v.claims["iss"], "portcullis");
        assert_eq!(v.claims["sub"], "portcullis");
        assert_eq!(v.claims["aud"], "https://op/token");
        assert_eq!(v.claims["exp"], 1060);
        assert_eq!(v.header["kid"], "c1");
        let t2 = key
            .client_assertion("portcullis", "https://op/token", 1000)
            .unwrap();
        assert_ne!(
            crate::idp::oidc::jwt_payload(&t).unwrap()["jti"],
            crate::idp::oidc::jwt_payload(&t2).unwrap()["jti"],
            "every assertion has its own jti"
        );
    }

    #[test]
    fn rsa_keys_sign_rs256_and_junk_is_named() {
        // ring cannot generate RSA keys: the e2e suite's fixture stands in.
        let pem = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/rsa1.pem"
        ))
        .unwrap();
        let key = ClientKey::from_pem(&pem, None).unwrap();
        assert_eq!(key.alg(), "RS256");
        assert!(key.client_assertion("c", "a", 0).is_some());
        assert_eq!(
            ClientKey::from_pem(b"not a key", None).unwrap_err(),
            "holds no PEM private key"
        );
    }
}
