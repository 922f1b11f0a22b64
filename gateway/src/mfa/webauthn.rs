//! WebAuthn (security keys and passkeys) on `webauthn-rs`: the relying party built from
//! `mfa.webauthn`, the ceremony state that travels between `begin` and `finish`, and the
//! credential operations on the MFA store.
//!
//! Security-relevant choices, in one place:
//! - Ceremony state is sealed in a short-lived cookie with the session keys (so any replica can
//!   finish what another began), bound to the user *and* to a hash of the session id, and
//!   expires after [`CEREMONY_TTL`]. A successful finish rotates the session id, so the same
//!   state can never succeed twice: that is what makes it single use without a shared store.
//! - Credentials are stored as webauthn-rs's credential record (JSON), sealed with the MFA key
//!   like TOTP seeds (kind `webauthn`); the signature counter is also kept in the row's
//!   `last_step` column and moved by compare-and-swap, so a counter that goes backwards (a
//!   cloned authenticator) is refused even when two replicas race.
//! - `user_verification: required` uses webauthn-rs's passkey API, which refuses assertions
//!   without the UV flag; `preferred` and `discouraged` use its security-key API.

use super::config::Webauthn as WebauthnConfig;
use super::store::FactorRow;
use super::{new_id, Mfa, MfaError};
use crate::session::CookieCodec;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use thiserror::Error;
use webauthn_rs::prelude::{
    AuthenticationResult, CreationChallengeResponse, Passkey, PasskeyAuthentication,
    PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential,
    RequestChallengeResponse, SecurityKey, SecurityKeyAuthentication, SecurityKeyRegistration,
    Uuid, WebauthnBuilder, WebauthnError,
};

/// Factor kind in the store.
pub const KIND: &str = "webauthn";
/// Credentials one user may register. Authentication state carries every credential of the
/// user, and it must fit in one cookie (4 KiB).
pub const MAX_CREDENTIALS: usize = 8;
/// Seconds between `begin` and `finish`.
pub const CEREMONY_TTL: i64 = 300;
/// Associated data of the sealed ceremony (a value sealed for another cookie never opens here).
const CEREMONY_PURPOSE: &str = "portcullis-webauthn-ceremony";

/// How much the authenticator must prove about its user (`mfa.webauthn.user_verification`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// PIN or biometric required: assertions without the UV flag are refused.
    Required,
    /// Asked for, not enforced.
    Preferred,
    /// User presence (a touch) is enough.
    Discouraged,
}

impl Verification {
    /// From the validated config value.
    pub fn parse(s: &str) -> Self {
        match s {
            "preferred" => Verification::Preferred,
            "discouraged" => Verification::Discouraged,
            _ => Verification::Required,
        }
    }
}

/// The relying party.
pub struct RelyingParty {
    wa: webauthn_rs::Webauthn,
    uv: Verification,
}

impl std::fmt::Debug for RelyingParty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RelyingParty({:?})", self.uv)
    }
}

/// A registration in progress.
#[derive(Debug, Serialize, Deserialize)]
pub enum Registration {
    /// `user_verification: required`.
    Passkey(PasskeyRegistration),
    /// `preferred` or `discouraged`.
    SecurityKey(SecurityKeyRegistration),
}

/// An authentication in progress.
#[derive(Debug, Serialize, Deserialize)]
pub enum Authentication {
    /// `user_verification: required`.
    Passkey(PasskeyAuthentication),
    /// `preferred` or `discouraged`.
    SecurityKey(SecurityKeyAuthentication),
}

/// `Passkey` and `SecurityKey` are the same credential record under two names; one stored
/// form serves both user-verification modes.
fn convert<A: Serialize, B: DeserializeOwned>(a: &A) -> Result<B, MfaError> {
    serde_json::to_value(a)
        .and_then(serde_json::from_value)
        .map_err(|_| MfaError::Encoding)
}

fn convert_all<A: Serialize, B: DeserializeOwned>(a: &[A]) -> Result<Vec<B>, MfaError> {
    a.iter().map(convert).collect()
}

/// The user handle given to authenticators: derived from the user name, so it is stable
/// across replicas without a table, and carries no personal data.
pub fn user_handle(user: &str) -> Uuid {
    let d = ring::digest::digest(
        &ring::digest::SHA256,
        format!("portcullis-webauthn-user\0{user}").as_bytes(),
    );
    let mut b = [0u8; 16];
    b.copy_from_slice(&d.as_ref()[..16]);
    Uuid::from_bytes(b)
}

impl RelyingParty {
    /// From the validated config; `name` is shown by some authenticators.
    pub fn new(cfg: &WebauthnConfig, name: &str) -> Result<Self, WebauthnError> {
        let uv = Verification::parse(&cfg.user_verification);
        let wa = WebauthnBuilder::new(&cfg.rp_id, &cfg.rp_origin)?
            .rp_name(name)
            .danger_set_user_presence_only_security_keys(uv == Verification::Discouraged)
            .build()?;
        Ok(Self { wa, uv })
    }

