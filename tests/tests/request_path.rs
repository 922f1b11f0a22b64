//! Request-path behaviours that had no test: `preserve_host`, `X-Request-Id` in decision
//! records, and the bounded body of gateway endpoints.

use portcullis_e2e::collector::Collector;
use portcullis_e2e::*;
use std::time::Duration;

/// `preserve_host: true` (default) sends the client's Host upstream; `false` sends the
/// upstream's own `host:port` (virtual-hosted upstreams).
#[test]
fn preserve_host_chooses_which_host_the_upstream_sees() {
    let up = Whoami::start("u");
    let gw = Gateway::start(&format!(
        "{SERVER}routes:\n  - {{ id: kept, path: /kept, upstream: \"{0}\", policy: public }}\n  - {{ id: own, path: /own, upstream: \"{0}\", policy: public, preserve_host: false }}\n",
        up.url()
    ));
    let host_seen = |path: &str| {
        let r = raw_request(
            gw.ports.http,
            &format!("GET {path} HTTP/1.1"),
            &[("Host", "app.example.com")],
        )
        .unwrap();
        assert_eq!(r.0, 200);
        whoami_json(&r.2)["headers"]["host"].clone()
    };
    assert_eq!(host_seen("/kept/x"), serde_json::json!(["app.example.com"]));
    assert_eq!(
        host_seen("/own/x"),
        serde_json::json!([format!("127.0.0.1:{}", up.port)])
    );
}

/// A client's `X-Request-Id` (at most 128 bytes) is the record's `request_id`, so a request can
/// be followed from the edge to the decision log; a longer one is not copied (the record's own
/// id is used).
#[test]
fn decision_records_carry_the_clients_request_id_within_bounds() {
    let up = Whoami::start("u");
    let col = Collector::start();
    let data = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&format!(
        "{SERVER}  data_dir: \"{}\"
routes:
  - {{ id: app, path: /, upstream: \"{}\", policy: public }}
decision_log:
  flush_interval: 50ms
  sinks:
    - {{ type: http, url: \"{}/ingest\" }}
",
        data.path().display(),
        up.url(),
        col.url()
    ));
    let long = "r".repeat(129);
    for id in ["trace-42", long.as_str()] {
        let r = raw_request(gw.ports.http, "GET /x HTTP/1.1", &[("X-Request-Id", id)]).unwrap();
        assert_eq!(r.0, 200);
    }
    col.wait_for("two records", Duration::from_secs(15), |r| r.len() == 2);
    let recs = col.unique_records();
    let ids: Vec<&str> = recs
        .iter()
        .map(|r| r["request_id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"trace-42"), "{ids:?}");
    let other = recs.iter().find(|r| r["request_id"] != "trace-42").unwrap();
    assert_eq!(
        other["request_id"], other["id"],
        "an oversized id is not copied"
    );
}

/// Gateway endpoints read at most 64 KiB of body: a larger form is refused, never buffered.
#[test]
fn gateway_endpoints_refuse_bodies_over_64_kib() {
    let gw = Gateway::start(&format!(
        "{SERVER}session:\n  keys: [\"{}\"]\nroutes: []\n",
        portcullis_e2e::oidc::SESSION_KEY
    ));
    let post = |body: &str| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", gw.ports.http)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "POST /.portcullis/logout HTTP/1.1\r\nHost: gw\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    };
    let small = post("csrf=guess");
    assert!(
        !small.starts_with("HTTP/1.1 400"),
        "a small form is read: {small}"
    );
    let big = post(&format!("csrf={}", "a".repeat(65 * 1024)));
    assert!(big.starts_with("HTTP/1.1 400"), "{big}");
    assert!(big.contains("bad_request"), "{big}");
}
