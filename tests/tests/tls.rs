//! TLS at the edge and towards upstreams: SNI with two certificates, HTTP/2 by ALPN, the
//! self-signed fallback, and verified upstream TLS with a private CA.

use portcullis_e2e::pki::TestCa;
use portcullis_e2e::*;

fn leaf_names(resp: &reqwest::Response) -> String {
    let info = resp
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .expect("tls info");
    let der = info.peer_certificate().expect("peer certificate").to_vec();
    // The SAN DNS names appear verbatim in the DER encoding.
    String::from_utf8_lossy(&der).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn sni_chooses_the_certificate_and_h2_is_negotiated() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let a = ca.issue(dir.path(), "a", &["a.test"]);
    let b = ca.issue(dir.path(), "b", &["*.b.test"]);
    let up = Whoami::start("u");
    let gw = Gateway::start(&format!(
        "server:
  https:
    listen: \"127.0.0.1:{{https}}\"
    cert: {}
    key: {}
    certificates: [ {{ cert: {}, key: {} }} ]
  admin: {{ listen: \"127.0.0.1:{{admin}}\" }}
  grace_period: 1s
routes:
  - {{ id: app, upstream: \"{}\", policy: public }}
",
        a.cert,
        a.key,
        b.cert,
        b.key,
        up.url()
    ));
    let port = gw.ports.https;
    let client = client_resolving(&ca.pem, &["a.test", "x.b.test"], port);
    let r = client
        .get(format!("https://a.test:{port}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2, "ALPN h2");
    let names = leaf_names(&r);
    assert!(
        names.contains("a.test") && !names.contains("b.test"),
        "{names}"
    );
    let r = client
        .get(format!("https://x.b.test:{port}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(leaf_names(&r).contains("*.b.test"));
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        body["headers"]["x-forwarded-proto"],
        serde_json::json!(["https"])
    );
    assert_eq!(
        body["headers"]["host"],
        serde_json::json!([format!("x.b.test:{port}")])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_certificates_a_self_signed_one_is_served_with_a_warning() {
    let up = Whoami::start("u");
    let gw = Gateway::start(&format!(
        "{SERVER}routes:\n  - {{ id: app, upstream: \"{}\", policy: public }}\n",
        up.url()
    ));
    let r = client(None).get(gw.https()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(gw.proc.logs().contains("self-signed certificate"));
    // A client that verifies certificates refuses it.
    let ca = TestCa::new();
    assert!(client(Some(&ca.pem)).get(gw.https()).send().await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_tls_is_verified_against_the_configured_ca_with_sni() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let ca_file = ca.write(dir.path());
    let cert = ca.issue(dir.path(), "up", &["upstream.internal"]);
    let up = Whoami::start_with(
        "tls-up",
        &["--tls-cert", &cert.cert, "--tls-key", &cert.key],
    );
    let url = format!("https://127.0.0.1:{}", up.port);
    let gw = Gateway::start(&format!(
        "{SERVER}routes:
  - {{ id: good, path: /good, upstream: \"{url}\", policy: public, upstream_tls: {{ ca_file: {ca_file}, sni: upstream.internal }} }}
  - {{ id: wrong-name, path: /wrong-name, upstream: \"{url}\", policy: public, upstream_tls: {{ ca_file: {ca_file}, sni: other.internal }} }}
  - {{ id: no-ca, path: /no-ca, upstream: \"{url}\", policy: public, upstream_tls: {{ sni: upstream.internal }} }}
"
    ));
    let get = |p: &str| raw_request(gw.ports.http, &format!("GET {p} HTTP/1.1"), &[]).unwrap();
    let ok = get("/good");
    assert_eq!(ok.0, 200, "{}", ok.2);
    assert_eq!(header(&ok, "x-whoami-server"), Some("tls-up"));
    assert_eq!(get("/wrong-name").0, 502, "hostname must be verified");
    assert_eq!(get("/no-ca").0, 502, "an unknown CA must be refused");
}
