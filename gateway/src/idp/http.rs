//! The HTTP client the OIDC code uses: reqwest 0.13 on the process's ring rustls provider,
//! adapted to the `openidconnect` client trait. Redirects are never followed (SSRF defence,
//! and the spec gives no reason to), and every call has a timeout.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use thiserror::Error;

/// Failures talking to a provider.
#[derive(Debug, Error)]
pub enum HttpError {
    /// Connection, TLS or timeout.
    #[error("request failed: {0}")]
    Transport(#[from] reqwest::Error),
    /// The response could not be turned into an `http::Response`.
    #[error("bad response: {0}")]
    Response(String),
    /// The body is larger than [`MAX_BODY`] (announced or while reading).
    #[error("response too large (over {MAX_BODY} bytes)")]
    TooLarge,
}

/// A shared client for all providers.
#[derive(Debug, Clone)]
pub struct HttpClient(pub reqwest::Client);

/// Largest provider response read (discovery, JWKS, tokens, UserInfo).
pub const MAX_BODY: usize = 1 << 20;

/// Reads a provider response body, at most `max` bytes (finding L10): a `Content-Length`
/// above it is refused before reading, and a chunked or lying body stops at the cap, so a
/// hostile or broken provider cannot make the gateway buffer more than `max`.
pub async fn read_capped(mut resp: reqwest::Response, max: usize) -> Result<Vec<u8>, HttpError> {
    if resp
        .content_length()
        .is_some_and(|n| n > u64::try_from(max).unwrap_or(u64::MAX))
    {
        return Err(HttpError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > max {
            return Err(HttpError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

impl HttpClient {
    /// Builds the client; `None` if TLS could not be set up.
    pub fn new() -> Option<Self> {
        // reqwest is built without a provider; the process uses ring (idempotent).
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("portcullis/", env!("CARGO_PKG_VERSION")))
            .build()
            .ok()
            .map(Self)
    }
}

impl<'c> openidconnect::AsyncHttpClient<'c> for HttpClient {
    type Error = HttpError;
    type Future =
        Pin<Box<dyn Future<Output = Result<openidconnect::HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: openidconnect::HttpRequest) -> Self::Future {
        Box::pin(async move {
            let req = reqwest::Request::try_from(request)?;
            let resp = self.0.execute(req).await?;
            let mut builder = http::Response::builder().status(resp.status());
            for (k, v) in resp.headers() {
                builder = builder.header(k, v);
            }
            let body = read_capped(resp, MAX_BODY).await?;
            builder
                .body(body)
                .map_err(|e| HttpError::Response(e.to_string()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server that answers every request with an endless chunked body; returns its URL and
    /// a counter of bytes it managed to send.
    async fn endless() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", l.local_addr().unwrap());
        let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = sent.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
                    if s.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    let chunk = format!("{:x}\r\n{}\r\n", 65536, " ".repeat(65536));
                    while s.write_all(chunk.as_bytes()).await.is_ok() {
                        counter.fetch_add(65536, std::sync::atomic::Ordering::Relaxed);
                    }
                });
            }
        });
        (url, sent)
    }

    /// Finding L10: an endless (or huge) provider response is cut at the cap at once, never
    /// buffered whole or read until the timeout, for the openidconnect adapter and UserInfo.
    #[tokio::test]
    async fn endless_provider_bodies_stop_at_the_cap() {
        let (url, sent) = endless().await;
        let client = HttpClient::new().unwrap();
        let started = std::time::Instant::now();
        let req = http::Request::builder().uri(&url).body(Vec::new()).unwrap();
        let r = openidconnect::AsyncHttpClient::call(&client, req).await;
        assert!(matches!(r, Err(HttpError::TooLarge)), "{r:?}");
        let resp = client.0.get(&url).send().await.unwrap();
        let r = read_capped(resp, MAX_BODY).await;
        assert!(matches!(r, Err(HttpError::TooLarge)), "{r:?}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "stopped at the cap, not at the 10 s timeout"
        );
        // Far less than the timeout would have let through (socket buffers aside).
        assert!(sent.load(std::sync::atomic::Ordering::Relaxed) < 64 * MAX_BODY);
    }
}
