//! The session store trait and its in-memory implementation (one replica).

use super::SessionRecord;
use crate::clock::Clock;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Mutex;
use thiserror::Error;

/// The store could not answer. Callers fail closed: no session, no forwarding.
#[derive(Debug, Error)]
pub enum StoreError {
    /// Redis (or another backend) is unreachable or refused the command.
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    /// A stored record could not be decoded (written by an incompatible version?).
    #[error("session record unreadable: {0}")]
    Corrupt(String),
}

/// Where sessions live. Every replica of a deployment must use the same store.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// The record for `sid`, if it exists and has not expired.
    async fn load(&self, sid: &str) -> Result<Option<SessionRecord>, StoreError>;
    /// Creates or replaces the record; it disappears by itself after `ttl_secs`. Only for a
    /// new session id: writing back a record loaded earlier must use [`SessionStore::update`].
    async fn save(&self, sid: &str, rec: &SessionRecord, ttl_secs: u64) -> Result<(), StoreError>;
    /// Replaces the record only if the session still exists (Redis `SET … XX`); false when it
    /// is gone. A record loaded before a concurrent logout or revocation must never bring the
    /// session back by being written after the delete (finding L4).
    async fn update(
        &self,
        sid: &str,
        rec: &SessionRecord,
        ttl_secs: u64,
    ) -> Result<bool, StoreError>;
    /// Deletes one session; true when it existed (so of two racing callers only one "takes"
    /// a session id, e.g. to move it to a new id).
    async fn remove(&self, sid: &str) -> Result<bool, StoreError>;
    /// Deletes every session of provider `idp` whose provider session id is `idp_sid` or, when
    /// that is absent, whose subject is `sub`. Returns how many were removed.
    async fn revoke(
        &self,
        idp: &str,
        sub: Option<&str>,
        idp_sid: Option<&str>,
    ) -> Result<usize, StoreError>;
    /// Number of live sessions (for the gauge).
    async fn count(&self) -> Result<usize, StoreError>;
    /// Whether `key` (e.g. a back-channel logout token id) was recorded and has not expired.
    /// Shared by every replica when the store is (L6).
    async fn seen_once(&self, key: &str) -> Result<bool, StoreError>;
    /// Records `key` for `ttl_secs`; false when it was already recorded.
    async fn record_once(&self, key: &str, ttl_secs: u64) -> Result<bool, StoreError>;
}

/// Session id → (record, expiry in unix seconds).
type Sessions = HashMap<String, (SessionRecord, i64)>;

/// Sessions in this process's memory: lost on restart, not shared between replicas.
#[derive(Debug, Default)]
pub struct MemoryStore {
    map: Mutex<Sessions>,
    /// [`SessionStore::record_once`] keys with their expiry.
    once: Mutex<HashMap<String, i64>>,
    /// Expiry is judged by this clock (tests move it instead of sleeping).
    clock: Clock,
}

/// Whether a record matches a revocation request.
pub fn revocation_matches(
    rec: &SessionRecord,
    idp: &str,
    sub: Option<&str>,
    idp_sid: Option<&str>,
) -> bool {
    if rec.idp != idp {
        return false;
    }
    match (idp_sid, sub) {
        // A session recorded without a provider session id may belong to this one: it ends
        // too (fail closed, L6).
        (Some(s), Some(u)) => {
            rec.sub == u && (rec.idp_sid.is_none() || rec.idp_sid.as_deref() == Some(s))
        }
        (Some(s), None) => rec.idp_sid.as_deref() == Some(s),
        (None, Some(u)) => rec.sub == u,
        (None, None) => false,
    }
}

fn poisoned() -> StoreError {
    StoreError::Unavailable("memory store lock poisoned".to_string())
}

impl MemoryStore {
    /// An empty store whose records expire by `clock`.
    pub fn with_clock(clock: Clock) -> Self {
        Self {
            clock,
            ..Self::default()
        }
    }

