//! Local file sink: appends NDJSON lines.

use super::{Sink, SinkError};
use async_trait::async_trait;
use bytes::Bytes;
use std::path::PathBuf;
use tokio::io::AsyncWriteExt;

/// Appends to `path` (created with its directory).
pub struct FileSink {
    /// Target file.
    pub path: PathBuf,
}

#[async_trait]
impl Sink for FileSink {
    async fn send(&self, records: &[Bytes]) -> Result<(), SinkError> {
        if let Some(dir) = self.path.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        let mut buf = Vec::with_capacity(records.iter().map(|r| r.len() + 1).sum());
        for r in records {
            buf.extend_from_slice(r);
            buf.push(b'\n');
        }
        let mut f = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .await?;
        f.write_all(&buf).await?;
        f.flush().await?;
        Ok(())
    }
}
