//! Upstream endpoint choice: round robin with passive health. An endpoint that refuses or times
//! out a connection is skipped for a while, and the request is retried on the next one.

use crate::config::model::Route;
use pingora::upstreams::peer::HttpPeer;
use pingora_core::utils::tls::{parse_x509, WrappedX509};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long an endpoint that failed to connect is skipped.
pub const DOWN_FOR: Duration = Duration::from_secs(10);

/// The endpoints of one route with their health.
#[derive(Debug)]
pub struct UpstreamPool {
    next: AtomicUsize,
    /// Per endpoint: milliseconds since `epoch` until which it is skipped.
    down_until: Vec<AtomicU64>,
    epoch: Instant,
    ca: Option<Arc<[WrappedX509]>>,
    /// Separates pooled upstream connections by trust anchors: pingora's connection-reuse key
    /// ignores the CA list, so without this a connection verified against one route's CA could
    /// be reused by a route that trusts a different CA (or only the system roots).
    trust_key: u64,
}

impl UpstreamPool {
    /// A pool for a route's endpoints, all presumed healthy.
    pub fn new(route: &Route) -> Self {
        let ca = route.upstream_ca.as_ref().map(|ders| {
            ders.iter()
                .map(|d| WrappedX509::new(d.clone(), parse_x509))
                .collect::<Vec<_>>()
                .into()
        });
        let trust_key = route.upstream_ca.as_ref().map_or(0, |ders| {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            ders.hash(&mut h);
            h.finish() | 1
        });
        Self {
            trust_key,
            next: AtomicUsize::new(0),
            down_until: route.endpoints.iter().map(|_| AtomicU64::new(0)).collect(),
            epoch: Instant::now(),
            ca,
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The next endpoint in rotation that is not in `tried`, preferring healthy ones; `None`
    /// when every endpoint has been tried for this request.
    pub fn pick(&self, tried: &[usize]) -> Option<usize> {
        let n = self.down_until.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let now = self.now_ms();
        let candidates = (0..n)
            .map(|k| (start + k) % n)
            .filter(|i| !tried.contains(i));
        let mut fallback = None;
        for i in candidates {
            if self.down_until[i].load(Ordering::Relaxed) <= now {
                return Some(i);
            }
            fallback.get_or_insert(i);
        }
        fallback
    }

    /// Skips endpoint `i` for [`DOWN_FOR`].
    pub fn mark_down(&self, i: usize) {
        if let Some(d) = self.down_until.get(i) {
            let until = self.now_ms() + u64::try_from(DOWN_FOR.as_millis()).unwrap_or(0);
            d.store(until, Ordering::Relaxed);
        }
    }

    /// Whether endpoint `i` is currently skipped.
    pub fn is_down(&self, i: usize) -> bool {
        self.down_until
            .get(i)
            .is_some_and(|d| d.load(Ordering::Relaxed) > self.now_ms())
    }

    /// The pingora peer for endpoint `i` of `route`.
    pub fn peer(&self, route: &Route, i: usize) -> Option<HttpPeer> {
        let ep = route.endpoints.get(i)?;
        let sni = route
            .upstream_sni
            .clone()
            .unwrap_or_else(|| ep.host.clone());
        let mut peer = HttpPeer::new(ep.addr, ep.tls, sni);
        peer.options.connection_timeout = Some(route.connect_timeout);
        peer.options.total_connection_timeout = Some(route.connect_timeout * 2);
        peer.options.read_timeout = Some(route.read_timeout);
        if ep.tls {
            peer.group_key = self.trust_key;
            peer.options.ca = self.ca.clone();
            if route.dangerous_skip_verify {
                peer.options.verify_cert = false;
                peer.options.verify_hostname = false;
            }
        }
        Some(peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::Endpoint;
    use portcullis_policy::spec::{LibrarySpec, PolicySpec};

    fn route(n: usize) -> Route {
        Route {
            id: "r".into(),
            host: None,
            path: "/".into(),
            endpoints: (0..n)
                .map(|i| Endpoint {
                    addr: ([127, 0, 0, 1], 1000 + i as u16).into(),
                    authority: "x".into(),
                    host: "x".into(),
                    tls: false,
                })
                .collect(),
            policy: portcullis_policy::compile::compile(
                &LibrarySpec::default(),
                &[("p".into(), PolicySpec::Named("public".into()))],
            )
            .unwrap()
            .remove(0),
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
            upstream_ca: None,
            upstream_sni: None,
            dangerous_skip_verify: false,
            identity_headers: false,
            adapter: None,
            preserve_host: true,
            identity_provider: None,
            assertion_audience: "r".into(),
        }
    }

    #[test]
    fn round_robin_skips_down_endpoints_and_tried_ones() {
        let pool = UpstreamPool::new(&route(3));
        let picks: Vec<_> = (0..6).map(|_| pool.pick(&[]).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        pool.mark_down(1);
        let picks: Vec<_> = (0..4).map(|_| pool.pick(&[]).unwrap()).collect();
        assert!(!picks.contains(&1), "{picks:?}");
        assert_eq!(
            pool.pick(&[0, 2]),
            Some(1),
            "a down endpoint is still a last resort"
        );
        assert_eq!(pool.pick(&[0, 1, 2]), None);
    }
}
