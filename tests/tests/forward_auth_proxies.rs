//! Forward-auth behind the real proxies people run in front of apps: Traefik `forwardAuth`,
//! Caddy `forward_auth` and Envoy's HTTP `ext_authz` filter, each with the configuration the
//! README documents. For each: a stranger's browser is sent to sign in, a signed-in user reaches
//! the app with the identity the gateway verified, a user outside the route's group gets 403,
//! client-sent identity and original-URL headers change nothing, and path tricks are judged as
//! the app will see them.
//!
//! The proxies call the gateway from 127.0.0.1 (the only `server.trusted_proxies` entry); the
//! test's clients come from 127.0.0.3, so the proxy reports them as a different address and a
//! direct call to the gateway is an untrusted one.

use portcullis_e2e::front_proxy::{
    from_client, gateway_config, proxy_bin, CLIENT_ADDR, ORIGINAL_URL_SPOOFS,
};
use portcullis_e2e::oidc::*;
use portcullis_e2e::*;
use std::net::IpAddr;
use std::process::Command;
use std::time::Duration;

/// The Traefik file-provider config the README documents (dynamic part).
fn traefik_dynamic(gateway_http: u16, app: u16) -> String {
    format!(
        r#"http:
  middlewares:
    portcullis:
      forwardAuth:
        address: "http://127.0.0.1:{gateway_http}/.portcullis/auth"
        trustForwardHeader: false
        authResponseHeadersRegex: "^X-Portcullis-"
  routers:
    # Sign-in, callback and MFA pages on the app's own host (the session cookie is its).
    portcullis:
      rule: "PathPrefix(`/.portcullis/`)"
      entryPoints: [web]
      service: portcullis
    app:
      rule: "PathPrefix(`/`)"
      entryPoints: [web]
      middlewares: [portcullis]
      service: app
  services:
    portcullis:
      loadBalancer:
        servers: [ {{ url: "http://127.0.0.1:{gateway_http}" }} ]
    app:
      loadBalancer:
        servers: [ {{ url: "http://127.0.0.1:{app}" }} ]
"#
    )
}

fn start_traefik(dir: &std::path::Path, port: u16, gateway_http: u16, app: u16) -> Option<Peer> {
    let bin = proxy_bin("traefik")?;
    std::fs::write(dir.join("dynamic.yml"), traefik_dynamic(gateway_http, app)).unwrap();
    let peer = Peer::spawn(Command::new(bin).args([
        &format!("--entryPoints.web.address=127.0.0.1:{port}"),
        &format!(
            "--providers.file.filename={}",
            dir.join("dynamic.yml").display()
        ),
        "--log.level=ERROR",
        "--global.checkNewVersion=false",
        "--global.sendAnonymousUsage=false",
    ]));
    Some(peer)
}

