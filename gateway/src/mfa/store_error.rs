//! The error of the MFA store, shared by its enrolment (`store`) and code/device (`otp_store`)
//! tables, so that neither module depends on the other's types.

use thiserror::Error;

/// A database operation failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The database refused or is unreachable.
    #[error("mfa store: {0}")]
    Db(#[from] sqlx::Error),
    /// The SQLite file (or its directory) could not be opened.
    #[error("mfa store: {0}")]
    Open(#[from] crate::store::OpenError),
}
