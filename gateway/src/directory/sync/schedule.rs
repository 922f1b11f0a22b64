//! Directory sync inside `run`: each connector every `interval` (first run
//! [`FIRST_RUN`] after start), one run at a time per connector. With a Redis session store the
//! replicas share a lock per connector (`SET NX PX`, renewed while the run lasts, released only
//! by its holder), so only one replica syncs a connector at a time; otherwise the lock is local
//! to the process. A failed run is logged and counted
//! (`portcullis_directory_sync_total{outcome}`) and the next one comes at the next interval: a
//! sync never takes the gateway down.

use super::state::SyncState;
use super::{run_once, Connector, Outcome, Report};
use crate::directory::config::SyncConfig;
use crate::directory::Lifecycle;
use crate::session::redis_store::RedisConn;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Delay of the first run after start: the gateway is serving by then.
pub const FIRST_RUN: Duration = Duration::from_secs(3);

/// A Redis lock lives this long unless renewed, so a replica that dies mid-run frees it.
const LOCK_TTL: Duration = Duration::from_secs(120);

/// Releases the lock only if this holder still has it.
const RELEASE: &str =
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";
/// Extends the lock only if this holder still has it.
const RENEW: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end";

/// One run at a time per connector: in this process, or across replicas through Redis.
#[derive(Clone)]
pub enum Lock {
    /// Connectors running in this process.
    Local(Arc<Mutex<HashSet<String>>>),
    /// The session store's Redis.
    Redis(Arc<RedisConn>),
}

/// A held lock; give it back with [`Guard::release`].
pub struct Guard {
    lock: Lock,
    key: String,
    token: String,
    renew: Option<tokio::task::JoinHandle<()>>,
}

fn redis_key(connector: &str) -> String {
    format!("pc:sync:lock:{connector}")
}

impl Lock {
    /// Redis when the session store is Redis, else local.
    pub fn new(redis: Option<Arc<RedisConn>>) -> Self {
        match redis {
            Some(r) => Self::Redis(r),
            None => Self::Local(Arc::default()),
        }
    }

    /// Takes the lock of `connector`: `Ok(None)` when someone else holds it; an error when
    /// Redis cannot say (then nobody runs: fail closed).
    pub async fn acquire(&self, connector: &str) -> Result<Option<Guard>, String> {
        let token = uuid::Uuid::now_v7().to_string();
        match self {
            Self::Local(set) => {
                let mut s = set.lock().map_err(|_| "lock poisoned".to_string())?;
                if !s.insert(connector.to_string()) {
                    return Ok(None);
                }
                Ok(Some(Guard {
                    lock: self.clone(),
                    key: connector.to_string(),
                    token,
                    renew: None,
                }))
            }
            Self::Redis(r) => {
                let key = redis_key(connector);
                let ttl = u64::try_from(LOCK_TTL.as_millis()).unwrap_or(120_000);
                let set: Option<String> = r
                    .run(
                        redis::cmd("SET")
                            .arg(&key)
                            .arg(&token)
                            .arg("NX")
                            .arg("PX")
                            .arg(ttl),
                    )
                    .await?;
                if set.is_none() {
                    return Ok(None);
                }
                let (conn, k, t) = (r.clone(), key.clone(), token.clone());
                let renew = tokio::spawn(async move {
                    let script = redis::Script::new(RENEW);
                    loop {
                        tokio::time::sleep(LOCK_TTL / 3).await;
                        let r: Result<i64, String> =
                            conn.invoke(script.key(&k).arg(&t).arg(ttl)).await;
                        if let Err(e) = r {
                            tracing::warn!(error = %e, "directory sync: cannot renew the lock");
                        }
                    }
                });
                Ok(Some(Guard {
                    lock: self.clone(),
                    key,
                    token,
                    renew: Some(renew),
                }))
            }
        }
    }
}

impl Guard {
    /// Gives the lock back (a Redis lock only if still ours).
    pub async fn release(self) {
        if let Some(h) = &self.renew {
            h.abort();
        }
        match &self.lock {
            Lock::Local(set) => {
                if let Ok(mut s) = set.lock() {
                    s.remove(&self.key);
                }
            }
            Lock::Redis(r) => {
                let script = redis::Script::new(RELEASE);
                let done: Result<i64, String> =
                    r.invoke(script.key(&self.key).arg(&self.token)).await;
                if let Err(e) = done {
                    tracing::warn!(error = %e, "directory sync: cannot release the lock (it expires)");
                }
            }
        }
    }
}

/// One scheduled connector.
pub struct Job {
    /// Its config.
    pub cfg: SyncConfig,
    /// The connector, or why it could not be built (reported at every run).
    pub connector: Result<Connector, String>,
    /// Where changes go.
    pub lifecycle: Lifecycle,
    /// Cursor and last success.
    pub state: SyncState,
    /// The run lock.
    pub lock: Lock,
}

