//! Where audit records, checkpoints and keys are kept, in the shared database ([`Db`]). Appends
//! run in a transaction that excludes every other writer of the chain, in this process or
//! another replica ([`Db::begin_serialized`]), so each record links to the real head.

use super::chain::{record_hash, Checkpoint, Event, PublicKey, Record, GENESIS};
pub use crate::store::StoreError;
use crate::store::{Db, Feature, Migration, Sql};
use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::Row;
use std::sync::Arc;

/// How the audit log's errors name the store.
const STORE: &str = "audit";

/// The audit tables. Version 1 is what older binaries created on every start, kept
/// `IF NOT EXISTS` so their databases are adopted (on PostgreSQL they had added the
/// `id` column that orders checkpoints; SQLite has its implicit `rowid`). Version 2 gives that
/// insertion order one name on both databases, so reading checkpoints is one query.
pub static MIGRATIONS: Feature = Feature {
    name: STORE,
    migrations: &[
        Migration {
            version: 1,
            statements: &[
                Sql::Both("CREATE TABLE IF NOT EXISTS audit_log (seq BIGINT PRIMARY KEY, time TEXT NOT NULL, kind TEXT NOT NULL, actor TEXT, data TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL)"),
                Sql::Both("CREATE TABLE IF NOT EXISTS audit_checkpoints (count BIGINT NOT NULL, head_hash TEXT NOT NULL, time TEXT NOT NULL, key_id TEXT NOT NULL, signature TEXT NOT NULL)"),
                Sql::Both("CREATE TABLE IF NOT EXISTS audit_keys (key_id TEXT PRIMARY KEY, alg TEXT NOT NULL, public_key TEXT NOT NULL, created TEXT NOT NULL)"),
                Sql::Postgres("ALTER TABLE audit_checkpoints ADD COLUMN IF NOT EXISTS id BIGSERIAL"),
            ],
        },
        Migration {
            version: 2,
            statements: &[
                Sql::Sqlite("CREATE VIEW IF NOT EXISTS audit_checkpoints_ordered AS SELECT rowid AS position, count, head_hash, time, key_id, signature FROM audit_checkpoints"),
                Sql::Postgres("CREATE OR REPLACE VIEW audit_checkpoints_ordered AS SELECT id AS position, count, head_hash, time, key_id, signature FROM audit_checkpoints"),
            ],
        },
    ],
};

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

/// The audit log over the shared database, whose schema [`MIGRATIONS`] brought up to date.
pub fn over(db: &Db) -> Arc<dyn AuditStore> {
    Arc::new(SqlStore { db: db.clone() })
}

/// Opens an existing store for reading (verify, export): never creates a file or a table, so
/// a wrong path is an error rather than an empty, "intact" log; a schema this binary does not
/// read exactly (not yet migrated, or migrated by a newer one) is refused by name.
pub async fn open_existing(
    url: &crate::store::StoreUrl,
) -> Result<Arc<dyn AuditStore>, StoreError> {
    let s = SqlStore {
        db: Db::open_existing(url).await?,
    };
    s.head().await?;
    crate::store::migrate::check_current(&s.db, &MIGRATIONS).await?;
    Ok(Arc::new(s))
}

/// The one implementation, for both databases.
struct SqlStore {
    db: Db,
}

/// Serialises appends across replicas ("PCAU").
const APPEND_LOCK: i64 = 0x5043_4155;

fn err(e: sqlx::Error) -> StoreError {
    StoreError::of(STORE)(e)
}

fn record_from(row: &AnyRow) -> Result<Record, sqlx::Error> {
    Ok(Record {
        seq: row.try_get("seq")?,
        time: row.try_get("time")?,
        kind: row.try_get("kind")?,
        actor: row.try_get("actor")?,
        data: row.try_get("data")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

fn checkpoint_from(row: &AnyRow) -> Result<Checkpoint, sqlx::Error> {
    Ok(Checkpoint {
        count: row.try_get("count")?,
        head_hash: row.try_get("head_hash")?,
        time: row.try_get("time")?,
        key_id: row.try_get("key_id")?,
        signature: row.try_get("signature")?,
    })
}

fn key_from(row: &AnyRow) -> Result<PublicKey, sqlx::Error> {
    Ok(PublicKey {
        key_id: row.try_get("key_id")?,
        alg: row.try_get("alg")?,
        public_key: row.try_get("public_key")?,
        created: row.try_get("created")?,
    })
}

#[async_trait]
impl AuditStore for SqlStore {
    async fn append(&self, event: &Event, time: &str) -> Result<Record, StoreError> {
        let mut tx = self.db.begin_serialized(APPEND_LOCK, STORE).await?;
        let head = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await
            .map_err(err)?;
        let (seq, prev) = match head {
            Some(r) => (
                r.try_get::<i64, _>("seq").map_err(err)? + 1,
                r.try_get::<String, _>("hash").map_err(err)?,
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
            .await
            .map_err(err)?;
        tx.commit().await.map_err(err)?;
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
            .fetch_all(self.db.pool())
            .await
            .map_err(err)?;
        rows.iter()
            .map(record_from)
            .collect::<Result<_, _>>()
            .map_err(err)
    }

    async fn head(&self) -> Result<Option<Record>, StoreError> {
        let row = sqlx::query("SELECT seq, time, kind, actor, data, prev_hash, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(self.db.pool())
            .await
            .map_err(err)?;
        row.as_ref().map(record_from).transpose().map_err(err)
    }

    async fn seq_of_hash(&self, hash: &str) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT seq FROM audit_log WHERE hash = $1 ORDER BY seq LIMIT 1")
            .bind(hash)
            .fetch_optional(self.db.pool())
            .await
            .map_err(err)?;
        row.map(|r| r.try_get("seq")).transpose().map_err(err)
    }

    async fn add_checkpoint(&self, cp: &Checkpoint) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO audit_checkpoints (count, head_hash, time, key_id, signature) VALUES ($1, $2, $3, $4, $5)")
            .bind(cp.count)
            .bind(&cp.head_hash)
            .bind(&cp.time)
            .bind(&cp.key_id)
            .bind(&cp.signature)
            .execute(self.db.pool())
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        let rows = sqlx::query("SELECT count, head_hash, time, key_id, signature FROM audit_checkpoints_ordered ORDER BY position")
            .fetch_all(self.db.pool())
            .await
            .map_err(err)?;
        rows.iter()
            .map(checkpoint_from)
            .collect::<Result<_, _>>()
            .map_err(err)
    }

    async fn add_key(&self, key: &PublicKey) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO audit_keys (key_id, alg, public_key, created) VALUES ($1, $2, $3, $4) ON CONFLICT (key_id) DO NOTHING")
            .bind(&key.key_id)
            .bind(&key.alg)
            .bind(&key.public_key)
            .bind(&key.created)
            .execute(self.db.pool())
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn keys(&self) -> Result<Vec<PublicKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT key_id, alg, public_key, created FROM audit_keys ORDER BY created, key_id",
        )
        .fetch_all(self.db.pool())
        .await
        .map_err(err)?;
        rows.iter()
            .map(key_from)
            .collect::<Result<_, _>>()
            .map_err(err)
    }
}
