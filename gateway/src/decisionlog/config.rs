//! `decision_log:` — schema (as written) and validated settings.

use crate::config::problems::duration as dur;
use crate::config::problems::Problems;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// `decision_log:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionLogSpec {
    /// Destinations; several at once.
    #[serde(default)]
    pub sinks: Vec<SinkSpec>,
    /// On-disk spool for records a sink could not take yet.
    #[serde(default)]
    pub spool: SpoolSpec,
    /// Instance name in every record (default: the host name).
    #[serde(default)]
    pub gateway_id: Option<String>,
    /// Records held in memory per sink before the spool or the full policy applies.
    #[serde(default)]
    pub queue_size: Option<usize>,
    /// Records per delivery.
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// Longest time a record waits in memory for a batch to fill.
    #[serde(default)]
    pub flush_interval: Option<String>,
}

/// `decision_log.sinks[]`
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum SinkSpec {
    /// NDJSON batches, gzip, POST.
    Http {
        /// Metric label and spool directory name (default: the type).
        #[serde(default)]
        name: Option<String>,
        /// Collector URL.
        url: String,
        /// Extra request headers (e.g. authorization).
        #[serde(default)]
        headers: std::collections::BTreeMap<String, String>,
        /// Per-request timeout (default 10s).
        #[serde(default)]
        timeout: Option<String>,
    },
    /// OTLP/HTTP logs, protobuf (default) or JSON encoding, gzip.
    Otlp {
        /// Metric label and spool directory name.
        #[serde(default)]
        name: Option<String>,
        /// e.g. `http://otel-collector:4318/v1/logs`.
        url: String,
        /// `protobuf` (default: the protocol's default, which every receiver accepts) or `json`.
        #[serde(default)]
        encoding: Option<String>,
        /// `gzip` (default) or `none`.
        #[serde(default)]
        compression: Option<String>,
        /// Extra request headers.
        #[serde(default)]
        headers: std::collections::BTreeMap<String, String>,
        /// Per-request timeout.
        #[serde(default)]
        timeout: Option<String>,
    },
    /// RFC 5424 over TCP or TLS.
    Syslog {
        /// Metric label and spool directory name.
        #[serde(default)]
        name: Option<String>,
        /// `tcp://host:port` or `tls://host:port`.
        address: String,
        /// PEM CAs for `tls://` (required there).
        #[serde(default)]
        ca_file: Option<String>,
        /// Name to verify for `tls://` (default: the address host).
        #[serde(default)]
        server_name: Option<String>,
        /// `local0` … `local7`, `auth`, `authpriv`, `daemon`, `user` (default `local0`).
        #[serde(default)]
        facility: Option<String>,
        /// Connect/write timeout.
        #[serde(default)]
        timeout: Option<String>,
    },
    /// Append to a local file.
    File {
        /// Metric label and spool directory name.
        #[serde(default)]
        name: Option<String>,
        /// File path.
        path: String,
    },
}

/// `decision_log.spool`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolSpec {
    /// Directory (default `<server.data_dir>/spool`).
    #[serde(default)]
    pub dir: Option<String>,
    /// Size limit per sink, e.g. `1GiB` (default).
    #[serde(default)]
    pub max_bytes: Option<serde_yaml::Value>,
    /// `block` (default: fail closed with 503) or `drop` (count and discard).
    #[serde(default)]
    pub when_full: Option<String>,
}

/// What happens when a sink's queue and spool are both full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Refuse new requests with 503 until there is room (fail closed).
    Block,
    /// Serve requests and drop their records, counted in `portcullis_decision_log_dropped_total`.
    Drop,
}

/// A validated sink.
#[derive(Debug, Clone)]
pub enum SinkKind {
    /// HTTP NDJSON.
    Http {
        /// URL.
        url: String,
        /// Headers.
        headers: Vec<(String, String)>,
        /// Timeout.
        timeout: Duration,
    },
    /// OTLP/HTTP.
    Otlp {
        /// URL.
        url: String,
        /// Protobuf or JSON.
        encoding: crate::decisionlog::sinks::otlp::Encoding,
        /// Gzip the body.
        gzip: bool,
        /// Headers.
        headers: Vec<(String, String)>,
        /// Timeout.
        timeout: Duration,
    },
    /// Syslog.
    Syslog {
        /// `host:port`.
        address: String,
        /// TLS: CA certificates (DER) and the name to verify.
        tls: Option<(Vec<Vec<u8>>, String)>,
        /// Facility number.
        facility: u8,
        /// Timeout.
        timeout: Duration,
    },
    /// File.
    File {
        /// Path.
        path: PathBuf,
    },
}

