//! Policy rules enforced through the real gateway: network facts from GeoIP databases written by
//! the test (client IPs via X-Forwarded-For from a trusted proxy), CIDR deny rules, request
//! conditions, mTLS device posture, and the `policy test|explain` CLI.

use portcullis_e2e::pki::TestCa;
use portcullis_e2e::*;
use std::process::Command;

fn geo_gateway(up: &Whoami, trusted: &str, dir: &std::path::Path) -> Gateway {
    let city = dir.join("city.mmdb");
    let asn = dir.join("asn.mmdb");
    geo::write_city(
        &city,
        &[
            ("203.0.113.0/24", "DE", None),
            ("192.0.2.0/24", "FR", Some("IDF")),
            ("198.51.100.0/24", "US", Some("CA")),
        ],
    );
    geo::write_asn(&asn, &[("203.0.113.0/25", 64500), ("192.0.2.0/24", 3215)]);
    Gateway::start(&format!(
        "{SERVER}  trusted_proxies: [{trusted}]
geoip: {{ city: {city}, asn: {asn} }}
routes:
  - id: eu
    path: /eu
    upstream: \"{up}\"
    policy:
      allow: [ {{ country: [DE, FR] }} ]
      deny:
        - source_ip: [203.0.113.128/25]
  - id: paris
    path: /paris
    upstream: \"{up}\"
    policy: {{ allow: [ {{ region: [FR-IDF], asn: [3215] }} ] }}
  - id: reads
    path: /reads
    upstream: \"{up}\"
    policy: {{ allow: [ {{ methods: [GET, HEAD], not_country: [US] }} ] }}
",
        city = city.display(),
        asn = asn.display(),
        up = up.url()
    ))
}

fn status(gw: &Gateway, method: &str, path: &str, client: &str) -> u16 {
    let resp = raw_request(
        gw.ports.http,
        &format!("{method} {path} HTTP/1.1"),
        &[("X-Forwarded-For", client), ("Content-Length", "0")],
    )
    .expect("request");
    if resp.0 == 200 {
        assert!(header(&resp, "x-whoami-server").is_some());
    } else {
        assert!(
            header(&resp, "x-whoami-server").is_none(),
            "a refused request reached the upstream"
        );
    }
    resp.0
}

#[test]
fn geo_and_network_rules_use_the_client_ip_from_trusted_proxies() {
    let dir = tempfile::tempdir().unwrap();
    let up = Whoami::start("u");
    let gw = geo_gateway(&up, "127.0.0.1/32", dir.path());
    let cases = [
        ("GET", "/eu/x", "203.0.113.5", 200),   // DE
        ("GET", "/eu/x", "192.0.2.77", 200),    // FR
        ("GET", "/eu/x", "198.51.100.7", 403),  // US
        ("GET", "/eu/x", "203.0.113.200", 403), // DE but in the denied /25
        ("GET", "/eu/x", "10.9.9.9", 403),      // not in the database: fail closed
        ("GET", "/paris", "192.0.2.1", 200),    // FR-IDF, AS3215
        ("GET", "/paris", "203.0.113.5", 403),  // DE
        ("GET", "/reads", "203.0.113.5", 200),
        ("POST", "/reads", "203.0.113.5", 403), // method not allowed
        ("GET", "/reads", "198.51.100.1", 403), // not_country US
        ("GET", "/reads", "10.9.9.9", 403),     // unknown country cannot prove "not US"
        // A spoofed chain: the right-most untrusted hop decides.
        ("GET", "/eu/x", "198.51.100.7, 203.0.113.5", 200),
        ("GET", "/eu/x", "203.0.113.5, 198.51.100.7", 403),
    ];
    for (method, path, client, want) in cases {
        assert_eq!(
            status(&gw, method, path, client),
            want,
            "{method} {path} from {client}"
        );
    }
    let logs = gw.proc.logs();
    assert!(
        logs.contains("want [DE, FR], got US"),
        "deny reasons are logged:\n{logs}"
    );
}

