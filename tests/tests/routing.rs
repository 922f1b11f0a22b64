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
