//! The audit log: security and admin events in an append-only hash chain ([`chain`]) kept in
//! the shared store ([`store`]), with Ed25519-signed checkpoints at `audit.checkpoint_interval`
//! and `portcullis audit verify|export` ([`verify`]).
//!
//! Anything in the gateway records an event with [`emit`]; it never blocks and never drops:
//! events go to a queue drained by the [`AuditService`] background service, which appends them
//! in order (retrying while the store is unreachable) and signs checkpoints. The queue has no
//! fixed bound because a security event (an MFA failure, a lockout, a login) must never be lost
//! to make room (finding M7); what keeps it small is that the events an anonymous client can
//! cause in bulk go through [`emit_repeatable`] ([`repeats`]): the first of each
//! `(kind, route or provider, client IP)` per window is recorded, repeats are counted into one
//! summary per window. `portcullis_audit_queue_depth` shows a store that falls behind.

pub mod chain;
pub mod cli;
pub mod config;
pub mod repeats;
pub mod store;
pub mod verify;

use chain::{Event, PublicKey};
use config::AuditConfig;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::SigningKey;
use once_cell::sync::{Lazy, OnceCell};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts};
use std::path::Path;
use std::time::{Duration, SystemTime};
use thiserror::Error;
use tokio::sync::mpsc;

/// How long repeats of an anonymous-triggerable event are counted before one summary records
/// them ([`emit_repeatable`]).
pub const REPEAT_WINDOW: Duration = Duration::from_secs(10);

/// The signing key could not be loaded or created.
#[derive(Debug, Error)]
pub enum KeyError {
    /// Reading or writing the key file.
    #[error("audit signing key {path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not a PKCS#8 PEM Ed25519 key.
    #[error("audit signing key {0}: not a PKCS#8 PEM Ed25519 private key")]
    Format(String),
}

/// Loads the key at `path`, or generates one there (mode 0600) when the file does not exist.
pub fn load_or_generate_key(path: &Path) -> Result<SigningKey, KeyError> {
    let shown = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(pem) => SigningKey::from_pkcs8_pem(&pem).map_err(|_| KeyError::Format(shown)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed).map_err(
                |_| KeyError::Io {
                    path: shown.clone(),
                    source: std::io::Error::other("no system randomness"),
                },
            )?;
            let key = SigningKey::from_bytes(&seed);
            let pem = key
                .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
                .map_err(|_| KeyError::Format(shown.clone()))?;
            let io = |source| KeyError::Io {
                path: shown.clone(),
                source,
            };
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(io)?;
            f.write_all(pem.as_bytes()).map_err(io)?;
            tracing::warn!(path = %shown, key_id = %chain::key_id(&key.verifying_key()), "generated a new audit signing key; back it up and publish its public key");
            Ok(key)
        }
        Err(source) => Err(KeyError::Io {
            path: shown,
            source,
        }),
    }
}

struct AuditMetrics {
    events: IntCounterVec,
    dropped: IntCounter,
    checkpoints: IntCounter,
    store_errors: IntCounter,
    depth: IntGauge,
}

#[allow(clippy::expect_used)]
static METRICS: Lazy<AuditMetrics> = Lazy::new(|| {
    let reg = crate::metrics::registry();
    let m = (|| -> Result<AuditMetrics, prometheus::Error> {
        let events = IntCounterVec::new(
            Opts::new(
                "portcullis_audit_events_total",
                "Audit events stored, by kind",
            ),
            &["kind"],
        )?;
        let dropped = IntCounter::new(
            "portcullis_audit_dropped_total",
            "Audit events lost (must stay 0; the queue never drops security events)",
        )?;
        let depth = IntGauge::new(
            "portcullis_audit_queue_depth",
            "Audit events waiting to be stored (grows while the store is slow or down)",
        )?;
        let checkpoints = IntCounter::new(
            "portcullis_audit_checkpoints_total",
            "Signed audit checkpoints written",
        )?;
        let store_errors = IntCounter::new(
            "portcullis_audit_store_errors_total",
            "Failed audit store operations (retried)",
        )?;
        reg.register(Box::new(events.clone()))?;
        reg.register(Box::new(dropped.clone()))?;
        reg.register(Box::new(checkpoints.clone()))?;
        reg.register(Box::new(store_errors.clone()))?;
        reg.register(Box::new(depth.clone()))?;
        Ok(AuditMetrics {
            events,
            dropped,
            checkpoints,
            store_errors,
            depth,
        })
    })();
    m.expect("audit metric definitions are static and valid")
});

