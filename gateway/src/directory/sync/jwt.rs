//! The Google service-account JWT bearer grant (RFC 7523): an RS256-signed assertion with
//! `iss` = the service account's `client_email`, `sub` = the admin it acts for, the read-only
//! directory scopes, `aud` = the token endpoint, valid for an hour. Signed with ring's RSA
//! PKCS#1 v1.5 SHA-256 from the key file's PKCS#8 `private_key`.

use super::SyncError;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use serde::Deserialize;
use serde_json::json;

/// The scopes the directory sync needs, all read-only.
pub const SCOPES: &str = "https://www.googleapis.com/auth/admin.directory.user.readonly https://www.googleapis.com/auth/admin.directory.group.readonly https://www.googleapis.com/auth/admin.directory.group.member.readonly";

/// Lifetime of an assertion (Google's maximum).
const LIFETIME: i64 = 3600;

/// The fields of a service-account key file the grant uses.
#[derive(Deserialize)]
pub struct KeyFile {
    /// The service account.
    pub client_email: String,
    /// PKCS#8 PEM.
    pub private_key: String,
    /// Key id (the JWT `kid`).
    #[serde(default)]
    pub private_key_id: Option<String>,
    /// Token endpoint.
    #[serde(default)]
    pub token_uri: Option<String>,
}

impl std::fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyFile")
            .field("client_email", &self.client_email)
            .finish_non_exhaustive()
    }
}

/// A loaded service account.
pub struct ServiceAccount {
    /// `iss`.
    pub client_email: String,
    kid: Option<String>,
    key: RsaKeyPair,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("client_email", &self.client_email)
            .finish_non_exhaustive()
    }
}

impl ServiceAccount {
    /// From a key file's fields.
    pub fn new(k: &KeyFile) -> Result<Self, SyncError> {
        let bad =
            |why: &str| SyncError::Credentials(format!("credentials_file private_key: {why}"));
        let der = match rustls_pemfile::private_key(&mut k.private_key.as_bytes()) {
            Ok(Some(rustls::pki_types::PrivateKeyDer::Pkcs8(d))) => d,
            Ok(_) => return Err(bad("not a PKCS#8 PEM key")),
            Err(_) => return Err(bad("not PEM")),
        };
        let key = RsaKeyPair::from_pkcs8(der.secret_pkcs8_der())
            .map_err(|e| bad(&format!("not an RSA key ({e})")))?;
        Ok(Self {
            client_email: k.client_email.clone(),
            kid: k.private_key_id.clone(),
            key,
        })
    }

    /// The signed assertion for `admin` at token endpoint `aud`, issued at `now` (Unix s).
    pub fn assertion(&self, admin: &str, aud: &str, now: i64) -> Result<String, SyncError> {
        let mut header = json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = &self.kid {
            header["kid"] = json!(kid);
        }
        let claims = json!({
            "iss": self.client_email,
            "sub": admin,
            "scope": SCOPES,
            "aud": aud,
            "iat": now,
            "exp": now + LIFETIME,
        });
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let mut sig = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                input.as_bytes(),
                &mut sig,
            )
            .map_err(|_| SyncError::Credentials("RS256 signing failed".into()))?;
        Ok(format!("{input}.{}", B64.encode(sig)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{KeyPair, UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};

    fn key_file() -> KeyFile {
        KeyFile {
            client_email: "sync@proj.iam.gserviceaccount.com".into(),
            private_key: std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../tests/fixtures/sync-sa.pem"
            ))
            .unwrap(),
            private_key_id: Some("k1".into()),
            token_uri: None,
        }
    }

    #[test]
    fn assertion_is_rs256_signed_with_the_grant_claims() {
        let sa = ServiceAccount::new(&key_file()).unwrap();
        let jwt = sa
            .assertion(
                "admin@example.com",
                "https://oauth2.googleapis.com/token",
                1000,
            )
            .unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&B64.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header, json!({"alg": "RS256", "typ": "JWT", "kid": "k1"}));
        let claims: serde_json::Value =
            serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["iss"], "sync@proj.iam.gserviceaccount.com");
        assert_eq!(claims["sub"], "admin@example.com");
        assert_eq!(claims["aud"], "https://oauth2.googleapis.com/token");
        assert_eq!(claims["exp"], 4600);
        assert!(claims["scope"]
            .as_str()
            .unwrap()
            .split(' ')
            .all(|s| s.ends_with(".readonly")));
        let public = UnparsedPublicKey::new(
            &RSA_PKCS1_2048_8192_SHA256,
            sa.key.public_key().as_ref().to_vec(),
        );
        let input = format!("{}.{}", parts[0], parts[1]);
        let sig = B64.decode(parts[2]).unwrap();
        assert!(public.verify(input.as_bytes(), &sig).is_ok());
        // A changed claim no longer verifies.
        let forged = format!("{}.{}", parts[0], B64.encode(b"{\"sub\":\"root\"}"));
        assert!(public.verify(forged.as_bytes(), &sig).is_err());
    }

    #[test]
    fn bad_keys_are_named_not_panicked_on() {
        let mut k = key_file();
        k.private_key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into();
        assert!(matches!(
            ServiceAccount::new(&k),
            Err(SyncError::Credentials(_))
        ));
        k.private_key = "not pem".into();
        assert!(matches!(
            ServiceAccount::new(&k),
            Err(SyncError::Credentials(_))
        ));
        assert!(!format!("{:?}", key_file()).contains("PRIVATE"));
    }
}