impl Job {
    /// One run under the lock (a dry run changes nothing and takes no lock); logs and counts
    /// its outcome, never fails.
    pub async fn run(&self, dry_run: bool) -> (Outcome, Option<Report>) {
        let id = self.cfg.id.as_str();
        let guard = if dry_run {
            None
        } else {
            match self.lock.acquire(id).await {
                Ok(Some(g)) => Some(g),
                Ok(None) => {
                    tracing::info!(
                        connector = id,
                        "directory sync: another run holds the lock; skipped"
                    );
                    return self.count(Outcome::Locked, None);
                }
                Err(e) => {
                    tracing::error!(connector = id, error = %e, "directory sync: cannot take the lock; not run");
                    return self.count(Outcome::Error, None);
                }
            }
        };
        let r = match &self.connector {
            Ok(c) => run_once(&self.cfg, c, &self.lifecycle, &self.state, dry_run)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.clone()),
        };
        if let Some(g) = guard {
            g.release().await;
        }
        match r {
            Ok(report) => {
                log(&report);
                let outcome = report.outcome;
                if dry_run {
                    return (outcome, Some(report));
                }
                self.count(outcome, Some(report))
            }
            Err(e) => {
                tracing::error!(connector = id, error = %e, "directory sync failed");
                if dry_run {
                    return (Outcome::Error, None);
                }
                self.count(Outcome::Error, None)
            }
        }
    }

    /// Counts a (non-dry) run in the metrics and returns its result.
    fn count(&self, outcome: Outcome, report: Option<Report>) -> (Outcome, Option<Report>) {
        crate::metrics::directory_sync(
            &self.cfg.id,
            outcome.label(),
            chrono::Utc::now().timestamp(),
        );
        (outcome, report)
    }
}

fn log(r: &Report) {
    let d = &r.diff;
    let id = d.connector.as_str();
    for p in &d.problems {
        tracing::warn!(connector = id, problem = %p, "directory sync: listing incomplete; nothing removed");
    }
    for e in &r.errors {
        tracing::warn!(connector = id, error = %e, "directory sync: a change failed");
    }
    tracing::info!(
        connector = id,
        outcome = r.outcome.label(),
        created = d.create.len(),
        updated = d.update.len(),
        deactivated = d.deactivate.len(),
        groups = d.groups.len(),
        groups_deleted = d.delete_groups.len(),
        skipped = d.skipped.len(),
        "directory sync run"
    );
}

/// The background service of every configured connector.
pub struct SyncService {
    /// The connectors.
    pub jobs: Vec<Arc<Job>>,
}

#[async_trait::async_trait]
impl BackgroundService for SyncService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tasks = tokio::task::JoinSet::new();
        for job in &self.jobs {
            let job = job.clone();
            tasks.spawn(async move {
                tokio::time::sleep(FIRST_RUN).await;
                loop {
                    job.run(false).await;
                    tokio::time::sleep(job.cfg.interval).await;
                }
            });
        }
        let _ = shutdown.changed().await;
        tasks.abort_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn exclusive(lock: &Lock, other: &Lock) {
        let g = lock.acquire("entra").await.unwrap().expect("free");
        assert!(other.acquire("entra").await.unwrap().is_none(), "held");
        let g2 = other
            .acquire("gws")
            .await
            .unwrap()
            .expect("another connector");
        g.release().await;
        let g3 = other.acquire("entra").await.unwrap().expect("released");
        g2.release().await;
        g3.release().await;
    }

    #[tokio::test]
    async fn local_lock_is_one_run_per_connector() {
        let l = Lock::new(None);
        exclusive(&l, &l).await;
    }

    #[tokio::test]
    async fn redis_lock_is_shared_by_replicas_and_released_only_by_its_holder() {
        let Some(server) = crate::mfa::limiter::tests::redis_server() else {
            assert!(std::env::var("CI").is_err(), "CI needs redis-server");
            eprintln!("redis-server not installed: skipping");
            return;
        };
        let url = format!("redis://127.0.0.1:{}/0", server.1);
        let a = Lock::new(Some(Arc::new(RedisConn::new(&url).unwrap())));
        let b = Lock::new(Some(Arc::new(RedisConn::new(&url).unwrap())));
        exclusive(&a, &b).await;
        // A stale holder's release does not free someone else's lock.
        let g = a.acquire("aws").await.unwrap().unwrap();
        let stale = Guard {
            lock: b.clone(),
            key: redis_key("aws"),
            token: "not-the-holder".into(),
            renew: None,
        };
        stale.release().await;
        assert!(b.acquire("aws").await.unwrap().is_none());
        g.release().await;
        assert!(b.acquire("aws").await.unwrap().is_some());
    }
}
