//! Legacy-app adapters (`routes[].adapter`) end to end: identity under the names an old app
//! reads (`REMOTE_USER`), the assertion under another header, a path prefix moved, headers set
//! and removed both ways (whoami upstream); and Basic credentials per role into a real nginx
//! that checks them (`auth_basic`) and reports `$remote_user`. A client's own copies of every
//! injected header, in any spelling, never get through.

use portcullis_e2e::oidc::Browser;
use portcullis_e2e::*;
use std::process::Command;
use std::time::Duration;

const PASSWORD: &str = "correct horse battery staple";

struct Nginx {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nginx as the legacy app: Basic auth against a password file, answering with `$remote_user`.
fn legacy_nginx() -> Nginx {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let port = free_port();
    std::fs::write(
        dir.path().join("htpasswd"),
        "svc:{PLAIN}svc-secret\nfin:{PLAIN}fin-secret\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("www")).unwrap();
    std::fs::write(dir.path().join("www/page.txt"), "ledger\n").unwrap();
    std::fs::write(
        dir.path().join("nginx.conf"),
        format!(
            r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log error;
events {{}}
http {{
  access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  server {{
    listen 127.0.0.1:{port};
    # A content handler (not `return`, which runs before the access phase): only requests
    # whose credentials auth_basic accepted get the page.
    root {d}/www;
    location / {{
      auth_basic "legacy";
      auth_basic_user_file {d}/htpasswd;
      add_header X-Powered-By "legacy-php" always;
      add_header X-Remote-User $remote_user always;
      try_files /page.txt =404;
    }}
  }}
}}
"#
        ),
    )
    .unwrap();
    let child = Command::new("nginx")
        .args(["-c", &format!("{d}/nginx.conf"), "-p", &d])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("nginx (tests/run installs it)");
    wait_for_port(port, Duration::from_secs(10));
    Nginx {
        child,
        port,
        _dir: dir,
    }
}

fn config(dir: &std::path::Path, whoami: &str, nginx: u16) -> String {
    let users = dir.join("users.yaml");
    std::fs::write(
        &users,
        format!(
            "users:
  - {{ user_name: alice, password_hash: \"{h}\", email: alice@example.com, groups: [finance] }}
  - {{ user_name: bob, password_hash: \"{h}\", email: bob@example.com, groups: [staff] }}
groups:
  - {{ name: finance, roles: [finance-admin] }}
",
            h = hash_password(PASSWORD)
        ),
    )
    .unwrap();
    std::fs::write(dir.join("svc-password"), "svc-secret\n").unwrap();
    format!(
        "{SERVER}store: \"sqlite://{d}/portcullis.db\"
session: {{ keys: [\"AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=\"] }}
identity_providers:
  - {{ id: staff, type: local }}
directory: {{ users_file: \"{u}\" }}
routes:
  - id: legacy
    path: /legacy
    upstream: \"{whoami}\"
    policy: authenticated
    adapter:
      strip_prefix: /legacy
      add_prefix: /cgi-bin/app
      identity_headers: {{ user: [REMOTE_USER, X-Forwarded-User], email: [X-Forwarded-Email] }}
      assertion_header: X-Auth-Token
      request_headers: {{ set: {{ X-Gateway: portcullis }}, remove: [X-Debug] }}
  - id: ledger
    path: /ledger
    upstream: \"http://127.0.0.1:{nginx}\"
    policy: authenticated
    adapter:
      basic_auth: {{ username: svc, password_file: \"{d}/svc-password\" }}
      basic_auth_by_role: [ {{ role: finance-admin, username: fin, password: \"${{FIN_PASSWORD}}\" }} ]
      response_headers: {{ set: {{ Cache-Control: no-store }}, remove: [X-Powered-By] }}
  - id: brochure
    path: /brochure
    upstream: \"http://127.0.0.1:{nginx}\"
    policy: public
    adapter:
      basic_auth: {{ username: svc, password_file: \"{d}/svc-password\" }}
",
        d = dir.display(),
        u = users.display()
    )
}

async fn signed_in(gw: &Gateway, user: &str) -> String {
    let b = Browser::new();
    let w = b
        .password_sign_in(&format!("{}/legacy/", gw.https()), user, PASSWORD)
        .await;
    assert_eq!(w.last().status, 200, "{w:#?}");
    w.session_cookie().expect("session cookie")
}

#[tokio::test(flavor = "multi_thread")]
async fn legacy_apps_get_identity_credentials_and_paths_they_understand() {
    let dir = tempfile::tempdir().unwrap();
    let up = Whoami::start("legacy");
    let nginx = legacy_nginx();
    let gw = Gateway::start_env(
        &config(dir.path(), &up.url(), nginx.port),
        &[("FIN_PASSWORD", "fin-secret")],
    );
    let alice = signed_in(&gw, "alice").await;
    let bob = signed_in(&gw, "bob").await;
    let c = client(None);

    // REMOTE_USER and friends, the assertion under the app's header, the prefix moved, and a
    // client's copies in every spelling gone.
    let r = c
        .get(format!("{}/legacy/report?q=1", gw.https()))
        .header("cookie", &alice)
        .header("remote_user", "admin")
        .header("Remote-User", "admin")
        .header("x-forwarded-user", "admin")
        .header("x-auth-token", "forged")
        .header("x-gateway", "client")
        .header("x-debug", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let j = whoami_json(&r.text().await.unwrap());
    assert_eq!(j["uri"], "/cgi-bin/app/report?q=1", "{j}");
    let h = &j["headers"];
    assert_eq!(h["remote_user"], serde_json::json!(["alice"]), "{j}");
    assert!(h.get("remote-user").is_none(), "{j}");
    assert_eq!(h["x-forwarded-user"], serde_json::json!(["alice"]));
    assert_eq!(
        h["x-forwarded-email"],
        serde_json::json!(["alice@example.com"])
    );
    assert_eq!(h["x-gateway"], serde_json::json!(["portcullis"]));
    assert!(h.get("x-debug").is_none());
    let token = h["x-auth-token"][0].as_str().unwrap();
    assert_eq!(
        Some(token),
        h["x-portcullis-assertion"][0].as_str(),
        "the signed assertion"
    );
    let jwks: serde_json::Value = c
        .get(format!("{}/.portcullis/jwks.json", gw.https()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(portcullis_e2e::oidc::verify_es256(&jwks, token));

    // Basic credentials by role into an app that checks them: alice (finance-admin) is `fin`,
    // bob the route's default `svc`; whatever Authorization a client sends is replaced.
    for (cookie, expect) in [(&alice, "fin"), (&bob, "svc")] {
        let r = c
            .get(format!("{}/ledger/books", gw.https()))
            .header("cookie", cookie)
            .header("authorization", "Basic ZmluOmZpbi1zZWNyZXQ=")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["cache-control"], "no-store");
        assert!(
            r.headers().get("x-powered-by").is_none(),
            "removed from the response"
        );
        assert_eq!(r.headers()["x-remote-user"], expect, "nginx's $remote_user");
        assert_eq!(r.text().await.unwrap(), "ledger\n");
    }
    // A stranger never gets the credentials: on a public route the app asks for its own
    // (401), and a client's own Basic header is removed rather than passed on.
    let r = c
        .get(format!("{}/brochure/", gw.https()))
        .header("authorization", "Basic c3ZjOnN2Yy1zZWNyZXQ=")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "no credentials for strangers");
    let r = c
        .get(format!("{}/brochure/", gw.https()))
        .header("cookie", &bob)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        401,
        "a public route reads no identity, so it never carries the credentials"
    );
}

#[test]
fn bad_adapters_are_refused_by_check_with_their_key_paths() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "routes:
  - id: a
    upstream: \"http://127.0.0.1:9\"
    policy: authenticated
    adapter:
      identity_headers: { user: [X-Portcullis-User] }
      basic_auth: { username: svc }
      strip_prefix: nope
",
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["check", "--config", &file.display().to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for key in [
        "routes[0].adapter.identity_headers.user[0]",
        "routes[0].adapter.basic_auth",
        "routes[0].adapter.strip_prefix",
    ] {
        assert!(err.contains(key), "{key} not named:\n{err}");
    }
}