    /// The configured user verification.
    pub fn verification(&self) -> Verification {
        self.uv
    }

    /// Options for `navigator.credentials.create`, excluding the user's registered keys.
    pub fn start_registration(
        &self,
        user: &str,
        existing: &[Passkey],
    ) -> Result<(CreationChallengeResponse, Registration), MfaError> {
        let exclude = Some(existing.iter().map(|k| k.cred_id().clone()).collect());
        let handle = user_handle(user);
        Ok(match self.uv {
            Verification::Required => {
                let (ccr, s) = self
                    .wa
                    .start_passkey_registration(handle, user, user, exclude)?;
                (ccr, Registration::Passkey(s))
            }
            _ => {
                let (ccr, s) = self
                    .wa
                    .start_securitykey_registration(handle, user, user, exclude, None, None)?;
                (ccr, Registration::SecurityKey(s))
            }
        })
    }

    /// Verifies the authenticator's attestation response against the state.
    pub fn finish_registration(
        &self,
        reg: &RegisterPublicKeyCredential,
        state: &Registration,
    ) -> Result<Passkey, MfaError> {
        match state {
            Registration::Passkey(s) => Ok(self.wa.finish_passkey_registration(reg, s)?),
            Registration::SecurityKey(s) => {
                convert(&self.wa.finish_securitykey_registration(reg, s)?)
            }
        }
    }

    /// Options for `navigator.credentials.get` over the user's keys.
    pub fn start_authentication(
        &self,
        keys: &[Passkey],
    ) -> Result<(RequestChallengeResponse, Authentication), MfaError> {
        Ok(match self.uv {
            Verification::Required => {
                let (rcr, s) = self.wa.start_passkey_authentication(keys)?;
                (rcr, Authentication::Passkey(s))
            }
            _ => {
                let keys: Vec<SecurityKey> = convert_all(keys)?;
                let (rcr, s) = self.wa.start_securitykey_authentication(&keys)?;
                (rcr, Authentication::SecurityKey(s))
            }
        })
    }

    /// Verifies an assertion: origin, challenge, signature, flags, and that the signature
    /// counter moved forward from the one in the state ([`MfaError::CounterRegressed`]).
    pub fn finish_authentication(
        &self,
        cred: &PublicKeyCredential,
        state: &Authentication,
    ) -> Result<AuthenticationResult, MfaError> {
        Ok(match state {
            Authentication::Passkey(s) => self.wa.finish_passkey_authentication(cred, s)?,
            Authentication::SecurityKey(s) => self.wa.finish_securitykey_authentication(cred, s)?,
        })
    }
}

/// WebAuthn §7.2 step 21: once either side reports a signature counter, each use must show a
/// larger one; anything else may be a cloned authenticator. `stored` is `None` before the
/// first use; authenticators without a counter (most synced passkeys) always report 0.
pub fn counter_advances(stored: Option<i64>, seen: u32) -> bool {
    match stored {
        None => true,
        Some(s) => i64::from(seen) > s || (seen == 0 && s == 0),
    }
}

/// What a ceremony is for.
#[derive(Debug, Serialize, Deserialize)]
pub enum Step {
    /// Adding a credential under `label`.
    Register {
        /// Shown to the user later.
        label: String,
        /// webauthn-rs state.
        state: Registration,
    },
    /// Proving one.
    Authenticate(Authentication),
}

/// The state between `begin` and `finish`, sealed in a cookie.
#[derive(Debug, Serialize, Deserialize)]
pub struct Ceremony {
    user: String,
    session: String,
    exp: i64,
    /// What it is for.
    pub step: Step,
}

/// Why a ceremony cookie was not accepted.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CeremonyError {
    /// No cookie, or it does not open with the session keys (tampered, or minted elsewhere).
    #[error("no ceremony in progress")]
    Missing,
    /// Older than [`CEREMONY_TTL`].
    #[error("ceremony expired")]
    Expired,
    /// Begun for another user or another session (a stolen or replayed cookie).
    #[error("ceremony belongs to another session")]
    Unbound,
}

/// The session id as it is bound into a ceremony (a hash: the cookie never carries the id).
fn session_binding(sid: &str) -> String {
    B64.encode(ring::digest::digest(
        &ring::digest::SHA256,
        format!("portcullis-webauthn-session\0{sid}").as_bytes(),
    ))
}

impl Ceremony {
    /// A ceremony for `user` in session `sid`, begun at `now` (unix seconds).
    pub fn new(user: &str, sid: &str, now: i64, step: Step) -> Self {
        Self {
            user: user.to_string(),
            session: session_binding(sid),
            exp: now + CEREMONY_TTL,
            step,
        }
    }