/// A validated sink with its name.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// Unique name (metric label, spool subdirectory).
    pub name: String,
    /// Destination.
    pub kind: SinkKind,
}

/// Validated `decision_log:`.
#[derive(Debug, Clone)]
pub struct DecisionLogConfig {
    /// Sinks.
    pub sinks: Vec<SinkConfig>,
    /// Spool directory; each sink gets a subdirectory.
    pub spool_dir: PathBuf,
    /// Spool limit per sink.
    pub max_bytes: u64,
    /// Full policy.
    pub when_full: WhenFull,
    /// Instance name.
    pub gateway_id: String,
    /// In-memory queue per sink.
    pub queue_size: usize,
    /// Batch size.
    pub batch_size: usize,
    /// Flush interval.
    pub flush_interval: Duration,
}

/// Parses `1GiB`, `512MiB`, `10MB`, `4096`.
pub fn parse_size(v: &serde_yaml::Value) -> Option<u64> {
    if let Some(n) = v.as_u64() {
        return Some(n);
    }
    let s = v.as_str()?.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: f64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        _ => return None,
    };
    (num >= 0.0).then_some((num * mult as f64) as u64)
}

fn http_url(url: &str, path: &str, p: &mut Problems) {
    match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
        _ => p.add(path, format!("{url:?} is not an http:// or https:// URL")),
    }
}

fn facility(name: Option<&str>, path: &str, p: &mut Problems) -> u8 {
    match name.unwrap_or("local0") {
        "user" => 1,
        "daemon" => 3,
        "auth" => 4,
        "authpriv" => 10,
        s if s.starts_with("local") && s.len() == 6 => match s.as_bytes()[5] {
            d @ b'0'..=b'7' => 16 + (d - b'0'),
            _ => {
                p.add(path, format!("{s:?} is not a syslog facility"));
                16
            }
        },
        s => {
            p.add(
                path,
                format!("{s:?} is not one of user, daemon, auth, authpriv, local0..local7"),
            );
            16
        }
    }
}

fn default_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "portcullis".to_string())
}

