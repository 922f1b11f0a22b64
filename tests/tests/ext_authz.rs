//! Envoy's gRPC external authorization (`envoy.filters.http.ext_authz` with `grpc_service`)
//! against the gateway's `server.ext_authz` listener, with the Envoy config the README
//! documents: a stranger's browser is sent to sign in at the original host, an API client gets
//! 401, a signed-in user reaches the app with the verified identity and assertion, client-sent
//! identity headers never reach the app (public routes too), a user outside the route's group
//! gets 403, client-sent forwarding and original-URL headers change nothing, paths the
//! normaliser refuses are denied 400, and a gRPC call from an address outside
//! `server.trusted_proxies` is refused with `PERMISSION_DENIED`.
//!
//! Envoy calls the gateway from 127.0.0.1 (the only trusted proxy); the test's clients come
//! from 127.0.0.3.

use portcullis_e2e::front_proxy::{
    from_client, gateway_config, proxy_bin, CLIENT_ADDR, ORIGINAL_URL_SPOOFS,
};
use portcullis_e2e::oidc::*;
use portcullis_e2e::*;
use std::net::IpAddr;
use std::process::Command;
use std::time::Duration;

/// The Envoy config the README documents (gRPC ext_authz).
fn envoy_yaml(port: u16, grpc: u16, gateway_http: u16, app: u16) -> String {
    format!(
        r#"static_resources:
  listeners:
    - address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: ingress
                use_remote_address: true
                xff_num_trusted_hops: 0
                route_config:
                  virtual_hosts:
                    - name: app
                      domains: ["*"]
                      routes:
                        # Sign-in, callback and MFA pages on the app's own host, not checked.
                        - match: {{ prefix: "/.portcullis/" }}
                          route: {{ cluster: portcullis }}
                          typed_per_filter_config:
                            envoy.filters.http.ext_authz:
                              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute
                              disabled: true
                        - {{ match: {{ prefix: "/" }}, route: {{ cluster: app }} }}
                http_filters:
                  - name: envoy.filters.http.ext_authz
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
                      transport_api_version: V3
                      failure_mode_allow: false
                      grpc_service:
                        envoy_grpc: {{ cluster_name: portcullis_ext_authz }}
                        timeout: 2s
                  - name: envoy.filters.http.router
                    typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
  clusters:
    - name: app
      type: STATIC
      load_assignment:
        cluster_name: app
        endpoints: [ {{ lb_endpoints: [ {{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {app} }} }} }} }} ] }} ]
    - name: portcullis
      type: STATIC
      load_assignment:
        cluster_name: portcullis
        endpoints: [ {{ lb_endpoints: [ {{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {gateway_http} }} }} }} }} ] }} ]
    # The gateway's server.ext_authz listener: gRPC over cleartext HTTP/2.
    - name: portcullis_ext_authz
      type: STATIC
      typed_extension_protocol_options:
        envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
          "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
          explicit_http_config: {{ http2_protocol_options: {{}} }}
      load_assignment:
        cluster_name: portcullis_ext_authz
        endpoints: [ {{ lb_endpoints: [ {{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {grpc} }} }} }} }} ] }} ]
"#
    )
}

