//! Upgraded connections (WebSocket) on routes that need a signed-in user: where they may come
//! from, and how long they may live.
//!
//! A tunnel is authorised once, at the upgrade, and then carries data for hours; without a
//! second look, logout or revocation would not end it. And a browser attaches cookies to a
//! WebSocket handshake started by any page of the same site (SameSite does not help within a
//! site), so a foreign `Origin` must be refused (cross-site WebSocket hijacking).

use crate::session::{Ended, SessionStore};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// How often a tunnel's session is looked up again.
pub const RECHECK: Duration = Duration::from_secs(1);

/// Whether an upgrade request's `Origin` may open a tunnel with the user's cookie: absent (not
/// a browser: browsers always send it on WebSocket handshakes), this very origin, or one of
/// `allowed` (`session.return_to_allow`). Compared ASCII case-insensitively, exactly.
pub fn origin_allowed(origin: Option<&[u8]>, own: &str, allowed: &[String]) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    let Ok(origin) = std::str::from_utf8(origin) else {
        return false;
    };
    let origin = origin.trim();
    origin.eq_ignore_ascii_case(own)
        || allowed
            .iter()
            .any(|a| origin.eq_ignore_ascii_case(a.trim_end_matches('/')))
}

/// A flag that turns true once session `sid` no longer exists (logout, revocation, timeout) or
/// the store cannot say (fail closed). The watcher hears removals on any replica through
/// [`SessionStore::ended`] at once, and still looks every [`RECHECK`] (expiry is not announced,
/// and a notice may be lost); it stops by itself when the flag is dropped with the connection.
pub fn watch(store: Arc<dyn SessionStore>, sid: String) -> Arc<AtomicBool> {
    let ended = Arc::new(AtomicBool::new(false));
    let weak = Arc::downgrade(&ended);
    let mut notices = store.ended();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(RECHECK);
        tick.tick().await;
        let mut open = true;
        loop {
            let look = tokio::select! {
                _ = tick.tick() => true,
                n = notices.recv(), if open => match n {
                    Ok(Ended::Sid(gone)) if *gone == *sid => {
                        if let Some(flag) = weak.upgrade() {
                            flag.store(true, Ordering::Release);
                        }
                        return;
                    }
                    Ok(Ended::Sid(_)) => false,
                    Ok(Ended::Recheck) | Err(RecvError::Lagged(_)) => true,
                    Err(RecvError::Closed) => {
                        open = false;
                        false
                    }
                },
            };
            let Some(flag) = weak.upgrade() else {
                return;
            };
            if look && !matches!(store.load(&sid).await, Ok(Some(_))) {
                flag.store(true, Ordering::Release);
                return;
            }
        }
    });
    ended
}

/// The error that tears a tunnel down once its session ended.
pub fn ended_error() -> Box<pingora::Error> {
    pingora::Error::explain(
        pingora::ErrorType::Custom("session ended"),
        "the session of this upgraded connection ended",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::MemoryStore;

    #[test]
    fn only_this_origin_or_allowed_ones_open_tunnels() {
        let allowed = vec!["https://app.example.com".to_string()];
        let own = "https://gw.example.com";
        assert!(origin_allowed(None, own, &allowed));
        assert!(origin_allowed(
            Some(b"https://GW.example.com"),
            own,
            &allowed
        ));
        assert!(origin_allowed(
            Some(b"https://app.example.com"),
            own,
            &allowed
        ));
        for bad in [
            &b"https://evil.example.com"[..],
            b"https://gw.example.com.evil.com",
            b"null",
            b"\xff",
        ] {
            assert!(!origin_allowed(Some(bad), own, &allowed), "{bad:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_flag_rises_once_the_session_is_gone() {
        let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::default());
        let flag = watch(store.clone(), "nope".into());
        for _ in 0..5 {
            if flag.load(Ordering::Acquire) {
                return;
            }
            tokio::time::sleep(RECHECK).await;
        }
        panic!("a missing session never ended the tunnel");
    }

    /// A removal is heard at once, long before the next poll; other sessions' removals do
    /// not end this tunnel.
    #[tokio::test(start_paused = true)]
    async fn a_removal_ends_the_tunnel_without_waiting_for_the_poll() {
        let store = Arc::new(MemoryStore::default());
        let rec = crate::session::store::tests::record("corp", "alice", None);
        for sid in ["mine", "other"] {
            store.save(sid, &rec, 60).await.unwrap();
        }
        let flag = watch(store.clone(), "mine".into());
        tokio::task::yield_now().await;
        assert!(store.remove("other").await.unwrap());
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!flag.load(Ordering::Acquire), "another session's end");
        let start = tokio::time::Instant::now();
        assert!(store.remove("mine").await.unwrap());
        // Time is paused and this task never idles, so the poll cannot fire meanwhile.
        for _ in 0..100 {
            if flag.load(Ordering::Acquire) {
                assert_eq!(start.elapsed(), Duration::ZERO, "no poll was needed");
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("the removal notice did not end the tunnel");
    }
}
