//! HTTP sink: POSTs a batch as gzip-compressed NDJSON (`Content-Type: application/x-ndjson`,
//! `Content-Encoding: gzip`). Any 2xx is success; anything else is retried. Collectors drop
//! duplicates by the record `id` (a batch may be resent after a timeout).

use super::{Sink, SinkError};
use async_trait::async_trait;
use bytes::Bytes;
use flate2::write::GzEncoder;
use std::io::Write;
use std::time::Duration;

/// POSTs batches to `url`.
pub struct HttpSink {
    client: reqwest::Client,
    url: String,
    headers: Vec<(String, String)>,
}

/// A client with the gateway's TLS settings (ring provider) and a whole-request timeout.
pub fn client(timeout: Duration) -> Result<reqwest::Client, SinkError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| SinkError::Transport(e.to_string()))
}

/// Gzips `data`.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(
        Vec::with_capacity(data.len() / 4),
        flate2::Compression::fast(),
    );
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

impl HttpSink {
    /// A sink posting to `url` with extra headers.
    pub fn new(
        url: String,
        headers: Vec<(String, String)>,
        timeout: Duration,
    ) -> Result<Self, SinkError> {
        Ok(Self {
            client: client(timeout)?,
            url,
            headers,
        })
    }
}

/// Sends one POST (gzip-compressed when `compress`) and maps the outcome.
pub async fn post(
    client: &reqwest::Client,
    url: &str,
    headers: &[(String, String)],
    content_type: &str,
    body: Vec<u8>,
    compress: bool,
) -> Result<(), SinkError> {
    let mut req = client.post(url).header("content-type", content_type);
    req = if compress {
        req.header("content-encoding", "gzip").body(gzip(&body))
    } else {
        req.body(body)
    };
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let resp = req
        .send()
        .await
        .map_err(|e| SinkError::Transport(e.to_string()))?;
    let status = resp.status();
    // Read the body so the connection can be reused.
    let _ = resp.bytes().await;
    if status.is_success() {
        Ok(())
    } else {
        Err(SinkError::Status(status.as_u16()))
    }
}

#[async_trait]
impl Sink for HttpSink {
    async fn send(&self, records: &[Bytes]) -> Result<(), SinkError> {
        let mut body = Vec::with_capacity(records.iter().map(|r| r.len() + 1).sum());
        for r in records {
            body.extend_from_slice(r);
            body.push(b'\n');
        }
        post(
            &self.client,
            &self.url,
            &self.headers,
            "application/x-ndjson",
            body,
            true,
        )
        .await
    }
}