/// The Caddyfile the README documents.
fn caddyfile(port: u16, gateway_http: u16, app: u16) -> String {
    format!(
        r#"{{
  admin off
  auto_https off
}}
http://127.0.0.1:{port} {{
  # Identity headers come only from the gateway: drop every client-sent one first.
  request_header -X-Portcullis-*
  # Sign-in, callback and MFA pages on the app's own host (the session cookie is its).
  handle /.portcullis/* {{
    reverse_proxy 127.0.0.1:{gateway_http}
  }}
  handle {{
    forward_auth 127.0.0.1:{gateway_http} {{
      uri /.portcullis/auth
      copy_headers X-Portcullis-User X-Portcullis-Email X-Portcullis-Groups X-Portcullis-Roles X-Portcullis-Tenant X-Portcullis-Assertion
    }}
    reverse_proxy 127.0.0.1:{app}
  }}
}}
"#
    )
}

fn start_caddy(dir: &std::path::Path, port: u16, gateway_http: u16, app: u16) -> Option<Peer> {
    let bin = proxy_bin("caddy")?;
    let file = dir.join("Caddyfile");
    std::fs::write(&file, caddyfile(port, gateway_http, app)).unwrap();
    Some(Peer::spawn(
        Command::new(bin)
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&file)
            .env("HOME", dir)
            .env("XDG_DATA_HOME", dir)
            .env("XDG_CONFIG_HOME", dir),
    ))
}

/// The Envoy config the README documents (HTTP ext_authz).
fn envoy_yaml(port: u16, gateway_http: u16, app: u16) -> String {
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
                      http_service:
                        server_uri: {{ uri: "http://127.0.0.1:{gateway_http}", cluster: portcullis, timeout: 2s }}
                        path_prefix: /.portcullis/auth
                        authorization_request:
                          allowed_headers:
                            patterns: [ {{ exact: cookie }}, {{ exact: accept }}, {{ exact: x-forwarded-for }}, {{ exact: x-forwarded-proto }} ]
                        authorization_response:
                          allowed_upstream_headers:
                            patterns: [ {{ prefix: x-portcullis- }} ]
                          allowed_client_headers:
                            patterns: [ {{ exact: location }}, {{ exact: set-cookie }}, {{ exact: www-authenticate }}, {{ exact: content-type }} ]
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
"#
    )
}

fn start_envoy(dir: &std::path::Path, port: u16, gateway_http: u16, app: u16) -> Option<Peer> {
    let bin = proxy_bin("envoy")?;
    let file = dir.join("envoy.yaml");
    std::fs::write(&file, envoy_yaml(port, gateway_http, app)).unwrap();
    Some(Peer::spawn(
        Command::new(bin)
            .arg("-c")
            .arg(&file)
            .args(["--concurrency", "1", "--log-level", "error", "--base-id"])
            .arg(port.to_string()),
    ))
}

/// The whole scenario against one proxy.
async fn scenario(mode: &str, start: fn(&std::path::Path, u16, u16, u16) -> Option<Peer>) {
    let ports = Ports::fresh();
    let port = free_port();
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
            "",
            &format!("forward_auth: {{ mode: {mode} }}\n"),
            port,
            &op,
            &up.url(),
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let Some(proxy) = start(dir.path(), port, ports.http, up.port) else {
        return;
    };
    wait_for_port(port, Duration::from_secs(30));
    let base = format!("http://127.0.0.1:{port}");
    let c = from_client();
    // The proxy is up once it answers the public route through the gateway.
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
        "{mode}: the public route never answered; proxy logs:\n{}",
        proxy.logs()
    );

    // On a public route a client's identity headers do not reach the app either.
    let r = c
        .get(format!("{base}/pub/x"))
        .header("x-portcullis-user", "admin")
        .header("x-portcullis-groups", "admins")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{mode}");
    let j = whoami_json(&r.text().await.unwrap());
    for h in ["x-portcullis-user", "x-portcullis-groups"] {
        let v = &j["headers"][h];
        assert!(
            v.is_null() || v == &serde_json::json!([""]),
            "{mode}: {h} reached the app: {j}"
        );
    }

    // A stranger's browser is sent to sign in, whatever identity header it sends.
    let page = format!("{base}/docs/page");
    let r = c
        .get(&page)
        .header("accept", "text/html")
        .header("x-portcullis-user", "mallory")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "{mode}: {:?}", r.text().await);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    // Sign-in at the app's own host (through the proxy's /.portcullis/ route).
    assert!(
        loc.starts_with(&format!("{base}/.portcullis/login?rd=")),
        "{mode}: {loc}"
    );
    // An API client gets 401.
    let r = c
        .get(&page)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "{mode}");

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
        assert_eq!(
            r.status(),
            302,
            "{mode}: {name}: {value} must not open /secret"
        );
    }

    // Signing in through the login link comes back to the page behind the proxy.
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
    assert_eq!(back, page, "{mode}: {w:#?}");
    // The session cookie of the app's host (plain HTTP here, so without the __Host- prefix).
    let cookie = w
        .hops
        .iter()
        .flat_map(|h| h.set_cookies.iter())
        .rfind(|c| c.starts_with("portcullis=") && !c.contains("Max-Age=0"))
        .and_then(|c| c.split(';').next())
        .map(str::to_string)
        .unwrap_or_else(|| panic!("{mode}: no session cookie: {w:#?}"));

    // The app sees the verified identity, never the client's.
    let r = c
        .get(&page)
        .header("cookie", &cookie)
        .header("x-portcullis-user", "mallory")
        .header("x-portcullis-tenant", "other-tenant")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{mode}");
    let j = whoami_json(&r.text().await.unwrap());
    assert_eq!(
        j["headers"]["x-portcullis-user"],
        serde_json::json!(["alice"]),
        "{mode}: {j}"
    );
    assert_eq!(
        j["headers"]["x-portcullis-groups"],
        serde_json::json!(["eng,admins"]),
        "{mode}"
    );
    // Alice has no tenant: the client's is blanked or removed, never passed on.
    let tenant = &j["headers"]["x-portcullis-tenant"];
    assert!(
        tenant.is_null() || tenant == &serde_json::json!([""]),
        "{mode}: client tenant leaked: {j}"
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
    assert!(
        verify_es256(&jwks, &token),
        "{mode}: the assertion verifies"
    );

    // The route's policy decides: alice is not in finance. Path tricks are refused or judged on
    // the path the app receives, never opened.
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
    assert_eq!(get("/finance/report").0, 403, "{mode}");
    for p in [
        "/docs/%2e%2e/finance/report",
        "/docs/%2E%2E/finance/report",
        "//finance/report",
        "/docs/./../finance/report",
        "/docs/..%2Ffinance/report",
        "/finance;x=1/report",
        "/FINANCE/report/../report",
    ] {
        let r = get(p);
        let reached_finance = r.0 == 200 && r.2.contains("/finance");
        assert!(
            !reached_finance,
            "{mode}: {p} reached the finance app: {} {}",
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
        "{mode}: a client-chosen X-Forwarded-For is not the client"
    );
    // A direct call to the gateway's check from elsewhere is not a trusted proxy's.
    let r = c
        .get(format!("{}/.portcullis/auth/finance/report", gw.http()))
        .header("cookie", &cookie)
        .header("x-forwarded-uri", "/pub/x")
        .header("x-forwarded-method", "GET")
        .header("x-forwarded-proto", "http")
        .header("x-forwarded-host", "127.0.0.1")
        .header("x-forwarded-for", "127.0.0.3")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "{mode}: untrusted caller");
    assert!(r.headers().get("x-portcullis-user").is_none());
    drop(proxy);
}

#[tokio::test(flavor = "multi_thread")]
async fn traefik_forward_auth_with_the_documented_config() {
    scenario("traefik", start_traefik).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn caddy_forward_auth_with_the_documented_config() {
    scenario("caddy", start_caddy).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn envoy_http_ext_authz_with_the_documented_config() {
    scenario("envoy", start_envoy).await;
}
