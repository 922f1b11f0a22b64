//! Syslog sink: RFC 5424 messages over TCP or TLS (RFC 5425), octet-counting framing
//! (RFC 6587 §3.4.1: `LEN SP MSG`). One message per record:
//!
//! `<134>1 2026-11-28T17:00:00.000Z gw1 portcullis 4242 decision [decision@32473 id="…" decision="allow"] {json}`
//!
//! Facility `local0` by default, severity `info` for allow and `warning` otherwise. The
//! connection is kept open and re-established after an error; a failed batch is resent whole
//! (the `id` lets the receiver drop duplicates).

use super::{Sink, SinkError};
use async_trait::async_trait;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Mutex;

enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Conn {
    async fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => {
                s.write_all(buf).await?;
                s.flush().await
            }
            Conn::Tls(s) => {
                s.write_all(buf).await?;
                s.flush().await
            }
        }
    }
}

/// TLS settings of a `tls://` syslog address.
pub struct SyslogTls {
    /// Client config trusting the configured CAs.
    pub config: Arc<rustls::ClientConfig>,
    /// Name to verify.
    pub server_name: String,
}

/// Sends to a syslog receiver.
pub struct SyslogSink {
    address: String,
    tls: Option<SyslogTls>,
    facility: u8,
    hostname: String,
    timeout: Duration,
    conn: Mutex<Option<Conn>>,
}

impl SyslogSink {
    /// `address` is `host:port`.
    pub fn new(
        address: String,
        tls: Option<SyslogTls>,
        facility: u8,
        hostname: String,
        timeout: Duration,
    ) -> Self {
        Self {
            address,
            tls,
            facility,
            hostname,
            timeout,
            conn: Mutex::new(None),
        }
    }

    async fn connect(&self) -> Result<Conn, SinkError> {
        let tcp = TcpStream::connect(&self.address)
            .await
            .map_err(|e| SinkError::Transport(format!("connect {}: {e}", self.address)))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(Conn::Plain(tcp)),
            Some(t) => {
                let name = rustls::pki_types::ServerName::try_from(t.server_name.clone())
                    .map_err(|e| SinkError::Transport(format!("server name: {e}")))?;
                let s = tokio_rustls::TlsConnector::from(t.config.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| SinkError::Transport(format!("TLS: {e}")))?;
                Ok(Conn::Tls(Box::new(s)))
            }
        }
    }
}

fn sd_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace(']', "\\]")
}

/// Frames one record as an octet-counted RFC 5424 message.
pub fn frame(record: &[u8], facility: u8, hostname: &str, out: &mut Vec<u8>) {
    let rec: serde_json::Value = serde_json::from_slice(record).unwrap_or_default();
    let decision = rec["decision"].as_str().unwrap_or("-");
    let severity = if decision == "allow" { 6 } else { 4 };
    let time = rec["time"].as_str().unwrap_or("-");
    let id = rec["id"].as_str().unwrap_or("-");
    let host: String = hostname
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect();
    let host = if host.is_empty() {
        "-".to_string()
    } else {
        host
    };
    let msg = format!(
        "<{}>1 {time} {host} portcullis {} decision [decision@32473 id=\"{}\" decision=\"{}\"] ",
        u16::from(facility) * 8 + severity,
        std::process::id(),
        sd_escape(id),
        sd_escape(decision),
    );
    let len = msg.len() + record.len();
    out.extend_from_slice(format!("{len} ").as_bytes());
    out.extend_from_slice(msg.as_bytes());
    out.extend_from_slice(record);
}

#[async_trait]
impl Sink for SyslogSink {
    async fn send(&self, records: &[Bytes]) -> Result<(), SinkError> {
        let mut buf = Vec::new();
        for r in records {
            frame(r, self.facility, &self.hostname, &mut buf);
        }
        let mut guard = self.conn.lock().await;
        let mut conn = match guard.take() {
            Some(c) => c,
            None => tokio::time::timeout(self.timeout, self.connect())
                .await
                .map_err(|_| SinkError::Transport("connect timed out".into()))??,
        };
        match tokio::time::timeout(self.timeout, conn.write_all(&buf)).await {
            Ok(Ok(())) => {
                *guard = Some(conn);
                Ok(())
            }
            Ok(Err(e)) => Err(SinkError::Transport(e.to_string())),
            Err(_) => Err(SinkError::Transport("write timed out".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_octet_counted_rfc5424() {
        let rec = br#"{"id":"abc","time":"2026-01-02T03:04:05.000Z","decision":"deny"}"#;
        let mut out = Vec::new();
        frame(rec, 16, "gw 1", &mut out);
        let text = String::from_utf8(out).unwrap();
        let (len, msg) = text.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), msg.len());
        assert!(
            msg.starts_with("<132>1 2026-01-02T03:04:05.000Z gw1 portcullis "),
            "{msg}"
        );
        assert!(msg.contains(" decision [decision@32473 id=\"abc\" decision=\"deny\"] {"));
        assert!(msg.ends_with(std::str::from_utf8(rec).unwrap()));
    }
}
