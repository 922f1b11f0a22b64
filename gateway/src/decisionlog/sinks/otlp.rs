//! OTLP/HTTP logs sink, JSON encoding (the OpenTelemetry collector's `otlphttp` receiver on
//! `/v1/logs`). One batch is one `ExportLogsServiceRequest`:
//!
//! ```json
//! {"resourceLogs":[{
//!   "resource":{"attributes":[{"key":"service.name","value":{"stringValue":"portcullis"}},
//!                             {"key":"service.instance.id","value":{"stringValue":"<gateway>"}}]},
//!   "scopeLogs":[{"scope":{"name":"portcullis.decision_log","version":"1"},
//!     "logRecords":[{"timeUnixNano":"…","observedTimeUnixNano":"…","severityNumber":9,
//!       "severityText":"INFO","body":{"stringValue":"<the decision record JSON>"},
//!       "attributes":[{"key":"portcullis.record_id","value":{"stringValue":"…"}},
//!                     {"key":"portcullis.decision","value":{"stringValue":"allow"}},
//!                     {"key":"portcullis.route","value":{"stringValue":"app"}},
//!                     {"key":"http.response.status_code","value":{"intValue":"200"}}]}]}]}]}
//! ```
//!
//! Denials are `severityNumber` 13 (`WARN`). The body is the full record, so nothing is lost in
//! the mapping; attributes carry the fields collectors usually index.

use super::http::{client, post};
use super::{Sink, SinkError};
use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{json, Value};
use std::time::{Duration, SystemTime};

/// POSTs OTLP/JSON log batches to `url`.
pub struct OtlpSink {
    client: reqwest::Client,
    url: String,
    headers: Vec<(String, String)>,
    gateway: String,
}

impl OtlpSink {
    /// A sink posting to `url` (e.g. `http://collector:4318/v1/logs`).
    pub fn new(
        url: String,
        headers: Vec<(String, String)>,
        timeout: Duration,
        gateway: String,
    ) -> Result<Self, SinkError> {
        Ok(Self {
            client: client(timeout)?,
            url,
            headers,
            gateway,
        })
    }
}

fn nanos(t: SystemTime) -> String {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
        .to_string()
}

fn attr_str(key: &str, v: Option<&str>) -> Option<Value> {
    v.map(|s| json!({"key": key, "value": {"stringValue": s}}))
}

/// Maps one decision record line to an OTLP `LogRecord`.
pub fn log_record(line: &[u8], observed: SystemTime) -> Value {
    let body = String::from_utf8_lossy(line).into_owned();
    let rec: Value = serde_json::from_slice(line).unwrap_or(Value::Null);
    let time = rec["time"]
        .as_str()
        .and_then(|t| humantime::parse_rfc3339(t).ok())
        .unwrap_or(observed);
    let decision = rec["decision"].as_str();
    let (sev, sev_text) = match decision {
        Some("allow") => (9, "INFO"),
        _ => (13, "WARN"),
    };
    let mut attrs: Vec<Value> = [
        attr_str("portcullis.record_id", rec["id"].as_str()),
        attr_str("portcullis.decision", decision),
        attr_str("portcullis.route", rec["route"].as_str()),
        attr_str("portcullis.rule", rec["rule"].as_str()),
        attr_str("enduser.id", rec["user"].as_str()),
        attr_str("client.address", rec["client_ip"].as_str()),
        attr_str("http.request.method", rec["method"].as_str()),
        attr_str("url.path", rec["path"].as_str()),
    ]
    .into_iter()
    .flatten()
    .collect();
    if let Some(s) = rec["status"].as_u64() {
        attrs.push(
            json!({"key": "http.response.status_code", "value": {"intValue": s.to_string()}}),
        );
    }
    json!({
        "timeUnixNano": nanos(time),
        "observedTimeUnixNano": nanos(observed),
        "severityNumber": sev,
        "severityText": sev_text,
        "body": {"stringValue": body},
        "attributes": attrs,
    })
}

/// The `ExportLogsServiceRequest` for a batch.
pub fn export_request(records: &[Bytes], gateway: &str, observed: SystemTime) -> Value {
    let logs: Vec<Value> = records.iter().map(|r| log_record(r, observed)).collect();
    json!({"resourceLogs": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "portcullis"}},
            {"key": "service.instance.id", "value": {"stringValue": gateway}},
        ]},
        "scopeLogs": [{
            "scope": {"name": "portcullis.decision_log", "version": super::super::record::SCHEMA_VERSION.to_string()},
            "logRecords": logs,
        }],
    }]})
}

#[async_trait]
impl Sink for OtlpSink {
    async fn send(&self, records: &[Bytes]) -> Result<(), SinkError> {
        let body = export_request(records, &self.gateway, SystemTime::now()).to_string();
        post(
            &self.client,
            &self.url,
            &self.headers,
            "application/json",
            body.into_bytes(),
        )
        .await
    }
}
