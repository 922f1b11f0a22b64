//! The audit log: security and admin events in an append-only hash chain ([`chain`]) kept in
//! the shared store ([`store`]), with Ed25519-signed checkpoints at `audit.checkpoint_interval`
//! and `portcullis audit verify|export` ([`verify`]).
//!
//! Anything in the gateway records a typed [`AuditEvent`] through the [`Audit`] handle it was
//! given at construction; recording never blocks and never drops: events go to a queue drained
//! by the [`AuditService`] background service, which appends them in order (retrying while the
//! store is unreachable) and signs checkpoints. The queue has no
//! fixed bound because a security event (an MFA failure, a lockout, a login) must never be lost
//! to make room (finding M7); what keeps it small is that the events an anonymous client can
//! cause in bulk carry a repeat key ([`AuditEvent::repeat_key`], [`repeats`]): the first of each
//! `(kind, route or provider, client IP)` per window is recorded, repeats are counted into one
//! summary per window. `portcullis_audit_queue_depth` shows a store that falls behind.

pub mod chain;
pub mod cli;
pub mod config;
pub mod event;
pub mod repeats;
pub mod store;
pub mod verify;

use chain::{Event, PublicKey};
use config::AuditConfig;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::SigningKey;
pub use event::AuditEvent;
use once_cell::sync::Lazy;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use thiserror::Error;
use tokio::sync::mpsc;

/// How long repeats of an anonymous-triggerable event are counted before one summary records
/// them ([`AuditEvent::repeat_key`]).
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

/// The audit handle, passed explicitly (like the decision log) to everything that records
/// events. Cheap to clone. A disabled handle (no `audit:` configured) still writes each event's
/// log line, so operators see the same events with or without the chain.
#[derive(Clone, Default)]
pub struct Audit {
    queue: Option<Arc<Queue>>,
}

/// The enabled side: the queue drained by the [`AuditService`] and the repeat counters.
struct Queue {
    tx: mpsc::UnboundedSender<(Event, String)>,
    repeats: Arc<repeats::Repeats>,
    published: Vec<PublicKey>,
}

impl Audit {
    /// A handle that only logs (no `audit:` configured).
    pub fn disabled() -> Self {
        Self::default()
    }

    /// Records an event without waiting: its log line now and, when auditing is on, its chain
    /// record. Never drops it: events an anonymous client can cause in bulk
    /// ([`AuditEvent::repeat_key`]) have their repeats in a window counted into one summary
    /// ([`repeats`]), everything else is recorded one by one.
    pub fn record(&self, event: AuditEvent) {
        event.trace();
        let Some(q) = &self.queue else { return };
        if let Some((scope, client_ip)) = event.repeat_key() {
            if q.repeats.admit(&event.kind(), scope, client_ip) == repeats::Admit::Counted {
                return;
            }
        }
        let time = crate::decisionlog::record::rfc3339(SystemTime::now());
        if q.tx.send((event.to_event(), time)).is_err() {
            // Only after the service has stopped (process exit).
            METRICS.dropped.inc();
            tracing::error!(kind = %event.kind(), "audit service stopped: event lost");
        } else {
            METRICS.depth.inc();
        }
    }

    /// Whether events go into the chain.
    pub fn enabled(&self) -> bool {
        self.queue.is_some()
    }

    /// The published verification keys as JSON (served on the admin listener at `/audit/keys`).
    pub fn published_keys_json(&self) -> String {
        let keys = self.queue.as_ref().map(|q| q.published.clone());
        serde_json::json!({"keys": keys.unwrap_or_default()}).to_string()
    }

    /// A handle whose chain records land in the returned receiver, for tests of the modules
    /// that record events.
    #[cfg(test)]
    pub fn capture() -> (Self, mpsc::UnboundedReceiver<(Event, String)>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let queue = Queue {
            tx,
            repeats: Arc::default(),
            published: Vec::new(),
        };
        (
            Self {
                queue: Some(Arc::new(queue)),
            },
            rx,
        )
    }
}

/// The summary event of one key's repeats.
fn summary_event(s: repeats::Summary) -> Event {
    let scope_field = if s.kind.starts_with("policy.") {
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
async fn flush_repeats(store: &dyn store::AuditStore, repeats: &repeats::Repeats) {
    let time = crate::decisionlog::record::rfc3339(SystemTime::now());
    for s in repeats.drain() {
        append(store, &summary_event(s), &time).await;
    }
}

/// The background service that stores events and signs checkpoints.
pub struct AuditService {
    rx: std::sync::Mutex<Option<mpsc::UnboundedReceiver<(Event, String)>>>,
    repeats: Arc<repeats::Repeats>,
    db: crate::store::Db,
    key: SigningKey,
    interval: Duration,
}

/// Sets up auditing for this process: loads (or creates) the key, publishes it in the store
/// (the process's one database, already migrated), and returns the handle that records events
/// and the service that stores them. `store_url` is only for messages.
pub fn start(
    cfg: &AuditConfig,
    db: &crate::store::Db,
    store_url: &crate::store::StoreUrl,
) -> Result<(Audit, AuditService), String> {
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
    Lazy::force(&METRICS);
    let (tx, rx) = mpsc::unbounded_channel();
    let repeats = Arc::new(repeats::Repeats::default());
    let audit = Audit {
        queue: Some(Arc::new(Queue {
            tx,
            repeats: repeats.clone(),
            published: keys,
        })),
    };
    tracing::info!(store = %store_url.redacted(), key_id = %pk.key_id, interval = ?cfg.checkpoint_interval, "audit log enabled");
    let service = AuditService {
        rx: std::sync::Mutex::new(Some(rx)),
        repeats,
        db: db.clone(),
        key,
        interval: cfg.checkpoint_interval,
    };
    Ok((audit, service))
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
                _ = window.tick() => flush_repeats(store.as_ref(), &self.repeats).await,
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
                    flush_repeats(store.as_ref(), &self.repeats).await;
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
