//! Forward-auth with a real nginx `auth_request` in front of an app: nginx asks
//! `/.portcullis/auth`, forwards the identity headers it returns, and sends unauthenticated
//! browsers to sign in. The nginx config here is the one documented in the README.

use portcullis_e2e::oidc::*;
use portcullis_e2e::*;
use std::process::Command;
use std::time::Duration;

/// The documented nginx config, with ports filled in.
fn nginx_conf(dir: &str, listen: u16, gateway_https: u16, app: u16) -> String {
    format!(
        r#"daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{}}
http {{
  access_log off;
  client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fcgi; uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;
  server {{
    listen 127.0.0.1:{listen};
    location = /_portcullis_auth {{
      internal;
      proxy_pass https://127.0.0.1:{gateway_https}/.portcullis/auth;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URI $request_uri;
      proxy_set_header X-Original-Host $http_host;
    }}
    location / {{
      auth_request /_portcullis_auth;
      auth_request_set $pc_user $upstream_http_x_portcullis_user;
      auth_request_set $pc_groups $upstream_http_x_portcullis_groups;
      auth_request_set $pc_assertion $upstream_http_x_portcullis_assertion;
      proxy_set_header X-Portcullis-User $pc_user;
      proxy_set_header X-Portcullis-Groups $pc_groups;
      proxy_set_header X-Portcullis-Assertion $pc_assertion;
      proxy_pass http://127.0.0.1:{app};
      error_page 401 = @portcullis_login;
    }}
    location @portcullis_login {{
      return 302 https://127.0.0.1:{gateway_https}/.portcullis/login?rd=$scheme://$http_host$request_uri;
    }}
  }}
}}
"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_auth_request_forwards_the_verified_identity_and_redirects_strangers() {
    let ports = Ports::fresh();
    let port = free_port();
    let up = Whoami::start("app");
    let op = OpenIdProvider::start(&[ports.https], None, 3600);
    let gw = Gateway::start_on(
        ports,
        &format!(
            "{SERVER}session:
  keys: [\"{SESSION_KEY}\"]
  return_to_allow: [\"http://127.0.0.1:{{nginx}}\"]
identity_providers:
  - {{ id: corp, type: oidc, issuer: \"{}\", client_id: {CLIENT_ID}, client_secret: {CLIENT_SECRET}, scopes: [openid, email, groups] }}
routes:
  - {{ id: app, path: /, upstream: \"{}\", policy: authenticated }}
  - {{ id: finance, path: /finance, upstream: \"{}\", policy: {{ allow: [ {{ groups: [finance] }} ] }} }}
",
            op.issuer,
            up.url(),
            up.url()
        )
        .replace("{nginx}", &port.to_string()),
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    std::fs::write(
        dir.path().join("nginx.conf"),
        nginx_conf(&d, port, ports.https, up.port),
    )
    .unwrap();
    let mut nginx = Command::new("nginx")
        .args(["-c", &format!("{d}/nginx.conf"), "-p", &d])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("nginx (tests/run installs it)");
    wait_for_port(port, Duration::from_secs(10));
    let nginx_url = format!("http://127.0.0.1:{port}/docs/page");
    let plain = client(None);

    let r = plain
        .get(&nginx_url)
        .header("x-portcullis-user", "mallory")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert!(
        loc.starts_with(&format!("{}/.portcullis/login?rd=", gw.https())),
        "{loc}"
    );

    // Signing in through that login link comes back to the page behind nginx (allow-listed).
    let b = Browser::new();
    let behind_nginx = |u: &str| u.starts_with(&format!("http://127.0.0.1:{port}"));
    let w = b.walk_until(&loc, behind_nginx).await;
    let w = b
        .submit_login_until(&w.last().url.clone(), &w.body, "alice", behind_nginx)
        .await;
    let back = w
        .hops
        .iter()
        .rev()
        .find_map(|h| h.location.clone())
        .unwrap_or_default();
    assert_eq!(back, nginx_url, "{w:#?}");
    let cookie = w.session_cookie().unwrap();

    let r = plain
        .get(&nginx_url)
        .header("cookie", &cookie)
        .header("x-portcullis-user", "mallory")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let j = whoami_json(&r.text().await.unwrap());
    assert_eq!(
        j["headers"]["x-portcullis-user"],
        serde_json::json!(["alice"])
    );
    assert_eq!(
        j["headers"]["x-portcullis-groups"],
        serde_json::json!(["eng,admins"])
    );
    let token = j["headers"]["x-portcullis-assertion"][0]
        .as_str()
        .unwrap()
        .to_string();
    let jwks: serde_json::Value = plain
        .get(format!("{}/.portcullis/jwks.json", gw.https()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(verify_es256(&jwks, &token));

    // The route's policy decides, not merely "signed in": alice is not in `finance`, and
    // path tricks that an app would resolve to /finance are judged as /finance.
    // (A path the gateway refuses outright is a 400 at forward-auth, which nginx turns into 500:
    // still no access.)
    for (path, status) in [
        ("/finance/report", 403),
        ("/docs/%2e%2e/finance/report", 403),
        ("//finance/report", 403),
        ("/docs/..%2Ffinance/report", 500),
        ("/finance;x=1/report", 500),
    ] {
        let r = plain
            .get(format!("http://127.0.0.1:{port}{path}"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{path}");
    }
    let r = plain
        .get(&nginx_url)
        .header("cookie", "__Host-portcullis=forged")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "a forged cookie is a stranger");
    let _ = nginx.kill();
    let _ = nginx.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn traefik_style_forward_auth_sends_browsers_to_sign_in_and_apis_get_401() {
    let ports = Ports::fresh();
    let op = OpenIdProvider::start(&[ports.https], None, 3600);
    let gw = Gateway::start_on(
        ports,
        &format!(
            "{SERVER}session:
  keys: [\"{SESSION_KEY}\"]
identity_providers:
  - {{ id: corp, type: oidc, issuer: \"{}\", client_id: {CLIENT_ID}, client_secret: {CLIENT_SECRET} }}
routes: []
",
            op.issuer
        ),
    );
    let auth = format!("{}/.portcullis/auth", gw.https());
    let c = client(None);
    let r = c
        .get(&auth)
        .header("accept", "text/html")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "app.example.com")
        .header("x-forwarded-uri", "/reports?q=1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let loc = r.headers()["location"].to_str().unwrap();
    assert_eq!(
        loc,
        format!(
            "{}/.portcullis/login?rd=https%3A%2F%2Fapp.example.com%2Freports%3Fq%3D1",
            gw.https()
        )
    );
    let r = c
        .get(&auth)
        .header("accept", "application/json")
        .header("x-forwarded-uri", "/reports")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

/// Traefik/Caddy (`X-Forwarded-*`) and Envoy (`/.portcullis/auth/<original path>`) checks are
/// judged by the policy of the route the original request takes: a public route needs nobody,
/// a group route refuses the wrong user, a step-up route asks for MFA, and the assertion is
/// made for the route's audience.
#[tokio::test(flavor = "multi_thread")]
async fn forward_auth_applies_the_original_routes_policy() {
    let ports = Ports::fresh();
    let up = Whoami::start("app");
    let op = OpenIdProvider::start(&[ports.https], None, 3600);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let gw = Gateway::start_on(
        ports,
        &format!(
            "{SERVER}  data_dir: \"{d}\"
session:
  keys: [\"{SESSION_KEY}\"]
identity_providers:
  - {{ id: corp, type: oidc, issuer: \"{}\", client_id: {CLIENT_ID}, client_secret: {CLIENT_SECRET}, scopes: [openid, email, groups] }}
store: \"sqlite://{d}/portcullis.db\"
mfa:
  encryption_key: \"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\"
  totp: {{ issuer: Acme }}
routes:
  - {{ id: app, path: /app, upstream: \"{}\", policy: authenticated }}
  - {{ id: pub, path: /pub, upstream: \"{}\", policy: public }}
  - {{ id: admin, path: /admin, upstream: \"{}\", policy: {{ allow: [ {{ groups: [admins] }} ] }}, assertion_audience: admin-api }}
  - {{ id: vault, path: /vault, upstream: \"{}\", policy: {{ allow: [ {{ mfa: {{ methods: [totp], max_age: 5m }} }} ] }} }}
",
            op.issuer,
            up.url(),
            up.url(),
            up.url(),
            up.url()
        ),
    );
    let auth = format!("{}/.portcullis/auth", gw.https());
    let c = client(None);
    let traefik = |c: &reqwest::Client, uri: &str, cookie: Option<&str>, html: bool| {
        let mut r = c
            .get(&auth)
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "app.example.com")
            .header("x-forwarded-uri", uri)
            .header(
                "accept",
                if html {
                    "text/html"
                } else {
                    "application/json"
                },
            );
        if let Some(ck) = cookie {
            r = r.header("cookie", ck);
        }
        r.send()
    };

    // Public: nobody needed. Unmatched and anonymous: sign in.
    assert_eq!(
        traefik(&c, "/pub/x", None, false).await.unwrap().status(),
        200
    );
    assert_eq!(
        traefik(&c, "/admin", None, false).await.unwrap().status(),
        401
    );

    let mut cookies = Vec::new();
    for user in ["alice", "bob"] {
        let b = Browser::new();
        let w = b.login(&format!("{}/app/", gw.https()), user).await;
        assert_eq!(w.last().status, 200, "{w:#?}");
        cookies.push(w.session_cookie().unwrap());
    }
    let (alice, bob) = (cookies[0].as_str(), cookies[1].as_str());

    let r = traefik(&c, "/admin/users?x=1", Some(alice), false)
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-portcullis-user"], "alice");
    let token = r.headers()["x-portcullis-assertion"].to_str().unwrap();
    assert_eq!(jwt_claims(token)["aud"], "admin-api");

    let r = traefik(&c, "/admin/users", Some(bob), false).await.unwrap();
    assert_eq!(r.status(), 403, "bob is not in admins");
    assert!(r.headers().get("x-portcullis-user").is_none());
    let r = traefik(&c, "/app/../admin/users", Some(bob), false)
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "dot segments are resolved before routing");
    let r = traefik(&c, "/app/%2e%2e/admin", Some(bob), false)
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "encoded dot segments too");
    let r = traefik(&c, "/app/..%2fadmin", Some(bob), false)
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "encoded slash refused");

    // Envoy ext_authz: the original path follows the endpoint, Host is the original host.
    let r = c
        .get(format!("{auth}/admin/users"))
        .header("cookie", bob)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = c
        .get(format!("{auth}/admin/users"))
        .header("cookie", alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Step-up: APIs get the machine-readable 401; browsers go to the MFA page and come back.
    let r = traefik(&c, "/vault/k", Some(alice), false).await.unwrap();
    assert_eq!(r.status(), 401);
    let j: serde_json::Value = r.json().await.unwrap();
    assert_eq!(j["error"], "step_up_required");
    let r = traefik(&c, "/vault/k", Some(alice), true).await.unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(
        r.headers()["location"].to_str().unwrap(),
        format!(
            "{}/.portcullis/mfa?return=https%3A%2F%2Fapp.example.com%2Fvault%2Fk&methods=totp",
            gw.https()
        )
    );

    // nginx's flow: 401 → error_page → /.portcullis/login?rd=… sends a signed-in user who
    // needs step-up to the MFA page instead of signing in again.
    let r = c
        .get(format!("{}/.portcullis/login?rd=%2Fvault%2Fk", gw.https()))
        .header("cookie", alice)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(
        r.headers()["location"].to_str().unwrap(),
        format!(
            "{0}/.portcullis/mfa?return={1}&methods=totp",
            gw.https(),
            url::form_urlencoded::byte_serialize(format!("{}/vault/k", gw.https()).as_bytes())
                .collect::<String>()
        )
    );
}
