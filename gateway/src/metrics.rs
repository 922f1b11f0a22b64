//! Prometheus metrics, names per the contract in ARCHITECTURE.md.

use once_cell::sync::Lazy;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// All gateway metrics in one registry.
pub struct Metrics {
    registry: Registry,
    /// `portcullis_http_requests_total{route,decision,status}`
    pub requests: IntCounterVec,
    /// `portcullis_http_request_duration_seconds{route}`
    pub request_duration: HistogramVec,
    /// `portcullis_upstream_duration_seconds{route}`
    pub upstream_duration: HistogramVec,
    /// `portcullis_config_reloads_total{result}`
    pub reloads: IntCounterVec,
    /// `portcullis_upstream_failures_total{route,kind}`
    pub upstream_failures: IntCounterVec,
    /// `portcullis_build_info{version}` = 1
    pub build_info: IntGaugeVec,
    /// `portcullis_auth_events_total{idp,event,outcome}`
    pub auth_events: IntCounterVec,
    /// `portcullis_sessions_active`
    pub sessions_active: IntGauge,
    /// `portcullis_mfa_events_total{factor,outcome}`
    pub mfa_events: IntCounterVec,
    /// `portcullis_directory_sync_total{connector,outcome}`
    pub directory_sync: IntCounterVec,
    /// `portcullis_directory_sync_last_success_timestamp_seconds{connector}`
    pub directory_sync_last_success: IntGaugeVec,
}

const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn build() -> Result<Metrics, prometheus::Error> {
    let registry = Registry::new();
    let requests = IntCounterVec::new(
        Opts::new(
            "portcullis_http_requests_total",
            "Requests by route, decision and status",
        ),
        &["route", "decision", "status"],
    )?;
    let request_duration = HistogramVec::new(
        HistogramOpts::new(
            "portcullis_http_request_duration_seconds",
            "Time from request headers to the end of the response",
        )
        .buckets(BUCKETS.to_vec()),
        &["route"],
    )?;
    let upstream_duration = HistogramVec::new(
        HistogramOpts::new(
            "portcullis_upstream_duration_seconds",
            "Time from sending the request upstream to the end of its response",
        )
        .buckets(BUCKETS.to_vec()),
        &["route"],
    )?;
    let reloads = IntCounterVec::new(
        Opts::new(
            "portcullis_config_reloads_total",
            "Config reloads by result",
        ),
        &["result"],
    )?;
    let upstream_failures = IntCounterVec::new(
        Opts::new(
            "portcullis_upstream_failures_total",
            "Upstream connection failures by route and kind",
        ),
        &["route", "kind"],
    )?;
    let build_info = IntGaugeVec::new(
        Opts::new("portcullis_build_info", "Build information"),
        &["version"],
    )?;
    let auth_events = IntCounterVec::new(
        Opts::new(
            "portcullis_auth_events_total",
            "Authentication events (login_start, login, refresh, logout, backchannel_logout, session_end) by provider and outcome",
        ),
        &["idp", "event", "outcome"],
    )?;
    let sessions_active = IntGauge::new(
        "portcullis_sessions_active",
        "Signed-in sessions in the session store",
    )?;
    let mfa_events = IntCounterVec::new(
        Opts::new(
            "portcullis_mfa_events_total",
            "Second-factor events by factor (totp, recovery, ...) and outcome (enrolled, success, failure, replay, lockout)",
        ),
        &["factor", "outcome"],
    )?;
    let directory_sync = IntCounterVec::new(
        Opts::new(
            "portcullis_directory_sync_total",
            "Directory sync runs by connector and outcome (success, partial, error, locked)",
        ),
        &["connector", "outcome"],
    )?;
    let directory_sync_last_success = IntGaugeVec::new(
        Opts::new(
            "portcullis_directory_sync_last_success_timestamp_seconds",
            "Unix time of the last successful (complete) directory sync run, by connector",
        ),
        &["connector"],
    )?;
    registry.register(Box::new(directory_sync.clone()))?;
    registry.register(Box::new(directory_sync_last_success.clone()))?;
    registry.register(Box::new(mfa_events.clone()))?;
    registry.register(Box::new(auth_events.clone()))?;
    registry.register(Box::new(sessions_active.clone()))?;
    registry.register(Box::new(requests.clone()))?;
    registry.register(Box::new(request_duration.clone()))?;
    registry.register(Box::new(upstream_duration.clone()))?;
    registry.register(Box::new(reloads.clone()))?;
    registry.register(Box::new(upstream_failures.clone()))?;
    registry.register(Box::new(build_info.clone()))?;
    build_info
        .with_label_values(&[env!("CARGO_PKG_VERSION")])
        .set(1);
    for r in ["success", "error"] {
        reloads.with_label_values(&[r]);
    }
    Ok(Metrics {
        registry,
        requests,
        request_duration,
        upstream_duration,
        reloads,
        upstream_failures,
        build_info,
        auth_events,
        sessions_active,
        mfa_events,
        directory_sync,
        directory_sync_last_success,
    })
}

#[allow(clippy::expect_used)]
static METRICS: Lazy<Metrics> =
    Lazy::new(|| build().expect("metric definitions are static and valid"));

/// The process-wide metrics.
pub fn get() -> &'static Metrics {
    &METRICS
}

/// The registry, for modules that register their own metrics (decision log, audit).
pub fn registry() -> &'static Registry {
    &METRICS.registry
}

/// The status code as a label without allocating for the common codes.
pub fn status_label(status: u16) -> std::borrow::Cow<'static, str> {
    const COMMON: [(u16, &str); 14] = [
        (0, "0"),
        (101, "101"),
        (200, "200"),
        (204, "204"),
        (301, "301"),
        (302, "302"),
        (304, "304"),
        (308, "308"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (502, "502"),
        (503, "503"),
    ];
    match COMMON.iter().find(|(c, _)| *c == status) {
        Some((_, s)) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(status.to_string()),
    }
}

/// The text exposition format for `/metrics`.
pub fn render() -> String {
    let mut buf = Vec::new();
    let families = METRICS.registry.gather();
    if TextEncoder::new().encode(&families, &mut buf).is_err() {
        return String::new();
    }
    String::from_utf8(buf).unwrap_or_default()
}

/// Counts one authentication event.
pub fn auth_event(idp: &str, event: &str, outcome: &str) {
    METRICS
        .auth_events
        .with_label_values(&[idp, event, outcome])
        .inc();
}

/// Counts one second-factor event.
pub fn mfa_event(factor: &str, outcome: &str) {
    METRICS
        .mfa_events
        .with_label_values(&[factor, outcome])
        .inc();
}

/// Counts one directory sync run; a success also sets the connector's last-success time.
pub fn directory_sync(connector: &str, outcome: &str, now: i64) {
    METRICS
        .directory_sync
        .with_label_values(&[connector, outcome])
        .inc();
    if outcome == "success" {
        METRICS
            .directory_sync_last_success
            .with_label_values(&[connector])
            .set(now);
    }
}
