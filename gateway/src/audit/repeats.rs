//! Aggregation of repeated anonymous-triggerable events (finding M7).
//!
//! Anyone can hit a privileged route or the login callback as often as they like; if each hit
//! were one audit event, a flood would bury (or, with a bounded queue, push out) the records an
//! auditor needs: MFA failures, lockouts, logins. So events an anonymous client can cause in bulk
//! (`policy.denied`, `auth.login_failed`) go through here: the first occurrence of a
//! `(kind, scope, client IP)` key in a window is recorded at once, in full; repeats in the same
//! window are only counted, and when the window closes one summary event per key records how
//! many there were (`"repeats": n`), so no occurrence is lost from the count.
//!
//! Memory is bounded: at most [`MAX_KEYS`] distinct keys per window; beyond that, repeats are
//! counted under the key with client IP `*` (one per kind and scope), so a flood from many
//! addresses still ends up counted, never dropped and never unbounded.

use std::collections::HashMap;
use std::sync::Mutex;

/// Distinct `(kind, scope, client IP)` keys kept per window.
pub const MAX_KEYS: usize = 1024;

/// The address under which repeats from addresses beyond [`MAX_KEYS`] are counted.
pub const OVERFLOW_IP: &str = "*";

/// What to do with one occurrence.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// First of its key in this window: record it now, in full.
    Record,
    /// A repeat: counted, summarised when the window closes.
    Counted,
}

/// A summary of the repeats of one key in one window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Event kind.
    pub kind: String,
    /// Route or provider id.
    pub scope: String,
    /// Client IP (or [`OVERFLOW_IP`]).
    pub client_ip: String,
    /// Occurrences counted but not recorded individually.
    pub repeats: u64,
}

type Key = (String, String, String);

/// Repeat counters of the current window.
#[derive(Debug, Default)]
pub struct Repeats {
    counts: Mutex<HashMap<Key, u64>>,
}

impl Repeats {
    /// Registers one occurrence. A poisoned lock records the event in full (fail towards more
    /// records, never fewer).
    pub fn admit(&self, kind: &str, scope: &str, client_ip: &str) -> Admit {
        let Ok(mut counts) = self.counts.lock() else {
            return Admit::Record;
        };
        let key = (kind.to_string(), scope.to_string(), client_ip.to_string());
        if let Some(n) = counts.get_mut(&key) {
            *n += 1;
            return Admit::Counted;
        }
        if counts.len() < MAX_KEYS {
            counts.insert(key, 0);
            return Admit::Record;
        }
        // Too many distinct keys: count under the overflow address of this kind and scope.
        *counts
            .entry((kind.to_string(), scope.to_string(), OVERFLOW_IP.to_string()))
            .or_insert(0) += 1;
        Admit::Counted
    }

    /// Closes the window: the keys that had repeats, and a fresh, empty window.
    pub fn drain(&self) -> Vec<Summary> {
        let Ok(mut counts) = self.counts.lock() else {
            return Vec::new();
        };
        let mut out: Vec<Summary> = counts
            .drain()
            .filter(|(_, n)| *n > 0)
            .map(|((kind, scope, client_ip), repeats)| Summary {
                kind,
                scope,
                client_ip,
                repeats,
            })
            .collect();
        out.sort_by(|a, b| {
            (&a.kind, &a.scope, &a.client_ip).cmp(&(&b.kind, &b.scope, &b.client_ip))
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_is_recorded_repeats_are_counted_and_summarised_once() {
        let r = Repeats::default();
        assert_eq!(r.admit("policy.denied", "admin", "1.2.3.4"), Admit::Record);
        for _ in 0..5 {
            assert_eq!(r.admit("policy.denied", "admin", "1.2.3.4"), Admit::Counted);
        }
        assert_eq!(r.admit("policy.denied", "other", "1.2.3.4"), Admit::Record);
        let s = r.drain();
        assert_eq!(
            s,
            vec![Summary {
                kind: "policy.denied".into(),
                scope: "admin".into(),
                client_ip: "1.2.3.4".into(),
                repeats: 5
            }]
        );
        assert!(r.drain().is_empty(), "a new window starts empty");
        assert_eq!(r.admit("policy.denied", "admin", "1.2.3.4"), Admit::Record);
    }

    #[test]
    fn many_addresses_stay_bounded_and_are_all_counted() {
        let r = Repeats::default();
        let n = MAX_KEYS as u64 + 500;
        let recorded = (0..n)
            .filter(|i| r.admit("policy.denied", "admin", &format!("ip{i}")) == Admit::Record)
            .count() as u64;
        assert_eq!(recorded, MAX_KEYS as u64);
        let s = r.drain();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].client_ip, OVERFLOW_IP);
        assert_eq!(recorded + s[0].repeats, n, "every occurrence counted");
    }
}
