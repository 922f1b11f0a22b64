//! Decision records to a real rsyslog and a real syslog-ng over TCP and TLS, RFC 5424 with octet
//! counting.

use portcullis_e2e::pki::TestCa;
use portcullis_e2e::syslogd::{SyslogTlsFiles, Syslogd};
use portcullis_e2e::*;
use std::time::Duration;

fn config(up: &Whoami, data: &std::path::Path, sink: &str) -> String {
    format!(
        "{SERVER}  data_dir: \"{}\"
routes:
  - {{ id: app, path: /, upstream: \"{}\", policy: public }}
  - {{ id: admin, path: /admin, upstream: \"{}\", policy: authenticated }}
decision_log:
  gateway_id: gw-sys
  flush_interval: 50ms
  sinks:
    - {sink}
",
        data.display(),
        up.url(),
        up.url()
    )
}

fn check(lines: &[String]) {
    let fields: Vec<Vec<&str>> = lines.iter().map(|l| l.splitn(8, '|').collect()).collect();
    let allow = &fields[0];
    assert_eq!(allow[0], "134", "local0.info: {lines:?}");
    assert_eq!(allow[1], "gw-sys");
    assert_eq!(allow[2], "portcullis");
    assert!(
        allow[3].parse::<u32>().is_ok(),
        "procid is the pid: {}",
        allow[3]
    );
    assert_eq!(allow[4], "decision");
    assert!(
        allow[5].starts_with("[decision@32473 id=\""),
        "{}",
        allow[5]
    );
    assert!(allow[5].ends_with("decision=\"allow\"]"), "{}", allow[5]);
    assert!(allow[6].starts_with("20"), "timestamp parsed: {}", allow[6]);
    let rec: serde_json::Value = serde_json::from_str(allow[7].trim()).expect("msg is the record");
    assert_eq!(rec["path"], "/hello");
    assert!(allow[5].contains(rec["id"].as_str().unwrap()));
    let deny = &fields[1];
    assert_eq!(deny[0], "132", "local0.warning for a non-allow decision");
    let rec: serde_json::Value = serde_json::from_str(deny[7].trim()).unwrap();
    assert_eq!(rec["decision"], "login");
}

#[test]
fn records_reach_rsyslog_over_tcp() {
    over_tcp(Syslogd::rsyslog(None));
}

#[test]
fn records_reach_syslog_ng_over_tcp() {
    over_tcp(Syslogd::syslog_ng(None));
}

#[test]
fn records_reach_rsyslog_over_tls() {
    over_tls(Syslogd::rsyslog);
}

#[test]
fn records_reach_syslog_ng_over_tls() {
    over_tls(Syslogd::syslog_ng);
}

fn over_tcp(sys: Syslogd) {
    let up = Whoami::start("u");
    let data = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&config(
        &up,
        data.path(),
        &format!(
            "{{ type: syslog, address: \"tcp://127.0.0.1:{}\" }}",
            sys.port
        ),
    ));
    assert_eq!(
        raw_request(gw.ports.http, "GET /hello HTTP/1.1", &[])
            .unwrap()
            .0,
        200
    );
    assert_eq!(
        raw_request(gw.ports.http, "GET /admin HTTP/1.1", &[])
            .unwrap()
            .0,
        401
    );
    let lines = sys.wait_lines(2, Duration::from_secs(10));
    assert_eq!(lines.len(), 2, "{lines:?}");
    check(&lines);
    // Many records in few TCP writes are split correctly by the octet counts.
    for i in 0..50 {
        raw_request(gw.ports.http, &format!("GET /n/{i} HTTP/1.1"), &[]).unwrap();
    }
    let lines = sys.wait_lines(52, Duration::from_secs(10));
    for (i, l) in lines[2..].iter().enumerate() {
        assert!(l.contains(&format!("\"path\":\"/n/{i}\"")), "line {i}: {l}");
    }
}

fn over_tls(start: fn(Option<&SyslogTlsFiles>) -> Syslogd) {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let ca_file = ca.write(dir.path());
    let files = ca.issue(dir.path(), "syslog", &["syslog.test", "localhost"]);
    let sys = start(Some(&SyslogTlsFiles {
        ca: ca_file.clone(),
        cert: files.cert,
        key: files.key,
    }));
    let up = Whoami::start("u");
    let data = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&config(
        &up,
        data.path(),
        &format!(
            "{{ type: syslog, address: \"tls://127.0.0.1:{}\", ca_file: \"{ca_file}\", server_name: syslog.test }}",
            sys.port
        ),
    ));
    assert_eq!(
        raw_request(gw.ports.http, "GET /hello HTTP/1.1", &[])
            .unwrap()
            .0,
        200
    );
    assert_eq!(
        raw_request(gw.ports.http, "GET /admin HTTP/1.1", &[])
            .unwrap()
            .0,
        401
    );
    let lines = sys.wait_lines(2, Duration::from_secs(10));
    check(&lines);
}
