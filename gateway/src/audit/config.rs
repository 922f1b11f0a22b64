//! `audit:` — schema and validated settings.

use crate::config::problems::Problems;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `audit:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSpec {
    /// How often a signed checkpoint is written when new records exist (default `1m`).
    #[serde(default)]
    pub checkpoint_interval: Option<String>,
    /// PKCS#8 PEM Ed25519 key; generated on first start when absent
    /// (default `<server.data_dir>/audit-ed25519.pem`). Point it at a new file to rotate.
    #[serde(default)]
    pub signing_key_file: Option<String>,
    /// Route ids whose denials are audit events (in addition to every decision record).
    #[serde(default)]
    pub privileged_routes: Vec<String>,
}

/// Validated `audit:`.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// Checkpoint interval.
    pub checkpoint_interval: Duration,
    /// Signing key file.
    pub signing_key_file: PathBuf,
    /// Privileged route ids.
    pub privileged_routes: Vec<String>,
}

/// Validates `audit:`.
pub fn build(spec: AuditSpec, data_dir: &Path, p: &mut Problems) -> Option<AuditConfig> {
    let before = p.0.len();
    let checkpoint_interval = match spec.checkpoint_interval.as_deref() {
        None => Duration::from_secs(60),
        Some(s) => match humantime::parse_duration(s) {
            Ok(d) if d >= Duration::from_millis(100) => d,
            Ok(_) => {
                p.add("audit.checkpoint_interval", "must be at least 100ms");
                Duration::ZERO
            }
            Err(e) => {
                p.add(
                    "audit.checkpoint_interval",
                    format!("{s:?} is not a duration like 1m ({e})"),
                );
                Duration::ZERO
            }
        },
    };
    (p.0.len() == before).then(|| AuditConfig {
        checkpoint_interval,
        signing_key_file: spec
            .signing_key_file
            .map_or_else(|| data_dir.join("audit-ed25519.pem"), PathBuf::from),
        privileged_routes: spec.privileged_routes,
    })
}
