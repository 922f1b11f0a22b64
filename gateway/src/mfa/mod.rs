//! Second factors: enrolment, verification and the store behind them. `totp` and `seal` are
//! pure; [`Mfa`] ties them to the store so that secrets are sealed before they are written and
//! every TOTP step is accepted at most once (across replicas when the store is PostgreSQL).

pub mod config;
pub mod email;
pub mod flow;
pub mod limiter;
pub mod otp;
pub mod otp_store;
pub mod pages;
pub mod recovery;
pub mod remember;
pub mod seal;
pub mod sms;
pub mod store;
pub mod totp;
pub mod webauthn;

#[cfg(test)]
mod tests;

use seal::{SealError, Sealer};
use std::sync::Arc;
use store::{FactorRow, MfaStore, StoreError};
use thiserror::Error;

/// Why a factor operation failed.
#[derive(Debug, Error)]
pub enum MfaError {
    /// The enrolment store is unreachable or refused (fail closed: 503).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored secret does not open with the configured key (fail closed: 500).
    #[error(transparent)]
    Seal(#[from] SealError),
    /// The code matches no enrolled factor.
    #[error("wrong code")]
    WrongCode,
    /// The code was right but already used.
    #[error("code already used")]
    Replayed,
    /// Hashing a recovery code or drawing randomness failed (fail closed: 503).
    #[error("recovery code hashing failed")]
    Hash,
    /// A WebAuthn ceremony did not verify (signature, challenge, origin, flags...). The detail
    /// goes to the log, never to the client.
    #[error("webauthn: {0}")]
    Webauthn(webauthn_rs::prelude::WebauthnError),
    /// A WebAuthn signature counter did not advance: possibly a cloned authenticator.
    #[error("signature counter went backwards (possible cloned authenticator)")]
    CounterRegressed,
    /// A stored credential record does not (de)serialise (fail closed: 503).
    #[error("stored credential record is malformed")]
    Encoding,
}

impl From<webauthn_rs::prelude::WebauthnError> for MfaError {
    fn from(e: webauthn_rs::prelude::WebauthnError) -> Self {
        match e {
            webauthn_rs::prelude::WebauthnError::CredentialPossibleCompromise => {
                MfaError::CounterRegressed
            }
            e => MfaError::Webauthn(e),
        }
    }
}

/// A factor as shown to its user (never the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactorInfo {
    /// Id.
    pub id: String,
    /// Kind (`totp`, ...).
    pub kind: String,
    /// Label.
    pub label: String,
    /// Unix seconds.
    pub created: i64,
}

/// Enrolments and verification.
pub struct Mfa {
    store: Arc<dyn MfaStore>,
    sealer: Sealer,
    params: totp::Params,
}

fn new_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

impl Mfa {
    /// Over an opened store with the configured key.
    pub fn new(store: Arc<dyn MfaStore>, key: &[u8]) -> Result<Self, SealError> {
        Ok(Self {
            store,
            sealer: Sealer::new(key)?,
            params: totp::Params::default(),
        })
    }

    /// TOTP parameters in use.
    pub fn totp_params(&self) -> totp::Params {
        self.params
    }

    /// The user's enrolled factors.
    pub async fn factors(&self, user: &str) -> Result<Vec<FactorInfo>, MfaError> {
        Ok(self
            .store
            .list(user)
            .await?
            .into_iter()
            .map(|r| FactorInfo {
                id: r.id,
                kind: r.kind,
                label: r.label,
                created: r.created,
            })
            .collect())
    }

    /// Enrols a TOTP secret the user has proven with a code at `now` (the step of that code
    /// is recorded as used, so the enrolment code cannot be replayed).
    pub async fn enrol_totp(
        &self,
        user: &str,
        label: &str,
        secret: &[u8],
        code: &str,
        now: u64,
    ) -> Result<String, MfaError> {
        let step = totp::verify(&self.params, secret, code, now).ok_or(MfaError::WrongCode)?;
        let id = new_id();
        let row = FactorRow {
            secret: self.sealer.seal(user, &id, "totp", secret)?,
            id: id.clone(),
            user: user.to_string(),
            kind: "totp".into(),
            label: label.to_string(),
            created: i64::try_from(now).unwrap_or(i64::MAX),
            last_step: i64::try_from(step).ok(),
        };
        self.store.add(&row).await?;
        Ok(id)
    }

