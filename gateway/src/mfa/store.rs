//! Where enrolments live, in the shared database ([`Db`]): one implementation for SQLite and
//! PostgreSQL. Rows hold secrets sealed by [`super::seal`]; this layer never sees a plaintext
//! secret. Single use of TOTP steps is an atomic conditional update, so two replicas cannot
//! both accept the same code.

use crate::store::{Db, Feature, Migration, Sql};
use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::Row;
use std::sync::Arc;

pub use crate::store::StoreError;

/// How the MFA store's errors name it.
pub(super) const STORE: &str = "mfa";

/// The MFA tables. Version 1 is what older binaries created on every start, kept
/// `IF NOT EXISTS` so their databases are adopted.
pub static MIGRATIONS: Feature = Feature {
    name: STORE,
    migrations: &[Migration {
        version: 1,
        statements: &[
            Sql::Sqlite("CREATE TABLE IF NOT EXISTS mfa_factors (id TEXT PRIMARY KEY, user_id TEXT NOT NULL, kind TEXT NOT NULL, label TEXT NOT NULL, secret BLOB NOT NULL, created BIGINT NOT NULL, last_step BIGINT)"),
            Sql::Postgres("CREATE TABLE IF NOT EXISTS mfa_factors (id TEXT PRIMARY KEY, user_id TEXT NOT NULL, kind TEXT NOT NULL, label TEXT NOT NULL, secret BYTEA NOT NULL, created BIGINT NOT NULL, last_step BIGINT)"),
            Sql::Both("CREATE INDEX IF NOT EXISTS mfa_factors_user ON mfa_factors (user_id)"),
            Sql::Both("CREATE TABLE IF NOT EXISTS mfa_used_codes (nonce TEXT PRIMARY KEY, expires BIGINT NOT NULL)"),
            Sql::Both("CREATE INDEX IF NOT EXISTS mfa_used_codes_expires ON mfa_used_codes (expires)"),
            Sql::Both("CREATE TABLE IF NOT EXISTS mfa_devices (id TEXT PRIMARY KEY, user_id TEXT NOT NULL, token_hash TEXT NOT NULL UNIQUE, method TEXT NOT NULL, label TEXT NOT NULL, created BIGINT NOT NULL, expires BIGINT NOT NULL, last_used BIGINT NOT NULL)"),
            Sql::Both("CREATE INDEX IF NOT EXISTS mfa_devices_user ON mfa_devices (user_id)"),
        ],
    }],
};

/// One enrolled factor as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactorRow {
    /// Random id.
    pub id: String,
    /// The user it belongs to (session identity `user`).
    pub user: String,
    /// `totp`, `webauthn`, `email`, `sms`, `recovery`.
    pub kind: String,
    /// Shown to the user ("Authenticator app").
    pub label: String,
    /// Sealed secret.
    pub secret: Vec<u8>,
    /// Unix seconds.
    pub created: i64,
    /// Last TOTP step accepted (single use), if any.
    pub last_step: Option<i64>,
}

/// Storage of enrolments (and, through [`super::otp_store::OtpStore`], of used one-time
/// codes and remembered devices in the same database).
#[async_trait]
pub trait MfaStore: Send + Sync + super::otp_store::OtpStore {
    /// Adds a factor.
    async fn add(&self, f: &FactorRow) -> Result<(), StoreError>;
    /// The user's factors, oldest first.
    async fn list(&self, user: &str) -> Result<Vec<FactorRow>, StoreError>;
    /// Removes one of the user's factors; false if there was none.
    async fn remove(&self, user: &str, id: &str) -> Result<bool, StoreError>;
    /// Records `step` as used if it is later than every step used before; false means the
    /// code was already used (or an older one was), and must be refused.
    async fn claim_step(&self, user: &str, id: &str, step: i64) -> Result<bool, StoreError>;
    /// Replaces a factor's sealed secret and counter (`last_step`) only if the counter is still
    /// `expected` (compare-and-swap): false means another use changed it first, or the factor is
    /// gone, and the use must be refused. WebAuthn keeps the signature counter here so that two
    /// replicas cannot both accept assertions that move it from the same value.
    async fn swap_secret(
        &self,
        user: &str,
        id: &str,
        expected: Option<i64>,
        secret: &[u8],
        counter: i64,
    ) -> Result<bool, StoreError>;
    /// How many enrolments are owned by a bare user name — written by a version before
    /// factors were keyed by `provider:subject` (issue 10, M1). Such rows match nobody, which
    /// would make their users look first-time (enrolment without a second factor), so the
    /// gateway refuses to start while any remain.
    async fn legacy_owners(&self) -> Result<i64, StoreError>;
}

