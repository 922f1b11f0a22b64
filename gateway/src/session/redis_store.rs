//! Sessions in Redis, shared by every replica: `pc:s:{sid}` holds the record as JSON with a TTL;
//! `pc:i:{idp}:sub:{sub}` and `pc:i:{idp}:sid:{sid}` are sets of session ids so that a
//! back-channel logout on one replica revokes the sessions served by all of them.

use super::store::{revocation_matches, SessionStore, StoreError};
use super::SessionRecord;
use async_trait::async_trait;
use redis::aio::ConnectionManager;
use std::time::Duration;
use tokio::sync::OnceCell;

/// Every command gives up after this long: a slow store must not hold requests forever.
const TIMEOUT: Duration = Duration::from_secs(2);

/// One lazily opened, shared Redis connection with a timeout on every command. Used by the
/// session store and by everything else that shares state through the same Redis (MFA attempt
/// counters), so every replica-shared piece uses the operator's one `session.store` URL.
pub struct RedisConn {
    client: redis::Client,
    conn: OnceCell<ConnectionManager>,
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedisConn")
    }
}

impl RedisConn {
    /// A connection to `url` (`redis://host:port/db`), opened on first use.
    pub fn new(url: &str) -> Result<Self, redis::RedisError> {
        Ok(Self {
            client: redis::Client::open(url)?,
            conn: OnceCell::new(),
        })
    }

    async fn conn(&self) -> Result<ConnectionManager, String> {
        let c = self
            .conn
            .get_or_try_init(|| async {
                tokio::time::timeout(TIMEOUT, self.client.get_connection_manager())
                    .await
                    .map_err(|_| "connect timed out".to_string())?
                    .map_err(|e| e.to_string())
            })
            .await?;
        Ok(c.clone())
    }

    async fn bounded<T>(
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, String> {
        tokio::time::timeout(TIMEOUT, fut)
            .await
            .map_err(|_| "command timed out".to_string())?
            .map_err(|e| e.to_string())
    }

    /// Runs one command.
    pub async fn run<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, String> {
        let mut c = self.conn().await?;
        Self::bounded(cmd.query_async::<T>(&mut c)).await
    }

    /// Runs a pipeline (atomic if the pipeline says so).
    pub async fn pipe(&self, p: &redis::Pipeline) -> Result<(), String> {
        let mut c = self.conn().await?;
        Self::bounded(p.query_async::<()>(&mut c)).await
    }

    /// Runs a Lua script (atomic on the server).
    pub async fn invoke<T: redis::FromRedisValue>(
        &self,
        s: &redis::ScriptInvocation<'_>,
    ) -> Result<T, String> {
        let mut c = self.conn().await?;
        Self::bounded(s.invoke_async::<T>(&mut c)).await
    }
}

/// A Redis-backed store.
#[derive(Debug)]
pub struct RedisStore {
    conn: RedisConn,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl RedisStore {
    /// A store for `url` (`redis://host:port/db`); connects on first use.
    pub fn new(url: &str) -> Result<Self, StoreError> {
        Ok(Self {
            conn: RedisConn::new(url).map_err(unavailable)?,
        })
    }

    async fn run<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        self.conn.run(cmd).await.map_err(unavailable)
    }

