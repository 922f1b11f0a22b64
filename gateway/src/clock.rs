//! The time source every expiry decision reads: sessions (idle/absolute timeouts, refresh),
//! step-up `max_age`, OTP codes, remembered devices, enrolments, attempt lockouts, assertions
//! and ID-token validation. Modelled on rustls' `time_provider.rs`: one small trait, the real
//! clock for production, a [`ManualClock`] for tests, handed explicitly to each component at
//! construction (no process-global clock) so a test can move time instead of sleeping.
//!
//! Durations that only measure (latency, backoff, probe intervals) keep `Instant::now()`:
//! moving the clock must never distort metrics.
//!
//! Debug builds only: `PORTCULLIS_TEST_CLOCK_FILE` names a file holding an offset in seconds
//! added to the real clock, so end-to-end tests can expire a step-up without waiting. The code
//! that reads it is compiled out of release builds (`#[cfg(debug_assertions)]`), so no
//! production binary can be told what time it is.

use chrono::{DateTime, Utc};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The environment variable naming the test clock file (honoured by debug builds only).
pub const TEST_CLOCK_ENV: &str = "PORTCULLIS_TEST_CLOCK_FILE";

/// A source of time. Implementations must be cheap: `now` is called on request paths.
pub trait TimeSource: Send + Sync + fmt::Debug {
    /// Wall-clock time, for anything compared with timestamps (stored, signed or received).
    fn now(&self) -> SystemTime;
    /// Monotonic time, for in-memory expiries (attempt counters). Must move with [`Self::now`]
    /// when a test moves the clock, so both kinds of expiry agree.
    fn instant(&self) -> Instant {
        Instant::now()
    }
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl TimeSource for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that stands still until told to move (tests). Thread-safe: a test holds one
/// `Arc` to advance while the components under test hold [`Clock`]s built from it.
#[derive(Debug)]
pub struct ManualClock {
    /// (wall time, monotonic time) now; both move together.
    at: Mutex<(SystemTime, Instant)>,
}

impl ManualClock {
    /// Stopped at `start`.
    pub fn new(start: SystemTime) -> Arc<Self> {
        Arc::new(Self {
            at: Mutex::new((start, Instant::now())),
        })
    }

    /// Stopped at the real time of the call.
    pub fn at_now() -> Arc<Self> {
        Self::new(SystemTime::now())
    }

    /// Stopped at `secs` after the Unix epoch.
    pub fn at_unix(secs: u64) -> Arc<Self> {
        Self::new(UNIX_EPOCH + Duration::from_secs(secs))
    }

    /// Moves time forward by `d`.
    pub fn advance(&self, d: Duration) {
        if let Ok(mut at) = self.at.lock() {
            at.0 += d;
            at.1 += d;
        }
    }

    /// Sets the wall time (the monotonic time moves by the same amount, never backwards).
    pub fn set(&self, t: SystemTime) {
        if let Ok(mut at) = self.at.lock() {
            if let Ok(forward) = t.duration_since(at.0) {
                at.1 += forward;
            }
            at.0 = t;
        }
    }

    /// A handle reading this clock.
    pub fn clock(self: &Arc<Self>) -> Clock {
        Clock(self.clone())
    }
}

impl TimeSource for ManualClock {
    fn now(&self) -> SystemTime {
        self.at.lock().map_or_else(|_| SystemTime::now(), |at| at.0)
    }

    fn instant(&self) -> Instant {
        self.at.lock().map_or_else(|_| Instant::now(), |at| at.1)
    }
}

/// The handle components hold: cheap to clone, the real clock by default.
#[derive(Clone, Debug)]
pub struct Clock(Arc<dyn TimeSource>);

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl Clock {
    /// The real clock.
    pub fn system() -> Self {
        Self(Arc::new(SystemClock))
    }

    /// A clock reading `src`.
    pub fn new(src: Arc<dyn TimeSource>) -> Self {
        Self(src)
    }

    /// The clock the gateway process runs on: the real one, or in a debug build with
    /// `PORTCULLIS_TEST_CLOCK_FILE` set, the real one plus that file's offset (warned about
    /// loudly). A release build never reads the variable.
    pub fn for_process() -> Self {
        Self::for_process_from(std::env::var_os)
    }

    /// [`Self::for_process`] with the environment lookup passed in, so a test can prove that a
    /// release build never even asks for the variable.
    fn for_process_from(lookup: impl FnOnce(&'static str) -> Option<std::ffi::OsString>) -> Self {
        #[cfg(debug_assertions)]
        if let Some(path) = lookup(TEST_CLOCK_ENV) {
            return test_clock::from_file(path.into());
        }
        #[cfg(not(debug_assertions))]
        let _ = lookup;
        Self::system()
    }

    /// Wall-clock time.
    pub fn now(&self) -> SystemTime {
        self.0.now()
    }

    /// Monotonic time (moves with [`Self::now`] under a test clock).
    pub fn instant(&self) -> Instant {
        self.0.instant()
    }

    /// Seconds since the Unix epoch (negative before it).
    pub fn unix(&self) -> i64 {
        match self.now().duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
        }
    }

    /// Seconds since the Unix epoch, 0 before it.
    pub fn unix_u64(&self) -> u64 {
        u64::try_from(self.unix()).unwrap_or(0)
    }

    /// Now as a chrono UTC time.
    pub fn utc(&self) -> DateTime<Utc> {
        DateTime::<Utc>::from(self.now())
    }
}

/// The debug-only clock that end-to-end tests move through a file. Compiled out of release
/// builds entirely, so nothing there can read `PORTCULLIS_TEST_CLOCK_FILE`.
#[cfg(debug_assertions)]
mod test_clock {
    use super::{Clock, TimeSource, TEST_CLOCK_ENV};
    use std::path::PathBuf;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant, SystemTime};

