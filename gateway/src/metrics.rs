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
    /// `portcullis_tls_certificate_expiry_timestamp_seconds{name}`: notAfter per served name.
    pub tls_cert_expiry: IntGaugeVec,
    /// `portcullis_idp_keys_fetched_timestamp_seconds{idp}`: when discovery and keys were last
    /// fetched (their age is `time() - this`).
    pub idp_keys_fetched: IntGaugeVec,
    /// `portcullis_idp_refresh_errors_total{idp,what}`: failed discovery or JWKS fetches.
    pub idp_refresh_errors: IntCounterVec,
    /// `portcullis_store_duration_seconds{store,op}`: session store (`session`) operations and
    /// SQL store (`sql`) probes.
    pub store_duration: HistogramVec,
    /// `portcullis_store_errors_total{store,op}`.
    pub store_errors: IntCounterVec,
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
    let tls_cert_expiry = IntGaugeVec::new(
        Opts::new(
            "portcullis_tls_certificate_expiry_timestamp_seconds",
            "Unix time at which the certificate served for each TLS name (SNI) expires",
        ),
        &["name"],
    )?;
    let idp_keys_fetched = IntGaugeVec::new(
        Opts::new(
            "portcullis_idp_keys_fetched_timestamp_seconds",
            "Unix time of the last successful discovery or JWKS fetch, by OIDC provider",
        ),
        &["idp"],
    )?;
    let idp_refresh_errors = IntCounterVec::new(
        Opts::new(
            "portcullis_idp_refresh_errors_total",
            "Failed provider metadata fetches by provider and what (discovery, jwks)",
        ),
        &["idp", "what"],
    )?;
    let store_duration = HistogramVec::new(
        HistogramOpts::new(
            "portcullis_store_duration_seconds",
            "Session store operations and SQL store probes, by store and operation",
        )
        .buckets(BUCKETS.to_vec()),
        &["store", "op"],
    )?;
    let store_errors = IntCounterVec::new(
        Opts::new(
            "portcullis_store_errors_total",
            "Failed session store operations and SQL store probes, by store and operation",
        ),
        &["store", "op"],
    )?;
    registry.register(Box::new(tls_cert_expiry.clone()))?;
    registry.register(Box::new(idp_keys_fetched.clone()))?;
    registry.register(Box::new(idp_refresh_errors.clone()))?;
    registry.register(Box::new(store_duration.clone()))?;
    registry.register(Box::new(store_errors.clone()))?;
    // CPU, memory, open files and start time of this process (`process_*`).
    #[cfg(target_os = "linux")]
    registry.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ))?;
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
        tls_cert_expiry,
        idp_keys_fetched,
        idp_refresh_errors,
        store_duration,
        store_errors,
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

/// Records one store operation: its duration, and an error when it failed.
pub fn store_op(store: &str, op: &str, elapsed: std::time::Duration, ok: bool) {
    METRICS
        .store_duration
        .with_label_values(&[store, op])
        .observe(elapsed.as_secs_f64());
    let errors = METRICS.store_errors.with_label_values(&[store, op]);
    if !ok {
        errors.inc();
    }
}

/// Replaces the certificate expiry series with `names` → notAfter (unix seconds), so a name
/// dropped by a reload stops being reported.
pub fn set_certificate_expiry<'a>(names: impl IntoIterator<Item = (&'a str, i64)>) {
    METRICS.tls_cert_expiry.reset();
    for (name, not_after) in names {
        METRICS
            .tls_cert_expiry
            .with_label_values(&[name])
            .set(not_after);
    }
}

/// Creates, at zero, the sign-in and second-factor series of the configured providers and
/// factors, so alerts and dashboard panels over them have data before the first event (a
/// lockout alert must not wait for a series that appears only with the first lockout).
pub fn init_series(cfg: &crate::config::Config) {
    let ids = cfg
        .identity_providers
        .iter()
        .map(|p| p.id.as_str())
        .chain(cfg.local_providers.iter().map(|p| p.id.as_str()))
        .chain(cfg.ldap_providers.iter().map(|p| p.id.as_str()))
        .chain(cfg.saml_providers.iter().map(|p| p.id.as_str()));
    for id in ids {
        for outcome in ["failure", "locked_out"] {
            METRICS
                .auth_events
                .with_label_values(&[id, "login", outcome]);
        }
    }
    if let Some(mfa) = &cfg.mfa {
        let factors = [
            Some("totp"),
            mfa.webauthn.as_ref().map(|_| "webauthn"),
            mfa.email.as_ref().map(|_| "email"),
            mfa.sms.as_ref().map(|_| "sms"),
            (mfa.recovery_codes > 0).then_some("recovery"),
        ];
        for factor in factors.into_iter().flatten() {
            for outcome in ["failure", "locked_out"] {
                METRICS.mfa_events.with_label_values(&[factor, outcome]);
            }
        }
    }
}