    async fn pipe(&self, p: &redis::Pipeline) -> Result<(), StoreError> {
        self.conn.pipe(p).await.map_err(unavailable)
    }
}

fn key(sid: &str) -> String {
    format!("pc:s:{sid}")
}

fn index_keys(rec: &SessionRecord) -> Vec<String> {
    let mut v = vec![format!("pc:i:{}:sub:{}", rec.idp, rec.sub)];
    if let Some(s) = &rec.idp_sid {
        v.push(format!("pc:i:{}:sid:{s}", rec.idp));
    }
    v
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn load(&self, sid: &str) -> Result<Option<SessionRecord>, StoreError> {
        let raw: Option<String> = self.run(redis::cmd("GET").arg(key(sid))).await?;
        raw.map(|r| serde_json::from_str(&r).map_err(|e| StoreError::Corrupt(e.to_string())))
            .transpose()
    }

    async fn save(&self, sid: &str, rec: &SessionRecord, ttl_secs: u64) -> Result<(), StoreError> {
        let json = serde_json::to_string(rec).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let ttl = ttl_secs.max(1);
        let mut p = redis::pipe();
        p.atomic();
        p.cmd("SET")
            .arg(key(sid))
            .arg(json)
            .arg("EX")
            .arg(ttl)
            .ignore();
        for k in index_keys(rec) {
            p.cmd("SADD").arg(&k).arg(sid).ignore();
            p.cmd("EXPIRE").arg(&k).arg(ttl).arg("GT").ignore();
            p.cmd("EXPIRE").arg(&k).arg(ttl).arg("NX").ignore();
        }
        self.pipe(&p).await
    }

    async fn update(
        &self,
        sid: &str,
        rec: &SessionRecord,
        ttl_secs: u64,
    ) -> Result<bool, StoreError> {
        let json = serde_json::to_string(rec).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        // XX: only if the key still exists, atomically on the server (L4).
        let set: Option<String> = self
            .run(
                redis::cmd("SET")
                    .arg(key(sid))
                    .arg(json)
                    .arg("EX")
                    .arg(ttl_secs.max(1))
                    .arg("XX"),
            )
            .await?;
        if set.is_none() {
            return Ok(false);
        }
        // The indexes only point at ids; a stale entry is skipped by `revoke`.
        let ttl = ttl_secs.max(1);
        let mut p = redis::pipe();
        for k in index_keys(rec) {
            p.cmd("SADD").arg(&k).arg(sid).ignore();
            p.cmd("EXPIRE").arg(&k).arg(ttl).arg("GT").ignore();
            p.cmd("EXPIRE").arg(&k).arg(ttl).arg("NX").ignore();
        }
        self.pipe(&p).await?;
        Ok(true)
    }

    async fn remove(&self, sid: &str) -> Result<bool, StoreError> {
        let n: i64 = self.run(redis::cmd("DEL").arg(key(sid))).await?;
        Ok(n > 0)
    }

    async fn revoke(
        &self,
        idp: &str,
        sub: Option<&str>,
        idp_sid: Option<&str>,
    ) -> Result<usize, StoreError> {
        // With both `sid` and `sub`, the subject's sessions recorded without a provider
        // session id end too (`revocation_matches`), so both indexes are read.
        let mut indexes = Vec::new();
        if let Some(s) = idp_sid {
            indexes.push(format!("pc:i:{idp}:sid:{s}"));
        }
        if let Some(u) = sub {
            indexes.push(format!("pc:i:{idp}:sub:{u}"));
        }
        let mut sids = std::collections::BTreeSet::new();
        for index in indexes {
            let found: Vec<String> = self.run(redis::cmd("SMEMBERS").arg(&index)).await?;
            sids.extend(found);
        }
        let mut n = 0;
        for sid in sids {
            if let Some(rec) = self.load(&sid).await? {
                if revocation_matches(&rec, idp, sub, idp_sid) && self.remove(&sid).await? {
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    async fn seen_once(&self, key: &str) -> Result<bool, StoreError> {
        let n: i64 = self
            .run(redis::cmd("EXISTS").arg(format!("pc:once:{key}")))
            .await?;
        Ok(n > 0)
    }

    async fn record_once(&self, key: &str, ttl_secs: u64) -> Result<bool, StoreError> {
        let set: Option<String> = self
            .run(
                redis::cmd("SET")
                    .arg(format!("pc:once:{key}"))
                    .arg(1)
                    .arg("EX")
                    .arg(ttl_secs.max(1))
                    .arg("NX"),
            )
            .await?;
        Ok(set.is_some())
    }

    async fn count(&self) -> Result<usize, StoreError> {
        let mut n = 0usize;
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = self
                .run(
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg("pc:s:*")
                        .arg("COUNT")
                        .arg(1000),
                )
                .await?;
            n += keys.len();
            if next == 0 {
                return Ok(n);
            }
            cursor = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Finding L4 on Redis: see `store::tests::write_back_after_delete_does_not_resurrect`.
    #[tokio::test]
    async fn redis_write_back_after_delete_does_not_resurrect() {
        let Some(server) = crate::mfa::limiter::tests::redis_server() else {
            assert!(std::env::var("CI").is_err(), "CI needs redis-server");
            eprintln!("redis-server not installed: skipping");
            return;
        };
        let s = RedisStore::new(&format!("redis://127.0.0.1:{}/0", server.1)).unwrap();
        crate::session::store::tests::write_back_after_delete_does_not_resurrect(&s).await;
    }
}
