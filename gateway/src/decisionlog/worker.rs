//! One worker per sink: batches records from its queue, delivers them, and when delivery fails
//! spills to the spool and replays from it, oldest first, until the spool is empty again.
//!
//! Order: while the spool holds anything, every new record goes behind it, so a sink sees
//! records in the order they were queued. Delivery is at least once (a batch that timed out may
//! have arrived); the record `id` lets collectors drop the duplicates. When the task is dropped
//! (process shutdown), everything still in memory is written to the spool synchronously.

use super::config::WhenFull;
use super::metrics;
use super::sinks::Sink;
use super::spool::Spool;
use bytes::Bytes;
use pingora::server::ShutdownWatch;
use std::time::Duration;
use tokio::sync::mpsc::Receiver;
use tokio::time::{sleep_until, Instant};

const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Attempts for a batch before it is spilled to the spool.
const DIRECT_ATTEMPTS: u32 = 3;

/// Settings of one worker.
#[derive(Debug, Clone, Copy)]
pub struct WorkerSettings {
    /// Spool limit.
    pub max_bytes: u64,
    /// Full policy.
    pub when_full: WhenFull,
    /// Records per delivery.
    pub batch_size: usize,
    /// Longest wait for a batch to fill.
    pub flush_interval: Duration,
}

/// State of one sink's delivery.
pub struct Worker {
    name: String,
    sink: Box<dyn Sink>,
    rx: Receiver<Bytes>,
    spool: Spool,
    pending: Vec<Bytes>,
    settings: WorkerSettings,
    failing: bool,
}

impl Worker {
    /// A worker for `sink`, reading `rx`, spooling into `spool`.
    pub fn new(
        name: String,
        sink: Box<dyn Sink>,
        rx: Receiver<Bytes>,
        spool: Spool,
        settings: WorkerSettings,
    ) -> Self {
        metrics::init_sink(&name);
        metrics::get()
            .spool_bytes
            .with_label_values(&[&name])
            .set(spool.pending_bytes() as i64);
        Self {
            name,
            sink,
            rx,
            spool,
            pending: Vec::new(),
            settings,
            failing: false,
        }
    }

    fn spool_full(&self) -> bool {
        self.spool.pending_bytes() >= self.settings.max_bytes
    }

    fn update_gauges(&self) {
        let m = metrics::get();
        m.queue_depth
            .with_label_values(&[&self.name])
            .set(self.rx.len() as i64);
        m.spool_bytes
            .with_label_values(&[&self.name])
            .set(self.spool.pending_bytes() as i64);
    }

    /// Writes records to the spool, ignoring the size limit (used for records already taken
    /// from the queue, at most one batch over the limit).
    fn spill(&mut self, records: &[Bytes]) {
        if records.is_empty() {
            return;
        }
        match self.spool.append(records) {
            Ok(()) => {
                metrics::get()
                    .spooled
                    .with_label_values(&[&self.name])
                    .inc_by(records.len() as u64);
            }
            Err(e) => {
                // The disk refused: these records cannot be kept anywhere.
                tracing::error!(sink = %self.name, error = %e, records = records.len(), "cannot spool decision records; they are lost");
                metrics::get()
                    .dropped
                    .with_label_values(&[&self.name])
                    .inc_by(records.len() as u64);
            }
        }
    }

    /// Moves what is queued into the spool while the sink is down, honouring the limit.
    fn drain_queue_to_spool(&mut self) {
        loop {
            let full = self.spool_full();
            if full && self.settings.when_full == WhenFull::Block {
                // Leave records queued: the queue fills and the proxy refuses new requests.
                return;
            }
            let mut batch = Vec::new();
            while batch.len() < self.settings.batch_size {
                match self.rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                return;
            }
            if full {
                metrics::get()
                    .dropped
                    .with_label_values(&[&self.name])
                    .inc_by(batch.len() as u64);
            } else {
                self.spill(&batch);
            }
        }
    }

    fn note_failure(&mut self, e: &super::sinks::SinkError) {
        metrics::get().errors.with_label_values(&[&self.name]).inc();
        if !self.failing {
            self.failing = true;
            tracing::warn!(sink = %self.name, error = %e, "decision-log sink failing; spooling records until it recovers");
        } else {
            tracing::debug!(sink = %self.name, error = %e, "decision-log sink still failing");
        }
    }

    fn note_success(&mut self, n: usize) {
        metrics::get()
            .sent
            .with_label_values(&[&self.name])
            .inc_by(n as u64);
        if self.failing {
            self.failing = false;
            tracing::info!(sink = %self.name, spooled_bytes = self.spool.pending_bytes(), "decision-log sink recovered; replaying the spool");
        }
    }

