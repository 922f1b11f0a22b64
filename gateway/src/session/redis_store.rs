//! Sessions in Redis, shared by every replica: `pc:s:{sid}` holds the record as JSON with a TTL;
//! `pc:i:{idp}:sub:{sub}` and `pc:i:{idp}:sid:{sid}` are sets of session ids so that a
//! back-channel logout on one replica revokes the sessions served by all of them. Every removed
//! session id is published on [`ENDED_CHANNEL`] so that every replica's open tunnels of that
//! session close at once rather than at their next poll.

use super::store::{
    index_keys, revocation_index_keys, revocation_matches, Ended, Notices, SessionStore, StoreError,
};
use super::SessionRecord;
use async_trait::async_trait;
use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::{broadcast, OnceCell};

/// The pub/sub channel that carries removed session ids between replicas.
pub const ENDED_CHANNEL: &str = "portcullis:revoked";

/// Wait before subscribing again after the subscription failed or was lost, doubled after
/// each failure up to [`RESUBSCRIBE_MAX`] (a store that stays down is not hammered, nor the log
/// flooded); tunnels keep polling meanwhile.
const RESUBSCRIBE: Duration = Duration::from_millis(250);
const RESUBSCRIBE_MAX: Duration = Duration::from_secs(8);

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
    conn: Arc<RedisConn>,
    /// Notices heard on [`ENDED_CHANNEL`], for this process's tunnels.
    notices: Arc<Notices>,
    /// Whether the one subscriber task of this store runs.
    listening: AtomicBool,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl RedisStore {
    /// A store for `url` (`redis://host:port/db`); connects on first use.
    pub fn new(url: &str) -> Result<Self, StoreError> {
        Ok(Self::over(Arc::new(
            RedisConn::new(url).map_err(unavailable)?,
        )))
    }

    /// A store over a connection the process shares with its other Redis users (the MFA and
    /// password attempt limiters): one client, one connection manager per process.
    pub fn over(conn: Arc<RedisConn>) -> Self {
        Self {
            conn,
            notices: Arc::default(),
            listening: AtomicBool::new(false),
        }
    }

    /// Starts the subscriber task once, from the first caller inside a tokio runtime (the
    /// store is built before the server's runtimes exist).
    fn listen(&self) {
        if tokio::runtime::Handle::try_current().is_err()
            || self.listening.swap(true, Ordering::AcqRel)
        {
            return;
        }
        tokio::spawn(subscribe(
            self.conn.client.clone(),
            Arc::downgrade(&self.notices),
        ));
    }

    async fn run<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        self.conn.run(cmd).await.map_err(unavailable)
    }

    async fn pipe(&self, p: &redis::Pipeline) -> Result<(), StoreError> {
        self.conn.pipe(p).await.map_err(unavailable)
    }
}

/// Relays [`ENDED_CHANNEL`] to `notices` until the store is dropped, subscribing again after
/// every loss. Each (re)subscription is followed by [`Ended::Recheck`]: a notice published
/// while nobody listened is not replayed by Redis, so watchers look at the store instead.
async fn subscribe(client: redis::Client, notices: Weak<Notices>) {
    let mut wait = RESUBSCRIBE;
    loop {
        let subscribed = async {
            let mut ps = client.get_async_pubsub().await?;
            ps.subscribe(ENDED_CHANNEL).await?;
            Ok::<_, redis::RedisError>(ps)
        };
        match tokio::time::timeout(TIMEOUT, subscribed).await {
            Ok(Ok(mut ps)) => {
                wait = RESUBSCRIBE;
                let Some(n) = notices.upgrade() else { return };
                n.recheck();
                drop(n);
                let mut messages = ps.on_message();
                while let Some(m) = messages.next().await {
                    let Some(n) = notices.upgrade() else { return };
                    match m.get_payload::<String>() {
                        Ok(sid) => n.sid(&sid),
                        Err(_) => n.recheck(),
                    }
                }
                tracing::warn!("session store: revocation subscription lost; resubscribing");
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "session store: cannot subscribe to revocations")
            }
            Err(_) => tracing::warn!("session store: subscribing to revocations timed out"),
        }
        let Some(n) = notices.upgrade() else { return };
        n.recheck();
        drop(n);
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(RESUBSCRIBE_MAX);
    }
}

fn key(sid: &str) -> String {
    format!("pc:s:{sid}")
}

