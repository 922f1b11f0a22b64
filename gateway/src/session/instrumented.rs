//! A [`SessionStore`] that times every operation of the store it wraps and counts its
//! failures (`portcullis_store_duration_seconds{store="session"}`,
//! `portcullis_store_errors_total`), so an SRE sees a slow or failing Redis before users do.
//! It changes no answer: every result passes through as it came.

use super::store::{Ended, SessionStore, StoreError};
use super::SessionRecord;
use async_trait::async_trait;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::broadcast;

/// The label every series of this store carries.
const STORE: &str = "session";

/// Times `op` and records whether it failed.
async fn timed<T>(
    op: &'static str,
    f: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let start = Instant::now();
    let out = f.await;
    crate::metrics::store_op(STORE, op, start.elapsed(), out.is_ok());
    out
}

/// The wrapped store.
pub struct Instrumented(pub Arc<dyn SessionStore>);

impl Instrumented {
    /// Wraps `inner`, creating its error series at zero.
    pub fn new(inner: Arc<dyn SessionStore>) -> Self {
        for op in [
            "load",
            "save",
            "update",
            "remove",
            "revoke",
            "sessions_of",
            "count",
        ] {
            crate::metrics::get()
                .store_errors
                .with_label_values(&[STORE, op]);
        }
        Self(inner)
    }
}

#[async_trait]
impl SessionStore for Instrumented {
    async fn load(&self, sid: &str) -> Result<Option<SessionRecord>, StoreError> {
        timed("load", self.0.load(sid)).await
    }
    async fn save(&self, sid: &str, rec: &SessionRecord, ttl_secs: u64) -> Result<(), StoreError> {
        timed("save", self.0.save(sid, rec, ttl_secs)).await
    }
    async fn update(
        &self,
        sid: &str,
        rec: &SessionRecord,
        ttl_secs: u64,
    ) -> Result<bool, StoreError> {
        timed("update", self.0.update(sid, rec, ttl_secs)).await
    }
    async fn remove(&self, sid: &str) -> Result<bool, StoreError> {
        timed("remove", self.0.remove(sid)).await
    }
    async fn revoke(
        &self,
        idp: &str,
        sub: Option<&str>,
        idp_sid: Option<&str>,
    ) -> Result<usize, StoreError> {
        timed("revoke", self.0.revoke(idp, sub, idp_sid)).await
    }
    async fn sessions_of(
        &self,
        idp: &str,
        sub: &str,
    ) -> Result<Vec<(String, SessionRecord)>, StoreError> {
        timed("sessions_of", self.0.sessions_of(idp, sub)).await
    }
    async fn count(&self) -> Result<usize, StoreError> {
        timed("count", self.0.count()).await
    }
    async fn seen_once(&self, key: &str) -> Result<bool, StoreError> {
        timed("seen_once", self.0.seen_once(key)).await
    }
    async fn record_once(&self, key: &str, ttl_secs: u64) -> Result<bool, StoreError> {
        timed("record_once", self.0.record_once(key, ttl_secs)).await
    }
    fn ended(&self) -> broadcast::Receiver<Ended> {
        self.0.ended()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::MemoryStore;

    #[tokio::test]
    async fn passes_answers_through_and_counts_operations() {
        let s = Instrumented::new(Arc::new(MemoryStore::default()));
        let before = crate::metrics::get()
            .store_duration
            .with_label_values(&[STORE, "remove"])
            .get_sample_count();
        assert!(!s.remove("nope").await.unwrap(), "nothing to remove");
        assert!(s.record_once("k", 60).await.unwrap());
        assert!(
            !s.record_once("k", 60).await.unwrap(),
            "second record refused"
        );
        let after = crate::metrics::get()
            .store_duration
            .with_label_values(&[STORE, "remove"])
            .get_sample_count();
        assert_eq!(after, before + 1);
    }
}
