//! Readiness that tells the truth: `/readyz` answers 503, naming what is down, while a
//! dependency that protected routes need cannot be reached — the session store, the SQL store,
//! an identity provider's discovery, the decision log (requests refused since the last round because its
//! queue and spool are full). A background service probes them every
//! [`INTERVAL`] (each probe bounded by [`PROBE_TIMEOUT`]); the admin listener only reads the
//! latest result, so a slow dependency never makes the probe endpoint itself slow.

use crate::decisionlog::DecisionLog;
use crate::sso::Sso;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often dependencies are probed.
pub const INTERVAL: Duration = Duration::from_secs(2);
/// Longest one probe may take before it counts as down.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The latest probe results: `None` before the first round, else what is down and why.
#[derive(Debug, Default)]
pub struct Readiness {
    down: Mutex<Option<BTreeMap<String, String>>>,
    draining: std::sync::atomic::AtomicBool,
}

impl Readiness {
    /// Marks the process as shutting down: not ready from now until exit.
    pub fn set_draining(&self) {
        self.draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether SIGTERM was received.
    pub fn draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// `Ok(())` when ready, else the dependencies that are down (empty: not probed yet).
    pub fn status(&self) -> Result<(), BTreeMap<String, String>> {
        let guard = self.down.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_ref() {
            Some(down) if down.is_empty() => Ok(()),
            Some(down) => Err(down.clone()),
            None => Err(BTreeMap::new()),
        }
    }

    fn set(&self, down: BTreeMap<String, String>) {
        let mut guard = self.down.lock().unwrap_or_else(|e| e.into_inner());
        let changed = guard.as_ref() != Some(&down);
        *guard = Some(down.clone());
        drop(guard);
        if changed {
            if down.is_empty() {
                tracing::info!("ready: every dependency answers");
            } else {
                tracing::warn!(down = ?down, "not ready: a dependency is down");
            }
        }
    }
}

/// The background service that probes.
pub struct Prober {
    /// Where results go.
    pub readiness: Arc<Readiness>,
    /// Sessions and providers.
    pub sso: Arc<Sso>,
    /// The decision log, when configured.
    pub decision_log: Option<Arc<DecisionLog>>,
    /// The decision log's refusal count at the previous round.
    pub last_refused: std::sync::atomic::AtomicU64,
    /// The SQL store (directory, MFA enrolments, audit), when one is open.
    pub db: Option<crate::store::Db>,
}

/// One round trip to the SQL store, timed into `portcullis_store_duration_seconds{store="sql"}`.
async fn probe_sql(db: &crate::store::Db) -> Result<(), String> {
    let start = std::time::Instant::now();
    let out = tokio::time::timeout(PROBE_TIMEOUT, sqlx::query("SELECT 1").execute(db.pool())).await;
    let result = match out {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".to_string()),
    };
    crate::metrics::store_op("sql", "probe", start.elapsed(), result.is_ok());
    result
}

impl Prober {
    async fn round(&self) -> BTreeMap<String, String> {
        let mut down = BTreeMap::new();
        let bounded = |f| tokio::time::timeout(PROBE_TIMEOUT, f);
        if self.sso.enabled() {
            // Loading an id that cannot exist exercises the connection without side effects.
            match bounded(self.sso.store.load("readyz-probe")).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    down.insert("session_store".to_string(), e.to_string());
                }
                Err(_) => {
                    down.insert("session_store".to_string(), "timed out".to_string());
                }
            }
            // A SAML provider whose metadata URL has not answered yet cannot sign anyone in.
            for sp in self.sso.saml_providers() {
                if let Err(e) = sp.idp() {
                    down.insert(format!("identity_provider:{}", sp.cfg.id), e.to_string());
                }
            }
            for p in self.sso.providers().iter() {
                let key = format!("identity_provider:{}", p.cfg.id);
                match tokio::time::timeout(PROBE_TIMEOUT, p.ready()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        down.insert(key, e.to_string());
                    }
                    Err(_) => {
                        down.insert(key, "timed out".to_string());
                    }
                }
            }
        }
        if let Some(db) = &self.db {
            if let Err(e) = probe_sql(db).await {
                down.insert("sql_store".to_string(), e);
            }
        }
        if let Some(log) = &self.decision_log {
            // Requests refused since the last round (`when_full: block`, queue and spool full).
            let refused = log.refused_total();
            let before = self
                .last_refused
                .swap(refused, std::sync::atomic::Ordering::Relaxed);
            if refused > before {
                down.insert(
                    "decision_log".to_string(),
                    format!(
                        "{} requests refused: queue and spool full",
                        refused - before
                    ),
                );
            }
        }
        down
    }
}

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for Prober {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        let mut tick = tokio::time::interval(INTERVAL);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let down = self.round().await;
                    self.readiness.set(down);
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Db, StoreUrl};

    #[tokio::test]
    async fn the_sql_probe_times_a_round_trip_and_fails_when_the_store_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&StoreUrl::Sqlite(dir.path().join("h.db")), &[])
            .await
            .unwrap();
        let count = || {
            crate::metrics::get()
                .store_duration
                .with_label_values(&["sql", "probe"])
                .get_sample_count()
        };
        let before = count();
        assert_eq!(probe_sql(&db).await, Ok(()));
        assert!(count() > before, "the round trip is timed");
        db.pool().close().await;
        let errors_before = crate::metrics::get()
            .store_errors
            .with_label_values(&["sql", "probe"])
            .get();
        assert!(probe_sql(&db).await.is_err(), "a closed store is down");
        assert!(
            crate::metrics::get()
                .store_errors
                .with_label_values(&["sql", "probe"])
                .get()
                > errors_before
        );
    }
}
