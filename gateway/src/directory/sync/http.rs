//! HTTP for the connectors: the gateway's reqwest client (ring rustls, no redirects, timeouts)
//! with what reading a vendor directory needs on top:
//! - throttling: 429 and 503 (and AWS's `ThrottlingException`) are retried after the
//!   server's `Retry-After` (seconds or an HTTP date, capped), else with exponential backoff
//!   (capped); at most [`Retry::attempts`] tries, then the page fails;
//! - bounded bodies ([`MAX_BODY`], read with [`crate::idp::http::read_capped`]);
//! - paging guards: a next-page link must stay on the origin the connector was configured
//!   with (a hostile `@odata.nextLink` elsewhere would receive the bearer token), a link or
//!   token seen before ends the listing as a loop, and at most [`MAX_PAGES`] pages are read.

use super::remote::Fetched;
use super::SyncError;
use crate::idp::http::{read_capped, HttpClient};
use std::collections::HashSet;
use std::time::Duration;

/// Largest response body read (a Graph page of 999 users is a few hundred KiB).
pub const MAX_BODY: usize = 16 << 20;

/// Most pages one listing reads (999 users a page on Graph: ten million users).
pub const MAX_PAGES: usize = 10_000;

/// How throttled or unavailable answers are retried.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Tries in all, the first included.
    pub attempts: u32,
    /// First backoff when the server gives no `Retry-After`; doubled after each try.
    pub base: Duration,
    /// Longest backoff, and longest `Retry-After` honoured (a longer one is waited this long).
    pub cap: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: 5,
            base: Duration::from_millis(500),
            cap: Duration::from_secs(60),
        }
    }
}

/// The connectors' HTTP client.
#[derive(Debug, Clone)]
pub struct Http {
    client: reqwest::Client,
    retry: Retry,
}

/// A response read whole (bounded).
#[derive(Debug)]
pub struct Answer {
    /// Status.
    pub status: u16,
    /// Body.
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as JSON of type `T`; `what` names the call in errors.
    pub fn json<T: serde::de::DeserializeOwned>(&self, what: &str) -> Result<T, SyncError> {
        serde_json::from_slice(&self.body).map_err(|e| SyncError::Format {
            what: what.to_string(),
            error: e.to_string(),
        })
    }
}

/// Whether an answer asks the client to slow down.
fn throttled(status: u16, body: &[u8]) -> bool {
    status == 429
        || status == 503
        || (status == 400 && body.windows(19).any(|w| w == b"ThrottlingException"))
}

/// `Retry-After` as a wait: delta-seconds or an HTTP date.
pub fn retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - now;
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

impl Http {
    /// The gateway's provider client with `retry`.
    pub fn new(retry: Retry) -> Result<Self, SyncError> {
        let client = HttpClient::new()
            .ok_or_else(|| SyncError::Setup("cannot build the HTTP client".into()))?;
        Ok(Self {
            client: client.0,
            retry,
        })
    }

    /// The underlying client, to build requests.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends the request `make` builds (again for each try), retrying throttled answers and
    /// connection failures; returns the first other answer, whatever its status.
    pub async fn send(
        &self,
        what: &str,
        make: impl Fn() -> Result<reqwest::Request, SyncError>,
    ) -> Result<Answer, SyncError> {
        let mut backoff = self.retry.base;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = attempt >= self.retry.attempts;
            let wait = match self.client.execute(make()?).await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let hint = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| retry_after(v, chrono::Utc::now()));
                    let body = read_capped(resp, MAX_BODY).await?;
                    if !throttled(status, &body) {
                        return Ok(Answer { status, body });
                    }
                    if last {
                        return Err(SyncError::Throttled {
                            what: what.to_string(),
                            attempts: attempt,
                        });
                    }
                    hint.unwrap_or(backoff)
                }
                Err(e) if !last && (e.is_connect() || e.is_timeout()) => backoff,
                Err(e) => return Err(e.into()),
            };
            tracing::warn!(
                what,
                attempt,
                wait_ms = u64::try_from(wait.min(self.retry.cap).as_millis()).unwrap_or(u64::MAX),
                "directory sync: throttled or unavailable, retrying"
            );
            tokio::time::sleep(wait.min(self.retry.cap)).await;
            backoff = (backoff * 2).min(self.retry.cap);
        }
    }

    /// [`Self::send`], then requires a 2xx answer.
    pub async fn ok(
        &self,
        what: &str,
        make: impl Fn() -> Result<reqwest::Request, SyncError>,
    ) -> Result<Answer, SyncError> {
        let a = self.send(what, make).await?;
        if (200..300).contains(&a.status) {
            Ok(a)
        } else {
            Err(SyncError::Status {
                what: what.to_string(),
                status: a.status,
            })
        }
    }
}

