//! OTLP/HTTP logs sink (the OpenTelemetry collector's `otlphttp` receiver on `/v1/logs`), in the
//! protocol's default encoding, protobuf (`Content-Type: application/x-protobuf`), or in JSON
//! (`encoding: json`, `application/json`); gzip-compressed unless `compression: none` (for
//! receivers without gzip support). One batch is one
//! `ExportLogsServiceRequest` (shown in its JSON form):
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
//! the mapping; attributes carry the fields collectors usually index. The mapping is made once
//! ([`LogFields`]) and rendered in either encoding, so the two never disagree.

use super::http::{client, post};
use super::{Sink, SinkError};
use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{json, Value};
use std::time::{Duration, SystemTime};

/// POSTs OTLP log batches to `url`.
pub struct OtlpSink {
    client: reqwest::Client,
    url: String,
    encoding: Encoding,
    gzip: bool,
    headers: Vec<(String, String)>,
    gateway: String,
}

impl OtlpSink {
    /// A sink posting to `url` (e.g. `http://collector:4318/v1/logs`).
    pub fn new(
        url: String,
        encoding: Encoding,
        gzip: bool,
        headers: Vec<(String, String)>,
        timeout: Duration,
        gateway: String,
    ) -> Result<Self, SinkError> {
        Ok(Self {
            client: client(timeout)?,
            url,
            encoding,
            gzip,
            headers,
            gateway,
        })
    }
}

/// The OTLP encoding of a sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `application/x-protobuf` (the OTLP default).
    Protobuf,
    /// `application/json` (OTLP/JSON).
    Json,
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// An attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    /// `stringValue`.
    Str(String),
    /// `intValue`.
    Int(i64),
}

/// One decision record as an OTLP log record, before encoding.
#[derive(Debug, Clone, PartialEq)]
pub struct LogFields {
    /// The record's own time (its `time` field), else the observed time.
    pub time: u64,
    /// When the sink saw it.
    pub observed: u64,
    /// 9 (`INFO`) for allow, 13 (`WARN`) otherwise.
    pub severity: i32,
    /// `INFO` or `WARN`.
    pub severity_text: &'static str,
    /// The whole record line.
    pub body: String,
    /// Indexed fields.
    pub attributes: Vec<(&'static str, AttrValue)>,
}

/// Maps one decision record line to its log fields.
pub fn log_fields(line: &[u8], observed: SystemTime) -> LogFields {
    let body = String::from_utf8_lossy(line).into_owned();
    let rec: Value = serde_json::from_slice(line).unwrap_or(Value::Null);
    let time = rec["time"]
        .as_str()
        .and_then(|t| humantime::parse_rfc3339(t).ok())
        .unwrap_or(observed);
    let decision = rec["decision"].as_str();
    let (severity, severity_text) = match decision {
        Some("allow") => (9, "INFO"),
        _ => (13, "WARN"),
    };
    let mut attributes: Vec<(&'static str, AttrValue)> = [
        ("portcullis.record_id", rec["id"].as_str()),
        ("portcullis.decision", decision),
        ("portcullis.route", rec["route"].as_str()),
        ("portcullis.rule", rec["rule"].as_str()),
        ("enduser.id", rec["user"].as_str()),
        ("client.address", rec["client_ip"].as_str()),
        ("http.request.method", rec["method"].as_str()),
        ("url.path", rec["path"].as_str()),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, AttrValue::Str(v.to_string()))))
    .collect();
    if let Some(s) = rec["status"].as_i64() {
        attributes.push(("http.response.status_code", AttrValue::Int(s)));
    }
    LogFields {
        time: unix_nanos(time),
        observed: unix_nanos(observed),
        severity,
        severity_text,
        body,
        attributes,
    }
}

fn json_attr(key: &str, v: &AttrValue) -> Value {
    match v {
        AttrValue::Str(s) => json!({"key": key, "value": {"stringValue": s}}),
        // OTLP/JSON writes 64-bit integers as strings.
        AttrValue::Int(i) => json!({"key": key, "value": {"intValue": i.to_string()}}),
    }
}

/// Maps one decision record line to an OTLP/JSON `LogRecord`.
pub fn log_record(line: &[u8], observed: SystemTime) -> Value {
    let f = log_fields(line, observed);
    json!({
        "timeUnixNano": f.time.to_string(),
        "observedTimeUnixNano": f.observed.to_string(),
        "severityNumber": f.severity,
        "severityText": f.severity_text,
        "body": {"stringValue": f.body},
        "attributes": f.attributes.iter().map(|(k, v)| json_attr(k, v)).collect::<Vec<_>>(),
    })
}

