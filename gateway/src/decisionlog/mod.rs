//! The decision log: one [`record::DecisionRecord`] per request, streamed to every configured
//! sink without ever blocking the request path.
//!
//! The proxy serialises the record once and hands it to each sink's bounded queue with a
//! non-blocking `try_send` ([`DecisionLog::submit`]). A worker per sink ([`worker::Worker`])
//! batches, delivers, retries with backoff, and spills to an on-disk [`spool::Spool`] while
//! the sink is down, replaying in order when it returns. Under `when_full: block` the proxy
//! reserves a queue slot in every sink before handling a request ([`DecisionLog::reserve`]);
//! when a queue is full (its spool is full, so the worker stopped draining it) the request is
//! refused with 503 instead of going unlogged.

pub mod config;
pub mod metrics;
pub mod record;
pub mod sinks;
pub mod spool;
pub mod worker;

use bytes::Bytes;
use config::{DecisionLogConfig, SinkKind, WhenFull};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use record::DecisionRecord;
use std::sync::Arc;
use thiserror::Error;
use tokio::sync::mpsc::{self, OwnedPermit, Sender};
use worker::{Worker, WorkerSettings};

/// The pipeline could not be set up.
#[derive(Debug, Error)]
pub enum StartError {
    /// The spool directory cannot be opened.
    #[error(transparent)]
    Spool(#[from] spool::SpoolError),
    /// A sink could not be built (HTTP client, TLS settings).
    #[error("decision_log sink {name}: {reason}")]
    Sink {
        /// Sink name.
        name: String,
        /// Why.
        reason: String,
    },
}

/// The queue of a sink could not take a record (its spool is full too).
#[derive(Debug, Error)]
#[error("decision log sink {0} is full")]
pub struct Full(pub String);

/// Queue slots reserved in every sink for one request's record.
pub struct Reservation(Vec<OwnedPermit<Bytes>>);

/// The proxy's handle on the pipeline.
pub struct DecisionLog {
    queues: Vec<(String, Sender<Bytes>)>,
    when_full: WhenFull,
    /// Instance name written into records.
    pub gateway_id: String,
}

impl DecisionLog {
    /// Under `when_full: block`, reserves a slot in every sink's queue; `Err` means refuse the
    /// request. Under `drop` there is nothing to reserve.
    pub fn reserve(&self) -> Result<Option<Reservation>, Full> {
        if self.when_full == WhenFull::Drop {
            return Ok(None);
        }
        let mut permits = Vec::with_capacity(self.queues.len());
        for (name, tx) in &self.queues {
            match tx.clone().try_reserve_owned() {
                Ok(p) => permits.push(p),
                Err(_) => {
                    metrics::get().refused.inc();
                    return Err(Full(name.clone()));
                }
            }
        }
        Ok(Some(Reservation(permits)))
    }

    /// Requests refused so far because the log could not take their record (readiness compares
    /// it between probe rounds: a queue with one free slot between requests is still full in
    /// effect while its worker waits on a full spool).
    pub fn refused_total(&self) -> u64 {
        metrics::get().refused.get()
    }

    /// Hands a record to every sink without waiting.
    pub fn submit(&self, reservation: Option<Reservation>, record: &DecisionRecord) {
        let line = record.to_line();
        match reservation {
            Some(Reservation(permits)) => {
                for p in permits {
                    p.send(line.clone());
                }
            }
            None => {
                for (name, tx) in &self.queues {
                    if tx.try_send(line.clone()).is_err() {
                        metrics::get().dropped.with_label_values(&[name]).inc();
                    }
                }
            }
        }
    }
}

/// One sink's worker as a pingora background service.
pub struct SinkService {
    worker: std::sync::Mutex<Option<Worker>>,
}

#[async_trait::async_trait]
impl BackgroundService for SinkService {
    async fn start(&self, shutdown: ShutdownWatch) {
        let worker = self.worker.lock().ok().and_then(|mut w| w.take());
        if let Some(mut w) = worker {
            w.run(shutdown).await;
        }
    }
}

fn build_sink(
    cfg: &config::SinkConfig,
    gateway_id: &str,
) -> Result<Box<dyn sinks::Sink>, StartError> {
    let err = |reason: String| StartError::Sink {
        name: cfg.name.clone(),
        reason,
    };
    Ok(match &cfg.kind {
        SinkKind::Http {
            url,
            headers,
            timeout,
        } => Box::new(
            sinks::http::HttpSink::new(url.clone(), headers.clone(), *timeout)
                .map_err(|e| err(e.to_string()))?,
        ),
        SinkKind::Otlp {
            url,
            encoding,
            gzip,
            headers,
            timeout,
        } => Box::new(
            sinks::otlp::OtlpSink::new(
                url.clone(),
                *encoding,
                *gzip,
                headers.clone(),
                *timeout,
                gateway_id.into(),
            )
            .map_err(|e| err(e.to_string()))?,
        ),
        SinkKind::Syslog {
            address,
            tls,
            facility,
            timeout,
        } => {
            let tls = match tls {
                None => None,
                Some((ders, name)) => {
                    let mut roots = rustls::RootCertStore::empty();
                    for d in ders {
                        roots
                            .add(rustls::pki_types::CertificateDer::from(d.clone()))
                            .map_err(|e| err(format!("CA certificate: {e}")))?;
                    }
                    let config = rustls::ClientConfig::builder()
                        .with_root_certificates(roots)
                        .with_no_client_auth();
                    Some(sinks::syslog::SyslogTls {
                        config: Arc::new(config),
                        server_name: name.clone(),
                    })
                }
            };
            Box::new(sinks::syslog::SyslogSink::new(
                address.clone(),
                tls,
                *facility,
                gateway_id.into(),
                *timeout,
            ))
        }
        SinkKind::File { path } => Box::new(sinks::file::FileSink { path: path.clone() }),
    })
}

/// Builds the handle and one background service per sink.
pub fn start(
    cfg: &DecisionLogConfig,
) -> Result<(DecisionLog, Vec<(String, SinkService)>), StartError> {
    let settings = WorkerSettings {
        max_bytes: cfg.max_bytes,
        when_full: cfg.when_full,
        batch_size: cfg.batch_size,
        flush_interval: cfg.flush_interval,
    };
    let mut queues = Vec::new();
    let mut services = Vec::new();
    for s in &cfg.sinks {
        let sink = build_sink(s, &cfg.gateway_id)?;
        let spool = spool::Spool::open(&cfg.spool_dir.join(&s.name))?;
        if !spool.is_empty() {
            tracing::info!(sink = %s.name, bytes = spool.pending_bytes(), "decision-log spool holds records from before; replaying them first");
        }
        let (tx, rx) = mpsc::channel(cfg.queue_size);
        let worker = Worker::new(s.name.clone(), sink, rx, spool, settings);
        queues.push((s.name.clone(), tx));
        services.push((
            format!("decision log sink {}", s.name),
            SinkService {
                worker: std::sync::Mutex::new(Some(worker)),
            },
        ));
    }
    Ok((
        DecisionLog {
            queues,
            when_full: cfg.when_full,
            gateway_id: cfg.gateway_id.clone(),
        },
        services,
    ))
}
