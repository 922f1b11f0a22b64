//! Decision-log metrics, all labelled by `sink`:
//! `portcullis_decision_log_queue_depth` (records in memory), `_sent_total` (records delivered),
//! `_retried_total` (delivery attempts that were retries), `_spooled_total` (records written to
//! the spool), `_spool_bytes` (undelivered bytes on disk), `_dropped_total` (records lost under
//! `when_full: drop`; must stay 0), `_sink_errors_total` (failed deliveries), `_sink_duration_seconds`
//! (time per delivery), and, unlabelled,
//! `portcullis_decision_log_refused_total` (requests answered 503 under `when_full: block`).

use once_cell::sync::Lazy;
use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts};

/// The decision-log metric families.
pub struct LogMetrics {
    /// Queue depth by sink.
    pub queue_depth: IntGaugeVec,
    /// Records delivered by sink.
    pub sent: IntCounterVec,
    /// Retried delivery attempts by sink.
    pub retried: IntCounterVec,
    /// Records spooled by sink.
    pub spooled: IntCounterVec,
    /// Undelivered spool bytes by sink.
    pub spool_bytes: IntGaugeVec,
    /// Records dropped by sink.
    pub dropped: IntCounterVec,
    /// Failed deliveries by sink.
    pub errors: IntCounterVec,
    /// Requests refused because the log could not take their record.
    pub refused: IntCounter,
    /// Time one delivery to a sink took, by sink.
    pub sink_duration: HistogramVec,
}

fn build() -> Result<LogMetrics, prometheus::Error> {
    let reg = crate::metrics::registry();
    let cv = |name: &str, help: &str| -> Result<IntCounterVec, prometheus::Error> {
        let c = IntCounterVec::new(Opts::new(name, help), &["sink"])?;
        reg.register(Box::new(c.clone()))?;
        Ok(c)
    };
    let gv = |name: &str, help: &str| -> Result<IntGaugeVec, prometheus::Error> {
        let g = IntGaugeVec::new(Opts::new(name, help), &["sink"])?;
        reg.register(Box::new(g.clone()))?;
        Ok(g)
    };
    let refused = IntCounter::new(
        "portcullis_decision_log_refused_total",
        "Requests answered 503 because the decision log was full (when_full: block)",
    )?;
    reg.register(Box::new(refused.clone()))?;
    let sink_duration = HistogramVec::new(
        HistogramOpts::new(
            "portcullis_decision_log_sink_duration_seconds",
            "Time one delivery (a batch) to a sink took, by sink",
        )
        .buckets(vec![
            0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ]),
        &["sink"],
    )?;
    reg.register(Box::new(sink_duration.clone()))?;
    Ok(LogMetrics {
        queue_depth: gv(
            "portcullis_decision_log_queue_depth",
            "Decision records in memory, by sink",
        )?,
        sent: cv(
            "portcullis_decision_log_sent_total",
            "Decision records delivered, by sink",
        )?,
        retried: cv(
            "portcullis_decision_log_retried_total",
            "Delivery attempts that were retries, by sink",
        )?,
        spooled: cv(
            "portcullis_decision_log_spooled_total",
            "Decision records written to the on-disk spool, by sink",
        )?,
        spool_bytes: gv(
            "portcullis_decision_log_spool_bytes",
            "Undelivered bytes in the spool, by sink",
        )?,
        dropped: cv(
            "portcullis_decision_log_dropped_total",
            "Decision records dropped (when_full: drop), by sink",
        )?,
        errors: cv(
            "portcullis_decision_log_sink_errors_total",
            "Failed deliveries, by sink",
        )?,
        refused,
        sink_duration,
    })
}

#[allow(clippy::expect_used)]
static METRICS: Lazy<LogMetrics> =
    Lazy::new(|| build().expect("decision-log metric definitions are static and valid"));

/// The process-wide decision-log metrics.
pub fn get() -> &'static LogMetrics {
    &METRICS
}

/// Creates every series of `sink` at zero so dashboards and alerts see them from the start.
pub fn init_sink(sink: &str) {
    let m = get();
    m.queue_depth.with_label_values(&[sink]).set(0);
    m.spool_bytes.with_label_values(&[sink]).set(0);
    for c in [&m.sent, &m.retried, &m.spooled, &m.dropped, &m.errors] {
        c.with_label_values(&[sink]);
    }
}
