//! The MFA store's tables for one-time codes and remembered devices, in the shared database: `mfa_used_codes` records the nonce of every accepted code until it
//! expires (an insert that conflicts means the code was used already, on any replica), and
//! `mfa_devices` holds remembered devices by the SHA-256 of their token (the token itself is
//! only in the user's cookie). Deleting a device row revokes it at once on every replica,
//! because every use reads the row.

use super::store::{err, SqlStore};
use crate::store::StoreError;
use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::Row;

/// A remembered device as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRow {
    /// Random id (shown in the revoke form).
    pub id: String,
    /// The user it belongs to.
    pub user: String,
    /// SHA-256 of the cookie token, hex.
    pub token_hash: String,
    /// The factor proven when the device was remembered (`totp`, `email`, `sms`).
    pub method: String,
    /// A label from the browser's User-Agent, to recognise it in the list.
    pub label: String,
    /// Unix seconds.
    pub created: i64,
    /// Unix seconds; the device is not honoured from then on.
    pub expires: i64,
    /// Unix seconds.
    pub last_used: i64,
}

/// Single use of one-time codes, and remembered devices.
#[async_trait]
pub trait OtpStore: Send + Sync {
    /// Records `nonce` as used until `expires`; false if it was used before. Forgets nonces
    /// that expired before `now`.
    async fn claim_code(&self, nonce: &str, expires: i64, now: i64) -> Result<bool, StoreError>;
    /// Adds a remembered device.
    async fn add_device(&self, d: &DeviceRow) -> Result<(), StoreError>;
    /// The device with this token hash, if any (expired ones included: the caller checks).
    async fn device(&self, token_hash: &str) -> Result<Option<DeviceRow>, StoreError>;
    /// Sets a device's last use.
    async fn touch_device(&self, id: &str, now: i64) -> Result<(), StoreError>;
    /// The user's devices that have not expired at `now`, newest first.
    async fn devices(&self, user: &str, now: i64) -> Result<Vec<DeviceRow>, StoreError>;
    /// Removes one of the user's devices; false if there was none.
    async fn remove_device(&self, user: &str, id: &str) -> Result<bool, StoreError>;
}

/// The columns of `mfa_devices`, in [`DeviceRow`] order (a macro so queries stay `&'static`).
macro_rules! device_columns {
    () => {
        "id, user_id, token_hash, method, label, created, expires, last_used"
    };
}

fn device_row(r: &AnyRow) -> Result<DeviceRow, sqlx::Error> {
    Ok(DeviceRow {
        id: r.try_get("id")?,
        user: r.try_get("user_id")?,
        token_hash: r.try_get("token_hash")?,
        method: r.try_get("method")?,
        label: r.try_get("label")?,
        created: r.try_get("created")?,
        expires: r.try_get("expires")?,
        last_used: r.try_get("last_used")?,
    })
}

/// The same store as the enrolments (tables created by [`super::store::MIGRATIONS`]).
#[async_trait]
impl OtpStore for SqlStore {
    async fn claim_code(&self, nonce: &str, expires: i64, now: i64) -> Result<bool, StoreError> {
        sqlx::query("DELETE FROM mfa_used_codes WHERE expires < $1")
            .bind(now)
            .execute(self.db.pool())
            .await
            .map_err(err)?;
        let r = sqlx::query(
            "INSERT INTO mfa_used_codes (nonce, expires) VALUES ($1, $2) ON CONFLICT (nonce) DO NOTHING",
        )
        .bind(nonce)
        .bind(expires)
        .execute(self.db.pool())
        .await
        .map_err(err)?;
        Ok(r.rows_affected() == 1)
    }

    async fn add_device(&self, d: &DeviceRow) -> Result<(), StoreError> {
        sqlx::query(concat!(
            "INSERT INTO mfa_devices (",
            device_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(&d.id)
        .bind(&d.user)
        .bind(&d.token_hash)
        .bind(&d.method)
        .bind(&d.label)
        .bind(d.created)
        .bind(d.expires)
        .bind(d.last_used)
        .execute(self.db.pool())
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn device(&self, token_hash: &str) -> Result<Option<DeviceRow>, StoreError> {
        let r = sqlx::query(concat!(
            "SELECT ",
            device_columns!(),
            " FROM mfa_devices WHERE token_hash = $1"
        ))
        .bind(token_hash)
        .fetch_optional(self.db.pool())
        .await
        .map_err(err)?;
        r.as_ref().map(device_row).transpose().map_err(err)
    }

    async fn touch_device(&self, id: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE mfa_devices SET last_used = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(self.db.pool())
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn devices(&self, user: &str, now: i64) -> Result<Vec<DeviceRow>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            device_columns!(),
            " FROM mfa_devices WHERE user_id = $1 AND expires > $2 ORDER BY created DESC, id"
        ))
        .bind(user)
        .bind(now)
        .fetch_all(self.db.pool())
        .await
        .map_err(err)?;
        rows.iter()
            .map(device_row)
            .collect::<Result<_, _>>()
            .map_err(err)
    }

    async fn remove_device(&self, user: &str, id: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM mfa_devices WHERE user_id = $1 AND id = $2")
            .bind(user)
            .bind(id)
            .execute(self.db.pool())
            .await
            .map_err(err)?;
        Ok(r.rows_affected() == 1)
    }
}

#[cfg(test)]
mod tests;
