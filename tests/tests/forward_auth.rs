//! Forward-auth with a real nginx `auth_request` in front of an app: nginx asks
//! `/.portcullis/auth`, forwards the identity headers it returns, and sends unauthenticated
//! browsers to sign in. The nginx config here is the one documented in the README.
//!
//! The front proxy talks to the gateway from 127.0.0.2 (the only `server.trusted_proxies`
//! entry); the attacker's own client uses 127.0.0.1, so a direct call is an untrusted one.

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
      proxy_bind 127.0.0.2;
      proxy_pass https://127.0.0.1:{gateway_https}/.portcullis/auth;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URI $request_uri;
      proxy_set_header X-Original-Host $http_host;
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
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

/// The server block with the one trusted proxy (nginx's `proxy_bind` address).
fn server_trusting_the_proxy() -> String {
    format!("{SERVER}  trusted_proxies: [127.0.0.2/32]\n")
}

/// A client that calls the gateway as the front proxy would: from 127.0.0.2.
fn proxy_client() -> reqwest::Client {
    client_from(None, Some(std::net::IpAddr::from([127, 0, 0, 2])))
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
            "{}session:
  keys: [\"{SESSION_KEY}\"]
  return_to_allow: [\"http://127.0.0.1:{{nginx}}\"]
identity_providers:
  - {{ id: corp, type: oidc, issuer: \"{}\", client_id: {CLIENT_ID}, client_secret: {CLIENT_SECRET}, scopes: [openid, email, groups] }}
forward_auth: {{ mode: nginx }}
routes:
  - {{ id: app, path: /, upstream: \"{}\", policy: authenticated }}
  - {{ id: pub, path: /pub, upstream: \"{}\", policy: public }}
  - {{ id: finance, path: /finance, upstream: \"{}\", policy: {{ allow: [ {{ groups: [finance] }} ] }} }}
  - {{ id: ops, path: /ops, upstream: \"{}\", policy: {{ allow: [ {{ authenticated: true }} ], deny: [ {{ query: {{ debug: \"1\" }} }}, {{ methods: [DELETE] }} ] }} }}
  - {{ id: intranet, path: /intranet, upstream: \"{}\", policy: {{ allow: [ {{ source_ip: [10.0.0.0/8] }} ] }} }}
",
            server_trusting_the_proxy(),
            op.issuer,
            up.url(),
            up.url(),
            up.url(),
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

    // C1: headers of another proxy's family, or nginx's own ones sent by the client, cannot
    // make a protected URL look like a public one: nginx overwrites its family, the gateway
    // reads no other.
    let pub_url = format!("http://127.0.0.1:{port}/pub/x");
    assert_eq!(plain.get(&pub_url).send().await.unwrap().status(), 200);
    let secret = format!("http://127.0.0.1:{port}/secret/x");
    for (name, value) in [
        ("x-original-url", "/pub/x"),
        ("x-original-uri", "/pub/x"),
        ("x-forwarded-uri", "/pub/x"),
        ("x-rewrite-url", "/pub/x"),
        ("x-forwarded-host", "public.host"),
        ("x-original-host", "public.host"),
        ("x-original-method", "OPTIONS"),
    ] {
        let r = plain.get(&secret).header(name, value).send().await.unwrap();
        assert_eq!(r.status(), 302, "{name}: {value} must not open /secret");
    }

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

    // The route's policy decides, not merely "signed in": alice is not in `finance`. M6: nginx
    // forwards the raw path to the app, so a path whose normal form differs (dot segments,
    // `//`, `\\`, `;`) is refused at forward-auth (400, which nginx turns into 500): the
    // gateway never judges one path while the app serves another.
    for (path, status) in [
        ("/finance/report", 403),
        ("/docs/%2e%2e/finance/report", 500),
        ("/docs/%2E%2E/finance/report", 500),
        ("//finance/report", 500),
        ("/docs/./../finance/report", 500),
        ("/docs/..%2Ffinance/report", 500),
        ("/docs\\..\\finance/report", 500),
        ("/finance;x=1/report", 500),
    ] {
        // Raw bytes: a client library would resolve the dot segments before sending.
        let host = format!("127.0.0.1:{port}");
        let r = raw_request(
            port,
            &format!("GET {path} HTTP/1.1"),
            &[("Host", host.as_str()), ("Cookie", cookie.as_str())],
        )
        .unwrap();
        assert_eq!(r.0, status, "{path}");
    }
    let r = plain
        .get(&nginx_url)
        .header("cookie", "__Host-portcullis=forged")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "a forged cookie is a stranger");

    // H6: the original method, query and client address are judged, not the subrequest's.
    let ops = format!("http://127.0.0.1:{port}/ops/x");
    let send = |m: reqwest::Method, u: &str| plain.request(m, u).header("cookie", &cookie).send();
    assert_eq!(
        send(reqwest::Method::GET, &ops).await.unwrap().status(),
        200
    );
    assert_eq!(
        send(reqwest::Method::GET, &format!("{ops}?debug=1"))
            .await
            .unwrap()
            .status(),
        403,
        "query deny rule"
    );
    assert_eq!(
        send(reqwest::Method::DELETE, &ops).await.unwrap().status(),
        403,
        "method deny rule"
    );
    let r = plain
        .get(format!("http://127.0.0.1:{port}/intranet/x"))
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

    // H2: the caller that is not the trusted proxy gets nothing — no identity, no assertion,
    // whatever audience it asks for.
    let r = plain
        .get(format!("{}/.portcullis/auth?aud=finance", gw.https()))
        .header("cookie", &cookie)
        .header("x-original-uri", "/finance/report")
        .header("x-original-host", format!("127.0.0.1:{port}"))
        .header("x-original-method", "GET")
        .header("x-forwarded-for", "127.0.0.1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("x-portcullis-assertion").is_none());
    assert!(r.headers().get("x-portcullis-user").is_none());
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
            "{}session:
  keys: [\"{SESSION_KEY}\"]
identity_providers:
  - {{ id: corp, type: oidc, issuer: \"{}\", client_id: {CLIENT_ID}, client_secret: {CLIENT_SECRET} }}
forward_auth: {{ mode: traefik }}
routes:
  - {{ id: reports, path: /reports, upstream: \"http://127.0.0.1:9\", policy: authenticated }}
",
            server_trusting_the_proxy(),
            op.issuer
        ),
    );
    let auth = format!("{}/.portcullis/auth", gw.https());
    let c = proxy_client();
    let check = |uri: &'static str| {
        c.get(&auth)
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "app.example.com")
            .header("x-forwarded-method", "GET")
            .header("x-forwarded-for", "198.51.100.7")
            .header("x-forwarded-uri", uri)
    };
    let r = check("/reports?q=1")
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let loc = r.headers()["location"].to_str().unwrap();
    // Sign-in happens at the original host (whose cookie the session must be), not at the
    // gateway's address as the proxy calls it.
    assert_eq!(
        loc,
        "https://app.example.com/.portcullis/login?rd=https%3A%2F%2Fapp.example.com%2Freports%3Fq%3D1"
    );
    let r = check("/reports")
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Default deny: a URL no route serves is refused, not answered with "is there a session".
    let r = check("/elsewhere").send().await.unwrap();
    assert_eq!(r.status(), 403);

    // Incomplete or doubled descriptions are refused (a client's copy surviving next to the
    // proxy's must not be read); so is a caller that is not a trusted proxy.
    let r = check("/reports")
        .header("x-forwarded-uri", "/public")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = c
        .get(&auth)
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "app.example.com")
        .header("x-forwarded-uri", "/reports")
        .header("x-forwarded-for", "198.51.100.7")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "no X-Forwarded-Method");
    let r = check("/reports")
        .header("x-forwarded-uri", format!("/{}", "a/".repeat(8192)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "doubled and oversized");
    let r = c
        .get(&auth)
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "app.example.com")
        .header("x-forwarded-method", "GET")
        .header("x-forwarded-for", "198.51.100.7")
        .header("x-forwarded-uri", format!("/{}", "a/".repeat(8192)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 431, "oversized");
    let r = client(None)
        .get(&auth)
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "app.example.com")
        .header("x-forwarded-method", "GET")
        .header("x-forwarded-for", "198.51.100.7")
        .header("x-forwarded-uri", "/reports")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "not a trusted proxy");
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
            "{}  data_dir: \"{d}\"
session:
  keys: [\"{SESSION_KEY}\"]
identity_providers:
  - {{ id: corp, type: oidc, issuer: \"{}\", client_id: {CLIENT_ID}, client_secret: {CLIENT_SECRET}, scopes: [openid, email, groups] }}
store: \"sqlite://{d}/portcullis.db\"
mfa:
  encryption_key: \"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\"
  totp: {{ issuer: Acme }}
forward_auth: {{ mode: traefik }}
routes:
  - {{ id: app, path: /app, upstream: \"{}\", policy: authenticated }}
  - {{ id: pub, path: /pub, upstream: \"{}\", policy: public }}
  - {{ id: admin, path: /admin, upstream: \"{}\", policy: {{ allow: [ {{ groups: [admins] }} ] }}, assertion_audience: admin-api }}
  - {{ id: vault, path: /vault, upstream: \"{}\", policy: {{ allow: [ {{ mfa: {{ methods: [totp], max_age: 5m }} }} ] }} }}
",
            server_trusting_the_proxy(),
            op.issuer,
            up.url(),
            up.url(),
            up.url(),
            up.url()
        ),
    );
    let auth = format!("{}/.portcullis/auth", gw.https());
    let c = proxy_client();
    let traefik = |c: &reqwest::Client, uri: &str, cookie: Option<&str>, html: bool| {
        let mut r = c
            .get(format!("{auth}?aud=vault"))
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "app.example.com")
            .header("x-forwarded-method", "GET")
            .header("x-forwarded-for", "198.51.100.7")
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
    assert_eq!(
        jwt_claims(token)["aud"],
        "admin-api",
        "the allowing route's audience, never the caller's ?aud="
    );
    // A public route's answer says nothing about who is signed in (no opt-in there): every
    // identity header is present and empty, so the proxy blanks a client's copy.
    let r = traefik(&c, "/pub/x", Some(alice), false).await.unwrap();
    assert_eq!(r.status(), 200);
    for h in portcullis_e2e::IDENTITY_HEADERS {
        assert_eq!(r.headers()[h], "", "{h}");
    }

    let r = traefik(&c, "/admin/users", Some(bob), false).await.unwrap();
    assert_eq!(r.status(), 403, "bob is not in admins");
    assert!(r.headers().get("x-portcullis-user").is_none());
    let r = traefik(&c, "/app/../admin/users", Some(bob), false)
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        400,
        "dot segments: the app would see another path"
    );
    let r = traefik(&c, "/app/%2e%2e/admin", Some(bob), false)
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "encoded dot segments too");
    let r = traefik(&c, "/app/..%2fadmin", Some(bob), false)
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "encoded slash refused");

    // Step-up: APIs get the machine-readable 401; browsers go to the MFA page and come back.
    let r = traefik(&c, "/vault/k", Some(alice), false).await.unwrap();
    assert_eq!(r.status(), 401);
    let j: serde_json::Value = r.json().await.unwrap();
    assert_eq!(j["error"], "step_up_required");
    let r = traefik(&c, "/vault/k", Some(alice), true).await.unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(
        r.headers()["location"].to_str().unwrap(),
        "https://app.example.com/.portcullis/mfa?return=https%3A%2F%2Fapp.example.com%2Fvault%2Fk&methods=totp"
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

/// Envoy HTTP ext_authz: the check keeps the original method and Host, and the original path
/// follows the endpoint. Only Envoy's form is read in this mode.
#[tokio::test(flavor = "multi_thread")]
async fn envoy_mode_judges_the_appended_path_and_the_original_method() {
    let up = Whoami::start("app");
    let gw = Gateway::start(&format!(
        "{}forward_auth: {{ mode: envoy }}
routes:
  - {{ id: pub, path: /pub, upstream: \"{}\", policy: public }}
  - {{ id: files, path: /files, upstream: \"{}\", policy: {{ allow: [ {{ methods: [GET] }} ], deny: [ {{ query: {{ debug: \"1\" }} }} ] }} }}
  - {{ id: app, path: /app, upstream: \"{}\", policy: authenticated }}
",
        server_trusting_the_proxy(),
        up.url(),
        up.url(),
        up.url()
    ));
    let auth = format!("{}/.portcullis/auth", gw.https());
    let c = proxy_client();
    let check = |m: reqwest::Method, path: &str| {
        c.request(m, format!("{auth}{path}"))
            .header("x-forwarded-for", "198.51.100.7")
            .header("x-forwarded-uri", "/pub/x")
            .header("x-original-uri", "/pub/x")
            .send()
    };
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(
        status(check(reqwest::Method::GET, "/pub/x").await.unwrap()),
        200
    );
    assert_eq!(
        status(check(reqwest::Method::GET, "/files/a").await.unwrap()),
        200
    );
    assert_eq!(
        status(check(reqwest::Method::DELETE, "/files/a").await.unwrap()),
        403,
        "the original method is Envoy's own"
    );
    assert_eq!(
        status(
            check(reqwest::Method::GET, "/files/a?debug=1")
                .await
                .unwrap()
        ),
        403,
        "the original query"
    );
    assert_eq!(
        status(check(reqwest::Method::GET, "/app/x").await.unwrap()),
        401,
        "other families' headers do not turn /app into /pub"
    );
    assert_eq!(status(check(reqwest::Method::GET, "").await.unwrap()), 400);
}
