//! Wrong-code and code-sending limits: per user and per client IP, with lockout once a limit is
//! reached. The arithmetic lives here once; the counters sit behind [`Counters`]: in this
//! process ([`MemoryCounters`], one replica) or in Redis ([`RedisCounters`], when the session
//! store is Redis) so that every replica sees the same counts and lockouts. Any counter error
//! counts as locked and as "do not send" (fail closed, security-relevant).

use crate::clock::Clock;
use crate::session::redis_store::RedisConn;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use thiserror::Error;

/// The counter backend did not answer (Redis down, poisoned lock).
#[derive(Debug, Error)]
#[error("attempt counters unavailable: {0}")]
pub struct CounterError(String);

/// Expiring counters and locks, keyed by strings such as `user:alice` or `ip:10.0.0.1`.
#[async_trait]
pub trait Counters: Send + Sync {
    /// Adds one to `key`'s count, which lives `window` from its first hit; returns the count.
    async fn hit(&self, key: &str, window: Duration) -> Result<u64, CounterError>;
    /// Locks `key` for `dur` unless it is locked already; true if this call locked it.
    async fn lock(&self, key: &str, dur: Duration) -> Result<bool, CounterError>;
    /// What is left of `key`'s lock.
    async fn remaining(&self, key: &str) -> Result<Option<Duration>, CounterError>;
    /// Forgets `key`'s count.
    async fn reset(&self, key: &str) -> Result<(), CounterError>;
    /// Takes one back from `key`'s live count (never below 0; a missing count stays missing,
    /// so no count ever lives without its expiry).
    async fn unhit(&self, key: &str) -> Result<(), CounterError>;
}

/// At most this many codes are sent to one user per hour, whatever the channel.
const SENDS_PER_HOUR: u64 = 10;
/// The shortest wait between two codes on one channel (shorter if the code lifetime is).
pub const RESEND_INTERVAL: Duration = Duration::from_secs(30);

/// Counts failures per user and per IP.
pub struct Limiter {
    per_user: u32,
    per_ip: u32,
    lockout: Duration,
    counters: Arc<dyn Counters>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Limiter({}/{} per {:?})",
            self.per_user, self.per_ip, self.lockout
        )
    }
}

fn closed<T>(r: Result<T, CounterError>, fallback: T) -> T {
    r.unwrap_or_else(|e| {
        tracing::error!(error = %e, "mfa attempt counters unavailable: refusing (fail closed)");
        fallback
    })
}

impl Limiter {
    /// Limits from the config, counted in this process.
    pub fn new(per_user: u32, per_ip: u32, lockout: Duration) -> Self {
        Self::with_counters(
            per_user,
            per_ip,
            lockout,
            Arc::new(MemoryCounters::default()),
        )
    }

    /// The counters for a process: in the session store's Redis when there is one (shared by
    /// every replica, over the process's one connection), else in memory on `clock`.
    pub fn counters(
        redis: Option<Arc<RedisConn>>,
        clock: &crate::clock::Clock,
    ) -> Arc<dyn Counters> {
        match redis {
            Some(conn) => Arc::new(RedisCounters::over(conn)),
            None => Arc::new(MemoryCounters::with_clock(clock.clone())),
        }
    }

    /// Limits from the config over the given counters.
    pub fn with_counters(
        per_user: u32,
        per_ip: u32,
        lockout: Duration,
        counters: Arc<dyn Counters>,
    ) -> Self {
        Self {
            per_user,
            per_ip,
            lockout,
            counters,
        }
    }

    fn keys(user: &str, ip: &str) -> [String; 2] {
        [format!("user:{user}"), format!("ip:{ip}")]
    }

    /// Remaining lockout if the user or the IP is locked (counter errors: locked). A hint for
    /// pages only: whether a code may be *evaluated* is decided by [`Limiter::begin`].
    pub async fn locked(&self, user: &str, ip: &str) -> Option<Duration> {
        let mut worst = None;
        for k in Self::keys(user, ip) {
            match self.counters.remaining(&format!("lock:{k}")).await {
                Ok(r) => worst = worst.max(r),
                Err(e) => return closed(Err(e), Some(self.lockout)),
            }
        }
        worst
    }

