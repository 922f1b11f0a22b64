//! Decision log end to end: records reach a real collector started here; a collector outage
//! and a gateway restart lose nothing and keep the order; the full policies (`block` answers
//! 503, `drop` counts) behave as documented; OTLP batches have the collector's JSON shape.

use portcullis_e2e::collector::Collector;
use portcullis_e2e::*;
use std::path::Path;
use std::time::{Duration, Instant};

fn config(up: &Whoami, data: &Path, sinks: &str, spool: &str) -> String {
    format!(
        "{SERVER}  data_dir: \"{}\"
routes:
  - {{ id: app, path: /, upstream: \"{}\", policy: public }}
  - {{ id: admin, path: /admin, upstream: \"{}\", policy: authenticated }}
  - {{ id: reads, path: /reads, upstream: \"{}\", policy: {{ allow: [ {{ methods: [GET] }} ] }} }}
decision_log:
  gateway_id: gw-test
  flush_interval: 50ms
  batch_size: 16
  sinks:
{sinks}
  spool: {spool}
",
        data.display(),
        up.url(),
        up.url(),
        up.url()
    )
}

fn get(gw: &Gateway, path: &str) -> u16 {
    raw_request(gw.ports.http, &format!("GET {path} HTTP/1.1"), &[])
        .expect("request")
        .0
}

fn wait_metric(gw: &Gateway, series: &str, min: f64) {
    wait_metric_until(gw, series, &format!(">= {min}"), |v| v >= min);
}

/// Waits until `series` is present and satisfies `ok` (an absent series never does).
fn wait_metric_until(gw: &Gateway, series: &str, want: &str, ok: impl Fn(f64) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let v = gw.metric(series);
        if v.is_some_and(&ok) {
            return;
        }
        assert!(Instant::now() < deadline, "{series} = {v:?}, wanted {want}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `/readyz` answers `status` with `needle` in its body.
fn wait_ready(gw: &Gateway, status: u16, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = raw_request(gw.ports.admin, "GET /readyz HTTP/1.1", &[]).expect("readyz");
        if r.0 == status && r.2.contains(needle) {
            return;
        }
        assert!(Instant::now() < deadline, "/readyz: {r:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn stop(mut gw: Gateway) {
    gw.proc.signal("TERM");
    assert!(
        gw.proc.wait_exit(Duration::from_secs(15)).is_some(),
        "gateway did not exit"
    );
}

fn paths(recs: &[serde_json::Value]) -> Vec<String> {
    recs.iter()
        .map(|r| r["path"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn records_reach_the_collector_with_the_documented_fields() {
    let up = Whoami::start("u");
    let col = Collector::start();
    let data = tempfile::tempdir().unwrap();
    let sinks = format!(
        "    - {{ type: http, url: \"{}/v1/decisions\", headers: {{ authorization: \"Bearer t0k\" }} }}",
        col.url()
    );
    let gw = Gateway::start(&config(&up, data.path(), &sinks, "{ when_full: block }"));
    assert_eq!(get(&gw, "/hello/%2e%2e/world?q=1"), 200);
    assert_eq!(get(&gw, "/admin/x"), 401);
    let post = raw_request(
        gw.ports.http,
        "POST /reads/1 HTTP/1.1",
        &[("content-length", "0")],
    )
    .unwrap();
    assert_eq!(post.0, 403);
    col.wait_for("3 records", Duration::from_secs(10), |r| r.len() >= 3);
    let recs = col.unique_records();
    assert_eq!(recs.len(), 3);
    let c = &recs[2];
    assert_eq!(
        (
            c["route"].as_str(),
            c["decision"].as_str(),
            c["method"].as_str()
        ),
        (Some("reads"), Some("deny"), Some("POST"))
    );
    assert!(
        c["rule"].is_string() && c["reason"].is_string(),
        "the deciding rule and reason: {c}"
    );
    let a = &recs[0];
    assert_eq!(a["v"], 1);
    assert_eq!(a["gateway"], "gw-test");
    assert_eq!(a["route"], "app");
    assert_eq!(a["decision"], "allow");
    assert_eq!(a["path"], "/world", "the normalised path");
    assert_eq!(a["method"], "GET");
    assert_eq!(a["status"], 200);
    assert_eq!(a["upstream_status"], 200);
    assert_eq!(a["client_ip"], "127.0.0.1");
    assert!(a["duration_ms"].as_f64().unwrap() > 0.0);
    assert!(a["user"].is_null() && a["tenant"].is_null());
    let b = &recs[1];
    assert_eq!(
        (
            b["route"].as_str(),
            b["decision"].as_str(),
            b["status"].as_u64()
        ),
        (Some("admin"), Some("login"), Some(401))
    );
    assert!(b["upstream_status"].is_null());
    assert_ne!(a["id"], b["id"]);
    let req = &col.received()[0];
    assert_eq!(req.path, "/v1/decisions");
    assert_eq!(req.header("content-type"), Some("application/x-ndjson"));
    assert_eq!(req.header("content-encoding"), Some("gzip"));
    assert_eq!(req.header("authorization"), Some("Bearer t0k"));
    wait_metric(
        &gw,
        "portcullis_decision_log_sent_total{sink=\"http\"}",
        2.0,
    );
    assert_eq!(
        gw.metric("portcullis_decision_log_dropped_total{sink=\"http\"}"),
        Some(0.0)
    );
}

#[test]
fn collector_outage_and_gateway_restart_lose_nothing_and_keep_order() {
    const N: usize = 60;
    let up = Whoami::start("u");
    let mut col = Collector::start();
    let data = tempfile::tempdir().unwrap();
    let sinks = format!(
        "    - {{ type: http, url: \"{}/ingest\", timeout: 2s }}",
        col.url()
    );
    let cfg = config(
        &up,
        data.path(),
        &sinks,
        "{ max_bytes: 10MiB, when_full: block }",
    );
    let gw = Gateway::start(&cfg);
    for i in 0..5 {
        assert_eq!(get(&gw, &format!("/r/{i}")), 200);
    }
    col.wait_for("the first 5 records", Duration::from_secs(10), |r| {
        r.len() == 5
    });

    col.stop();
    for i in 5..5 + N / 2 {
        assert_eq!(
            get(&gw, &format!("/r/{i}")),
            200,
            "the outage does not affect requests"
        );
    }
    wait_metric(
        &gw,
        "portcullis_decision_log_sink_errors_total{sink=\"http\"}",
        1.0,
    );
    wait_metric(
        &gw,
        "portcullis_decision_log_spooled_total{sink=\"http\"}",
        (N / 2) as f64,
    );
    stop(gw);

    // The restarted gateway replays its spool first; new records queue behind it.
    let gw = Gateway::start(&cfg);
    for i in 5 + N / 2..5 + N {
        assert_eq!(get(&gw, &format!("/r/{i}")), 200);
    }
    wait_metric(
        &gw,
        "portcullis_decision_log_spooled_total{sink=\"http\"}",
        (N / 2) as f64,
    );
    // The restarted gateway is really trying to deliver (and failing) before the collector
    // comes back, so the replay below is the spool's doing.
    wait_metric(
        &gw,
        "portcullis_decision_log_sink_errors_total{sink=\"http\"}",
        1.0,
    );

    col.resume();
    col.wait_for("every record", Duration::from_secs(30), |r| {
        r.len() >= 5 + N
    });
    // Everything spooled has been delivered (and removed) before counting.
    wait_metric_until(
        &gw,
        "portcullis_decision_log_spool_bytes{sink=\"http\"}",
        "== 0",
        |v| v == 0.0,
    );
    let recs = col.unique_records();
    assert_eq!(
        recs.len(),
        5 + N,
        "exactly the records of the requests sent"
    );
    let want: Vec<String> = (0..5 + N).map(|i| format!("/r/{i}")).collect();
    assert_eq!(paths(&recs), want, "in order");
    let mut ids: Vec<&str> = recs.iter().map(|r| r["id"].as_str().unwrap()).collect();
    let sorted = {
        let mut s = ids.clone();
        s.sort();
        s
    };
    assert_eq!(ids, sorted, "ids are time-ordered");
    ids.dedup();
    assert_eq!(ids.len(), 5 + N);
    assert_eq!(
        gw.metric("portcullis_decision_log_dropped_total{sink=\"http\"}"),
        Some(0.0)
    );
}

#[test]
fn a_full_spool_under_block_fails_closed_with_503_and_recovers() {
    let up = Whoami::start("u");
    let mut col = Collector::start();
    let data = tempfile::tempdir().unwrap();
    let sinks = format!("    - {{ type: http, url: \"{}/ingest\" }}", col.url());
    let mut cfg = config(
        &up,
        data.path(),
        &sinks,
        "{ max_bytes: 2KiB, when_full: block }",
    );
    cfg = cfg.replace(
        "  gateway_id: gw-test\n",
        "  gateway_id: gw-test\n  queue_size: 4\n",
    );
    let gw = Gateway::start(&cfg);
    col.stop();
    let mut served = 0;
    let mut refused = 0;
    for i in 0..200 {
        match get(&gw, &format!("/b/{i}")) {
            200 => served += 1,
            503 => {
                refused += 1;
                if refused >= 5 {
                    break;
                }
            }
            other => panic!("unexpected status {other}"),
        }
        // Give the worker time to spool, so the limit (not a burst) is what refuses.
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        refused >= 5,
        "the gateway kept serving without a log: served {served}"
    );
    assert!(
        served >= 5,
        "the spool took a few records first: served {served}"
    );
    assert!(gw.metric("portcullis_decision_log_refused_total").unwrap() >= 5.0);
    assert_eq!(
        gw.metric("portcullis_decision_log_dropped_total{sink=\"http\"}"),
        Some(0.0)
    );
    // Readiness says so while it lasts (README "Health").
    wait_ready(&gw, 503, "decision_log");
    col.resume();
    col.wait_for(
        "the served requests' records",
        Duration::from_secs(30),
        |r| r.len() >= served,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&gw, "/after") != 200 {
        assert!(
            Instant::now() < deadline,
            "still refusing after the collector came back"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_ready(&gw, 200, "\"ready\"");
    col.wait_for("the last record", Duration::from_secs(10), |r| {
        r.len() == served + 1
    });
    let recs = col.unique_records();
    assert!(
        recs.iter().all(|r| r["status"] == 200),
        "refused requests have no record"
    );
}

#[test]
fn a_full_spool_under_drop_serves_and_counts_drops() {
    let up = Whoami::start("u");
    let mut col = Collector::start();
    let data = tempfile::tempdir().unwrap();
    let sinks = format!("    - {{ type: http, url: \"{}/ingest\" }}", col.url());
    let mut cfg = config(
        &up,
        data.path(),
        &sinks,
        "{ max_bytes: 1KiB, when_full: drop }",
    );
    cfg = cfg.replace(
        "  gateway_id: gw-test\n",
        "  gateway_id: gw-test\n  queue_size: 4\n",
    );
    let gw = Gateway::start(&cfg);
    col.stop();
    for i in 0..60 {
        assert_eq!(get(&gw, &format!("/d/{i}")), 200);
        std::thread::sleep(Duration::from_millis(10));
    }
    wait_metric(
        &gw,
        "portcullis_decision_log_dropped_total{sink=\"http\"}",
        1.0,
    );
    let dropped = gw
        .metric("portcullis_decision_log_dropped_total{sink=\"http\"}")
        .unwrap() as usize;
    col.resume();
    col.wait_for("the kept records", Duration::from_secs(30), |r| {
        r.len() + dropped >= 60
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        col.unique_records().len() + dropped,
        60,
        "every record is delivered or counted"
    );
}

#[test]
fn file_and_otlp_sinks_at_once() {
    let up = Whoami::start("u");
    let col = Collector::start();
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("out/decisions.ndjson");
    let sinks = format!(
        "    - {{ type: otlp, url: \"{}/v1/logs\", encoding: json }}\n    - {{ type: file, path: \"{}\" }}",
        col.url(),
        file.display()
    );
    let gw = Gateway::start(&config(&up, data.path(), &sinks, "{ when_full: block }"));
    assert_eq!(get(&gw, "/one"), 200);
    assert_eq!(get(&gw, "/admin"), 401);
    let deadline = Instant::now() + Duration::from_secs(10);
    let lines = loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if lines.len() >= 2 {
            break lines;
        }
        assert!(
            Instant::now() < deadline,
            "file sink wrote {} lines",
            lines.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(paths(&lines), vec!["/one", "/admin"]);

    // OTLP/HTTP JSON: ExportLogsServiceRequest.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut logs = Vec::new();
    while logs.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "OTLP receiver got {} log records",
            logs.len()
        );
        std::thread::sleep(Duration::from_millis(50));
        logs.clear();
        for req in col.received() {
            assert_eq!(req.path, "/v1/logs");
            assert_eq!(req.header("content-type"), Some("application/json"));
            let v: serde_json::Value = serde_json::from_slice(&req.body).expect("OTLP JSON");
            let rl = &v["resourceLogs"][0];
            let attrs = rl["resource"]["attributes"].as_array().unwrap();
            assert!(attrs
                .iter()
                .any(|a| a["key"] == "service.name" && a["value"]["stringValue"] == "portcullis"));
            assert!(attrs.iter().any(
                |a| a["key"] == "service.instance.id" && a["value"]["stringValue"] == "gw-test"
            ));
            let sl = &rl["scopeLogs"][0];
            assert_eq!(sl["scope"]["name"], "portcullis.decision_log");
            logs.extend(sl["logRecords"].as_array().unwrap().iter().cloned());
        }
    }
    let allow = &logs[0];
    let t: u128 = allow["timeUnixNano"].as_str().unwrap().parse().unwrap();
    assert!(t > 1_600_000_000_000_000_000);
    assert!(
        allow["observedTimeUnixNano"]
            .as_str()
            .unwrap()
            .parse::<u128>()
            .unwrap()
            >= t
    );
    assert_eq!(
        (
            allow["severityNumber"].as_u64(),
            allow["severityText"].as_str()
        ),
        (Some(9), Some("INFO"))
    );
    let body: serde_json::Value =
        serde_json::from_str(allow["body"]["stringValue"].as_str().unwrap()).unwrap();
    assert_eq!(body["path"], "/one");
    let attr = |l: &serde_json::Value, k: &str| {
        l["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["key"] == k)
            .map(|a| a["value"].clone())
    };
    assert_eq!(
        attr(allow, "portcullis.record_id").unwrap()["stringValue"],
        body["id"]
    );
    assert_eq!(
        attr(allow, "http.response.status_code").unwrap()["intValue"],
        "200"
    );
    let deny = &logs[1];
    assert_eq!(deny["severityNumber"], 13);
    assert_eq!(
        attr(deny, "portcullis.decision").unwrap()["stringValue"],
        "login"
    );
    assert_eq!(
        attr(deny, "portcullis.route").unwrap()["stringValue"],
        "admin"
    );
}

#[test]
fn invalid_decision_log_config_is_reported_with_key_paths() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(
        &cfg,
        "routes: []\ndecision_log:\n  sinks:\n    - { type: http, url: \"ftp://x\" }\n    - { type: http, url: \"http://a\" }\n    - { type: syslog, address: \"udp://x:1\" }\n  spool: { max_bytes: lots, when_full: maybe }\naudit: { checkpoint_interval: soon }\nstore: \"mysql://x\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(bin())
        .args(["check", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for key in [
        "decision_log.sinks[0].url",
        "decision_log.sinks[1].name",
        "decision_log.sinks[2].address",
        "decision_log.spool.max_bytes",
        "decision_log.spool.when_full",
        "audit.checkpoint_interval",
        "store:",
    ] {
        assert!(err.contains(key), "missing {key} in:\n{err}");
    }
}

/// The OTLP sink's default encoding is protobuf (the protocol's default), gzip-compressed, and a
/// real OTLP/HTTP receiver that is not ours — PyPI `oteltap` — accepts and decodes it.
#[test]
fn otlp_protobuf_by_default_reaches_a_real_receiver() {
    let Some(tap) = portcullis_e2e::k8s::require("oteltap") else {
        return;
    };
    let up = Whoami::start("u");
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("oteltap.ndjson");
    let mut receiver = std::process::Command::new(tap)
        .args(["--port", &port.to_string()])
        .env("PYTHONUNBUFFERED", "1")
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(port, Duration::from_secs(20));
    let data = tempfile::tempdir().unwrap();
    // oteltap does not take gzip bodies (400); the collector test covers gzip.
    let sinks = format!(
        "    - {{ type: otlp, url: \"http://127.0.0.1:{port}/v1/logs\", compression: none }}"
    );
    let gw = Gateway::start(&config(&up, data.path(), &sinks, "{ when_full: block }"));
    assert_eq!(get(&gw, "/proto-one"), 200);
    assert_eq!(get(&gw, "/admin"), 401);
    let deadline = Instant::now() + Duration::from_secs(15);
    let logs = loop {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        let logs: Vec<serde_json::Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let seen = |needle: &str| logs.iter().any(|l| l.to_string().contains(needle));
        if seen("/proto-one") && seen("/admin") {
            break logs;
        }
        assert!(Instant::now() < deadline, "oteltap received:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = logs
        .iter()
        .map(|l| l.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    // oteltap prints the log records (not their resource): severity, body, attributes.
    for needle in [
        "\"severityText\":\"WARN\"",
        "\"severityText\":\"INFO\"",
        "portcullis.decision",
        "http.response.status_code",
        "gw-test",
    ] {
        assert!(
            text.contains(needle),
            "{needle} not in what oteltap decoded:\n{text}"
        );
    }
    let _ = receiver.kill();
    let _ = receiver.wait();
    assert_eq!(
        gw.metric("portcullis_decision_log_sink_errors_total{sink=\"otlp\"}"),
        Some(0.0)
    );
}
