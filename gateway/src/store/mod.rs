//! The shared database (`store:`): SQLite in the data directory by default, PostgreSQL for
//! several replicas. The process opens it once as a [`Db`] and every feature that persists
//! state (audit log, MFA) keeps a clone, so there is one pool, one set of connection settings
//! and one place where schemas are versioned ([`migrate`]). Queries go through sqlx's `Any`
//! driver so that each is written once for both databases (`$n` placeholders work on both).

use crate::config::problems::Problems;
use std::path::{Path, PathBuf};

mod db;
mod error;
pub mod migrate;

pub use db::{Backend, Db};
pub use error::StoreError;
pub use migrate::{Feature, Migration, Sql};

/// Where the database is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// An SQLite file (created on first use).
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL.
    Postgres(String),
}

impl StoreUrl {
    /// Parses `store:`; absent means `sqlite://<data_dir>/portcullis.db`.
    pub fn build(value: Option<&str>, data_dir: &Path, p: &mut Problems) -> Option<Self> {
        let Some(v) = value else {
            return Some(Self::Sqlite(data_dir.join("portcullis.db")));
        };
        if let Some(path) = v
            .strip_prefix("sqlite://")
            .or_else(|| v.strip_prefix("sqlite:"))
        {
            if path.is_empty() {
                p.add(
                    "store",
                    "sqlite:// needs a file path, e.g. sqlite:///var/lib/portcullis/portcullis.db",
                );
                return None;
            }
            return Some(Self::Sqlite(PathBuf::from(path)));
        }
        if v.starts_with("postgres://") || v.starts_with("postgresql://") {
            if url::Url::parse(v).is_err() {
                p.add("store", "is not a valid postgres:// URL");
                return None;
            }
            return Some(Self::Postgres(v.to_string()));
        }
        p.add(
            "store",
            "must be sqlite://PATH or postgres://… (other values are not supported)",
        );
        None
    }

    /// For logs: never prints a password.
    pub fn redacted(&self) -> String {
        match self {
            Self::Sqlite(p) => format!("sqlite://{}", p.display()),
            Self::Postgres(u) => match url::Url::parse(u) {
                Ok(mut url) => {
                    if url.password().is_some() {
                        let _ = url.set_password(Some("***"));
                    }
                    url.to_string()
                }
                Err(_) => "postgres://…".to_string(),
            },
        }
    }
}

/// A fresh, empty PostgreSQL database for a store suite on the server named by
/// `PORTCULLIS_TEST_POSTGRES` (as `tests/run` sets it), or `None` to skip (refused under CI).
#[cfg(test)]
pub async fn test_postgres_database(prefix: &str) -> Option<String> {
    use sqlx::Connection;
    let Ok(url) = std::env::var("PORTCULLIS_TEST_POSTGRES") else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must run the PostgreSQL suites: tests/run sets PORTCULLIS_TEST_POSTGRES"
        );
        eprintln!("PORTCULLIS_TEST_POSTGRES not set: skipping a PostgreSQL store suite");
        return None;
    };
    let name = format!("{prefix}_{}", uuid::Uuid::now_v7().simple());
    let mut admin = sqlx::PgConnection::connect(&url)
        .await
        .expect("connect to PORTCULLIS_TEST_POSTGRES");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create a test database");
    let mut u = url::Url::parse(&url).expect("PORTCULLIS_TEST_POSTGRES is a URL");
    u.set_path(&format!("/{name}"));
    Some(u.to_string())
}

/// The databases every store suite runs against with the same body: SQLite in a temporary
/// directory always, and PostgreSQL when [`test_postgres_database`] provides one. Each comes
/// with `features` migrated and a label for assertion messages; keep the `TempDir` alive.
#[cfg(test)]
pub async fn test_databases(
    prefix: &str,
    features: &[&Feature],
) -> Vec<(&'static str, Db, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = StoreUrl::Sqlite(dir.path().join("sub/portcullis.db"));
    let sqlite = Db::open(&url, features).await.expect("open SQLite");
    let mut dbs = vec![("sqlite", sqlite, Some(dir))];
    if let Some(u) = test_postgres_database(prefix).await {
        let pg = Db::open(&StoreUrl::Postgres(u), features)
            .await
            .expect("open PostgreSQL");
        dbs.push(("postgres", pg, None));
    }
    dbs
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod url_tests {
    use super::*;

    #[test]
    fn store_urls() {
        let mut p = Problems::default();
        let d = Path::new("/data");
        assert_eq!(
            StoreUrl::build(None, d, &mut p),
            Some(StoreUrl::Sqlite("/data/portcullis.db".into()))
        );
        assert_eq!(
            StoreUrl::build(Some("sqlite:///x/y.db"), d, &mut p),
            Some(StoreUrl::Sqlite("/x/y.db".into()))
        );
        let pg = StoreUrl::build(Some("postgres://u:secret@h/db"), d, &mut p).unwrap();
        assert!(!pg.redacted().contains("secret"));
        assert!(p.0.is_empty());
        assert_eq!(StoreUrl::build(Some("mysql://x"), d, &mut p), None);
        assert_eq!(p.0[0].path, "store");
    }
}