/// The MFA store over the shared database, whose schema [`MIGRATIONS`] brought up to date.
pub fn over(db: &Db) -> Arc<dyn MfaStore> {
    Arc::new(SqlStore { db: db.clone() })
}

/// The one implementation, for both databases (its one-time-code and device half is in
/// [`super::otp_store`]).
pub struct SqlStore {
    pub(super) db: Db,
}

pub(super) fn err(e: sqlx::Error) -> StoreError {
    StoreError::of(STORE)(e)
}

fn factor_row(r: &AnyRow) -> Result<FactorRow, sqlx::Error> {
    Ok(FactorRow {
        id: r.try_get("id")?,
        user: r.try_get("user_id")?,
        kind: r.try_get("kind")?,
        label: r.try_get("label")?,
        secret: r.try_get("secret")?,
        created: r.try_get("created")?,
        last_step: r.try_get("last_step")?,
    })
}

/// The SQL is portable: `$n` placeholders each used once, in order (SQLite numbers them the
/// same way), and `IS NOT DISTINCT FROM` is NULL-safe equality in both.
#[async_trait]
impl MfaStore for SqlStore {
    async fn add(&self, f: &FactorRow) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO mfa_factors (id, user_id, kind, label, secret, created, last_step) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(&f.id)
            .bind(&f.user)
            .bind(&f.kind)
            .bind(&f.label)
            .bind(&f.secret)
            .bind(f.created)
            .bind(f.last_step)
            .execute(self.db.pool())
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn list(&self, user: &str) -> Result<Vec<FactorRow>, StoreError> {
        let rows = sqlx::query("SELECT id, user_id, kind, label, secret, created, last_step FROM mfa_factors WHERE user_id = $1 ORDER BY created, id")
            .bind(user)
            .fetch_all(self.db.pool())
            .await
            .map_err(err)?;
        rows.iter()
            .map(factor_row)
            .collect::<Result<_, _>>()
            .map_err(err)
    }

    async fn remove(&self, user: &str, id: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM mfa_factors WHERE user_id = $1 AND id = $2")
            .bind(user)
            .bind(id)
            .execute(self.db.pool())
            .await
            .map_err(err)?;
        Ok(r.rows_affected() == 1)
    }

    async fn claim_step(&self, user: &str, id: &str, step: i64) -> Result<bool, StoreError> {
        let r = sqlx::query("UPDATE mfa_factors SET last_step = $1 WHERE user_id = $2 AND id = $3 AND (last_step IS NULL OR last_step < $4)")
            .bind(step)
            .bind(user)
            .bind(id)
            .bind(step)
            .execute(self.db.pool())
            .await
            .map_err(err)?;
        Ok(r.rows_affected() == 1)
    }

    async fn swap_secret(
        &self,
        user: &str,
        id: &str,
        expected: Option<i64>,
        secret: &[u8],
        counter: i64,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query("UPDATE mfa_factors SET secret = $1, last_step = $2 WHERE user_id = $3 AND id = $4 AND last_step IS NOT DISTINCT FROM $5")
            .bind(secret)
            .bind(counter)
            .bind(user)
            .bind(id)
            .bind(expected)
            .execute(self.db.pool())
            .await
            .map_err(err)?;
        Ok(r.rows_affected() == 1)
    }

    async fn legacy_owners(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM mfa_factors WHERE user_id NOT LIKE '%:%'")
            .fetch_one(self.db.pool())
            .await
            .map_err(err)?;
        row.try_get::<i64, _>("n").map_err(err)
    }
}