/// Index keys in Redis: the shared [`index_keys`] names under the `pc:` prefix.
fn prefixed(keys: Vec<String>) -> Vec<String> {
    keys.into_iter().map(|k| format!("pc:{k}")).collect()
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
        for k in prefixed(index_keys(rec)) {
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
        for k in prefixed(index_keys(rec)) {
            p.cmd("SADD").arg(&k).arg(sid).ignore();
            p.cmd("EXPIRE").arg(&k).arg(ttl).arg("GT").ignore();
            p.cmd("EXPIRE").arg(&k).arg(ttl).arg("NX").ignore();
        }
        self.pipe(&p).await?;
        Ok(true)
    }

    async fn remove(&self, sid: &str) -> Result<bool, StoreError> {
        let n: i64 = self.run(redis::cmd("DEL").arg(key(sid))).await?;
        if n > 0 {
            // The session is gone either way: a lost notice only delays tunnels to their next
            // poll, so it is logged rather than reported as a failed removal.
            let published: Result<i64, _> = self
                .run(redis::cmd("PUBLISH").arg(ENDED_CHANNEL).arg(sid))
                .await;
            if let Err(e) = published {
                tracing::warn!(error = %e, "session store: revocation notice not published");
            }
        }
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
        let indexes = prefixed(revocation_index_keys(idp, sub, idp_sid));
        let mut sids = std::collections::BTreeSet::new();
        for index in &indexes {
            let found: Vec<String> = self.run(redis::cmd("SMEMBERS").arg(index)).await?;
            sids.extend(found);
        }
        let mut n = 0;
        let mut stale = Vec::new();
        for sid in sids {
            match self.load(&sid).await? {
                Some(rec) => {
                    if revocation_matches(&rec, idp, sub, idp_sid) && self.remove(&sid).await? {
                        n += 1;
                    }
                }
                None => stale.push(sid),
            }
        }
        // Ids of sessions that ended otherwise (logout, expiry) stay listed until a revocation
        // reads them; dropping them here keeps the index about as large as the live sessions.
        if !stale.is_empty() {
            let mut p = redis::pipe();
            for index in &indexes {
                p.cmd("SREM").arg(index).arg(&stale).ignore();
            }
            self.pipe(&p).await?;
        }
        Ok(n)
    }

    async fn sessions_of(
        &self,
        idp: &str,
        sub: &str,
    ) -> Result<Vec<(String, SessionRecord)>, StoreError> {
        let index = prefixed(revocation_index_keys(idp, Some(sub), None));
        let mut sids = std::collections::BTreeSet::new();
        for i in &index {
            let found: Vec<String> = self.run(redis::cmd("SMEMBERS").arg(i)).await?;
            sids.extend(found);
        }
        let mut out = Vec::with_capacity(sids.len());
        // Ids of ended sessions stay listed until a revocation drops them: skipped here.
        for sid in sids {
            if let Some(rec) = self.load(&sid).await? {
                if revocation_matches(&rec, idp, Some(sub), None) {
                    out.push((sid, rec));
                }
            }
        }
        out.sort_by(|a, b| a.1.created.cmp(&b.1.created).then_with(|| a.0.cmp(&b.0)));
        Ok(out)
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

    fn ended(&self) -> broadcast::Receiver<Ended> {
        let rx = self.notices.subscribe();
        self.listen();
        rx
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

    /// The same listing as the memory store's, through the Redis index.
    #[tokio::test]
    async fn redis_sessions_of_lists_one_users_live_sessions() {
        let Some(server) = crate::mfa::limiter::tests::redis_server() else {
            assert!(std::env::var("CI").is_err(), "CI needs redis-server");
            eprintln!("redis-server not installed: skipping");
            return;
        };
        let s = RedisStore::new(&format!("redis://127.0.0.1:{}/0", server.1)).unwrap();
        crate::session::store::tests::sessions_of_lists_one_users_live_sessions(&s).await;
        let ttl: i64 = s
            .run(redis::cmd("TTL").arg("pc:i:corp:sub:alice"))
            .await
            .unwrap();
        assert!(
            (1..=60).contains(&ttl),
            "the index expires with its sessions: {ttl}"
        );
    }

    /// The subscriber hears removals made through another connection (another replica):
    /// the same revocation checks as the memory store, with the notices crossing Redis.
    #[tokio::test]
    async fn redis_revoke_user_is_announced_to_every_replica() {
        let Some(server) = crate::mfa::limiter::tests::redis_server() else {
            assert!(std::env::var("CI").is_err(), "CI needs redis-server");
            eprintln!("redis-server not installed: skipping");
            return;
        };
        let url = format!("redis://127.0.0.1:{}/0", server.1);
        let (a, b) = (
            RedisStore::new(&url).unwrap(),
            RedisStore::new(&url).unwrap(),
        );
        let mut heard_by_b = b.ended();
        // Subscribed: the first notice is the recheck that follows every subscription.
        let first = tokio::time::timeout(Duration::from_secs(5), heard_by_b.recv()).await;
        assert!(matches!(first, Ok(Ok(Ended::Recheck))), "{first:?}");
        crate::session::store::tests::revoke_user_ends_all_and_only_that_users_sessions(
            &a,
            &mut heard_by_b,
        )
        .await;
        let listed: Vec<String> = a
            .run(redis::cmd("SMEMBERS").arg("pc:i:corp:sub:alice"))
            .await
            .unwrap();
        assert!(listed.is_empty(), "stale ids dropped: {listed:?}");

        // The subscription is lost (Redis restarted, a proxy cut it): the subscriber says
        // "recheck" (what was published meanwhile is not replayed) and subscribes again.
        let killed: i64 = a
            .run(redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("pubsub"))
            .await
            .unwrap();
        assert_eq!(killed, 1);
        let again = tokio::time::timeout(Duration::from_secs(5), heard_by_b.recv()).await;
        assert!(matches!(again, Ok(Ok(Ended::Recheck))), "{again:?}");
        // Subscribed again once another recheck arrives (one for the loss, one for the new
        // subscription); then removals are heard again.
        let again = tokio::time::timeout(Duration::from_secs(5), heard_by_b.recv()).await;
        assert!(matches!(again, Ok(Ok(Ended::Recheck))), "{again:?}");
        a.save(
            "b2",
            &crate::session::store::tests::record("corp", "bob", None),
            60,
        )
        .await
        .unwrap();
        assert!(a.remove("b2").await.unwrap());
        crate::session::store::tests::expect_ended(&mut heard_by_b, &["b2"]).await;
    }
}
