//! The session store trait and its in-memory implementation (one replica).

use super::SessionRecord;
use crate::clock::Clock;
use async_trait::async_trait;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use thiserror::Error;
use tokio::sync::broadcast;

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
    /// The live sessions of subject `sub` at provider `idp`, with their ids (the admin API
    /// shows them; a password change ends all but the current one). Read through the same
    /// index revocation uses, so the cost follows that user's sessions, not everyone's; the
    /// index expires with the sessions it lists.
    async fn sessions_of(
        &self,
        idp: &str,
        sub: &str,
    ) -> Result<Vec<(String, SessionRecord)>, StoreError>;
    /// Number of live sessions (for the gauge).
    async fn count(&self) -> Result<usize, StoreError>;
    /// Whether `key` (e.g. a back-channel logout token id) was recorded and has not expired.
    /// Shared by every replica when the store is (L6).
    async fn seen_once(&self, key: &str) -> Result<bool, StoreError>;
    /// Records `key` for `ttl_secs`; false when it was already recorded.
    async fn record_once(&self, key: &str, ttl_secs: u64) -> Result<bool, StoreError>;
    /// Notices of sessions removed on any replica sharing this store, so that open tunnels
    /// end at once instead of at their next poll ([`crate::tunnel::watch`]). A store without
    /// notices returns a closed receiver and its tunnels rely on polling alone.
    fn ended(&self) -> broadcast::Receiver<Ended> {
        broadcast::channel(1).1
    }
}

/// A notice on [`SessionStore::ended`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// This session id was removed (logout, revocation, deprovisioning) on some replica.
    Sid(Arc<str>),
    /// Notices may have been missed (the subscription was just made or lost): every watcher
    /// looks its session up again now rather than at its next poll.
    Recheck,
}

/// The sending side of [`SessionStore::ended`], one per store. Sending never blocks: with no
/// tunnel open there is no receiver and the notice is simply dropped.
#[derive(Debug, Clone)]
pub struct Notices(broadcast::Sender<Ended>);

impl Default for Notices {
    fn default() -> Self {
        // A slow watcher that falls this far behind gets `Lagged` and rechecks its session.
        Self(broadcast::channel(1024).0)
    }
}

impl Notices {
    /// Tells every watcher in this process that `sid` ended.
    pub fn sid(&self, sid: &str) {
        let _ = self.0.send(Ended::Sid(Arc::from(sid)));
    }

    /// Tells every watcher in this process to look its session up again.
    pub fn recheck(&self) {
        let _ = self.0.send(Ended::Recheck);
    }

    /// A new receiver (notices sent from now on).
    pub fn subscribe(&self) -> broadcast::Receiver<Ended> {
        self.0.subscribe()
    }
}

/// The index entries a record is listed under: its provider subject and, when known, its
/// provider session id. Shared by every store so that revocation finds a user's sessions
/// without reading all of them (the Redis store prefixes them with `pc:`).
pub fn index_keys(rec: &SessionRecord) -> Vec<String> {
    revocation_index_keys(&rec.idp, Some(&rec.sub), rec.idp_sid.as_deref())
}

/// The index entries that hold every candidate of a revocation request; candidates are then
/// checked with [`revocation_matches`] (an index may hold stale or colliding ids).
pub fn revocation_index_keys(idp: &str, sub: Option<&str>, idp_sid: Option<&str>) -> Vec<String> {
    let mut v = Vec::with_capacity(2);
    if let Some(u) = sub {
        v.push(format!("i:{idp}:sub:{u}"));
    }
    if let Some(s) = idp_sid {
        v.push(format!("i:{idp}:sid:{s}"));
    }
    v
}

/// Sessions by id with their expiry (unix seconds), and the revocation index over them,
/// always changed together under one lock.
#[derive(Debug, Default)]
struct Sessions {
    records: HashMap<String, (SessionRecord, i64)>,
    /// [`index_keys`] entry → session ids listed under it.
    index: HashMap<String, HashSet<String>>,
}

impl Sessions {
    fn insert(&mut self, sid: &str, rec: SessionRecord, exp: i64) {
        self.take(sid);
        for k in index_keys(&rec) {
            self.index.entry(k).or_default().insert(sid.to_string());
        }
        self.records.insert(sid.to_string(), (rec, exp));
    }

    /// Removes `sid` and its index entries.
    fn take(&mut self, sid: &str) -> Option<(SessionRecord, i64)> {
        let (rec, exp) = self.records.remove(sid)?;
        for k in index_keys(&rec) {
            if let Some(set) = self.index.get_mut(&k) {
                set.remove(sid);
                if set.is_empty() {
                    self.index.remove(&k);
                }
            }
        }
        Some((rec, exp))
    }