/// Validates `decision_log:`; `data_dir` is `server.data_dir`.
pub fn build(
    spec: DecisionLogSpec,
    data_dir: &std::path::Path,
    p: &mut Problems,
) -> Option<DecisionLogConfig> {
    let before = p.0.len();
    if spec.sinks.is_empty() {
        p.add("decision_log.sinks", "needs at least one sink");
    }
    let mut sinks = Vec::new();
    let mut names = std::collections::HashMap::new();
    for (i, s) in spec.sinks.into_iter().enumerate() {
        let base = format!("decision_log.sinks[{i}]");
        let hdrs = |h: std::collections::BTreeMap<String, String>| h.into_iter().collect();
        let (name, kind) = match s {
            SinkSpec::Http {
                name,
                url,
                headers,
                timeout,
            } => {
                http_url(&url, &format!("{base}.url"), p);
                let timeout = dur(
                    timeout.as_deref(),
                    Duration::from_secs(10),
                    &format!("{base}.timeout"),
                    p,
                );
                (
                    name.unwrap_or_else(|| "http".into()),
                    SinkKind::Http {
                        url,
                        headers: hdrs(headers),
                        timeout,
                    },
                )
            }
            SinkSpec::Otlp {
                name,
                url,
                encoding,
                compression,
                headers,
                timeout,
            } => {
                http_url(&url, &format!("{base}.url"), p);
                let gzip = match compression.as_deref() {
                    None | Some("gzip") => true,
                    Some("none") => false,
                    Some(other) => {
                        p.add(
                            format!("{base}.compression"),
                            format!("unknown compression {other:?}: expected gzip or none"),
                        );
                        true
                    }
                };
                let encoding = match encoding.as_deref() {
                    None | Some("protobuf") => crate::decisionlog::sinks::otlp::Encoding::Protobuf,
                    Some("json") => crate::decisionlog::sinks::otlp::Encoding::Json,
                    Some(other) => {
                        p.add(
                            format!("{base}.encoding"),
                            format!("unknown encoding {other:?}: expected protobuf or json"),
                        );
                        crate::decisionlog::sinks::otlp::Encoding::Protobuf
                    }
                };
                let timeout = dur(
                    timeout.as_deref(),
                    Duration::from_secs(10),
                    &format!("{base}.timeout"),
                    p,
                );
                (
                    name.unwrap_or_else(|| "otlp".into()),
                    SinkKind::Otlp {
                        url,
                        encoding,
                        gzip,
                        headers: hdrs(headers),
                        timeout,
                    },
                )
            }
            SinkSpec::Syslog {
                name,
                address,
                ca_file,
                server_name,
                facility: fac,
                timeout,
            } => {
                let timeout = dur(
                    timeout.as_deref(),
                    Duration::from_secs(10),
                    &format!("{base}.timeout"),
                    p,
                );
                let facility = facility(fac.as_deref(), &format!("{base}.facility"), p);
                let (tls, hostport) = match address.split_once("://") {
                    Some(("tcp", rest)) => (false, rest.to_string()),
                    Some(("tls", rest)) => (true, rest.to_string()),
                    _ => {
                        p.add(
                            format!("{base}.address"),
                            format!("{address:?} is not tcp://host:port or tls://host:port"),
                        );
                        (false, String::new())
                    }
                };
                let host = hostport
                    .rsplit_once(':')
                    .map(|(h, _)| h.trim_matches(['[', ']']).to_string());
                if !hostport.is_empty()
                    && hostport
                        .rsplit_once(':')
                        .and_then(|(_, port)| port.parse::<u16>().ok())
                        .is_none()
                {
                    p.add(
                        format!("{base}.address"),
                        format!("{address:?} has no port"),
                    );
                }
                let tls = if tls {
                    match ca_file {
                        Some(f) => match crate::tls::load_ca_ders(&f) {
                            Ok(ders) => Some((ders, server_name.or(host).unwrap_or_default())),
                            Err(e) => {
                                p.add(format!("{base}.ca_file"), e.to_string());
                                None
                            }
                        },
                        None => {
                            p.add(format!("{base}.ca_file"), "tls:// needs ca_file (the CAs that sign the receiver's certificate)");
                            None
                        }
                    }
                } else {
                    None
                };
                (
                    name.unwrap_or_else(|| "syslog".into()),
                    SinkKind::Syslog {
                        address: hostport,
                        tls,
                        facility,
                        timeout,
                    },
                )
            }
            SinkSpec::File { name, path } => {
                if path.is_empty() {
                    p.add(format!("{base}.path"), "must not be empty");
                }
                (
                    name.unwrap_or_else(|| "file".into()),
                    SinkKind::File {
                        path: PathBuf::from(path),
                    },
                )
            }
        };
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        {
            p.add(
                format!("{base}.name"),
                format!("{name:?} must use only letters, digits, '-', '_'"),
            );
        }
        if let Some(prev) = names.insert(name.clone(), i) {
            p.add(format!("{base}.name"), format!("{name:?} is already the name of decision_log.sinks[{prev}]; give one of them a name"));
        }
        sinks.push(SinkConfig { name, kind });
    }
    let max_bytes = match &spec.spool.max_bytes {
        None => 1 << 30,
        Some(v) => parse_size(v).unwrap_or_else(|| {
            p.add(
                "decision_log.spool.max_bytes",
                format!("{v:?} is not a size like 1GiB or 500MB"),
            );
            0
        }),
    };
    let when_full = match spec.spool.when_full.as_deref() {
        None | Some("block") => WhenFull::Block,
        Some("drop") => WhenFull::Drop,
        Some(o) => {
            p.add(
                "decision_log.spool.when_full",
                format!("{o:?} is not one of block, drop"),
            );
            WhenFull::Block
        }
    };
    let queue_size = spec.queue_size.unwrap_or(65_536);
    if queue_size == 0 {
        p.add("decision_log.queue_size", "must be at least 1");
    }
    let batch_size = spec.batch_size.unwrap_or(500);
    if batch_size == 0 {
        p.add("decision_log.batch_size", "must be at least 1");
    }
    let flush_interval = dur(
        spec.flush_interval.as_deref(),
        Duration::from_millis(500),
        "decision_log.flush_interval",
        p,
    );
    if p.0.len() != before {
        return None;
    }
    Some(DecisionLogConfig {
        sinks,
        spool_dir: spec
            .spool
            .dir
            .map_or_else(|| data_dir.join("spool"), PathBuf::from),
        max_bytes,
        when_full,
        gateway_id: spec.gateway_id.unwrap_or_else(default_hostname),
        queue_size,
        batch_size,
        flush_interval,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let s = |x: &str| parse_size(&serde_yaml::Value::String(x.into()));
        assert_eq!(s("1GiB"), Some(1 << 30));
        assert_eq!(s("10 MB"), Some(10_000_000));
        assert_eq!(s("4096"), Some(4096));
        assert_eq!(s("1.5KiB"), Some(1536));
        assert_eq!(s("lots"), None);
        assert_eq!(parse_size(&serde_yaml::Value::Number(7.into())), Some(7));
    }
}
