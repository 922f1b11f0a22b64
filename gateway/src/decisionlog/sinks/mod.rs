//! Where decision records go. Each sink delivers a batch of NDJSON lines or fails as a whole;
//! the worker retries, spools and replays (see [`super::worker`]).

pub mod file;
pub mod http;
pub mod otlp;
pub mod syslog;

use async_trait::async_trait;
use bytes::Bytes;
use thiserror::Error;

/// A batch was not delivered; every variant is retried later, nothing is dropped for it.
#[derive(Debug, Error)]
pub enum SinkError {
    /// Connection, TLS or timeout failure.
    #[error("transport: {0}")]
    Transport(String),
    /// The collector answered with a non-success status.
    #[error("collector answered {0}")]
    Status(u16),
    /// Local I/O (file sink).
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// One destination.
#[async_trait]
pub trait Sink: Send + Sync {
    /// Delivers the records (each a JSON object without newline), all or nothing.
    async fn send(&self, records: &[Bytes]) -> Result<(), SinkError>;
}