static SENDER: OnceCell<mpsc::UnboundedSender<(Event, String)>> = OnceCell::new();
static PUBLISHED: OnceCell<Vec<PublicKey>> = OnceCell::new();
static REPEATS: Lazy<repeats::Repeats> = Lazy::new(repeats::Repeats::default);

/// Records an event without waiting. A no-op when `audit:` is not configured. Never drops the
/// event: use [`emit_repeatable`] for anything an anonymous client can trigger in bulk.
pub fn emit(kind: &str, actor: Option<&str>, data: serde_json::Value) {
    let Some(tx) = SENDER.get() else { return };
    let time = crate::decisionlog::record::rfc3339(SystemTime::now());
    let ev = Event {
        kind: kind.into(),
        actor: actor.map(str::to_string),
        data,
    };
    if tx.send((ev, time)).is_err() {
        // Only after the service has stopped (process exit).
        METRICS.dropped.inc();
        tracing::error!(kind, "audit service stopped: event lost");
    } else {
        METRICS.depth.inc();
    }
}

/// Records an event an anonymous client can cause in bulk (`policy.denied`,
/// `auth.login_failed`): the first of its `(kind, scope, client_ip)` in a window in full, the
/// repeats as one counted summary when the window closes ([`repeats`]).
pub fn emit_repeatable(
    kind: &str,
    scope: &str,
    client_ip: &str,
    actor: Option<&str>,
    data: serde_json::Value,
) {
    if !enabled() {
        return;
    }
    if REPEATS.admit(kind, scope, client_ip) == repeats::Admit::Record {
        emit(kind, actor, data);
    }
}

/// The summary event of one key's repeats.
fn summary_event(s: repeats::Summary) -> Event {
    let scope_field = if s.kind == "policy.denied" {
        "route"
    } else {
        "idp"
    };
    Event {
        data: serde_json::json!({
            scope_field: s.scope, "client_ip": s.client_ip, "repeats": s.repeats,
            "window_secs": REPEAT_WINDOW.as_secs(),
        }),
        kind: s.kind,
        actor: None,
    }
}

/// Stores the summaries of the window that just closed.
async fn flush_repeats(store: &dyn store::AuditStore) {
    let time = crate::decisionlog::record::rfc3339(SystemTime::now());
    for s in REPEATS.drain() {
        append(store, &summary_event(s), &time).await;
    }
}

/// Whether audit events are being recorded.
pub fn enabled() -> bool {
    SENDER.get().is_some()
}

/// The published verification keys as JSON (served on the admin listener at `/audit/keys`).
pub fn published_keys_json() -> String {
    serde_json::json!({"keys": PUBLISHED.get().cloned().unwrap_or_default()}).to_string()
}

/// The background service that stores events and signs checkpoints.
pub struct AuditService {
    rx: std::sync::Mutex<Option<mpsc::UnboundedReceiver<(Event, String)>>>,
    db: crate::store::Db,
    key: SigningKey,
    interval: Duration,
}

