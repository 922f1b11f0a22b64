//! Where audit records, checkpoints and keys are kept: one trait, an SQLite implementation
//! (default, one replica) and a PostgreSQL one (several replicas append to one chain; a
//! transaction-scoped advisory lock serialises appends).

use super::chain::{record_hash, Checkpoint, Event, PublicKey, Record, GENESIS};
use crate::store::StoreUrl;
use async_trait::async_trait;
use sqlx::Row;
use std::sync::Arc;
use thiserror::Error;

/// A database operation failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The database refused or is unreachable.
    #[error("audit store: {0}")]
    Db(#[from] sqlx::Error),
    /// The SQLite file (or its directory) could not be opened.
    #[error("audit store: {0}")]
    Open(#[from] crate::store::OpenError),
}

/// Append-only storage of the chain.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends `event` at `time`, linking it to the current head; returns the stored record.
    async fn append(&self, event: &Event, time: &str) -> Result<Record, StoreError>;
    /// Up to `limit` records with `seq > after`, by `seq`.
    async fn records(&self, after: i64, limit: i64) -> Result<Vec<Record>, StoreError>;
    /// The last record, if any.
    async fn head(&self) -> Result<Option<Record>, StoreError>;
    /// The `seq` of the record whose stored hash is `hash`.
    async fn seq_of_hash(&self, hash: &str) -> Result<Option<i64>, StoreError>;
    /// Stores a checkpoint.
    async fn add_checkpoint(&self, cp: &Checkpoint) -> Result<(), StoreError>;
    /// Every checkpoint, oldest first.
    async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError>;
    /// Publishes a verification key (kept if already there).
    async fn add_key(&self, key: &PublicKey) -> Result<(), StoreError>;
    /// Every published key.
    async fn keys(&self) -> Result<Vec<PublicKey>, StoreError>;
}

/// Opens the store named by the config, creating tables.
pub async fn open(url: &StoreUrl) -> Result<Arc<dyn AuditStore>, StoreError> {
    Ok(match url {
        StoreUrl::Sqlite(path) => Arc::new(SqliteStore::open(path).await?),
        StoreUrl::Postgres(u) => Arc::new(PgStore::open(u).await?),
    })
}

/// Opens an existing store for reading (verify, export): never creates a file or a table, so
/// a wrong path is an error rather than an empty, "intact" log.
pub async fn open_existing(url: &StoreUrl) -> Result<Arc<dyn AuditStore>, StoreError> {
    Ok(match url {
        StoreUrl::Sqlite(path) => {
            let opts = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(path)
                .read_only(true);
            let pool = sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(2)
                .connect_with(opts)
                .await?;
            let s = SqliteStore {
                pool,
                append_lock: tokio::sync::Mutex::new(()),
            };
            s.head().await?;
            Arc::new(s)
        }
        StoreUrl::Postgres(u) => {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(2)
                .connect(u)
                .await?;
            let s = PgStore { pool };
            s.head().await?;
            Arc::new(s)
        }
    })
}

fn record_from(row: &impl RowLike) -> Result<Record, sqlx::Error> {
    Ok(Record {
        seq: row.i64("seq")?,
        time: row.string("time")?,
        kind: row.string("kind")?,
        actor: row.opt_string("actor")?,
        data: row.string("data")?,
        prev_hash: row.string("prev_hash")?,
        hash: row.string("hash")?,
    })
}

fn checkpoint_from(row: &impl RowLike) -> Result<Checkpoint, sqlx::Error> {
    Ok(Checkpoint {
        count: row.i64("count")?,
        head_hash: row.string("head_hash")?,
        time: row.string("time")?,
        key_id: row.string("key_id")?,
        signature: row.string("signature")?,
    })
}

fn key_from(row: &impl RowLike) -> Result<PublicKey, sqlx::Error> {
    Ok(PublicKey {
        key_id: row.string("key_id")?,
        alg: row.string("alg")?,
        public_key: row.string("public_key")?,
        created: row.string("created")?,
    })
}