    /// Checks a TOTP code against each of the user's TOTP factors; the matching step is
    /// claimed atomically, so a second use of the same code is [`MfaError::Replayed`].
    /// Returns the id of the factor used.
    pub async fn verify_totp(&self, user: &str, code: &str, now: u64) -> Result<String, MfaError> {
        let rows = self.store.list(user).await?;
        for row in rows.iter().filter(|r| r.kind == "totp") {
            let secret = self.sealer.open(user, &row.id, "totp", &row.secret)?;
            if let Some(step) = totp::verify(&self.params, &secret, code, now) {
                let step = i64::try_from(step).unwrap_or(i64::MAX);
                return if self.store.claim_step(user, &row.id, step).await? {
                    Ok(row.id.clone())
                } else {
                    Err(MfaError::Replayed)
                };
            }
        }
        Err(MfaError::WrongCode)
    }

    /// Replaces the user's recovery codes with `n` new ones and returns them (the only time
    /// they are visible: only Argon2id hashes are stored).
    pub async fn issue_recovery_codes(
        &self,
        user: &str,
        n: u32,
        now: u64,
    ) -> Result<Vec<String>, MfaError> {
        for r in self.store.list(user).await? {
            if r.kind == "recovery" {
                self.store.remove(user, &r.id).await?;
            }
        }
        let mut codes = Vec::new();
        for _ in 0..n {
            let code = recovery::generate().ok_or(MfaError::Hash)?;
            let c = code.clone();
            let phc = tokio::task::spawn_blocking(move || recovery::hash(&c))
                .await
                .ok()
                .flatten()
                .ok_or(MfaError::Hash)?;
            self.store
                .add(&FactorRow {
                    id: new_id(),
                    user: user.to_string(),
                    kind: "recovery".into(),
                    label: recovery::prefix(&code).to_string(),
                    secret: phc.into_bytes(),
                    created: i64::try_from(now).unwrap_or(i64::MAX),
                    last_step: None,
                })
                .await?;
            codes.push(code);
        }
        Ok(codes)
    }

    /// Uses one recovery code: it is deleted as it is accepted (atomically: of two concurrent
    /// uses only the one that deletes the row wins). Returns the id of the used code.
    pub async fn use_recovery_code(&self, user: &str, code: &str) -> Result<String, MfaError> {
        let Some(code) = recovery::normalise(code) else {
            return Err(MfaError::WrongCode);
        };
        let rows = self.store.list(user).await?;
        for row in rows
            .into_iter()
            .filter(|r| r.kind == "recovery" && r.label == recovery::prefix(&code))
        {
            let phc = String::from_utf8(row.secret).unwrap_or_default();
            let c = code.clone();
            let ok = tokio::task::spawn_blocking(move || recovery::verify(&c, &phc))
                .await
                .map_err(|_| MfaError::Hash)?;
            if ok {
                return if self.store.remove(user, &row.id).await? {
                    Ok(row.id)
                } else {
                    Err(MfaError::Replayed)
                };
            }
        }
        Err(MfaError::WrongCode)
    }

    /// Removes one of the user's factors.
    pub async fn remove(&self, user: &str, id: &str) -> Result<bool, MfaError> {
        Ok(self.store.remove(user, id).await?)
    }
}

/// The key of a user's MFA state in the stores and counters: `provider:subject`. Provider ids
/// cannot contain `:` (config validation), so the pair is unambiguous; two providers' `alice`
/// are two users (M1).
pub fn user_key(provider: &str, subject: &str) -> String {
    format!("{provider}:{subject}")
}

/// Counts and audits one MFA event (never with the code).
pub fn event(
    audit: &crate::audit::Audit,
    factor: &str,
    outcome: &str,
    user: &str,
    client_ip: &str,
) {
    crate::metrics::mfa_event(factor, outcome);
    audit.record(crate::audit::AuditEvent::Mfa {
        user: user.to_string(),
        factor: factor.to_string(),
        outcome: outcome.to_string(),
        client_ip: client_ip.to_string(),
    });
}
