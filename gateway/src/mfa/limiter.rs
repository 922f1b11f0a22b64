//! Wrong-code limits: per user and per client IP, with lockout once a limit is reached. Kept in
//! this process (shared across replicas is not implemented yet: see SECURITY.md).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    locked_until: Option<Instant>,
    last: Instant,
}

/// Counts failures per key (`user:…`, `ip:…`).
#[derive(Debug)]
pub struct Limiter {
    per_user: u32,
    per_ip: u32,
    lockout: Duration,
    map: Mutex<HashMap<String, Entry>>,
}

impl Limiter {
    /// Limits from the config.
    pub fn new(per_user: u32, per_ip: u32, lockout: Duration) -> Self {
        Self {
            per_user,
            per_ip,
            lockout,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn keys(user: &str, ip: &str) -> [String; 2] {
        [format!("user:{user}"), format!("ip:{ip}")]
    }

    /// Remaining lockout if the user or the IP is locked. A poisoned lock counts as locked
    /// (fail closed).
    pub fn locked(&self, user: &str, ip: &str, now: Instant) -> Option<Duration> {
        let Ok(map) = self.map.lock() else {
            return Some(self.lockout);
        };
        Self::keys(user, ip)
            .iter()
            .filter_map(|k| map.get(k).and_then(|e| e.locked_until))
            .filter(|until| *until > now)
            .map(|until| until - now)
            .max()
    }

    /// Records a wrong code; true when this failure locked the user or the IP.
    pub fn fail(&self, user: &str, ip: &str, now: Instant) -> bool {
        let Ok(mut map) = self.map.lock() else {
            return true;
        };
        // Forget stale entries so the map cannot grow without bound.
        if map.len() > 100_000 {
            let lockout = self.lockout;
            map.retain(|_, e| now.duration_since(e.last) < lockout);
        }
        let mut locked = false;
        for (k, limit) in Self::keys(user, ip)
            .into_iter()
            .zip([self.per_user, self.per_ip])
        {
            let e = map.entry(k).or_insert(Entry {
                failures: 0,
                locked_until: None,
                last: now,
            });
            if e.locked_until.is_some_and(|u| u <= now) {
                e.failures = 0;
                e.locked_until = None;
            }
            e.failures += 1;
            e.last = now;
            if e.failures >= limit && e.locked_until.is_none() {
                e.locked_until = Some(now + self.lockout);
                locked = true;
            }
        }
        locked
    }

    /// A correct code: the user's count starts again (the IP's does not).
    pub fn success(&self, user: &str) {
        if let Ok(mut map) = self.map.lock() {
            map.remove(&format!("user:{user}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_user_then_ip_and_expires() {
        let l = Limiter::new(3, 5, Duration::from_secs(60));
        let t = Instant::now();
        assert!(!l.fail("ann", "1.1.1.1", t));
        assert!(!l.fail("ann", "1.1.1.1", t));
        assert_eq!(l.locked("ann", "1.1.1.1", t), None);
        assert!(l.fail("ann", "1.1.1.1", t), "third failure locks the user");
        assert!(
            l.locked("ann", "9.9.9.9", t).is_some(),
            "user locked from any IP"
        );
        assert_eq!(l.locked("bob", "1.1.1.1", t), None, "IP not yet locked");
        assert!(!l.fail("bob", "1.1.1.1", t));
        assert!(
            l.fail("cat", "1.1.1.1", t),
            "fifth failure from the IP locks it"
        );
        assert!(l.locked("dan", "1.1.1.1", t).is_some());
        let later = t + Duration::from_secs(61);
        assert_eq!(l.locked("ann", "1.1.1.1", later), None, "lockout expires");
        l.success("bob");
        assert!(
            !l.fail("bob", "2.2.2.2", later),
            "success reset bob's count"
        );
    }
}
