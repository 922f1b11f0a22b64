//! The admin JSON API against the real binary: local accounts (users_file seeds the first admin
//! through a group role) and a real OpenID Provider (a tenant-bound admin created just in
//! time), TOTP step-up done through the real MFA pages, and every way in that should stay shut:
//! no session, a non-admin, an admin without a recent second factor, forged or missing CSRF,
//! a plain HTML form's content type, a foreign Origin, an oversized body, path tricks,
//! another tenant's ids, and a disabled admin's old session.

use portcullis_e2e::oidc::*;
use portcullis_e2e::totp::*;
use portcullis_e2e::*;
use serde_json::{json, Value};
use std::path::Path;

const MFA_KEY: &str = "CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=";
const ROOT_PW: &str = "root's long password";
const CAROL_PW: &str = "carol's long password";
const API: &str = "/.portcullis/console/api";

fn config(dir: &Path, issuer: &str, up: &str, console: &str) -> String {
    let users = dir.join("users.yaml");
    std::fs::write(
        &users,
        format!(
            "users:
  - {{ user_name: root, password_hash: \"{}\", groups: [admins] }}
  - {{ user_name: carol, password_hash: \"{}\", email: carol@example.com, groups: [staff] }}
groups:
  - {{ name: admins, roles: [portcullis-admin] }}
",
            hash_password(ROOT_PW),
            hash_password(CAROL_PW)
        ),
    )
    .unwrap();
    format!(
        "{SERVER}store: \"sqlite://{d}/portcullis.db\"
session: {{ keys: [\"{SESSION_KEY}\"] }}
identity_providers:
  - {{ id: staff, type: local }}
  - {{ id: corp, type: oidc, issuer: \"{issuer}\", client_id: {CLIENT_ID}, client_secret: {CLIENT_SECRET}, scopes: [openid, email, profile, groups], claims: {{ tenant: tenant }}, jit: true }}
directory:
  users_file: \"{u}\"
mfa: {{ encryption_key: {MFA_KEY}, totp: {{ issuer: Acme }} }}
audit: {{ checkpoint_interval: 1h }}
{console}routes:
  - {{ id: app, path: /app, upstream: \"{up}\", policy: authenticated }}
",
        d = dir.display(),
        u = users.display()
    )
}

/// Signs in with a local account through the real form.
async fn local_sign_in(b: &Browser, gw: &Gateway, user: &str, password: &str) -> Walk {
    let url = format!("{}/.portcullis/login?idp=staff&rd=%2Fapp%2F", gw.https());
    b.password_sign_in(&url, user, password).await
}

/// Signs in at the OpenID Provider as `user`.
async fn oidc_sign_in(b: &Browser, gw: &Gateway, user: &str) -> Walk {
    let w = b
        .walk(&format!(
            "{}/.portcullis/login?idp=corp&rd=%2Fapp%2F",
            gw.https()
        ))
        .await;
    assert_eq!(w.last().status, 200, "the provider's form: {w:#?}");
    b.submit_login(&w.last().url, &w.body, user).await
}

/// Enrols TOTP on the real MFA page (a first-time user) — a fresh second factor.
async fn enrol_totp(b: &Browser, gw: &Gateway) {
    let w = b
        .walk(&format!("{}/.portcullis/mfa?return=%2Fapp%2F", gw.https()))
        .await;
    assert_eq!(w.last().status, 200, "{w:#?}");
    let secret = base32_decode(field(&w.body, "totp-secret"));
    let clock = gw.clock();
    clock.fresh_step(8);
    let w = b
        .post_code(&w.last().url, &w.body, &totp(&secret, clock.now()))
        .await;
    assert_eq!(w.hops[0].status, 200, "enrolled: {w:#?}");
}

/// One API call with `b`'s cookies; POSTs are same-origin JSON with `csrf` when given.
async fn call(
    b: &Browser,
    gw: &Gateway,
    method: &str,
    path: &str,
    csrf: Option<&str>,
    body: &str,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let url = format!("{}{API}/{path}", gw.https());
    let mut req = match method {
        "GET" => b.client.get(&url),
        _ => b
            .client
            .post(&url)
            .header("content-type", "application/json")
            .header("origin", gw.https())
            .body(body.to_string()),
    };
    if let Some(t) = csrf {
        req = req.header("x-csrf-token", t);
    }
    let r = req
        .header("accept", "text/html,application/json")
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {status} {text}"));
    (status, v, headers)
}

/// The caller's CSRF token, from `me`.
async fn csrf_of(b: &Browser, gw: &Gateway) -> String {
    let (s, v, _) = call(b, gw, "GET", "me", None, "").await;
    assert_eq!(s, 200, "{v}");
    v["csrf_token"].as_str().unwrap().to_string()
}

/// The id of the user named `name`, as the admin `b` finds it.
async fn id_of(b: &Browser, gw: &Gateway, name: &str) -> String {
    let (s, v, _) = call(b, gw, "GET", &format!("users?q={name}"), None, "").await;
    assert_eq!(s, 200, "{v}");
    let found: Vec<&Value> = v["users"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["userName"] == name)
        .collect();
    assert_eq!(found.len(), 1, "{v}");
    found[0]["id"].as_str().unwrap().to_string()
}

/// Signed in and allowed through to the app?
async fn signed_in(b: &Browser, gw: &Gateway) -> bool {
    b.api_get(format!("{}/app/x", gw.https())).await.status() == 200
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_api_guarded_audited_and_tenant_scoped() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::fresh();
    let up = Whoami::start("app");
    let op = OpenIdProvider::start(&[ports.https], None, 3600);
    op.set_accounts(&json!({"tina": {"roles": ["portcullis-admin"]}}));
    let gw = Gateway::start_with_clock(
        ports,
        &config(dir.path(), &op.issuer, &up.url(), "console: {}\n"),
    );

    // No session: 401 JSON, never a redirect, even for a browser's Accept.
    let anon = Browser::new();
    let (s, v, h) = call(&anon, &gw, "GET", "users", None, "").await;
    assert_eq!(
        (s, v["error"].as_str()),
        (401, Some("unauthenticated")),
        "{v}"
    );
    assert!(h.get("location").is_none());
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(h["content-type"], "application/json");

    // Path tricks, byte for byte on the plain listener: none reaches the API unguarded.
    for target in [
        "/.portcullis/console/api/../api/users",
        "/.portcullis/console/api/%2e%2e/api/users",
        "/.portcullis/console/api/users%2f",
        "/.portcullis/console/api%2Fusers",
        "/.portcullis/%63onsole/api/users",
        "/.portcullis/./console/api/users",
        "//.portcullis/console/api/users",
        "/.portcullis/CONSOLE/api/users",
        "/.portcullis/console/API/users",
        "/.portcullis/console/api;x/users",
    ] {
        let r = raw_request(gw.ports.http, &format!("GET {target} HTTP/1.1"), &[]).unwrap();
        assert!(matches!(r.0, 400 | 401 | 404), "{target}: {} {}", r.0, r.2);
    }

    // A signed-in user without the admin role: 403, as on a protected route.
    let carol = Browser::new();
    assert_eq!(
        local_sign_in(&carol, &gw, "carol", CAROL_PW)
            .await
            .last()
            .status,
        200
    );
    let (s, v, _) = call(&carol, &gw, "GET", "users", None, "").await;
    assert_eq!((s, v["error"].as_str()), (403, Some("forbidden")), "{v}");
    for trick in ["users%2Fx", "users/", "Users", "../api/users"] {
        let r = carol
            .client
            .get(format!("{}{API}/{trick}", gw.https()))
            .send()
            .await
            .unwrap();
        assert!(matches!(r.status().as_u16(), 400 | 403 | 404), "{trick}");
    }

    // The admin without a recent second factor: the step-up answer, naming mfa.
    let root = Browser::new();
    assert_eq!(
        local_sign_in(&root, &gw, "root", ROOT_PW)
            .await
            .last()
            .status,
        200
    );
    let (s, v, h) = call(&root, &gw, "GET", "users", None, "").await;
    assert_eq!(
        (s, v["error"].as_str()),
        (401, Some("step_up_required")),
        "{v}"
    );
    assert_eq!(v["required"], "mfa");
    assert_eq!(v["max_age"], 900);
    assert!(h["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("insufficient_user_authentication"));
    enrol_totp(&root, &gw).await;
    let csrf = csrf_of(&root, &gw).await;
    // The console pages are not built yet: only the API answers.
    for page in [
        "/.portcullis/console",
        "/.portcullis/console/",
        "/.portcullis/console/users",
    ] {
        let r = root.api_get(format!("{}{page}", gw.https())).await;
        assert_eq!(r.status(), 404, "{page}");
    }

    // Users: search, detail with groups, roles (directory group role), sessions, factors.
    let root_id = id_of(&root, &gw, "root").await;
    let carol_id = id_of(&root, &gw, "carol").await;
    let (s, v, _) = call(&root, &gw, "GET", &format!("users/{root_id}"), None, "").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["groups"], json!(["admins"]));
    assert_eq!(v["roles"], json!(["portcullis-admin"]));
    assert_eq!(v["local_password"], true);
    assert_eq!(v["mfa_factors"][0]["kind"], "totp");
    assert_eq!(v["sessions"].as_array().unwrap().len(), 1);
    use reqwest::cookie::CookieStore;
    let cookie = root
        .jar
        .cookies(&gw.https().parse().unwrap())
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let sid_cookie = cookie.split("__Host-portcullis=").nth(1).unwrap_or("");
    assert!(!v
        .to_string()
        .contains(sid_cookie.split(';').next().unwrap()));
    let (s, v, _) = call(&root, &gw, "GET", "groups", None, "").await;
    assert_eq!(s, 200);
    assert!(v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g["displayName"] == "admins" && g["roles"] == json!(["portcullis-admin"])));

    // CSRF and content-type attacks on a state change: refused, nothing changes.
    let revoke = format!("users/{carol_id}/sessions/revoke");
    let url = format!("{}{API}/{revoke}", gw.https());
    let (s, v, _) = call(&root, &gw, "POST", &revoke, None, "{}").await;
    assert_eq!((s, v["error"].as_str()), (403, Some("csrf")));
    let (s, _, _) = call(&root, &gw, "POST", &revoke, Some("forged-token"), "{}").await;
    assert_eq!(s, 403);
    // What a plain HTML form on another site would send, a foreign Origin, an oversized body.
    let form_ct = "application/x-www-form-urlencoded";
    let json_ct = "application/json";
    let evil = Some("https://evil.example");
    let small = b"{}".to_vec();
    for (content_type, origin, body, status) in [
        (form_ct, evil, b"x-csrf-token=t".to_vec(), 415),
        ("text/plain", None, small.clone(), 415),
        (json_ct, evil, small.clone(), 403),
        (json_ct, None, vec![b' '; 64 * 1024], 413),
    ] {
        let mut req = root
            .client
            .post(&url)
            .header("content-type", content_type)
            .header("x-csrf-token", &csrf)
            .body(body);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        assert_eq!(
            req.send().await.unwrap().status(),
            status,
            "{content_type} {origin:?}"
        );
    }
    let r = root.client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert!(signed_in(&carol, &gw).await, "nothing was revoked");

    // The real thing: carol's sessions end everywhere.
    let (s, v, _) = call(&root, &gw, "POST", &revoke, Some(&csrf), "{}").await;
    assert_eq!((s, v["sessions_ended"].as_u64()), (200, Some(1)), "{v}");
    assert!(!signed_in(&carol, &gw).await);

    // Disable: not oneself; carol is deprovisioned and cannot sign in; enable restores it.
    let (s, v, _) = call(
        &root,
        &gw,
        "POST",
        &format!("users/{root_id}/disable"),
        Some(&csrf),
        "{}",
    )
    .await;
    assert_eq!((s, v["error"].as_str()), (409, Some("self_disable")));
    assert_eq!(
        local_sign_in(&carol, &gw, "carol", CAROL_PW)
            .await
            .last()
            .status,
        200
    );
    let (s, v, _) = call(
        &root,
        &gw,
        "POST",
        &format!("users/{carol_id}/disable"),
        Some(&csrf),
        "{}",
    )
    .await;
    assert_eq!(
        (s, v["user"]["active"].as_bool()),
        (200, Some(false)),
        "{v}"
    );
    assert_eq!(v["sessions_ended"], 1);
    assert!(!signed_in(&carol, &gw).await);
    assert_eq!(
        local_sign_in(&carol, &gw, "carol", CAROL_PW)
            .await
            .last()
            .status,
        401
    );
    let (s, v, h) = call(
        &root,
        &gw,
        "POST",
        &format!("users/{carol_id}/enable"),
        Some(&csrf),
        "{}",
    )
    .await;
    assert_eq!((s, v["user"]["active"].as_bool()), (200, Some(true)));
    assert_eq!(h["cache-control"], "no-store");
    assert!(!signed_in(&carol, &gw).await, "ended sessions stay ended");

    // Password reset: a generated password, shown once, works; the old one does not.
    let (s, v, _) = call(
        &root,
        &gw,
        "POST",
        &format!("users/{carol_id}/password"),
        Some(&csrf),
        r#"{"generate": true}"#,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let fresh = v["password"].as_str().unwrap().to_string();
    let again = Browser::new();
    assert_eq!(
        local_sign_in(&again, &gw, "carol", CAROL_PW)
            .await
            .last()
            .status,
        401
    );
    assert_eq!(
        local_sign_in(&again, &gw, "carol", &fresh)
            .await
            .last()
            .status,
        200
    );

    // A tenant-bound admin (OIDC, created just in time in tenant acme): sees acme only, and
    // another tenant's ids do not exist for them.
    let tina = Browser::new();
    assert_eq!(oidc_sign_in(&tina, &gw, "tina").await.last().status, 200);
    enrol_totp(&tina, &gw).await;
    let tina_csrf = csrf_of(&tina, &gw).await;
    let r = tina
        .client
        .get(format!("{}/.portcullis/password", gw.https()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a provider's user has no password here");
    let (s, v, _) = call(&tina, &gw, "GET", "users", None, "").await;
    assert_eq!(s, 200, "{v}");
    let listed = v["users"].as_array().unwrap();
    assert!(
        !listed.is_empty() && listed.iter().all(|u| u["tenant"] == "acme"),
        "{v}"
    );
    for (method, path) in [
        ("GET", format!("users/{root_id}")),
        ("POST", format!("users/{root_id}/disable")),
        ("POST", format!("users/{carol_id}/sessions/revoke")),
        ("POST", format!("users/{carol_id}/password")),
        ("GET", "users?tenant=".to_string()),
    ] {
        let (s, v, _) = call(
            &tina,
            &gw,
            method,
            &path,
            Some(&tina_csrf),
            r#"{"generate":true}"#,
        )
        .await;
        assert_eq!(
            (s, v["error"].as_str()),
            (404, Some("not_found")),
            "{method} {path}"
        );
    }
    assert!(
        signed_in(&root, &gw).await,
        "the cross-tenant disable changed nothing"
    );

    // A disabled admin's old session is nobody's, even when its sessions were not ended
    // (deactivated behind the gateway's back, straight in the database).
    let tina_id = id_of(&root, &gw, "tina").await;
    {
        use sqlx::Connection;
        let db = dir.path().join("portcullis.db");
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=rw", db.display()))
            .await
            .unwrap();
        sqlx::query("UPDATE directory_users SET active = 0 WHERE id = $1")
            .bind(&tina_id)
            .execute(&mut c)
            .await
            .unwrap();
    }
    let (s, v, _) = call(&tina, &gw, "GET", "users", None, "").await;
    assert_eq!(
        (s, v["error"].as_str()),
        (401, Some("unauthenticated")),
        "{v}"
    );

    // The second factor gets old: step-up again.
    gw.clock().advance(16 * 60);
    let (s, v, _) = call(&root, &gw, "GET", "users", None, "").await;
    assert_eq!((s, v["error"].as_str()), (401, Some("step_up_required")));

    // Everything went into the audit chain.
    let logs = gw.proc.logs();
    for kind in [
        "audit console.denied",
        "audit console.users_listed",
        "audit console.user_viewed",
        "audit console.sessions_revoked",
        "audit console.user_disabled",
        "audit console.user_enabled",
        "audit console.user_password_reset",
        "audit console.groups_listed",
        "audit directory.user_deprovisioned",
    ] {
        assert!(logs.contains(kind), "{kind} missing:\n{logs}");
    }
    assert!(
        !logs.contains(&fresh),
        "the generated password is never logged"
    );
    assert!(
        logs.contains(r#""reason":"deny: allow[0].all[0].roles: want [portcullis-admin]"#),
        "the engine's reason is recorded: {logs}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_console_the_api_does_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    let up = Whoami::start("app");
    let gw = Gateway::start(&config(dir.path(), "https://op.invalid", &up.url(), ""));
    let root = Browser::new();
    assert_eq!(
        local_sign_in(&root, &gw, "root", ROOT_PW)
            .await
            .last()
            .status,
        200
    );
    for path in ["users", "me"] {
        let (s, v, _) = call(&root, &gw, "GET", path, None, "").await;
        assert_eq!((s, v["error"].as_str()), (404, Some("not_found")), "{path}");
    }
}
