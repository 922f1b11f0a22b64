//! The [`Db`] handle: one pool over SQLite or PostgreSQL, opened once per process.

use super::migrate::{self, Feature};
use super::{StoreError, StoreUrl};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyPool, ConnectOptions, Executor, Transaction};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// Which database is behind a [`Db`]. Queries are the same on both; this only selects the
/// dialect of DDL in migrations and how writers are serialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// One SQLite file.
    Sqlite,
    /// A PostgreSQL server shared by several replicas.
    Postgres,
}

/// The shared database. Cloning is cheap (the pool is reference-counted), so every feature
/// keeps its own clone of the one handle the process opened.
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
}

/// Errors of the shared layer itself (opening, migrating) name it `store`.
const STORE: &str = "store";

/// Connections in the pool: enough for the audit writer, MFA requests and checks at once.
const MAX_CONNECTIONS: u32 = 8;

/// SQLite settings every feature relies on: WAL so readers never block the writer, full fsync
/// so an acknowledged audit record or MFA enrolment survives a crash, and a busy timeout so a
/// writer waits for another rather than failing. The `Any` driver builds SQLite connections
/// from a URL, which cannot carry these, so they are set on every new connection.
const SQLITE_PRAGMAS: &str =
    "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000;";

/// For read-only connections: WAL cannot be switched on without writing, and fsync settings
/// do not matter to a reader; waiting for a writer still does.
const SQLITE_READ_PRAGMAS: &str = "PRAGMA busy_timeout = 10000;";

impl Db {
    /// Opens (creating an SQLite file and its directory if missing) and brings the schema of
    /// every feature in `features` up to date, refusing a database migrated by a newer binary.
    pub async fn open(url: &StoreUrl, features: &[&Feature]) -> Result<Self, StoreError> {
        let db = Self::connect(url, false).await?;
        for f in features {
            migrate::apply(&db, f).await?;
        }
        Ok(db)
    }

    /// [`Db::open`] from synchronous start-up code. It runs on a runtime kept for the whole
    /// process, because the connections opened here stay in the pool and are used later from
    /// the serving runtimes: a short-lived runtime would take their sockets down with it.
    pub fn open_blocking(url: &StoreUrl, features: &[&Feature]) -> Result<Self, StoreError> {
        store_runtime()?.block_on(Self::open(url, features))
    }

    /// Runs `fut` to completion on the store runtime (start-up checks that use a [`Db`] opened
    /// by [`Db::open_blocking`]), for the same reason.
    pub fn block_on<F: std::future::Future>(fut: F) -> Result<F::Output, StoreError> {
        Ok(store_runtime()?.block_on(fut))
    }

    /// Opens an existing database read-only (SQLite) without creating or migrating anything,
    /// so that `portcullis audit verify` on a wrong path is an error rather than an empty,
    /// "intact" log.
    pub async fn open_existing(url: &StoreUrl) -> Result<Self, StoreError> {
        Self::connect(url, true).await
    }

    async fn connect(url: &StoreUrl, read_only: bool) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let err = StoreError::of(STORE);
        let (opts, backend, pragmas) = match url {
            StoreUrl::Sqlite(path) => {
                let path = if read_only {
                    path.clone()
                } else {
                    sqlite_dir(path)?
                };
                let opts = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(&path)
                    .create_if_missing(!read_only)
                    .read_only(read_only);
                let any = AnyConnectOptions::from_url(&opts.to_url_lossy()).map_err(&err)?;
                let pragmas = if read_only {
                    SQLITE_READ_PRAGMAS
                } else {
                    SQLITE_PRAGMAS
                };
                (any, Backend::Sqlite, Some(pragmas))
            }
            StoreUrl::Postgres(u) => (
                AnyConnectOptions::from_str(u).map_err(&err)?,
                Backend::Postgres,
                None,
            ),
        };
        let pool = AnyPoolOptions::new()
            .max_connections(if read_only { 2 } else { MAX_CONNECTIONS })
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if let Some(p) = pragmas {
                        conn.execute(p).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(opts)
            .await
            .map_err(&err)?;
        Ok(Self { pool, backend })
    }

    /// The pool, for queries: `sqlx::query(…).execute(db.pool())`.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Begins a transaction that no other writer (in this process or another replica) runs
    /// alongside for the same `key`: `BEGIN IMMEDIATE` takes SQLite's write lock up front (a
    /// read-then-write transaction could otherwise fail to upgrade), and on PostgreSQL a
    /// transaction-scoped advisory lock on `key` is held until commit or rollback. Used for
    /// appends to the audit chain and for migrations.
    pub async fn begin_serialized(
        &self,
        key: i64,
        store: &'static str,
    ) -> Result<Transaction<'static, Any>, StoreError> {
        let err = StoreError::of(store);
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(err),
            Backend::Postgres => {
                let mut tx = self.pool.begin().await.map_err(&err)?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(key)
                    .execute(&mut *tx)
                    .await
                    .map_err(&err)?;
                Ok(tx)
            }
        }
    }
}

/// Creates the SQLite file's directory and returns an absolute path for it: the `Any` driver
/// takes a URL, and a relative path would be read as a host name there.
fn sqlite_dir(path: &Path) -> Result<std::path::PathBuf, StoreError> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Dir(dir.display().to_string(), e))?;
    }
    std::path::absolute(path).map_err(|e| StoreError::Dir(path.display().to_string(), e))
}

/// The runtime that owns connections opened during start-up; never dropped.
fn store_runtime() -> Result<&'static tokio::runtime::Runtime, StoreError> {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    if let Some(rt) = RT.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("store")
        .enable_all()
        .build()
        .map_err(StoreError::Runtime)?;
    Ok(RT.get_or_init(|| rt))
}
