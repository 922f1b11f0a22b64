//! Hot reload: on SIGHUP or when the file's content changes, the new config is validated and
//! swapped in atomically. An invalid file keeps the running config, logs every problem, and
//! counts `portcullis_config_reloads_total{result="error"}`.

use super::env::ProcessEnv;
use crate::audit::AuditEvent;
use crate::metrics;
use crate::routes::{Runtime, SharedRuntime};
use crate::tls::{CertSet, SniResolver};
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::Arc;
use std::time::Duration;

/// The background service that watches and reloads.
pub struct Reloader {
    /// Config file path.
    pub path: String,
    /// The handle requests read from.
    pub runtime: SharedRuntime,
    /// The HTTPS certificate resolver, when configured certificates are served.
    pub resolver: Option<Arc<SniResolver>>,
    /// How often to look at the file; `None` for SIGHUP only.
    pub watch_interval: Option<Duration>,
    /// Single sign-on, whose identity providers follow the file.
    pub sso: Option<Arc<crate::sso::Sso>>,
    /// SHA-256 of the last content that was rejected: the watcher does not reject (and audit)
    /// the same bad file again on every tick; SIGHUP still retries it.
    pub last_rejected: std::sync::Mutex<Option<String>>,
    /// Where `config.loaded` and `config.rejected` are recorded.
    pub audit: crate::audit::Audit,
}

/// Outcome of one reload attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Swapped in.
    Applied,
    /// File content unchanged since the running config.
    Unchanged,
    /// Refused; the old config keeps running.
    Rejected,
}

impl Reloader {
    /// Loads the file and swaps it in if valid. `force` reloads even an unchanged file.
    pub fn reload(&self, force: bool) -> Outcome {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(path = %self.path, error = %e, "config reload failed: cannot read file; keeping the running config");
                metrics::get().reloads.with_label_values(&["error"]).inc();
                return Outcome::Rejected;
            }
        };
        let current = self.runtime.load();
        let next_hash = {
            use sha2::Digest;
            let h = sha2::Sha256::digest(text.as_bytes());
            h.iter().map(|b| format!("{b:02x}")).collect::<String>()
        };
        let already_rejected = self
            .last_rejected
            .lock()
            .map(|r| r.as_deref() == Some(next_hash.as_str()))
            .unwrap_or(false);
        if !force && (next_hash == current.config_hash || already_rejected) {
            return Outcome::Unchanged;
        }
        match super::load_str(&text, &self.path, &ProcessEnv) {
            Ok(config) => {
                warn_about_fixed_settings(&current.config, &config);
                if let (Some(resolver), Some(https)) = (&self.resolver, &config.server.https) {
                    if let Some(set) = CertSet::new(&https.certs) {
                        crate::tls::publish_expiry(&https.certs);
                        resolver.replace(set);
                    }
                }
                if let Some(sso) = &self.sso {
                    sso.set_providers(&config.identity_providers);
                    sso.set_realms(&config.login_domains);
                }
                crate::metrics::init_series(&config);
                let routes = config.routes.len();
                self.runtime.store(Arc::new(Runtime::new(config, &text)));
                metrics::get().reloads.with_label_values(&["success"]).inc();
                tracing::info!(path = %self.path, config_sha256 = %next_hash, routes, "config reloaded");
                self.audit.record(AuditEvent::ConfigLoaded {
                    source: self.path.clone(),
                    sha256: next_hash,
                    routes,
                    at: "reload",
                });
                Outcome::Applied
            }
            Err(errors) => {
                metrics::get().reloads.with_label_values(&["error"]).inc();
                for e in &errors.errors {
                    tracing::error!(path = %e.path, line = e.line, problem = %e.message, "config reload rejected");
                }
                tracing::error!(config_sha256 = %next_hash, "config reload rejected; keeping the running config:\n{errors}");
                self.audit.record(AuditEvent::ConfigRejected {
                    source: self.path.clone(),
                    sha256: next_hash.clone(),
                    problems: errors
                        .errors
                        .iter()
                        .map(|e| format!("{}: {}", e.path, e.message))
                        .collect(),
                });
                if let Ok(mut r) = self.last_rejected.lock() {
                    *r = Some(next_hash);
                }
                Outcome::Rejected
            }
        }
    }
}

/// Listeners, threads and logging are fixed at start; say so instead of silently ignoring.
fn warn_about_fixed_settings(old: &super::Config, new: &super::Config) {
    let (o, n) = (&old.server, &new.server);
    let listen = |s: &super::model::Server| {
        (
            s.https.as_ref().map(|h| h.listen),
            s.http.as_ref().map(|h| h.listen),
            s.admin_listen,
            s.ext_authz_listen,
        )
    };
    if listen(o) != listen(n) || o.threads != n.threads || o.log_format != n.log_format {
        tracing::warn!("listener, thread or log-format changes take effect only after a restart or zero-downtime upgrade");
    }
    if old.store != new.store
        || old.decision_log.is_some() != new.decision_log.is_some()
        || old.audit.is_some() != new.audit.is_some()
        || old.directory.is_some() != new.directory.is_some()
        || o.data_dir != n.data_dir
    {
        tracing::warn!("store, data_dir, decision_log, audit and directory settings take effect only after a restart (privileged_routes apply now)");
    }
    // Compared through their Debug form (never printed: it holds keys).
    if format!("{:?}", old.session) != format!("{:?}", new.session)
        || format!("{:?}", old.assertion) != format!("{:?}", new.assertion)
        || format!("{:?}", old.mfa) != format!("{:?}", new.mfa)
    {
        tracing::warn!("session, assertion and mfa settings take effect only after a restart (identity_providers apply now)");
    }
    if format!("{:?}", old.saml_providers) != format!("{:?}", new.saml_providers) {
        tracing::warn!("SAML providers take effect only after a restart");
    }
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP; reload by file change only");
                None
            }
        };
        let interval = self.watch_interval.unwrap_or(Duration::from_secs(3600));
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let force = tokio::select! {
                _ = shutdown.changed() => return,
                _ = async { match hup.as_mut() { Some(h) => { h.recv().await; } None => std::future::pending().await } } => true,
                _ = tick.tick(), if self.watch_interval.is_some() => false,
            };
            if force {
                tracing::info!("SIGHUP: reloading config");
            }
            self.reload(force);
        }
    }
}