    /// Counts an attempt *before* its code is checked (security-relevant: count first, verify
    /// second). The user's and the IP's counts are incremented atomically; an attempt that
    /// takes either past its limit, or that comes while a lockout runs, is refused without
    /// being evaluated, so N concurrent guesses get at most `per_user` evaluations, not N.
    /// The caller settles the returned [`Attempt`]: [`Attempt::succeeded`] (the user's count
    /// starts again), [`Attempt::failed`] (it stays counted; reaching the limit locks), or
    /// [`Attempt::refund`] (nothing was guessed). An attempt dropped unsettled (an error on
    /// the way) stays counted: fail closed.
    pub async fn begin(&self, user: &str, ip: &str) -> Result<Attempt<'_>, Locked> {
        if self.locked(user, ip).await.is_some() {
            return Err(Locked);
        }
        let keys = Self::keys(user, ip);
        let limits = [self.per_user, self.per_ip];
        let mut counts = [0u64; 2];
        for (i, k) in keys.iter().enumerate() {
            match self.counters.hit(&format!("fail:{k}"), self.lockout).await {
                Ok(n) => counts[i] = n,
                Err(e) => return closed(Err(e), Err(Locked)),
            }
        }
        let mut over = false;
        for (i, k) in keys.iter().enumerate() {
            if counts[i] > u64::from(limits[i]) {
                over = true;
                // Normally the failure that reached the limit set the lock already; this
                // covers a lock that expired while the count is still over.
                closed(
                    self.counters.lock(&format!("lock:{k}"), self.lockout).await,
                    true,
                );
            }
        }
        if over {
            return Err(Locked);
        }
        Ok(Attempt {
            limiter: self,
            keys,
            reached: [
                counts[0] >= u64::from(limits[0]),
                counts[1] >= u64::from(limits[1]),
            ],
        })
    }

    /// Whether a code may be sent to `user` on `channel` now: one per `interval` per channel
    /// and [`SENDS_PER_HOUR`] in all. Counts the send when allowed.
    pub async fn may_send(&self, user: &str, channel: &str, interval: Duration) -> bool {
        let r: Result<bool, CounterError> = async {
            if self
                .counters
                .hit(&format!("send:{channel}:{user}"), interval)
                .await?
                > 1
            {
                return Ok(false);
            }
            Ok(self
                .counters
                .hit(&format!("sends:{user}"), Duration::from_secs(3600))
                .await?
                <= SENDS_PER_HOUR)
        }
        .await;
        closed(r, false)
    }
}

/// An attempt is refused without evaluation: the user or the IP is locked out (or the
/// counters are unavailable: fail closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locked;

/// An attempt counted by [`Limiter::begin`], to be settled once its code was checked.
#[derive(Debug)]
#[must_use = "settle the attempt: succeeded, failed or refund"]
pub struct Attempt<'a> {
    limiter: &'a Limiter,
    keys: [String; 2],
    /// Whether this attempt's count reached the user's / the IP's limit.
    reached: [bool; 2],
}

impl Attempt<'_> {
    /// The code was right: the user's count starts again, and this attempt is no longer held
    /// against the IP (its other failures are).
    pub async fn succeeded(self) {
        let c = &self.limiter.counters;
        closed(c.reset(&format!("fail:{}", self.keys[0])).await, ());
        closed(c.unhit(&format!("fail:{}", self.keys[1])).await, ());
    }

    /// The code was wrong: it stays counted; true when it reached a limit and locked the user
    /// or the IP now.
    pub async fn failed(self) -> bool {
        let mut locked = false;
        for (k, reached) in self.keys.iter().zip(self.reached) {
            if reached {
                let r = self
                    .limiter
                    .counters
                    .lock(&format!("lock:{k}"), self.limiter.lockout)
                    .await;
                locked |= closed(r, true);
            }
        }
        locked
    }

    /// Nothing was guessed (an expired code, no code pending): the attempt is given back.
    pub async fn refund(self) {
        for k in &self.keys {
            closed(self.limiter.counters.unhit(&format!("fail:{k}")).await, ());
        }
    }
}

