//! Versioned schemas. Each feature declares its migrations as data ([`Feature`]); at open they
//! are applied in order, each version once, recorded in `schema_migrations (feature, version,
//! applied_at)`. Everything for one feature runs in one transaction that excludes other
//! replicas ([`Db::begin_serialized`]), so two gateways starting at once against one
//! PostgreSQL neither apply a version twice nor see half a schema. Version 1 of a feature is
//! the DDL that older binaries ran on every start (`CREATE … IF NOT EXISTS`), so a database
//! they created is adopted as-is.

use super::{Backend, Db, StoreError};
use sqlx::Row;

/// One SQL statement of a migration, for both databases or only one (DDL types differ:
/// `BLOB`/`BYTEA`, SQLite's implicit `rowid`).
#[derive(Debug, Clone, Copy)]
pub enum Sql {
    /// Runs on both.
    Both(&'static str),
    /// Runs on SQLite only.
    Sqlite(&'static str),
    /// Runs on PostgreSQL only.
    Postgres(&'static str),
}

impl Sql {
    fn for_backend(self, b: Backend) -> Option<&'static str> {
        match (self, b) {
            (Sql::Both(s), _) | (Sql::Sqlite(s), Backend::Sqlite) => Some(s),
            (Sql::Postgres(s), Backend::Postgres) => Some(s),
            _ => None,
        }
    }
}

/// One schema version of a feature. Once released, a migration is never edited: changes go in
/// a new version.
#[derive(Debug)]
pub struct Migration {
    /// 1, 2, 3… in order.
    pub version: i64,
    /// Applied in order, in the same transaction as the version's record.
    pub statements: &'static [Sql],
}

/// A feature's name (its key in `schema_migrations`, and how its errors name the store) and
/// its migrations.
#[derive(Debug)]
pub struct Feature {
    /// `audit`, `mfa`, …
    pub name: &'static str,
    /// Versions 1..=n, in order.
    pub migrations: &'static [Migration],
}

impl Feature {
    /// The newest version this binary knows.
    pub fn latest(&self) -> i64 {
        self.migrations.last().map_or(0, |m| m.version)
    }
}

/// Serialises migrations across replicas ("PCMG").
const MIGRATE_LOCK: i64 = 0x5043_4D47;

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (feature TEXT NOT NULL, version BIGINT NOT NULL, applied_at TEXT NOT NULL, PRIMARY KEY (feature, version))";

/// The version of `feature` recorded in the database (0 if none, or if the database predates
/// `schema_migrations`). For readers that must not migrate (the audit CLI), to say what is
/// wrong instead of failing on a missing table.
pub async fn current(db: &Db, feature: &Feature) -> Result<i64, StoreError> {
    let rows = match sqlx::query("SELECT version FROM schema_migrations WHERE feature = $1")
        .bind(feature.name)
        .fetch_all(db.pool())
        .await
    {
        Ok(rows) => rows,
        // No `schema_migrations` yet: written by a binary from before migrations.
        Err(sqlx::Error::Database(_)) => return Ok(0),
        Err(e) => return Err(StoreError::of(feature.name)(e)),
    };
    let mut v = 0;
    for r in &rows {
        v = v.max(
            r.try_get::<i64, _>("version")
                .map_err(StoreError::of(feature.name))?,
        );
    }
    Ok(v)
}

/// Refuses a database whose schema for `feature` is not exactly what this binary knows: newer
/// ([`StoreError::NewerSchema`]) or not yet migrated ([`StoreError::OlderSchema`]).
pub async fn check_current(db: &Db, feature: &Feature) -> Result<(), StoreError> {
    let found = current(db, feature).await?;
    let known = feature.latest();
    match found.cmp(&known) {
        std::cmp::Ordering::Equal => Ok(()),
        std::cmp::Ordering::Greater => Err(StoreError::NewerSchema {
            feature: feature.name,
            found,
            known,
        }),
        std::cmp::Ordering::Less => Err(StoreError::OlderSchema {
            feature: feature.name,
            found,
            known,
        }),
    }
}

/// Brings `feature` up to its latest version; returns the versions applied now (empty when the
/// database was already current).
pub async fn apply(db: &Db, feature: &Feature) -> Result<Vec<i64>, StoreError> {
    for (i, m) in feature.migrations.iter().enumerate() {
        let expected = i64::try_from(i).unwrap_or(i64::MAX).saturating_add(1);
        if m.version != expected {
            return Err(StoreError::BadMigrations {
                feature: feature.name,
                version: m.version,
            });
        }
    }
    let err = StoreError::of(feature.name);
    let mut tx = db.begin_serialized(MIGRATE_LOCK, feature.name).await?;
    // Inside the lock: concurrent `CREATE TABLE IF NOT EXISTS` can still collide on
    // PostgreSQL's catalogue.
    sqlx::query(CREATE_TABLE)
        .execute(&mut *tx)
        .await
        .map_err(&err)?;
    let rows = sqlx::query("SELECT version FROM schema_migrations WHERE feature = $1")
        .bind(feature.name)
        .fetch_all(&mut *tx)
        .await
        .map_err(&err)?;
    let mut current = 0;
    for r in &rows {
        current = current.max(r.try_get::<i64, _>("version").map_err(&err)?);
    }
    if current > feature.latest() {
        return Err(StoreError::NewerSchema {
            feature: feature.name,
            found: current,
            known: feature.latest(),
        });
    }
    let now = crate::decisionlog::record::rfc3339(std::time::SystemTime::now());
    let mut applied = Vec::new();
    for m in feature.migrations.iter().filter(|m| m.version > current) {
        for s in m
            .statements
            .iter()
            .filter_map(|s| s.for_backend(db.backend()))
        {
            sqlx::query(s).execute(&mut *tx).await.map_err(&err)?;
        }
        sqlx::query(
            "INSERT INTO schema_migrations (feature, version, applied_at) VALUES ($1, $2, $3)",
        )
        .bind(feature.name)
        .bind(m.version)
        .bind(&now)
        .execute(&mut *tx)
        .await
        .map_err(&err)?;
        applied.push(m.version);
    }
    tx.commit().await.map_err(&err)?;
    if !applied.is_empty() {
        tracing::info!(feature = feature.name, versions = ?applied, "store schema migrated");
    }
    Ok(applied)
}
