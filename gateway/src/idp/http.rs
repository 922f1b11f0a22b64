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
}

/// A shared client for all providers.
#[derive(Debug, Clone)]
pub struct HttpClient(pub reqwest::Client);

/// Largest provider response read (discovery, JWKS, tokens).
const MAX_BODY: usize = 1 << 20;

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
            let body = resp.bytes().await?;
            if body.len() > MAX_BODY {
                return Err(HttpError::Response("response too large".to_string()));
            }
            builder
                .body(body.to_vec())
                .map_err(|e| HttpError::Response(e.to_string()))
        })
    }
}