#[test]
fn forwarded_for_from_an_untrusted_peer_cannot_choose_the_country() {
    let dir = tempfile::tempdir().unwrap();
    let up = Whoami::start("u");
    let gw = geo_gateway(&up, "10.0.0.0/8", dir.path());
    // The peer (127.0.0.1) is not trusted, so the client is 127.0.0.1: no country.
    assert_eq!(status(&gw, "GET", "/eu/x", "203.0.113.5"), 403);
}

#[test]
fn config_problems_in_policies_are_reported_with_key_paths() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.yaml");
    std::fs::write(
        &f,
        "roles: { a: { inherits: [b] }, b: { inherits: [a] } }
policies:
  hours: { time: { tz: Mars/Olympus, from: \"07:00\", to: \"20:00\" } }
routes:
  - id: r
    upstream: http://127.0.0.1:1
    policy: { allow: [ { source_ip: [10.0.0.0/33] }, { policy: nope }, { roles: [ghost] } ] }
geoip: { city: /nonexistent.mmdb }
",
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["check", "--config"])
        .arg(&f)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for want in [
        "roles",
        "cycle",
        "policies.hours.time.tz",
        "routes[0].policy.allow[0].source_ip[0]",
        "routes[0].policy.allow[1].policy",
        "routes[0].policy.allow[2].roles[0]",
        "geoip.city: \"/nonexistent.mmdb\"",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn managed_device_rule_accepts_only_certificates_from_the_named_ca() {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = TestCa::new();
    let corp = TestCa::named("Corp Devices CA");
    let byod = TestCa::named("BYOD CA");
    let stranger = TestCa::named("Stranger CA");
    let cert = server_ca.issue(dir.path(), "srv", &["gw.test"]);
    let corp_file = corp.write_as(dir.path(), "corp.crt");
    let byod_file = byod.write_as(dir.path(), "byod.crt");
    let up = Whoami::start("u");
    let gw = Gateway::start(&format!(
        "server:
  https:
    listen: \"127.0.0.1:{{https}}\"
    cert: {}
    key: {}
    client_auth: {{ cas: [ {{ name: corp, file: {corp_file} }}, {{ name: byod, file: {byod_file} }} ] }}
  admin: {{ listen: \"127.0.0.1:{{admin}}\" }}
  grace_period: 1s
routes:
  - {{ id: managed, path: /managed, upstream: \"{}\", policy: {{ allow: [ {{ device: {{ managed: true, cas: [corp] }} }} ] }} }}
  - {{ id: open, path: /, upstream: \"{}\", policy: public }}
",
        cert.cert,
        cert.key,
        up.url(),
        up.url()
    ));
    let _ = rustls::crypto::ring::default_provider().install_default();
    let port = gw.ports.https;
    let client = |identity: Option<String>| {
        let mut b = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(server_ca.pem.as_bytes()).unwrap()])
            .resolve(
                "gw.test",
                std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            );
        if let Some(pem) = identity {
            b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
        }
        b.build().unwrap()
    };
    let url = |p: &str| format!("https://gw.test:{port}{p}");
    let status = |c: reqwest::Client, p: &str| {
        let u = url(p);
        async move { c.get(u).send().await.unwrap().status().as_u16() }
    };
    let corp_client = client(Some(corp.issue_client("laptop-1")));
    assert_eq!(status(corp_client, "/managed").await, 200);
    let byod_client = client(Some(byod.issue_client("phone-1")));
    assert_eq!(status(byod_client, "/managed").await, 403);
    assert_eq!(status(client(None), "/managed").await, 403);
    assert_eq!(
        status(client(None), "/").await,
        200,
        "client certificates are optional"
    );
    let forged = client(Some(stranger.issue_client("laptop-1")));
    assert!(
        forged.get(url("/")).send().await.is_err(),
        "a certificate from an unknown CA fails the handshake"
    );
    // H3: a BYOD certificate followed by a self-made certificate named like the corporate CA.
    // rustls verifies the chain through the BYOD CA; the device is still not managed.
    let impostor = TestCa::named("Corp Devices CA");
    let byod_pem = byod.issue_client("phone-2");
    let end = byod_pem.find("-----END CERTIFICATE-----").unwrap() + 26;
    let chain = format!("{}{}{}", &byod_pem[..end], impostor.pem, &byod_pem[end..]);
    let appended = client(Some(chain));
    assert_eq!(
        status(appended, "/managed").await,
        403,
        "the CA is the one that verified the chain, not the last one appended"
    );
}

#[test]
fn policy_test_and_explain_cli() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(
        &cfg,
        "routes:
  - id: payroll
    path: /payroll
    upstream: http://127.0.0.1:1
    policy: { allow: [ { country: [FR] } ] }
",
    )
    .unwrap();
    let cases = dir.path().join("cases.yaml");
    std::fs::write(
        &cases,
        "cases:
  - { name: from France, route: payroll, expect: allow, input: { now: 2026-11-28T10:00:00Z, network: { country: FR } } }
  - { name: from the US, route: payroll, expect: deny, reason_contains: \"want [FR], got US\", input: { now: 2026-11-28T10:00:00Z, network: { country: US } } }
",
    )
    .unwrap();
    let run = |args: &[&str]| Command::new(bin()).args(args).output().unwrap();
    let out = run(&[
        "policy",
        "test",
        cases.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("2 passed, 0 failed"), "{text}");

    std::fs::write(
        &cases,
        "cases:\n  - { name: wrong, route: payroll, expect: allow, input: { now: 2026-11-28T10:00:00Z, network: { country: US } } }\n",
    )
    .unwrap();
    let out = run(&[
        "policy",
        "test",
        cases.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL wrong"));

    let input = dir.path().join("req.json");
    std::fs::write(
        &input,
        r#"{"now":"2026-11-28T10:00:00Z","request":{"method":"GET","path":"/payroll/slips","host":"app.test"},"network":{"country":"US"}}"#,
    )
    .unwrap();
    let out = run(&[
        "policy",
        "explain",
        "--config",
        cfg.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["route"], "payroll");
    assert_eq!(v["decision"], "deny");
    assert!(v["reason"].as_str().unwrap().contains("got US"), "{v}");
}

/// Issue 10, M2: `email_domains` used to ignore `email_verified` and take the domain after the
/// last `@`. Through a real OpenID Provider: alice (verified, example.com) is let in; eve
/// (`email_verified: false`), frank (no `email_verified` claim) and mallory
/// (`mallory@evil.test@example.com`, verified) are refused — the old code let all three in.
#[tokio::test(flavor = "multi_thread")]
async fn email_rules_need_a_verified_single_at_address() {
    use portcullis_e2e::oidc::*;
    let ports = Ports::fresh();
    let up = Whoami::start("app");
    let op = OpenIdProvider::start(&[ports.https], None, 3600);
    let gw = Gateway::start_on(
        ports,
        &format!(
            "{SERVER}{sso}routes:
  - {{ id: staff, path: /, upstream: \"{up}\", policy: {{ allow: [ {{ email_domains: [example.com] }} ] }} }}
",
            sso = op.sso_config(),
            up = up.url()
        ),
    );
    let app = format!("{}/inside", gw.https());
    for (user, want) in [
        ("alice", 200),
        ("eve", 403),
        ("frank", 403),
        ("mallory", 403),
    ] {
        let b = Browser::new();
        let w = b.login(&app, user).await;
        assert_eq!(w.last().status, want, "{user}: {w:#?}");
    }
    let logs = gw.proc.logs();
    assert!(logs.contains("not verified by the provider"), "{logs}");
}