/// Sets up auditing for this process: loads (or creates) the key, publishes it in the store
/// (the process's one database, already migrated), and installs the queue behind [`emit`].
/// Call once, before any event. `store_url` is only for messages.
pub fn start(
    cfg: &AuditConfig,
    db: &crate::store::Db,
    store_url: &crate::store::StoreUrl,
) -> Result<AuditService, String> {
    let key = load_or_generate_key(&cfg.signing_key_file).map_err(|e| e.to_string())?;
    let now = crate::decisionlog::record::rfc3339(SystemTime::now());
    let pk = chain::public_key(&key.verifying_key(), &now);
    // Fail at start, not at the first event, when the store cannot be written.
    let s = store::over(db);
    let keys = crate::store::Db::block_on(async {
        s.add_key(&pk).await?;
        s.keys().await
    })
    .and_then(|r| r)
    .map_err(|e| format!("{e} ({})", store_url.redacted()))?;
    let _ = PUBLISHED.set(keys);
    Lazy::force(&METRICS);
    let (tx, rx) = mpsc::unbounded_channel();
    SENDER
        .set(tx)
        .map_err(|_| "audit already started".to_string())?;
    tracing::info!(store = %store_url.redacted(), key_id = %pk.key_id, interval = ?cfg.checkpoint_interval, "audit log enabled");
    Ok(AuditService {
        rx: std::sync::Mutex::new(Some(rx)),
        db: db.clone(),
        key,
        interval: cfg.checkpoint_interval,
    })
}

/// Appends with retries until the store takes it (events are never skipped, order is kept).
async fn append(store: &dyn store::AuditStore, ev: &Event, time: &str) {
    let mut wait = Duration::from_millis(200);
    loop {
        match store.append(ev, time).await {
            Ok(_) => {
                METRICS.events.with_label_values(&[&ev.kind]).inc();
                return;
            }
            Err(e) => {
                METRICS.store_errors.inc();
                tracing::error!(error = %e, kind = %ev.kind, "cannot append audit event; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Signs a checkpoint if records were added since the last one.
pub async fn checkpoint(
    store: &dyn store::AuditStore,
    key: &SigningKey,
) -> Result<bool, store::StoreError> {
    let Some(head) = store.head().await? else {
        return Ok(false);
    };
    let last = store.checkpoints().await?.last().map_or(0, |c| c.count);
    if head.seq <= last {
        return Ok(false);
    }
    let now = crate::decisionlog::record::rfc3339(SystemTime::now());
    let cp = chain::sign(key, head.seq, &head.hash, &now);
    store.add_checkpoint(&cp).await?;
    METRICS.checkpoints.inc();
    tracing::info!(count = cp.count, head_hash = %cp.head_hash, key_id = %cp.key_id, "audit checkpoint signed");
    Ok(true)
}

#[async_trait::async_trait]
impl BackgroundService for AuditService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(mut rx) = self.rx.lock().ok().and_then(|mut r| r.take()) else {
            return;
        };
        let store = store::over(&self.db);
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut window = tokio::time::interval(REPEAT_WINDOW);
        window.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Some((ev, time)) => {
                        METRICS.depth.dec();
                        append(store.as_ref(), &ev, &time).await;
                    }
                    None => return,
                },
                _ = window.tick() => flush_repeats(store.as_ref()).await,
                _ = tick.tick() => {
                    if let Err(e) = checkpoint(store.as_ref(), &self.key).await {
                        METRICS.store_errors.inc();
                        tracing::error!(error = %e, "cannot write audit checkpoint");
                    }
                }
                _ = shutdown.changed() => {
                    while let Ok((ev, time)) = rx.try_recv() {
                        METRICS.depth.dec();
                        append(store.as_ref(), &ev, &time).await;
                    }
                    flush_repeats(store.as_ref()).await;
                    if let Err(e) = checkpoint(store.as_ref(), &self.key).await {
                        tracing::error!(error = %e, "cannot write the final audit checkpoint");
                    }
                    // Keep storing events emitted during the grace period.
                    while let Some((ev, time)) = rx.recv().await {
                        METRICS.depth.dec();
                        append(store.as_ref(), &ev, &time).await;
                    }
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