/// Column access shared by both backends' rows.
trait RowLike {
    fn i64(&self, c: &str) -> Result<i64, sqlx::Error>;
    fn string(&self, c: &str) -> Result<String, sqlx::Error>;
    fn opt_string(&self, c: &str) -> Result<Option<String>, sqlx::Error>;
}

macro_rules! rowlike {
    ($t:ty) => {
        impl RowLike for $t {
            fn i64(&self, c: &str) -> Result<i64, sqlx::Error> {
                self.try_get(c)
            }
            fn string(&self, c: &str) -> Result<String, sqlx::Error> {
                self.try_get(c)
            }
            fn opt_string(&self, c: &str) -> Result<Option<String>, sqlx::Error> {
                self.try_get(c)
            }
        }
    };
}
rowlike!(sqlx::sqlite::SqliteRow);
rowlike!(sqlx::postgres::PgRow);

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS audit_log (seq BIGINT PRIMARY KEY, time TEXT NOT NULL, kind TEXT NOT NULL, actor TEXT, data TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS audit_checkpoints (count BIGINT NOT NULL, head_hash TEXT NOT NULL, time TEXT NOT NULL, key_id TEXT NOT NULL, signature TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS audit_keys (key_id TEXT PRIMARY KEY, alg TEXT NOT NULL, public_key TEXT NOT NULL, created TEXT NOT NULL)",
];

/// SQLite in one file (WAL mode).
pub struct SqliteStore {
    pool: sqlx::SqlitePool,
    append_lock: tokio::sync::Mutex<()>,
}

impl SqliteStore {
    /// Opens or creates the file and its tables.
    pub async fn open(path: &std::path::Path) -> Result<Self, StoreError> {
        let pool = crate::store::open_sqlite(path, 4).await?;
        for s in SCHEMA {
            sqlx::query(*s).execute(&pool).await?;
        }
        // The checkpoint table has an implicit rowid giving insertion order.
        Ok(Self {
            pool,
            append_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// The pool (tests use it to tamper).
    pub fn pool(&self) -> &sqlx::SqlitePool {
        &self.pool
    }
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn append(&self, event: &Event, time: &str) -> Result<Record, StoreError> {
        let _g = self.append_lock.lock().await;
        let mut tx = self.pool.begin().await?;
        let head = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await?;
        let (seq, prev) = match head {
            Some(r) => (
                r.try_get::<i64, _>("seq")? + 1,
                r.try_get::<String, _>("hash")?,
            ),
            None => (1, GENESIS.to_string()),
        };
        let data = event.data.to_string();
        let hash = record_hash(time, &event.kind, event.actor.as_deref(), &data, &prev);
        sqlx::query("INSERT INTO audit_log (seq, time, kind, actor, data, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?)")
            .bind(seq)
            .bind(time)
            .bind(&event.kind)
            .bind(&event.actor)
            .bind(&data)
            .bind(&prev)
            .bind(&hash)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Record {
            seq,
            time: time.into(),
            kind: event.kind.clone(),
            actor: event.actor.clone(),
            data,
            prev_hash: prev,
            hash,
        })
    }

    async fn records(&self, after: i64, limit: i64) -> Result<Vec<Record>, StoreError> {
        let rows = sqlx::query("SELECT seq, time, kind, actor, data, prev_hash, hash FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?")
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(record_from).collect::<Result<_, _>>()?)
    }

    async fn head(&self) -> Result<Option<Record>, StoreError> {
        let row = sqlx::query("SELECT seq, time, kind, actor, data, prev_hash, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(record_from).transpose()?)
    }

    async fn seq_of_hash(&self, hash: &str) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT seq FROM audit_log WHERE hash = ? ORDER BY seq LIMIT 1")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("seq")).transpose()?)
    }

    async fn add_checkpoint(&self, cp: &Checkpoint) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO audit_checkpoints (count, head_hash, time, key_id, signature) VALUES (?, ?, ?, ?, ?)")
            .bind(cp.count)
            .bind(&cp.head_hash)
            .bind(&cp.time)
            .bind(&cp.key_id)
            .bind(&cp.signature)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        let rows = sqlx::query("SELECT count, head_hash, time, key_id, signature FROM audit_checkpoints ORDER BY rowid")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(checkpoint_from).collect::<Result<_, _>>()?)
    }

    async fn add_key(&self, key: &PublicKey) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO audit_keys (key_id, alg, public_key, created) VALUES (?, ?, ?, ?) ON CONFLICT (key_id) DO NOTHING")
            .bind(&key.key_id)
            .bind(&key.alg)
            .bind(&key.public_key)
            .bind(&key.created)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn keys(&self) -> Result<Vec<PublicKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT key_id, alg, public_key, created FROM audit_keys ORDER BY created, key_id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(key_from).collect::<Result<_, _>>()?)
    }
}