    fn prune(&mut self, now: i64) {
        let expired: Vec<String> = self
            .records
            .iter()
            .filter(|(_, (_, exp))| *exp <= now)
            .map(|(sid, _)| sid.clone())
            .collect();
        for sid in expired {
            self.take(&sid);
        }
    }
}

/// Sessions in this process's memory: lost on restart, not shared between replicas.
#[derive(Debug, Default)]
pub struct MemoryStore {
    map: Mutex<Sessions>,
    /// Removals, for this process's tunnels.
    notices: Notices,
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
            .records
            .get(sid)
            .filter(|(_, exp)| *exp > self.now())
            .map(|(r, _)| r.clone()))
    }

    async fn save(&self, sid: &str, rec: &SessionRecord, ttl_secs: u64) -> Result<(), StoreError> {
        let mut map = self.lock()?;
        let t = self.now();
        if map.records.len() > 1000 {
            map.prune(t);
        }
        let ttl = i64::try_from(ttl_secs).unwrap_or(i64::MAX / 2);
        map.insert(sid, rec.clone(), t.saturating_add(ttl));
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
        if map.records.get(sid).is_none_or(|(_, exp)| *exp <= t) {
            return Ok(false);
        }
        let exp = t.saturating_add(i64::try_from(ttl_secs).unwrap_or(i64::MAX / 2));
        map.insert(sid, rec.clone(), exp);
        Ok(true)
    }

    async fn remove(&self, sid: &str) -> Result<bool, StoreError> {
        let t = self.now();
        let live = self.lock()?.take(sid).is_some_and(|(_, exp)| exp > t);
        if live {
            self.notices.sid(sid);
        }
        Ok(live)
    }

    async fn revoke(
        &self,
        idp: &str,
        sub: Option<&str>,
        idp_sid: Option<&str>,
    ) -> Result<usize, StoreError> {
        let ended: Vec<String> = {
            let mut map = self.lock()?;
            let candidates: HashSet<String> = revocation_index_keys(idp, sub, idp_sid)
                .iter()
                .filter_map(|k| map.index.get(k))
                .flatten()
                .cloned()
                .collect();
            let mut ended = Vec::new();
            for sid in candidates {
                let matches = map
                    .records
                    .get(&sid)
                    .is_some_and(|(r, _)| revocation_matches(r, idp, sub, idp_sid));
                if matches && map.take(&sid).is_some() {
                    ended.push(sid);
                }
            }
            ended
        };
        for sid in &ended {
            self.notices.sid(sid);
        }
        Ok(ended.len())
    }

    async fn sessions_of(
        &self,
        idp: &str,
        sub: &str,
    ) -> Result<Vec<(String, SessionRecord)>, StoreError> {
        let t = self.now();
        let map = self.lock()?;
        let mut found: Vec<(String, SessionRecord)> = revocation_index_keys(idp, Some(sub), None)
            .iter()
            .filter_map(|k| map.index.get(k))
            .flatten()
            .filter_map(|sid| {
                map.records
                    .get(sid)
                    .filter(|(r, exp)| *exp > t && revocation_matches(r, idp, Some(sub), None))
                    .map(|(r, _)| (sid.clone(), r.clone()))
            })
            .collect();
        found.sort_by(|a, b| a.1.created.cmp(&b.1.created).then_with(|| a.0.cmp(&b.0)));
        Ok(found)
    }

    async fn count(&self) -> Result<usize, StoreError> {
        let t = self.now();
        Ok(self
            .lock()?
            .records
            .values()
            .filter(|(_, e)| *e > t)
            .count())
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

    fn ended(&self) -> broadcast::Receiver<Ended> {
        self.notices.subscribe()
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

    /// Reads `rx` until every id in `expected` was announced, failing on any other id or
    /// after 5 s; [`Ended::Recheck`] notices are skipped.
    pub(crate) async fn expect_ended(rx: &mut broadcast::Receiver<Ended>, expected: &[&str]) {
        let mut left: HashSet<&str> = expected.iter().copied().collect();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while !left.is_empty() {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Ok(Ended::Sid(sid))) => {
                    assert!(left.remove(&*sid), "unexpected end of {sid}");
                }
                Ok(Ok(Ended::Recheck)) => {}
                other => panic!("still waiting for {left:?}: {other:?}"),
            }
        }
    }

    /// Deprovisioning a user ends all of that (provider, subject)'s sessions, with or without
    /// a provider session id, announces exactly them, and leaves the same subject at another
    /// provider, other users, and a subject that only looks like an index key alone.
    pub(crate) async fn revoke_user_ends_all_and_only_that_users_sessions(
        s: &dyn SessionStore,
        rx: &mut broadcast::Receiver<Ended>,
    ) {
        let sessions = [
            ("a1", "corp", "alice", Some("s1")),
            ("a2", "corp", "alice", None),
            ("a3", "corp", "alice", Some("s2")),
            ("p1", "partner", "alice", None),
            ("b1", "corp", "bob", None),
            ("x1", "corp", "alice:sid:s1", None),
        ];
        for (sid, idp, sub, idp_sid) in sessions {
            s.save(sid, &record(idp, sub, idp_sid), 60).await.unwrap();
        }
        // A logged-out session leaves a stale index entry behind in Redis; it is skipped.
        assert!(s.remove("a3").await.unwrap());
        expect_ended(rx, &["a3"]).await;
        assert_eq!(s.revoke("corp", Some("alice"), None).await.unwrap(), 2);
        expect_ended(rx, &["a1", "a2"]).await;
        for gone in ["a1", "a2", "a3"] {
            assert!(s.load(gone).await.unwrap().is_none(), "{gone} ended");
        }
        for kept in ["p1", "b1", "x1"] {
            assert!(s.load(kept).await.unwrap().is_some(), "{kept} kept");
        }
        assert_eq!(s.revoke("corp", Some("alice"), None).await.unwrap(), 0);
        assert_eq!(s.revoke("partner", Some("alice"), None).await.unwrap(), 1);
        expect_ended(rx, &["p1"]).await;
        assert!(s.load("b1").await.unwrap().is_some());
    }

    /// A user's sessions are listed through the index: only theirs, only live ones, oldest
    /// first, and a session that ended is no longer listed.
    pub(crate) async fn sessions_of_lists_one_users_live_sessions(s: &dyn SessionStore) {
        let mut old = record("corp", "alice", Some("s1"));
        old.created -= 100;
        s.save("a1", &old, 60).await.unwrap();
        s.save("a2", &record("corp", "alice", None), 60)
            .await
            .unwrap();
        s.save("p1", &record("partner", "alice", None), 60)
            .await
            .unwrap();
        s.save("b1", &record("corp", "bob", None), 60)
            .await
            .unwrap();
        s.save("gone", &record("corp", "alice", None), 60)
            .await
            .unwrap();
        assert!(s.remove("gone").await.unwrap());
        let listed: Vec<String> = s
            .sessions_of("corp", "alice")
            .await
            .unwrap()
            .into_iter()
            .map(|(sid, r)| {
                assert_eq!((r.idp.as_str(), r.sub.as_str()), ("corp", "alice"));
                sid
            })
            .collect();
        assert_eq!(listed, ["a1", "a2"]);
        assert!(s.sessions_of("corp", "nobody").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn memory_sessions_of_lists_one_users_live_sessions() {
        let m = crate::clock::ManualClock::at_now();
        let s = MemoryStore::with_clock(m.clock());
        sessions_of_lists_one_users_live_sessions(&s).await;
        m.advance(std::time::Duration::from_secs(61));
        assert!(
            s.sessions_of("corp", "alice").await.unwrap().is_empty(),
            "expired sessions are not listed"
        );
    }

    #[tokio::test]
    async fn memory_revoke_user_ends_all_and_only_that_users_sessions() {
        let s = MemoryStore::default();
        let mut rx = s.ended();
        revoke_user_ends_all_and_only_that_users_sessions(&s, &mut rx).await;
        // The index follows the records: only the two sessions left are listed.
        let map = s.lock().unwrap();
        let listed: HashSet<&String> = map.index.values().flatten().collect();
        assert_eq!(listed.len(), 2);
        assert!(listed.iter().all(|sid| map.records.contains_key(*sid)));
    }

    /// The index drops ids when records are replaced under other keys, updated, or pruned.
    #[tokio::test]
    async fn memory_index_stays_in_step_with_the_records() {
        let m = crate::clock::ManualClock::at_now();
        let s = MemoryStore::with_clock(m.clock());
        s.save("a", &record("corp", "alice", Some("s1")), 60)
            .await
            .unwrap();
        assert!(s
            .update("a", &record("corp", "alice", None), 60)
            .await
            .unwrap());
        assert_eq!(s.revoke("corp", None, Some("s1")).await.unwrap(), 0);
        for i in 0..1001 {
            s.save(&format!("old{i}"), &record("corp", "bob", None), 10)
                .await
                .unwrap();
        }
        m.advance(std::time::Duration::from_secs(11));
        s.save("new", &record("corp", "carol", None), 60)
            .await
            .unwrap();
        let map = s.lock().unwrap();
        assert_eq!(map.records.len(), 2, "expired records pruned");
        assert_eq!(
            map.index.keys().collect::<HashSet<_>>(),
            HashSet::from([
                &"i:corp:sub:alice".to_string(),
                &"i:corp:sub:carol".to_string()
            ])
        );
    }
}