/// Scheme, host and port.
pub fn same_origin(a: &url::Url, b: &url::Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// The paging guard of one listing: every next-page link or token must be new, links must stay
/// on `origin`, and at most `max` pages are read.
#[derive(Debug)]
pub struct Pages {
    origin: Option<url::Url>,
    seen: HashSet<String>,
    max: usize,
}

impl Pages {
    /// A guard for token paging (Google, AWS).
    pub fn tokens() -> Self {
        Self {
            origin: None,
            seen: HashSet::new(),
            max: MAX_PAGES,
        }
    }

    /// A guard for link paging (Graph): links must stay on `origin`'s origin.
    pub fn links(origin: &url::Url) -> Self {
        Self {
            origin: Some(origin.clone()),
            seen: HashSet::new(),
            max: MAX_PAGES,
        }
    }

    /// With another page limit (tests).
    pub fn with_max(mut self, max: usize) -> Self {
        self.max = max;
        self
    }

    /// Accepts the next page's link or token, or says why the listing must stop.
    pub fn next(&mut self, next: &str) -> Result<(), SyncError> {
        if let Some(origin) = &self.origin {
            let u = url::Url::parse(next).map_err(|_| {
                SyncError::Paging(format!("next page link is not a URL: {next:.80}"))
            })?;
            if !same_origin(origin, &u) {
                return Err(SyncError::Paging(format!(
                    "next page link leaves {}: refused",
                    origin.origin().ascii_serialization()
                )));
            }
        }
        if self.seen.len() + 1 >= self.max {
            return Err(SyncError::Paging(format!("more than {} pages", self.max)));
        }
        if !self.seen.insert(next.to_string()) {
            return Err(SyncError::Paging(
                "the server sent a page it sent before (paging loop)".into(),
            ));
        }
        Ok(())
    }
}

/// One page of a token-paged listing: its items and the next page's token, if any.
pub type TokenPage = (Vec<serde_json::Value>, Option<String>);

/// Reads every page of a token-paged listing (Google `pageToken`, AWS `NextToken`), asking
/// `fetch` for the page of each token (`None`: the first). A page that fails, or a token seen
/// before or past [`MAX_PAGES`], makes `out` incomplete and ends the listing with what was read.
pub async fn token_pages<F, Fut>(out: &mut Fetched, what: &str, fetch: F) -> Vec<serde_json::Value>
where
    F: Fn(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<TokenPage, SyncError>>,
{
    let mut items = Vec::new();
    let mut guard = Pages::tokens();
    let mut token = None;
    loop {
        let (page, next) = match fetch(token.take()).await {
            Ok(p) => p,
            Err(e) => {
                out.fail(what, &e);
                return items;
            }
        };
        items.extend(page);
        let Some(t) = next.filter(|t| !t.is_empty()) else {
            return items;
        };
        if let Err(e) = guard.next(&t) {
            out.fail(what, &e);
            return items;
        }
        token = Some(t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(
            retry_after("Thu, 01 Jan 2026 00:00:07 GMT", now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_after("Wed, 31 Dec 2025 00:00:07 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon", now), None);
    }

    /// A server that answers every request 429 without `Retry-After`; counts requests.
    async fn always_throttled() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", l.local_addr().unwrap());
        let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = n.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 429 Too Many Requests\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            }
        });
        (url, n)
    }

    #[tokio::test]
    async fn throttling_backs_off_exponentially_and_gives_up() {
        let (url, n) = always_throttled().await;
        let http = Http::new(Retry {
            attempts: 4,
            base: Duration::from_millis(20),
            cap: Duration::from_millis(50),
        })
        .unwrap();
        let started = std::time::Instant::now();
        let r = http
            .send("page", || Ok(http.client().get(&url).build()?))
            .await;
        assert!(
            matches!(r, Err(SyncError::Throttled { attempts: 4, .. })),
            "{r:?}"
        );
        assert_eq!(n.load(std::sync::atomic::Ordering::SeqCst), 4);
        // 20 + 40 + 50 (capped) ms of backoff.
        assert!(started.elapsed() >= Duration::from_millis(110));
    }

    #[test]
    fn throttling_answers() {
        assert!(throttled(429, b""));
        assert!(throttled(503, b""));
        assert!(throttled(
            400,
            br#"{"__type":"com.amazonaws#ThrottlingException"}"#
        ));
        assert!(!throttled(400, br#"{"__type":"ValidationException"}"#));
        assert!(!throttled(500, b""));
    }

    #[test]
    fn pages_refuse_other_origins_loops_and_too_many() {
        let base = url::Url::parse("https://graph.example.com/v1.0/users/delta").unwrap();
        let mut p = Pages::links(&base);
        p.next("https://graph.example.com/v1.0/users/delta?$skiptoken=1")
            .unwrap();
        for bad in [
            "https://evil.example.com/v1.0/users/delta?$skiptoken=2",
            "http://graph.example.com/v1.0/users/delta?$skiptoken=2",
            "https://graph.example.com:8443/v1.0/users/delta",
            "/relative",
        ] {
            assert!(matches!(p.next(bad), Err(SyncError::Paging(_))), "{bad}");
        }
        assert!(matches!(
            p.next("https://graph.example.com/v1.0/users/delta?$skiptoken=1"),
            Err(SyncError::Paging(_))
        ));
        let mut t = Pages::tokens().with_max(3);
        t.next("a").unwrap();
        t.next("b").unwrap();
        assert!(matches!(t.next("c"), Err(SyncError::Paging(_))));
    }
}