/// The resource attributes: who sent the batch.
fn resource(gateway: &str) -> [(&'static str, AttrValue); 2] {
    [
        ("service.name", AttrValue::Str("portcullis".into())),
        ("service.instance.id", AttrValue::Str(gateway.to_string())),
    ]
}

const SCOPE: &str = "portcullis.decision_log";

/// The OTLP/JSON `ExportLogsServiceRequest` for a batch.
pub fn export_request(records: &[Bytes], gateway: &str, observed: SystemTime) -> Value {
    let logs: Vec<Value> = records.iter().map(|r| log_record(r, observed)).collect();
    json!({"resourceLogs": [{
        "resource": {"attributes": resource(gateway).iter().map(|(k, v)| json_attr(k, v)).collect::<Vec<_>>()},
        "scopeLogs": [{
            "scope": {"name": SCOPE, "version": super::super::record::SCHEMA_VERSION.to_string()},
            "logRecords": logs,
        }],
    }]})
}

/// The protobuf `ExportLogsServiceRequest` for a batch.
pub fn export_request_protobuf(records: &[Bytes], gateway: &str, observed: SystemTime) -> Vec<u8> {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{
        any_value, AnyValue, InstrumentationScope, KeyValue,
    };
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use prost::Message;
    let kv = |k: &str, v: &AttrValue| KeyValue {
        key: k.to_string(),
        value: Some(AnyValue {
            value: Some(match v {
                AttrValue::Str(s) => any_value::Value::StringValue(s.clone()),
                AttrValue::Int(i) => any_value::Value::IntValue(*i),
            }),
        }),
        ..Default::default()
    };
    let log_records = records
        .iter()
        .map(|r| {
            let f = log_fields(r, observed);
            LogRecord {
                time_unix_nano: f.time,
                observed_time_unix_nano: f.observed,
                severity_number: f.severity,
                severity_text: f.severity_text.to_string(),
                body: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(f.body)),
                }),
                attributes: f.attributes.iter().map(|(k, v)| kv(k, v)).collect(),
                ..Default::default()
            }
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: resource(gateway).iter().map(|(k, v)| kv(k, v)).collect(),
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: SCOPE.to_string(),
                    version: super::super::record::SCHEMA_VERSION.to_string(),
                    ..Default::default()
                }),
                log_records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

#[async_trait]
impl Sink for OtlpSink {
    async fn send(&self, records: &[Bytes]) -> Result<(), SinkError> {
        let now = SystemTime::now();
        let (content_type, body) = match self.encoding {
            Encoding::Protobuf => (
                "application/x-protobuf",
                export_request_protobuf(records, &self.gateway, now),
            ),
            Encoding::Json => (
                "application/json",
                export_request(records, &self.gateway, now)
                    .to_string()
                    .into_bytes(),
            ),
        };
        post(
            &self.client,
            &self.url,
            &self.headers,
            content_type,
            body,
            self.gzip,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    use prost::Message;

    #[test]
    fn protobuf_and_json_carry_the_same_batch() {
        let allow = Bytes::from_static(br#"{"id":"r1","time":"2026-12-03T10:00:00Z","decision":"allow","route":"app","status":200,"path":"/a","user":"alice"}"#);
        let deny =
            Bytes::from_static(br#"{"id":"r2","decision":"deny","route":"admin","status":403}"#);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let pb = export_request_protobuf(&[allow.clone(), deny.clone()], "gw-1", now);
        let req = ExportLogsServiceRequest::decode(pb.as_slice()).expect("valid protobuf");
        let json = export_request(&[allow, deny], "gw-1", now);
        let rl = &req.resource_logs[0];
        let res: Vec<(String, String)> = rl
            .resource
            .as_ref()
            .unwrap()
            .attributes
            .iter()
            .map(
                |kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(Any::StringValue(s)) => (kv.key.clone(), s.clone()),
                    other => panic!("{other:?}"),
                },
            )
            .collect();
        assert_eq!(
            res,
            [
                ("service.name".into(), "portcullis".into()),
                ("service.instance.id".into(), "gw-1".into())
            ]
        );
        let sl = &rl.scope_logs[0];
        assert_eq!(sl.scope.as_ref().unwrap().name, "portcullis.decision_log");
        let jl = json["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
            .as_array()
            .unwrap();
        assert_eq!(sl.log_records.len(), 2);
        for (p, j) in sl.log_records.iter().zip(jl) {
            assert_eq!(p.time_unix_nano.to_string(), j["timeUnixNano"]);
            assert_eq!(
                p.observed_time_unix_nano.to_string(),
                j["observedTimeUnixNano"]
            );
            assert_eq!(
                i64::from(p.severity_number),
                j["severityNumber"].as_i64().unwrap()
            );
            assert_eq!(p.severity_text, j["severityText"]);
            match p.body.as_ref().and_then(|b| b.value.as_ref()) {
                Some(Any::StringValue(s)) => assert_eq!(s, &j["body"]["stringValue"]),
                other => panic!("{other:?}"),
            }
            assert_eq!(
                p.attributes.len(),
                j["attributes"].as_array().unwrap().len()
            );
        }
        let first = &sl.log_records[0];
        assert_eq!(
            first.time_unix_nano, 1_796_292_000_000_000_000,
            "the record's own time"
        );
        assert_eq!(
            (first.severity_number, first.severity_text.as_str()),
            (9, "INFO")
        );
        assert_eq!(sl.log_records[1].severity_number, 13);
        let status = first
            .attributes
            .iter()
            .find(|a| a.key == "http.response.status_code")
            .unwrap();
        assert!(matches!(
            status.value.as_ref().and_then(|v| v.value.as_ref()),
            Some(Any::IntValue(200))
        ));
    }

    #[test]
    fn a_record_that_is_not_json_still_travels_whole() {
        let f = log_fields(b"not json \xff", SystemTime::UNIX_EPOCH);
        assert_eq!(f.body, "not json \u{fffd}");
        assert_eq!(f.severity, 13);
        assert!(f.attributes.is_empty());
    }
}
