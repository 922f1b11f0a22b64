//! Sign-in through the directory against a real OpenID Provider: with just-in-time creation
//! the first login creates (and links) a directory user whose groups then reach the upstream;
//! without it an unknown user is refused with 403; a deactivated user is refused too.

use portcullis_e2e::oidc::*;
use portcullis_e2e::*;
use std::path::Path;

fn config(issuer: &str, up: &str, store: &Path, jit: bool) -> String {
    format!(
        "{SERVER}session:
  keys: [\"{SESSION_KEY}\"]
store: \"sqlite://{store}\"
directory: {{}}
identity_providers:
  - id: corp
    type: oidc
    issuer: \"{issuer}\"
    client_id: {CLIENT_ID}
    client_secret: {CLIENT_SECRET}
    scopes: [openid, email, profile, groups]
    userinfo: true
    jit: {jit}
routes:
  - {{ id: app, path: /app, upstream: \"{up}\", policy: authenticated }}
",
        store = store.display()
    )
}

/// Runs one statement against the gateway's SQLite file (the directory is shared with it).
async fn sql(store: &Path, statement: &str) -> Vec<sqlx::sqlite::SqliteRow> {
    use sqlx::Connection;
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=rw", store.display()))
        .await
        .expect("open the gateway's store");
    sqlx::query(sqlx::AssertSqlSafe(statement.to_string()))
        .fetch_all(&mut c)
        .await
        .expect("run SQL")
}

fn refused(w: &Walk, code: &str) {
    let last = w.last();
    assert_eq!(last.status, 403, "{w:#?}");
    let body: serde_json::Value = serde_json::from_str(&w.body).expect("JSON error");
    assert_eq!(body["error"], code, "{body}");
    assert!(
        w.session_set_cookie().is_none(),
        "no session for a refused user"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn jit_creates_users_unknown_and_deactivated_users_are_refused() {
    use sqlx::Row;
    let data = tempfile::tempdir().unwrap();
    let (jit_ports, strict_ports) = (Ports::fresh(), Ports::fresh());
    let op = OpenIdProvider::start(&[jit_ports.https, strict_ports.https], None, 3600);
    let up = Whoami::start("app");
    let jit_store = data.path().join("jit.db");
    let strict_store = data.path().join("strict.db");
    let jit = Gateway::start_on(jit_ports, &config(&op.issuer, &up.url(), &jit_store, true));
    let strict = Gateway::start_on(
        strict_ports,
        &config(&op.issuer, &up.url(), &strict_store, false),
    );

    // JIT on: the first login creates the directory user and links it.
    let app = format!("{}/app/x", jit.https());
    let w = Browser::new().login(&app, "alice").await;
    assert_eq!(w.last().status, 200, "{w:#?}");
    let rows = sql(
        &jit_store,
        "SELECT u.user_name, u.source, u.active, l.provider FROM directory_users u JOIN directory_links l ON l.user_id = u.id",
    )
    .await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<String, _>("user_name"), "alice");
    assert_eq!(rows[0].get::<String, _>("source"), "jit:corp");
    assert_eq!(rows[0].get::<i64, _>("active"), 1);
    assert_eq!(rows[0].get::<String, _>("provider"), "corp");
    // A second login finds the same user (no duplicate).
    let w = Browser::new().login(&app, "alice").await;
    assert_eq!(w.last().status, 200, "{w:#?}");
    assert_eq!(
        sql(&jit_store, "SELECT id FROM directory_users")
            .await
            .len(),
        1
    );

    // Deactivated (as SCIM `active: false` leaves it): refused, even with JIT on.
    sql(&jit_store, "UPDATE directory_users SET active = 0").await;
    let w = Browser::new().login(&app, "alice").await;
    refused(&w, "account_deactivated");
    assert!(
        jit.proc.logs().contains("deactivated"),
        "auth.login_failed with reason deactivated"
    );

    // JIT off: nobody is in that directory, so the same provider's user is refused.
    let app = format!("{}/app/x", strict.https());
    let w = Browser::new().login(&app, "bob").await;
    refused(&w, "not_in_directory");
    let logs = strict.proc.logs();
    assert!(
        logs.contains("auth.login_failed") && logs.contains("not in directory"),
        "{logs}"
    );

    // Provisioned beforehand (as SCIM would), with a group granting a role: the first login
    // links the user by name and the directory's group and role join the token's.
    for statement in [
        "INSERT INTO directory_users (id, tenant, user_name, user_name_lc, emails, phone_numbers, active, enterprise, source, created, modified, version) VALUES ('u-carol', '', 'Carol', 'carol', '[]', '[]', 1, '{}', 'scim', 0, 0, 1)",
        "INSERT INTO directory_groups (id, tenant, display_name, display_name_lc, source, created, modified, version) VALUES ('g-dir', '', 'dir-team', 'dir-team', 'scim', 0, 0, 1)",
        "INSERT INTO directory_group_members (group_id, member_id, member_kind) VALUES ('g-dir', 'u-carol', 'User')",
        "INSERT INTO directory_group_roles (group_id, role) VALUES ('g-dir', 'dir-role')",
    ] {
        sql(&strict_store, statement).await;
    }
    let w = Browser::new().login(&app, "carol").await;
    assert_eq!(w.last().status, 200, "{w:#?}");
    let h = &whoami_json(&w.body)["headers"];
    let groups = h["x-portcullis-groups"][0].as_str().unwrap_or_default();
    let roles = h["x-portcullis-roles"][0].as_str().unwrap_or_default();
    assert!(groups.split(',').any(|g| g == "dir-team"), "{h}");
    assert!(roles.split(',').any(|r| r == "dir-role"), "{h}");
    assert_eq!(
        sql(
            &strict_store,
            "SELECT user_id FROM directory_links WHERE user_id = 'u-carol'"
        )
        .await
        .len(),
        1
    );
    assert!(
        sql(
            &strict_store,
            "SELECT id FROM directory_users WHERE user_name_lc = 'bob'"
        )
        .await
        .is_empty(),
        "a refused sign-in creates nobody"
    );
}
