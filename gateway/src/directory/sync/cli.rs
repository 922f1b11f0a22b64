//! `portcullis directory sync --config C [--dry-run] [--json] [--connector ID]`: one run of
//! each configured connector (or one), outside the gateway. It writes the same directory, the
//! same audit chain and, with a Redis session store, ends the sessions of deprovisioned users
//! on every replica and takes the same per-connector lock as the replicas' schedule. With an
//! in-memory session store a running gateway's sessions of a deprovisioned user end at their
//! next refresh, where the directory refuses them; the schedule inside `run` ends them at once.
//!
//! Exit status: 0 every connector ran completely; 1 one was partial, failed or locked; 2 the
//! config or store could not be used.

use super::schedule::{Job, Lock};
use super::state::{SyncState, MIGRATIONS as SYNC_MIGRATIONS};
use super::{Connector, Outcome, Report};
use crate::config::env::ProcessEnv;
use crate::directory::Lifecycle;
use pingora::services::background::BackgroundService;
use std::sync::Arc;

/// What the command line asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// Config file.
    pub config: String,
    /// Print the diff, change nothing.
    pub dry_run: bool,
    /// Print the reports as JSON.
    pub json: bool,
    /// Only this connector.
    pub connector: Option<String>,
    /// Apply deactivations over `deletion_threshold` this once (after checking the upstream).
    pub allow_deletions: bool,
}

/// Runs the command; returns the exit status.
pub fn run(opts: &Options) -> u8 {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cfg = match crate::config::load_file(&opts.config, &ProcessEnv) {
        Ok((cfg, _)) => cfg,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    crate::logging::init(cfg.server.log_format, &cfg.server.log_level);
    let Some(dir) = cfg.directory.clone() else {
        eprintln!("{}: no directory: section", opts.config);
        return 2;
    };
    let syncs: Vec<_> = dir
        .sync
        .iter()
        .filter(|s| opts.connector.as_deref().is_none_or(|c| c == s.id))
        .cloned()
        .map(|mut s| {
            if opts.allow_deletions {
                s.deletion_threshold = 0;
            }
            s
        })
        .collect();
    if syncs.is_empty() {
        eprintln!(
            "{}: no directory.sync connector{}",
            opts.config,
            opts.connector
                .as_deref()
                .map(|c| format!(" named {c:?}"))
                .unwrap_or_default()
        );
        return 2;
    }
    let features = [
        &crate::audit::store::MIGRATIONS,
        &crate::mfa::store::MIGRATIONS,
        &crate::directory::MIGRATIONS,
        &crate::local::credentials::MIGRATIONS,
        &SYNC_MIGRATIONS,
    ];
    let db = match crate::store::Db::open_blocking(&cfg.store, &features) {
        Ok(db) => db,
        Err(e) => {
            eprintln!("{e} ({})", cfg.store.redacted());
            return 2;
        }
    };
    let (audit, audit_service) = match &cfg.audit {
        Some(a) => match crate::audit::start(a, &db, &cfg.store) {
            Ok((audit, svc)) => (audit, Some(svc)),
            Err(e) => {
                eprintln!("audit: {e}");
                return 2;
            }
        },
        None => (crate::audit::Audit::disabled(), None),
    };
    let clock = crate::clock::Clock::for_process();
    let result = crate::store::Db::block_on(async {
        let (stop, watch) = tokio::sync::watch::channel(false);
        let audit_task = audit_service.map(|svc| {
            tokio::spawn(async move {
                svc.start(watch).await;
            })
        });
        let reports = {
            let sso = match crate::sso::Sso::new(&cfg, audit.clone(), clock.clone()) {
                Ok(s) => Arc::new(s),
                Err(e) => {
                    eprintln!("single sign-on: {e}");
                    return Err(());
                }
            };
            let lifecycle = Lifecycle {
                store: crate::directory::DirectoryStore::new(db.clone(), clock.clone()),
                audit: audit.clone(),
                revoker: Some(sso.clone() as Arc<dyn crate::directory::SessionRevoker>),
                mfa: cfg.mfa.is_some().then(|| crate::mfa::store::over(&db)),
                settings: dir.deprovision,
            };
            let lock = Lock::new(sso.redis());
            let mut reports = Vec::new();
            for c in syncs {
                let job = Job {
                    connector: Connector::new(&c, &ProcessEnv, clock.clone())
                        .map_err(|e| e.to_string()),
                    cfg: c,
                    lifecycle: lifecycle.clone(),
                    state: SyncState::new(db.clone()),
                    lock: lock.clone(),
                };
                let (outcome, report) = job.run(opts.dry_run).await;
                reports.push((job.cfg.id.clone(), outcome, report));
            }
            reports
        };
        drop(audit);
        let _ = stop.send(true);
        if let Some(t) = audit_task {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(30), t).await;
        }
        Ok(reports)
    });
    let reports = match result {
        Ok(Ok(r)) => r,
        Ok(Err(())) => return 2,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    print(&reports, opts);
    if reports.iter().all(|(_, o, _)| *o == Outcome::Success) {
        0
    } else {
        1
    }
}

fn print(reports: &[(String, Outcome, Option<Report>)], opts: &Options) {
    if opts.json {
        let v: Vec<serde_json::Value> = reports
            .iter()
            .map(|(id, outcome, r)| match r {
                Some(r) => serde_json::to_value(r).unwrap_or_default(),
                None => serde_json::json!({"connector": id, "outcome": outcome}),
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return;
    }
    for (id, outcome, r) in reports {
        match r {
            Some(r) => {
                println!("{}", r.diff);
                for e in &r.errors {
                    println!("{id}: failed: {e}");
                }
            }
            None => println!("{id}: not run ({})", outcome.label()),
        }
        let what = if opts.dry_run {
            "dry run, nothing changed"
        } else {
            "applied"
        };
        println!("{id}: {} ({what})", outcome.label());
    }
}