    fn now(&self) -> i64 {
        self.clock.unix()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Sessions>, StoreError> {
        self.map.lock().map_err(|_| poisoned())
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn load(&self, sid: &str) -> Result<Option<SessionRecord>, StoreError> {
        let map = self.lock()?;
        Ok(map
            .get(sid)
            .filter(|(_, exp)| *exp > self.now())
            .map(|(r, _)| r.clone()))
    }

    async fn save(&self, sid: &str, rec: &SessionRecord, ttl_secs: u64) -> Result<(), StoreError> {
        let mut map = self.lock()?;
        let t = self.now();
        if map.len() > 1000 {
            map.retain(|_, (_, exp)| *exp > t);
        }
        let ttl = i64::try_from(ttl_secs).unwrap_or(i64::MAX / 2);
        map.insert(sid.to_string(), (rec.clone(), t.saturating_add(ttl)));
        Ok(())
    }

    async fn update(
        &self,
        sid: &str,
        rec: &SessionRecord,
        ttl_secs: u64,
    ) -> Result<bool, StoreError> {
        let mut map = self.lock()?;
        let t = self.now();
        match map.get_mut(sid) {
            Some((r, exp)) if *exp > t => {
                *r = rec.clone();
                *exp = t.saturating_add(i64::try_from(ttl_secs).unwrap_or(i64::MAX / 2));
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn remove(&self, sid: &str) -> Result<bool, StoreError> {
        let t = self.now();
        Ok(self.lock()?.remove(sid).is_some_and(|(_, exp)| exp > t))
    }

    async fn revoke(
        &self,
        idp: &str,
        sub: Option<&str>,
        idp_sid: Option<&str>,
    ) -> Result<usize, StoreError> {
        let mut map = self.lock()?;
        let before = map.len();
        map.retain(|_, (r, _)| !revocation_matches(r, idp, sub, idp_sid));
        Ok(before - map.len())
    }

    async fn count(&self) -> Result<usize, StoreError> {
        let t = self.now();
        Ok(self.lock()?.values().filter(|(_, e)| *e > t).count())
    }

    async fn seen_once(&self, key: &str) -> Result<bool, StoreError> {
        let once = self.once.lock().map_err(|_| poisoned())?;
        Ok(once.get(key).is_some_and(|exp| *exp > self.now()))
    }

    async fn record_once(&self, key: &str, ttl_secs: u64) -> Result<bool, StoreError> {
        let mut once = self.once.lock().map_err(|_| poisoned())?;
        let t = self.now();
        once.retain(|_, exp| *exp > t);
        let exp = t.saturating_add(i64::try_from(ttl_secs).unwrap_or(i64::MAX / 2));
        Ok(once.insert(key.to_string(), exp).is_none())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use portcullis_policy::input::Identity;

    pub(crate) fn record(idp: &str, sub: &str, sid: Option<&str>) -> SessionRecord {
        SessionRecord {
            identity: Identity {
                user: sub.to_string(),
                ..Default::default()
            },
            idp: idp.to_string(),
            sub: sub.to_string(),
            idp_sid: sid.map(str::to_string),
            created: crate::clock::Clock::system().unix(),
            last_seen: crate::clock::Clock::system().unix(),
            refresh_token: None,
            refresh_at: None,
            id_token: None,
            csrf: "c".to_string(),
        }
    }

    #[tokio::test]
    async fn save_load_remove_and_expiry() {
        let s = MemoryStore::default();
        s.save("a", &record("corp", "alice", None), 60)
            .await
            .unwrap();
        assert_eq!(s.load("a").await.unwrap().unwrap().sub, "alice");
        s.save("b", &record("corp", "bob", None), 0).await.unwrap();
        assert!(s.load("b").await.unwrap().is_none(), "ttl 0 is expired");
        s.remove("a").await.unwrap();
        assert!(s.load("a").await.unwrap().is_none());
    }

    /// Finding L4, at the store level (the race is inside the gateway, not reachable from
    /// outside deterministically): a request loads the session, a logout deletes it, then the
    /// request writes its copy back (touch, refresh, elevate). The write must not resurrect it.
    pub(crate) async fn write_back_after_delete_does_not_resurrect(s: &dyn SessionStore) {
        s.save("r", &record("corp", "alice", None), 60)
            .await
            .unwrap();
        let mut loaded = s.load("r").await.unwrap().unwrap();
        assert!(s.remove("r").await.unwrap(), "logout takes the session");
        loaded.last_seen += 60;
        assert!(!s.update("r", &loaded, 60).await.unwrap());
        assert!(s.load("r").await.unwrap().is_none(), "not resurrected");
        assert!(!s.remove("r").await.unwrap(), "only one caller takes an id");
        s.save("r2", &record("corp", "alice", None), 60)
            .await
            .unwrap();
        assert!(s.update("r2", &loaded, 60).await.unwrap());
        assert_eq!(
            s.load("r2").await.unwrap().unwrap().last_seen,
            loaded.last_seen
        );
    }

    /// Records and once-keys expire when the clock passes their ttl, without sleeping.
    #[tokio::test]
    async fn records_and_once_keys_expire_with_the_clock() {
        let m = crate::clock::ManualClock::at_now();
        let s = MemoryStore::with_clock(m.clock());
        s.save("a", &record("corp", "alice", None), 60)
            .await
            .unwrap();
        assert!(s.record_once("jti", 30).await.unwrap());
        assert!(!s.record_once("jti", 30).await.unwrap(), "recorded once");
        m.advance(std::time::Duration::from_secs(31));
        assert!(!s.seen_once("jti").await.unwrap(), "once-key expired");
        assert!(s.record_once("jti", 30).await.unwrap());
        assert!(s.load("a").await.unwrap().is_some(), "59 s left");
        m.advance(std::time::Duration::from_secs(29));
        assert!(s.load("a").await.unwrap().is_none(), "ttl over");
        assert_eq!(s.count().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn memory_write_back_after_delete_does_not_resurrect() {
        write_back_after_delete_does_not_resurrect(&MemoryStore::default()).await;
    }

    #[tokio::test]
    async fn revoke_by_provider_session_or_subject_only_within_that_provider() {
        let s = MemoryStore::default();
        s.save("1", &record("corp", "alice", Some("s1")), 60)
            .await
            .unwrap();
        s.save("2", &record("corp", "alice", Some("s2")), 60)
            .await
            .unwrap();
        s.save("3", &record("other", "alice", Some("s1")), 60)
            .await
            .unwrap();
        assert_eq!(s.revoke("corp", None, Some("s1")).await.unwrap(), 1);
        assert!(s.load("2").await.unwrap().is_some());
        assert_eq!(s.revoke("corp", Some("alice"), None).await.unwrap(), 1);
        assert!(s.load("3").await.unwrap().is_some());
        assert_eq!(s.revoke("corp", None, None).await.unwrap(), 0);
    }
}
