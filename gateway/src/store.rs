//! The shared database (`store:`): SQLite in the data directory by default, PostgreSQL for
//! several replicas. Modules that persist state (audit log, later MFA enrolments) open their
//! tables through [`StoreUrl`].

use crate::config::problems::Problems;
use std::path::{Path, PathBuf};

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

#[cfg(test)]
mod tests {
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

/// Why the shared SQLite file could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The data directory could not be created.
    #[error("cannot create {0}: {1}")]
    Dir(String, std::io::Error),
    /// SQLite refused the file.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Opens (creating if missing) the shared SQLite file with the settings every store relies on:
/// WAL so readers never block the writer, full fsync so an acknowledged audit record or MFA
/// enrolment survives a crash, and a busy timeout for concurrent writers.
pub async fn open_sqlite(path: &Path, max_connections: u32) -> Result<sqlx::SqlitePool, OpenError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| OpenError::Dir(dir.display().to_string(), e))?;
    }
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
        .busy_timeout(std::time::Duration::from_secs(10));
    Ok(sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(max_connections)
        .connect_with(opts)
        .await?)
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
