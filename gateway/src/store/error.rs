//! The one error of the shared database, used by every feature that keeps state in it. Each
//! variant names the store ("audit store: …", "mfa store: …") because operators read these in
//! start-up failures and logs, where "database is locked" alone does not say who asked.

use thiserror::Error;

/// A database operation failed, or the database cannot be used by this binary.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The database refused or is unreachable.
    #[error("{store} store: {source}")]
    Db {
        /// The feature (or `store` for the shared layer itself).
        store: &'static str,
        /// What sqlx reported.
        #[source]
        source: sqlx::Error,
    },
    /// The directory of the SQLite file could not be created.
    #[error("store: cannot create {0}: {1}")]
    Dir(String, #[source] std::io::Error),
    /// The runtime that owns start-up connections could not be started.
    #[error("store: cannot start its runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The database was migrated by a newer binary: running on would misread its tables.
    #[error(
        "{feature} store: the database is at schema version {found}, but this portcullis only \
         knows versions up to {known}; run a newer portcullis (or restore a backup taken before \
         the upgrade)"
    )]
    NewerSchema {
        /// The feature whose schema is ahead.
        feature: &'static str,
        /// The highest version recorded in `schema_migrations`.
        found: i64,
        /// The highest version this binary declares.
        known: i64,
    },
    /// A reader that does not migrate (the audit CLI) found a schema older than it reads.
    #[error(
        "{feature} store: the database is at schema version {found}, but this portcullis reads \
         version {known}; start the gateway of this version once to migrate it"
    )]
    OlderSchema {
        /// The feature whose schema is behind.
        feature: &'static str,
        /// The highest version recorded (0: from before versioned schemas).
        found: i64,
        /// The version this binary reads.
        known: i64,
    },
    /// A feature's migration list is malformed (a programming error caught at start).
    #[error("{feature} store: migrations must have increasing versions from 1 (found {version})")]
    BadMigrations {
        /// The feature.
        feature: &'static str,
        /// The first out-of-order version.
        version: i64,
    },
}

impl StoreError {
    /// A `map_err` adapter naming the store: `.map_err(StoreError::of("audit"))`.
    pub fn of(store: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
        move |source| StoreError::Db { store, source }
    }
}