/// One expiring count.
#[derive(Debug, Clone, Copy)]
struct Entry {
    count: u64,
    until: Instant,
}

/// Counters in this process's memory (one replica).
#[derive(Debug, Default)]
pub struct MemoryCounters {
    map: Mutex<HashMap<String, Entry>>,
    /// Windows and lockouts expire by this clock's monotonic time (tests move it).
    clock: Clock,
}

impl MemoryCounters {
    /// Empty counters whose windows and lockouts expire by `clock`.
    pub fn with_clock(clock: Clock) -> Self {
        Self {
            map: Mutex::default(),
            clock,
        }
    }

    fn now(&self) -> Instant {
        self.clock.instant()
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut HashMap<String, Entry>, Instant) -> T,
    ) -> Result<T, CounterError> {
        let now = self.now();
        let mut map = self
            .map
            .lock()
            .map_err(|_| CounterError("memory counters lock poisoned".into()))?;
        // Forget expired entries so the map cannot grow without bound.
        if map.len() > 100_000 {
            map.retain(|_, e| e.until > now);
        }
        Ok(f(&mut map, now))
    }
}

fn live(map: &HashMap<String, Entry>, key: &str, now: Instant) -> Option<Entry> {
    map.get(key).copied().filter(|e| e.until > now)
}

#[async_trait]
impl Counters for MemoryCounters {
    async fn hit(&self, key: &str, window: Duration) -> Result<u64, CounterError> {
        self.with(|map, now| {
            let e = match live(map, key, now) {
                Some(e) => Entry {
                    count: e.count + 1,
                    until: e.until,
                },
                None => Entry {
                    count: 1,
                    until: now + window,
                },
            };
            map.insert(key.to_string(), e);
            e.count
        })
    }

    async fn lock(&self, key: &str, dur: Duration) -> Result<bool, CounterError> {
        self.with(|map, now| {
            if live(map, key, now).is_some() {
                return false;
            }
            map.insert(
                key.to_string(),
                Entry {
                    count: 1,
                    until: now + dur,
                },
            );
            true
        })
    }

    async fn remaining(&self, key: &str) -> Result<Option<Duration>, CounterError> {
        self.with(|map, now| live(map, key, now).map(|e| e.until - now))
    }

    async fn reset(&self, key: &str) -> Result<(), CounterError> {
        self.with(|map, _| {
            map.remove(key);
        })
    }

    async fn unhit(&self, key: &str) -> Result<(), CounterError> {
        self.with(|map, now| {
            if let Some(e) = live(map, key, now) {
                map.insert(
                    key.to_string(),
                    Entry {
                        count: e.count.saturating_sub(1),
                        until: e.until,
                    },
                );
            }
        })
    }
}

/// Counters in Redis, shared by every replica: `pc:mfa:{key}` with a TTL. `hit` is one Lua
/// script (INCR, and PEXPIRE on the first hit), so a count never lives without its expiry.
#[derive(Debug)]
pub struct RedisCounters {
    conn: std::sync::Arc<RedisConn>,
    hit: redis::Script,
    unhit: redis::Script,
}

impl RedisCounters {
    /// Over its own connection to `url`; connects on first use.
    pub fn new(url: &str) -> Result<Self, CounterError> {
        let conn = RedisConn::new(url).map_err(|e| CounterError(e.to_string()))?;
        Ok(Self::over(std::sync::Arc::new(conn)))
    }