    /// Sends `self.pending` with a few quick retries; false if it still failed.
    async fn deliver_pending(&mut self) -> bool {
        let mut wait = Duration::from_millis(100);
        for attempt in 0..DIRECT_ATTEMPTS {
            if attempt > 0 {
                metrics::get()
                    .retried
                    .with_label_values(&[&self.name])
                    .inc();
                tokio::time::sleep(wait).await;
                wait *= 3;
            }
            match timed_send(self.sink.as_ref(), &self.name, &self.pending).await {
                Ok(()) => {
                    let n = self.pending.len();
                    self.pending.clear();
                    self.note_success(n);
                    return true;
                }
                Err(e) => self.note_failure(&e),
            }
        }
        false
    }

    /// Runs until the queue is closed; on shutdown it stops waiting for batches to fill.
    pub async fn run(&mut self, mut shutdown: ShutdownWatch) {
        let mut backoff = BACKOFF_MIN;
        let mut stopping = false;
        loop {
            self.update_gauges();
            if self.spool.is_empty() && self.pending.is_empty() {
                tokio::select! {
                    r = self.rx.recv() => match r {
                        Some(r) => self.pending.push(r),
                        None => return,
                    },
                    _ = shutdown.changed(), if !stopping => {
                        stopping = true;
                        continue;
                    }
                }
                let wait = if stopping {
                    Duration::ZERO
                } else {
                    self.settings.flush_interval
                };
                let deadline = Instant::now() + wait;
                while self.pending.len() < self.settings.batch_size {
                    match self.rx.try_recv() {
                        Ok(r) => {
                            self.pending.push(r);
                            continue;
                        }
                        Err(_) if stopping => break,
                        Err(_) => {}
                    }
                    tokio::select! {
                        r = self.rx.recv() => match r {
                            Some(r) => self.pending.push(r),
                            None => break,
                        },
                        _ = sleep_until(deadline) => break,
                    }
                }
            }
            if !self.pending.is_empty() {
                if self.deliver_pending().await {
                    backoff = BACKOFF_MIN;
                    continue;
                }
                let pending = std::mem::take(&mut self.pending);
                self.spill(&pending);
            }
            // Replay: the spool holds the oldest records.
            self.drain_queue_to_spool();
            self.update_gauges();
            let batch = match self.spool.read(self.settings.batch_size) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(sink = %self.name, error = %e, "cannot read the spool");
                    tokio::time::sleep(BACKOFF_MAX).await;
                    continue;
                }
            };
            if batch.records.is_empty() {
                // Not expected (appends always end a line); never spin on it.
                tokio::time::sleep(BACKOFF_MIN).await;
                continue;
            }
            match timed_send(self.sink.as_ref(), &self.name, &batch.records).await {
                Ok(()) => {
                    if let Err(e) = self.spool.commit(batch.end) {
                        tracing::error!(sink = %self.name, error = %e, "cannot move the spool cursor; records may be sent twice");
                    }
                    self.note_success(batch.records.len());
                    backoff = BACKOFF_MIN;
                }
                Err(e) => {
                    self.note_failure(&e);
                    metrics::get()
                        .retried
                        .with_label_values(&[&self.name])
                        .inc();
                    let until = Instant::now() + backoff;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    loop {
                        let take =
                            !(self.spool_full() && self.settings.when_full == WhenFull::Block);
                        tokio::select! {
                            _ = sleep_until(until) => break,
                            r = self.rx.recv(), if take => match r {
                                Some(r) => {
                                    if self.spool_full() {
                                        metrics::get().dropped.with_label_values(&[&self.name]).inc();
                                    } else {
                                        self.spill(&[r]);
                                    }
                                    self.drain_queue_to_spool();
                                    self.update_gauges();
                                }
                                None => break,
                            },
                        }
                    }
                }
            }
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Process shutdown: keep what is in memory for the next start.
        self.rx.close();
        let mut rest = std::mem::take(&mut self.pending);
        while let Ok(r) = self.rx.try_recv() {
            rest.push(r);
        }
        if !rest.is_empty() {
            tracing::info!(sink = %self.name, records = rest.len(), "spooling undelivered decision records at shutdown");
            self.spill(&rest);
        }
    }
}

/// One delivery, timed into `portcullis_decision_log_sink_duration_seconds{sink}` (success or not:
/// a sink that times out is the slow one an SRE looks for).
async fn timed_send(
    sink: &dyn super::sinks::Sink,
    name: &str,
    records: &[bytes::Bytes],
) -> Result<(), super::sinks::SinkError> {
    let start = std::time::Instant::now();
    let out = sink.send(records).await;
    metrics::get()
        .sink_duration
        .with_label_values(&[name])
        .observe(start.elapsed().as_secs_f64());
    out
}
