//! The running view of the config that requests are served against. One `Runtime` is shared by
//! all requests until a reload swaps in the next one; a request keeps the snapshot it started
//! with, so a reload never changes the rules under a request in flight.

use crate::config::model::{Config, Route};
use crate::upstream::UpstreamPool;
use std::sync::Arc;

/// Config plus per-route upstream state.
pub struct Runtime {
    /// The validated config.
    pub config: Config,
    /// Upstream pools, parallel to `config.routes`.
    pub pools: Vec<UpstreamPool>,
    /// SHA-256 of the config text, for logs and the audit trail.
    pub config_hash: String,
}

impl Runtime {
    /// Builds the runtime view of a config.
    pub fn new(config: Config, text: &str) -> Self {
        use sha2::Digest;
        let pools = config.routes.iter().map(UpstreamPool::new).collect();
        let hash = sha2::Sha256::digest(text.as_bytes());
        Self {
            config,
            pools,
            config_hash: hash.iter().map(|b| format!("{b:02x}")).collect(),
        }
    }

    /// The route for a host and normalised path.
    pub fn route(&self, host: &str, path: &str) -> Option<(usize, &Route)> {
        let i = self.config.table.lookup(host, path)?;
        self.config.routes.get(i).map(|r| (i, r))
    }
}

/// The swappable handle every service holds.
pub type SharedRuntime = Arc<arc_swap::ArcSwap<Runtime>>;