    /// The cookie value: JSON, deflated (webauthn-rs state is verbose: public keys as number
    /// arrays), then sealed with the session keys.
    pub fn seal(&self, codec: &CookieCodec) -> Option<String> {
        let json = serde_json::to_vec(self).ok()?;
        let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(&json).ok()?;
        codec.seal_bytes(CEREMONY_PURPOSE, &z.finish().ok()?)
    }

    /// Opens the first of `values` that is a ceremony of `user` in session `sid` and not
    /// expired at `now`.
    pub fn open(
        codec: &CookieCodec,
        values: &[&str],
        user: &str,
        sid: &str,
        now: i64,
    ) -> Result<Self, CeremonyError> {
        let mut err = CeremonyError::Missing;
        for v in values {
            let Some(c) = codec
                .open_bytes(CEREMONY_PURPOSE, v)
                .and_then(|z| inflate(&z))
                .and_then(|json| serde_json::from_slice::<Ceremony>(&json).ok())
            else {
                continue;
            };
            // Both checks are security-relevant: the binding stops a ceremony cookie from
            // being used by another user or after the session changed (single use).
            if c.user != user || !crate::sso::same(&c.session, &session_binding(sid)) {
                err = CeremonyError::Unbound;
            } else if c.exp <= now {
                err = CeremonyError::Expired;
            } else {
                return Ok(c);
            }
        }
        Err(err)
    }
}

/// Inflates at most 64 KiB (a sealed value is authentic, but stay bounded anyway).
fn inflate(z: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(z)
        .take(64 * 1024)
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
}

/// A registered credential as read from the store.
#[derive(Debug, Clone)]
pub struct StoredKey {
    /// Factor id.
    pub id: String,
    /// Label given at registration.
    pub label: String,
    /// The credential record.
    pub key: Passkey,
    /// Last signature counter accepted (`None` before the first use).
    pub counter: Option<i64>,
}

impl Mfa {
    /// The user's WebAuthn credentials, opened (a row that does not open fails closed).
    pub async fn webauthn_keys(&self, user: &str) -> Result<Vec<StoredKey>, MfaError> {
        let mut keys = Vec::new();
        for row in self.store.list(user).await? {
            if row.kind != KIND {
                continue;
            }
            let json = self.sealer.open(user, &row.id, KIND, &row.secret)?;
            keys.push(StoredKey {
                key: serde_json::from_slice(&json).map_err(|_| MfaError::Encoding)?,
                id: row.id,
                label: row.label,
                counter: row.last_step,
            });
        }
        Ok(keys)
    }

    /// Stores a credential that finished registration. The same credential twice for one user
    /// is refused ([`MfaError::Replayed`]).
    pub async fn enrol_webauthn(
        &self,
        user: &str,
        label: &str,
        key: &Passkey,
        now: u64,
    ) -> Result<String, MfaError> {
        let existing = self.webauthn_keys(user).await?;
        if existing.iter().any(|k| k.key.cred_id() == key.cred_id()) {
            return Err(MfaError::Replayed);
        }
        let json = serde_json::to_vec(key).map_err(|_| MfaError::Encoding)?;
        let id = new_id();
        self.store
            .add(&FactorRow {
                secret: self.sealer.seal(user, &id, KIND, &json)?,
                id: id.clone(),
                user: user.to_string(),
                kind: KIND.into(),
                label: label.to_string(),
                created: i64::try_from(now).unwrap_or(i64::MAX),
                last_step: None,
            })
            .await?;
        Ok(id)
    }

    /// Records a verified assertion: the credential must be the user's, its counter must
    /// advance from the stored one ([`MfaError::CounterRegressed`]), and the new counter is
    /// written by compare-and-swap (a concurrent use of the same counter is
    /// [`MfaError::Replayed`]). Returns the factor id.
    pub async fn use_webauthn(
        &self,
        user: &str,
        res: &AuthenticationResult,
    ) -> Result<String, MfaError> {
        let keys = self.webauthn_keys(user).await?;
        let Some(k) = keys.into_iter().find(|k| k.key.cred_id() == res.cred_id()) else {
            return Err(MfaError::WrongCode);
        };
        if !counter_advances(k.counter, res.counter()) {
            return Err(MfaError::CounterRegressed);
        }
        let mut key = k.key;
        key.update_credential(res);
        let json = serde_json::to_vec(&key).map_err(|_| MfaError::Encoding)?;
        let sealed = self.sealer.seal(user, &k.id, KIND, &json)?;
        if self
            .store
            .swap_secret(user, &k.id, k.counter, &sealed, i64::from(res.counter()))
            .await?
        {
            Ok(k.id)
        } else {
            Err(MfaError::Replayed)
        }
    }
}

#[cfg(test)]
pub(crate) mod soft;
#[cfg(test)]
mod tests;