    /// Over the process's shared connection (the session store's).
    pub fn over(conn: std::sync::Arc<RedisConn>) -> Self {
        Self {
            conn,
            hit: redis::Script::new(
                "local n = redis.call('INCR', KEYS[1]) \
                 if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end \
                 return n",
            ),
            // DECR keeps the TTL; a key that is gone is not recreated without one.
            unhit: redis::Script::new(
                "local n = tonumber(redis.call('GET', KEYS[1])) \
                 if n and n > 0 then return redis.call('DECR', KEYS[1]) end return 0",
            ),
        }
    }
}

fn rkey(key: &str) -> String {
    format!("pc:mfa:{key}")
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[async_trait]
impl Counters for RedisCounters {
    async fn hit(&self, key: &str, window: Duration) -> Result<u64, CounterError> {
        let mut inv = self.hit.prepare_invoke();
        inv.key(rkey(key)).arg(millis(window));
        self.conn.invoke(&inv).await.map_err(CounterError)
    }

    async fn lock(&self, key: &str, dur: Duration) -> Result<bool, CounterError> {
        let set: Option<String> = self
            .conn
            .run(
                redis::cmd("SET")
                    .arg(rkey(key))
                    .arg(1)
                    .arg("PX")
                    .arg(millis(dur))
                    .arg("NX"),
            )
            .await
            .map_err(CounterError)?;
        Ok(set.is_some())
    }

    async fn remaining(&self, key: &str) -> Result<Option<Duration>, CounterError> {
        let ms: i64 = self
            .conn
            .run(redis::cmd("PTTL").arg(rkey(key)))
            .await
            .map_err(CounterError)?;
        Ok(match ms {
            -2 => None,
            // A lock without expiry should not exist; treat it as locked (fail closed).
            -1 => Some(Duration::MAX),
            ms => Some(Duration::from_millis(u64::try_from(ms).unwrap_or(0))),
        })
    }

    async fn reset(&self, key: &str) -> Result<(), CounterError> {
        self.conn
            .run::<i64>(redis::cmd("DEL").arg(rkey(key)))
            .await
            .map(|_| ())
            .map_err(CounterError)
    }

    async fn unhit(&self, key: &str) -> Result<(), CounterError> {
        let mut inv = self.unhit.prepare_invoke();
        inv.key(rkey(key));
        self.conn
            .invoke::<i64>(&inv)
            .await
            .map(|_| ())
            .map_err(CounterError)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::clock::ManualClock;

    /// Memory counters on a manual clock: lockouts expire by `advance`, not by sleeping.
    fn counters(c: &Arc<ManualClock>) -> Arc<MemoryCounters> {
        Arc::new(MemoryCounters::with_clock(c.clock()))
    }

    /// Counters that always fail (Redis down).
    struct Broken;

    #[async_trait]
    impl Counters for Broken {
        async fn hit(&self, _: &str, _: Duration) -> Result<u64, CounterError> {
            Err(CounterError("down".into()))
        }
        async fn lock(&self, _: &str, _: Duration) -> Result<bool, CounterError> {
            Err(CounterError("down".into()))
        }
        async fn remaining(&self, _: &str) -> Result<Option<Duration>, CounterError> {
            Err(CounterError("down".into()))
        }
        async fn reset(&self, _: &str) -> Result<(), CounterError> {
            Err(CounterError("down".into()))
        }
        async fn unhit(&self, _: &str) -> Result<(), CounterError> {
            Err(CounterError("down".into()))
        }
    }

    /// One wrong code, settled the way the flows do: true when it locked (or was refused).
    async fn wrong(l: &Limiter, user: &str, ip: &str) -> bool {
        match l.begin(user, ip).await {
            Ok(a) => a.failed().await,
            Err(Locked) => true,
        }
    }

    /// `n` attempts for `user` begun at once, all settled as wrong once every one has begun:
    /// how many were let through to be evaluated.
    async fn concurrent_wrong(l: &Limiter, user: &str, n: usize) -> usize {
        let begun = futures_util::future::join_all((0..n).map(|_| l.begin(user, "1.1.1.1"))).await;
        let mut evaluated = 0;
        for a in begun.into_iter().flatten() {
            evaluated += 1;
            let _ = a.failed().await;
        }
        evaluated
    }

    #[tokio::test]
    async fn locks_user_then_ip_and_expires() {
        let c = ManualClock::at_now();
        let l = Limiter::with_counters(3, 5, Duration::from_secs(60), counters(&c));
        assert!(!wrong(&l, "ann", "1.1.1.1").await);
        assert!(!wrong(&l, "ann", "1.1.1.1").await);
        assert_eq!(l.locked("ann", "1.1.1.1").await, None);
        assert!(
            wrong(&l, "ann", "1.1.1.1").await,
            "third failure locks the user"
        );
        assert!(
            l.locked("ann", "9.9.9.9").await.is_some(),
            "user locked from any IP"
        );
        assert_eq!(l.locked("bob", "1.1.1.1").await, None, "IP not yet locked");
        assert!(!wrong(&l, "bob", "1.1.1.1").await);
        assert!(
            wrong(&l, "cat", "1.1.1.1").await,
            "fifth failure from the IP locks it"
        );
        assert!(l.locked("dan", "1.1.1.1").await.is_some());
        c.advance(Duration::from_secs(61));
        assert_eq!(l.locked("ann", "1.1.1.1").await, None, "lockout expires");
        l.begin("bob", "2.2.2.2").await.unwrap().succeeded().await;
        assert!(
            !wrong(&l, "bob", "2.2.2.2").await,
            "success reset bob's count"
        );
    }

    /// H5: the attempt is counted before the code is checked, so a burst of concurrent
    /// guesses gets at most `per_user` evaluations (the old `locked()` then `fail()` let every
    /// request that checked before the fifth failure through).
    #[tokio::test]
    async fn concurrent_attempts_are_counted_before_evaluation() {
        let c = ManualClock::at_now();
        let l = Limiter::with_counters(5, 100, Duration::from_secs(60), counters(&c));
        assert_eq!(concurrent_wrong(&l, "ann", 30).await, 5);
        assert!(l.locked("ann", "9.9.9.9").await.is_some());
        assert_eq!(l.begin("ann", "9.9.9.9").await.err(), Some(Locked));
        c.advance(Duration::from_secs(61));
        assert!(l.begin("ann", "1.1.1.1").await.is_ok(), "lockout over");
    }

    #[tokio::test]
    async fn refunds_and_successes_give_attempts_back() {
        let c = ManualClock::at_now();
        let l = Limiter::with_counters(2, 3, Duration::from_secs(60), counters(&c));
        for _ in 0..5 {
            l.begin("ann", "1.1.1.1").await.unwrap().refund().await;
        }
        assert!(
            !wrong(&l, "ann", "1.1.1.1").await,
            "refunds were not counted"
        );
        // A success resets the user and hands its own attempt back to the IP.
        l.begin("ann", "1.1.1.1").await.unwrap().succeeded().await;
        assert!(!wrong(&l, "ann", "1.1.1.1").await);
        assert!(
            wrong(&l, "bob", "1.1.1.1").await,
            "third failure from the IP"
        );
    }

    #[tokio::test]
    async fn failures_are_counted_within_the_lockout_window() {
        let c = ManualClock::at_now();
        let l = Limiter::with_counters(2, 100, Duration::from_secs(60), counters(&c));
        assert!(!wrong(&l, "ann", "1.1.1.1").await);
        c.advance(Duration::from_secs(61));
        assert!(!wrong(&l, "ann", "1.1.1.1").await, "old failure forgotten");
        assert!(wrong(&l, "ann", "1.1.1.1").await);
    }

    #[tokio::test]
    async fn sends_are_spaced_and_capped() {
        let c = ManualClock::at_now();
        let l = Limiter::with_counters(3, 5, Duration::from_secs(60), counters(&c));
        let gap = Duration::from_secs(30);
        assert!(l.may_send("ann", "email", gap).await);
        assert!(!l.may_send("ann", "email", gap).await, "resend too soon");
        assert!(l.may_send("ann", "sms", gap).await, "per channel");
        assert!(l.may_send("bob", "email", gap).await, "per user");
        for _ in 0..8 {
            c.advance(gap);
            assert!(l.may_send("ann", "email", gap).await);
        }
        c.advance(gap);
        assert!(!l.may_send("ann", "email", gap).await, "hourly cap");
        c.advance(Duration::from_secs(3600));
        assert!(l.may_send("ann", "email", gap).await);
    }

    /// A private `redis-server` (killed on drop), or `None` when it is not installed. Also
    /// used by the session store tests.
    pub(crate) struct RedisServer(std::process::Child, pub(crate) u16);

    impl Drop for RedisServer {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    pub(crate) fn redis_server() -> Option<RedisServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let server = RedisServer(child, port);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(server);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        None
    }

    #[tokio::test]
    async fn redis_counters_expire_lock_once_and_are_shared() {
        let Some(server) = redis_server() else {
            assert!(std::env::var("CI").is_err(), "CI needs redis-server");
            eprintln!("redis-server not installed: skipping");
            return;
        };
        let url = format!("redis://127.0.0.1:{}/0", server.1);
        let c = RedisCounters::new(&url).unwrap();
        let w = Duration::from_millis(400);
        assert_eq!(c.hit("k", w).await.unwrap(), 1);
        assert_eq!(c.hit("k", w).await.unwrap(), 2);
        assert!(c.lock("l", w).await.unwrap());
        assert!(!c.lock("l", w).await.unwrap(), "locked once");
        let left = c.remaining("l").await.unwrap().unwrap();
        assert!(left <= w && left > Duration::from_millis(100), "{left:?}");
        assert_eq!(c.remaining("none").await.unwrap(), None);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            c.hit("k", w).await.unwrap(),
            1,
            "the count expired with its window"
        );
        assert_eq!(c.remaining("l").await.unwrap(), None, "the lock expired");
        c.reset("k").await.unwrap();
        assert_eq!(c.hit("k", w).await.unwrap(), 1);

        // Two limiters (two replicas) over the same Redis share the lockout.
        let lockout = Duration::from_secs(60);
        let one =
            Limiter::with_counters(2, 50, lockout, Arc::new(RedisCounters::new(&url).unwrap()));
        let two =
            Limiter::with_counters(2, 50, lockout, Arc::new(RedisCounters::new(&url).unwrap()));
        assert!(!wrong(&one, "ann", "1.1.1.1").await);
        assert!(
            wrong(&two, "ann", "2.2.2.2").await,
            "second failure, other replica"
        );
        assert!(one.locked("ann", "3.3.3.3").await.is_some());
        // Count first in Redis too: 30 concurrent attempts on two replicas, 2 evaluated.
        let (x, y) = tokio::join!(
            concurrent_wrong(&one, "cid", 15),
            concurrent_wrong(&two, "cid", 15)
        );
        assert_eq!(x + y, 2, "evaluated across replicas");
        // A refund of an attempt that is gone does not create a count without expiry.
        let c2 = RedisCounters::new(&url).unwrap();
        c2.unhit("never").await.unwrap();
        assert_eq!(c2.hit("never", w).await.unwrap(), 1);
        two.begin("bob", "3.3.3.3").await.unwrap().succeeded().await;
        assert_eq!(two.locked("bob", "3.3.3.3").await, None);
        drop(server);
        assert!(
            one.locked("bob", "3.3.3.3").await.is_some(),
            "Redis gone: locked"
        );
    }

    #[tokio::test]
    async fn counter_errors_fail_closed() {
        let l = Limiter::with_counters(3, 5, Duration::from_secs(60), Arc::new(Broken));
        assert!(l.locked("ann", "1.1.1.1").await.is_some());
        assert!(wrong(&l, "ann", "1.1.1.1").await);
        assert_eq!(l.begin("ann", "1.1.1.1").await.err(), Some(Locked));
        assert!(!l.may_send("ann", "email", RESEND_INTERVAL).await);
    }
}
