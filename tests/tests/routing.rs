//! Routing through the real gateway: host and path precedence, default deny, failover.

use portcullis_e2e::*;

fn config(a: &Whoami, b: &Whoami, c: &Whoami, d: &Whoami) -> String {
    format!(
        "{SERVER}routes:
  - {{ id: any-root, path: /, upstream: \"{a}\", policy: public }}
  - {{ id: any-api, path: /api, upstream: \"{b}\", policy: public }}
  - {{ id: app-api, host: app.example.com, path: /api/v2, upstream: \"{c}\", policy: public }}
  - {{ id: wild, host: \"*.example.com\", path: /, upstream: \"{d}\", policy: public }}
",
        a = a.url(),
        b = b.url(),
        c = c.url(),
        d = d.url()
    )
}

fn served_by(gw: &Gateway, host: &str, path: &str) -> (u16, Option<String>) {
    let resp = raw_request(
        gw.ports.http,
        &format!("GET {path} HTTP/1.1"),
        &[("Host", host)],
    )
    .expect("request");
    (resp.0, header(&resp, "x-whoami-server").map(str::to_string))
}

#[test]
fn host_then_longest_prefix_precedence() {
    let (a, b, c, d) = (
        Whoami::start("a"),
        Whoami::start("b"),
        Whoami::start("c"),
        Whoami::start("d"),
    );
    let gw = Gateway::start(&config(&a, &b, &c, &d));
    let cases = [
        ("other.test", "/", "a"),
        ("other.test", "/apix", "a"),
        ("other.test", "/api", "b"),
        ("other.test", "/api/v2/x", "b"),
        ("app.example.com", "/api/v2/users", "c"),
        ("APP.example.com:8080", "/api/v2", "c"),
        ("app.example.com", "/api/v1", "d"),
        ("x.example.com", "/api", "d"),
        ("example.com", "/api", "b"),
    ];
    for (host, path, want) in cases {
        let (status, by) = served_by(&gw, host, path);
        assert_eq!(status, 200, "{host}{path}");
        assert_eq!(by.as_deref(), Some(want), "{host}{path}");
    }
}

#[test]
fn unmatched_requests_get_404_and_never_reach_an_upstream() {
    let up = Whoami::start("only");
    let gw = Gateway::start(&format!(
        "{SERVER}routes:\n  - {{ id: api, host: api.test, path: /api, upstream: \"{}\", policy: public }}\n",
        up.url()
    ));
    for (host, path) in [
        ("api.test", "/"),
        ("api.test", "/apiv2"),
        ("other.test", "/api"),
    ] {
        let resp = raw_request(
            gw.ports.http,
            &format!("GET {path} HTTP/1.1"),
            &[("Host", host)],
        )
        .expect("request");
        assert_eq!(resp.0, 404, "{host}{path}");
        assert_eq!(header(&resp, "x-whoami-server"), None);
        assert!(resp.2.contains("\"not_found\""), "{}", resp.2);
    }
    // Reserved gateway paths are never forwarded, whatever the routes say.
    let resp = raw_request(
        gw.ports.http,
        "GET /.portcullis/anything HTTP/1.1",
        &[("Host", "api.test")],
    )
    .unwrap();
    assert_eq!(resp.0, 404);
    assert_eq!(
        gw.metric("portcullis_http_requests_total{decision=\"deny\",route=\"_unmatched_\",status=\"404\"}"),
        Some(4.0)
    );
}

#[test]
fn round_robin_and_failover_past_a_dead_endpoint() {
    let (a, b) = (Whoami::start("a"), Whoami::start("b"));
    let dead = format!("http://127.0.0.1:{}", free_port());
    let gw = Gateway::start(&format!(
        "{SERVER}routes:\n  - id: app\n    upstream: [\"{}\", \"{dead}\", \"{}\"]\n    policy: public\n    timeouts: {{ connect: 1s }}\n",
        a.url(),
        b.url()
    ));
    let mut seen = std::collections::HashMap::new();
    for _ in 0..30 {
        let (status, by) = served_by(&gw, "x", "/");
        assert_eq!(status, 200, "a dead endpoint must not fail a request");
        *seen.entry(by.unwrap_or_default()).or_insert(0) += 1;
    }
    assert!(
        seen["a"] >= 10 && seen["b"] >= 10,
        "both live endpoints share load: {seen:?}"
    );
    assert!(
        gw.metric("portcullis_upstream_failures_total{kind=\"connect\",route=\"app\"}")
            .unwrap_or(0.0)
            >= 1.0
    );
    // With every endpoint down the client gets a clean 502.
    drop(a);
    drop(b);
    let (status, _) = served_by(&gw, "x", "/");
    assert_eq!(status, 502);
}

#[test]
fn upstream_read_timeout_is_a_504() {
    let up = Whoami::start("slow");
    let gw = Gateway::start(&format!(
        "{SERVER}routes:\n  - {{ id: app, upstream: \"{}\", policy: public, timeouts: {{ read: 300ms }} }}\n",
        up.url()
    ));
    let (status, _) = served_by(&gw, "x", "/?delay_ms=2000");
    assert_eq!(status, 504);
    let (status, _) = served_by(&gw, "x", "/?delay_ms=10");
    assert_eq!(status, 200);
}

#[test]
fn plain_listener_can_redirect_to_https() {
    let up = Whoami::start("u");
    let gw = Gateway::start(&format!(
        "server:\n  https: {{ listen: \"127.0.0.1:{{https}}\" }}\n  http: {{ listen: \"127.0.0.1:{{http}}\", redirect_to_https: true }}\n  admin: {{ listen: \"127.0.0.1:{{admin}}\" }}\n  grace_period: 1s\nroutes:\n  - {{ id: app, upstream: \"{}\", policy: public }}\n",
        up.url()
    ));
    let resp = raw_request(
        gw.ports.http,
        "GET /a/b?x=1 HTTP/1.1",
        &[("Host", "App.Test:80")],
    )
    .unwrap();
    assert_eq!(resp.0, 308);
    assert_eq!(
        header(&resp, "location"),
        Some(format!("https://app.test:{}/a/b?x=1", gw.ports.https).as_str())
    );
    assert_eq!(header(&resp, "x-whoami-server"), None);
}

/// Issue 10, H4: route lookup used to re-hash every prefix of the path, so one 65 KB path of
/// short segments cost most of a second of CPU before authentication and stalled other
/// requests. Such paths now get 414 before any per-segment work, in proxy mode and at
/// forward-auth, while normal requests sent at the same time keep being served. (Statuses are
/// asserted, not timings: the old code answered these long paths 200.)
#[test]
fn a_huge_many_segment_path_gets_414_and_does_not_stall_others() {
    let up = Whoami::start("app");
    let gw = Gateway::start(&format!(
        "{SERVER}  trusted_proxies: [127.0.0.1/32]
routes:
  - {{ id: deep, path: /a/a/a/a, upstream: \"{up}\", policy: public }}
  - {{ id: app, path: /, upstream: \"{up}\", policy: public }}
",
        up = up.url()
    ));
    // 64,000 bytes: just under pingora's own 64 KiB request-head limit (which answers 400).
    let long = "/a".repeat(32_000);
    let port = gw.ports.http;
    let attackers: Vec<_> = (0..2)
        .map(|_| raw_requests_in_background(port, format!("GET {long} HTTP/1.1"), 10))
        .collect();
    for _ in 0..20 {
        let (status, by) = served_by(&gw, "x", "/a/a/a/a/b");
        assert_eq!(status, 200, "a normal request during the attack");
        assert_eq!(by.as_deref(), Some("app"));
    }
    for a in attackers {
        let statuses = a.join().expect("attacker thread");
        assert!(statuses.iter().all(|&s| s == 414), "{statuses:?}");
    }
    let resp = raw_request(port, &format!("GET {long} HTTP/1.1"), &[]).expect("request");
    assert!(resp.2.contains("\"uri_too_long\""), "{}", resp.0);
    // Too many segments, though short: the segment cap (default 256) applies too.
    let (status, _) = served_by(&gw, "x", &"/a".repeat(257));
    assert_eq!(status, 414);
    let (status, _) = served_by(&gw, "x", &"/a".repeat(256));
    assert_eq!(status, 200, "at the cap is fine");
    // Forward-auth normalises the original URI through the same limits.
    let fa = Gateway::start(&format!(
        "{SERVER}  trusted_proxies: [127.0.0.1/32]\nforward_auth: {{ mode: nginx }}\nroutes:\n  - {{ id: app, upstream: \"{}\", policy: public }}\n",
        up.url()
    ));
    let many = "/a".repeat(300);
    let resp = raw_request(
        fa.ports.http,
        "GET /.portcullis/auth HTTP/1.1",
        &[
            ("X-Original-URI", many.as_str()),
            ("X-Original-Host", "x"),
            ("X-Original-Method", "GET"),
            ("X-Forwarded-For", "198.51.100.7"),
        ],
    )
    .expect("forward-auth request");
    assert_eq!(resp.0, 414, "{}", resp.2);
}

/// The caps are config keys with safe defaults; a bad value is refused with its key path.
#[test]
fn path_limits_are_configurable() {
    let up = Whoami::start("app");
    let gw = Gateway::start(&format!(
        "{SERVER}  max_path_bytes: 64\n  max_path_segments: 4\nroutes:\n  - {{ id: app, upstream: \"{}\", policy: public }}\n",
        up.url()
    ));
    assert_eq!(served_by(&gw, "x", "/a/b/c/d").0, 200);
    assert_eq!(served_by(&gw, "x", "/a/b/c/d/e").0, 414);
    assert_eq!(served_by(&gw, "x", &format!("/{}", "x".repeat(64))).0, 414);
}