/// A gRPC call of `Authorization/Check` straight to the listener from [`CLIENT_ADDR`]; the
/// `grpc-status` of the answer (trailers-only answers carry it in the headers).
async fn direct_check_from_client(grpc: u16) -> Option<String> {
    let c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .local_address(IpAddr::from(CLIENT_ADDR))
        .build()
        .unwrap();
    // One empty CheckRequest message: flag 0, length 0.
    let r = c
        .post(format!(
            "http://127.0.0.1:{grpc}/envoy.service.auth.v3.Authorization/Check"
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(vec![0u8, 0, 0, 0, 0])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread")]
async fn envoy_grpc_ext_authz_with_the_documented_config() {
    let Some(envoy) = proxy_bin("envoy") else {
        return;
    };
    let ports = Ports::fresh();
    let port = free_port();
    let grpc = free_port();
    let up = Whoami::start("app");
    let op = OpenIdProvider::start_with(&[ports.https], None, 3600, |client| {
        client["redirect_uris"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!(format!(
                "http://127.0.0.1:{port}/.portcullis/callback/corp"
            )));
    });
    let gw = Gateway::start_on(
        ports,
        &gateway_config(
            &format!("  ext_authz: {{ listen: \"127.0.0.1:{grpc}\" }}\n"),
            "",
            port,
            &op,
            &up.url(),
        ),
    );
    wait_for_port(grpc, Duration::from_secs(30));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("envoy.yaml");
    std::fs::write(&file, envoy_yaml(port, grpc, ports.http, up.port)).unwrap();
    let proxy = Peer::spawn(
        Command::new(envoy)
            .arg("-c")
            .arg(&file)
            .args(["--concurrency", "1", "--log-level", "error", "--base-id"])
            .arg(port.to_string()),
    );
    wait_for_port(port, Duration::from_secs(30));
    let base = format!("http://127.0.0.1:{port}");
    let c = from_client();
    // Envoy is up once it answers the public route (checked over gRPC).
    let mut ready = false;
    for _ in 0..100 {
        if let Ok(r) = c.get(format!("{base}/pub/x")).send().await {
            if r.status() == 200 {
                ready = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        ready,
        "the public route never answered; envoy logs:\n{}",
        proxy.logs()
    );

    // On a public route a client's identity headers do not reach the app.
    let r = c
        .get(format!("{base}/pub/x"))
        .header("x-portcullis-user", "admin")
        .header("x-portcullis-groups", "admins")
        .header("x-portcullis-assertion", "forged")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let j = whoami_json(&r.text().await.unwrap());
    for h in [
        "x-portcullis-user",
        "x-portcullis-groups",
        "x-portcullis-assertion",
    ] {
        let v = &j["headers"][h];
        assert!(
            v.is_null() || v == &serde_json::json!([""]),
            "{h} reached the app: {j}"
        );
    }

    // A stranger's browser is sent to sign in at the original host.
    let page = format!("{base}/docs/page");
    let r = c
        .get(&page)
        .header("accept", "text/html")
        .header("x-portcullis-user", "mallory")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "{:?}", r.text().await);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert!(
        loc.starts_with(&format!("{base}/.portcullis/login?rd=")),
        "{loc}"
    );
    // An API client gets 401 with the gateway's challenge.
    let r = c
        .get(&page)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("www-authenticate").is_some());
    assert!(r.text().await.unwrap().contains("unauthenticated"));

    // Client-sent original-URL and forwarding headers do not make a protected URL public.
    let secret = format!("{base}/secret/x");
    for (name, value) in ORIGINAL_URL_SPOOFS {
        let r = c
            .get(&secret)
            .header("accept", "text/html")
            .header(name, value)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302, "{name}: {value} must not open /secret");
    }

    // Signing in through the login link comes back to the page behind Envoy.
    let b = Browser::new();
    let at_page = |u: &str| u == page;
    let w = b.walk_until(&loc, at_page).await;
    let w = b
        .submit_login_until(&w.last().url.clone(), &w.body, "alice", at_page)
        .await;
    let back = w
        .hops
        .iter()
        .rev()
        .find_map(|h| h.location.clone())
        .unwrap_or_default();
    assert_eq!(back, page, "{w:#?}");
    let cookie = w
        .hops
        .iter()
        .flat_map(|h| h.set_cookies.iter())
        .rfind(|c| c.starts_with("portcullis=") && !c.contains("Max-Age=0"))
        .and_then(|c| c.split(';').next())
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no session cookie: {w:#?}"));

    // The app sees the verified identity, never the client's.
    let r = c
        .get(&page)
        .header("cookie", &cookie)
        .header("x-portcullis-user", "mallory")
        .header("x-portcullis-tenant", "other-tenant")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let j = whoami_json(&r.text().await.unwrap());
    assert_eq!(
        j["headers"]["x-portcullis-user"],
        serde_json::json!(["alice"]),
        "{j}"
    );
    assert_eq!(
        j["headers"]["x-portcullis-groups"],
        serde_json::json!(["eng,admins"])
    );
    let tenant = &j["headers"]["x-portcullis-tenant"];
    assert!(
        tenant.is_null() || tenant == &serde_json::json!([""]),
        "client tenant leaked: {j}"
    );
    let token = j["headers"]["x-portcullis-assertion"][0]
        .as_str()
        .unwrap()
        .to_string();
    let jwks: serde_json::Value = client(None)
        .get(format!("{}/.portcullis/jwks.json", gw.https()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(verify_es256(&jwks, &token), "the assertion verifies");

    // alice is not in finance; path tricks are refused, never opened.
    let get = |p: &str| {
        let host = format!("127.0.0.1:{port}");
        raw_request_from(
            port,
            IpAddr::from(CLIENT_ADDR),
            &format!("GET {p} HTTP/1.1"),
            &[("Host", host.as_str()), ("Cookie", cookie.as_str())],
        )
        .unwrap()
    };
    assert_eq!(get("/finance/report").0, 403);
    for p in [
        "/docs/%2e%2e/finance/report",
        "/docs/%2E%2E/finance/report",
        "/docs/./../finance/report",
        "/docs/..%2Ffinance/report",
        "/finance;x=1/report",
    ] {
        let r = get(p);
        assert_eq!(r.0, 400, "{p}: {} {}", r.0, r.2);
    }
    for p in ["//finance/report", "/FINANCE/report/../report"] {
        let r = get(p);
        let reached_finance = r.0 == 200 && r.2.contains("/finance");
        assert!(
            !reached_finance,
            "{p} reached the finance app: {} {}",
            r.0, r.2
        );
    }
    // The client's own X-Forwarded-For is not the client.
    let r = c
        .get(format!("{base}/intranet/x"))
        .header("cookie", &cookie)
        .header("x-forwarded-for", "10.1.1.1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        403,
        "a client-chosen X-Forwarded-For is not the client"
    );

    // A gRPC call from outside server.trusted_proxies is refused.
    assert_eq!(
        direct_check_from_client(grpc).await.as_deref(),
        Some("7"),
        "PERMISSION_DENIED"
    );
    drop(proxy);
}