/// PostgreSQL, shared by several replicas.
pub struct PgStore {
    pool: sqlx::PgPool,
}

/// Advisory lock key serialising appends across replicas ("PCAU").
const APPEND_LOCK: i64 = 0x5043_4155;

impl PgStore {
    /// Connects and creates tables.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect(url)
            .await?;
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(APPEND_LOCK)
            .execute(&mut *tx)
            .await?;
        for s in SCHEMA {
            sqlx::query(*s).execute(&mut *tx).await?;
        }
        sqlx::query("ALTER TABLE audit_checkpoints ADD COLUMN IF NOT EXISTS id BIGSERIAL")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Self { pool })
    }

    /// The pool (tests use it to tamper).
    pub fn pool(&self) -> &sqlx::PgPool {
        &self.pool
    }
}

#[async_trait]
impl AuditStore for PgStore {
    async fn append(&self, event: &Event, time: &str) -> Result<Record, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(APPEND_LOCK)
            .execute(&mut *tx)
            .await?;
        let head = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await?;
        let (seq, prev) = match head {
            Some(r) => (
                r.try_get::<i64, _>("seq")? + 1,
                r.try_get::<String, _>("hash")?,
            ),
            None => (1, GENESIS.to_string()),
        };
        let data = event.data.to_string();
        let hash = record_hash(time, &event.kind, event.actor.as_deref(), &data, &prev);
        sqlx::query("INSERT INTO audit_log (seq, time, kind, actor, data, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(seq)
            .bind(time)
            .bind(&event.kind)
            .bind(&event.actor)
            .bind(&data)
            .bind(&prev)
            .bind(&hash)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Record {
            seq,
            time: time.into(),
            kind: event.kind.clone(),
            actor: event.actor.clone(),
            data,
            prev_hash: prev,
            hash,
        })
    }

    async fn records(&self, after: i64, limit: i64) -> Result<Vec<Record>, StoreError> {
        let rows = sqlx::query("SELECT seq, time, kind, actor, data, prev_hash, hash FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(record_from).collect::<Result<_, _>>()?)
    }

    async fn head(&self) -> Result<Option<Record>, StoreError> {
        let row = sqlx::query("SELECT seq, time, kind, actor, data, prev_hash, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(record_from).transpose()?)
    }

    async fn seq_of_hash(&self, hash: &str) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT seq FROM audit_log WHERE hash = $1 ORDER BY seq LIMIT 1")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("seq")).transpose()?)
    }

    async fn add_checkpoint(&self, cp: &Checkpoint) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO audit_checkpoints (count, head_hash, time, key_id, signature) VALUES ($1, $2, $3, $4, $5)")
            .bind(cp.count)
            .bind(&cp.head_hash)
            .bind(&cp.time)
            .bind(&cp.key_id)
            .bind(&cp.signature)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        let rows = sqlx::query(
            "SELECT count, head_hash, time, key_id, signature FROM audit_checkpoints ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(checkpoint_from).collect::<Result<_, _>>()?)
    }

    async fn add_key(&self, key: &PublicKey) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO audit_keys (key_id, alg, public_key, created) VALUES ($1, $2, $3, $4) ON CONFLICT (key_id) DO NOTHING")
            .bind(&key.key_id)
            .bind(&key.alg)
            .bind(&key.public_key)
            .bind(&key.created)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn keys(&self) -> Result<Vec<PublicKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT key_id, alg, public_key, created FROM audit_keys ORDER BY created, key_id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(key_from).collect::<Result<_, _>>()?)
    }
}