    /// Real time plus the offset (whole seconds, may be negative) written in `path`.
    #[derive(Debug)]
    pub(super) struct FileOffsetClock {
        path: PathBuf,
        /// The last offset read, kept when the file is briefly missing or half written.
        last: Mutex<i64>,
    }

    pub(super) fn from_file(path: PathBuf) -> Clock {
        tracing::warn!(
            file = %path.display(),
            "test clock in use: {TEST_CLOCK_ENV} moves this gateway's clock (debug build only; \
             never run a debug build in production)"
        );
        let c = FileOffsetClock {
            path,
            last: Mutex::new(0),
        };
        c.offset();
        Clock(Arc::new(c))
    }

    impl FileOffsetClock {
        /// The file is read on every call: it is a few bytes, this is a debug build, and a
        /// test that writes it must see the new offset on its very next request (an mtime
        /// check could miss two writes within the file system's timestamp granularity).
        fn offset(&self) -> i64 {
            let read = std::fs::read_to_string(&self.path)
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok());
            let Ok(mut last) = self.last.lock() else {
                return read.unwrap_or(0);
            };
            if let Some(o) = read {
                *last = o;
            }
            *last
        }
    }

    impl TimeSource for FileOffsetClock {
        fn now(&self) -> SystemTime {
            let o = self.offset();
            let d = Duration::from_secs(o.unsigned_abs());
            let t = SystemTime::now();
            if o >= 0 {
                t.checked_add(d).unwrap_or(t)
            } else {
                t.checked_sub(d).unwrap_or(t)
            }
        }

        fn instant(&self) -> Instant {
            let o = self.offset();
            let d = Duration::from_secs(o.unsigned_abs());
            let t = Instant::now();
            if o >= 0 {
                t.checked_add(d).unwrap_or(t)
            } else {
                t.checked_sub(d).unwrap_or(t)
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn offset_file_moves_the_clock_and_is_reread() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("clock");
            std::fs::write(&path, "100\n").unwrap();
            let c = from_file(path.clone());
            let real = SystemTime::now();
            let ahead = c.now().duration_since(real).unwrap();
            assert!(ahead >= Duration::from_secs(99) && ahead <= Duration::from_secs(101));
            std::fs::write(&path, "-50").unwrap();
            assert!(c.now() < SystemTime::now());
            // Garbage keeps the last good offset.
            std::fs::write(&path, "x").unwrap();
            assert!(c.now() < SystemTime::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let m = ManualClock::at_unix(1_000);
        let c = m.clock();
        let i0 = c.instant();
        assert_eq!(c.unix(), 1_000);
        m.advance(Duration::from_secs(30));
        assert_eq!(c.unix(), 1_030);
        assert_eq!(c.instant() - i0, Duration::from_secs(30));
        assert_eq!(c.utc().timestamp(), 1_030);
        m.set(UNIX_EPOCH + Duration::from_secs(1_100));
        assert_eq!(c.unix_u64(), 1_100);
        assert_eq!(c.instant() - i0, Duration::from_secs(100));
        m.set(UNIX_EPOCH);
        assert_eq!(c.unix(), 0);
        assert_eq!(
            c.instant() - i0,
            Duration::from_secs(100),
            "never backwards"
        );
    }

    #[test]
    fn system_clock_is_the_real_time() {
        let c = Clock::default();
        let d = c
            .now()
            .duration_since(SystemTime::now() - Duration::from_secs(1));
        assert!(d.is_ok_and(|d| d < Duration::from_secs(5)));
    }

    /// The test clock exists only in debug builds: a release build never looks the variable
    /// up (and `test_clock` is not compiled in), so `for_process` is the system clock whatever
    /// the environment says. `cargo test --release -p portcullis --lib clock` checks that side.
    #[test]
    fn test_clock_file_is_honoured_only_in_debug_builds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clock");
        std::fs::write(&path, "3600").unwrap();
        let asked = std::cell::Cell::new(false);
        let c = Clock::for_process_from(|name| {
            asked.set(true);
            assert_eq!(name, TEST_CLOCK_ENV);
            Some(path.clone().into_os_string())
        });
        let moved = c.now() > SystemTime::now() + Duration::from_secs(3000);
        assert_eq!(
            asked.get(),
            cfg!(debug_assertions),
            "looked up only in debug"
        );
        assert_eq!(moved, cfg!(debug_assertions), "honoured only in debug");
    }
}
