//! The admin API driven with request values over a real store (SQLite, and PostgreSQL when
//! configured) and a real session store: what each endpoint answers, what it changes, what it
//! records — and every way an attacker might try to get through it.

use super::*;
use crate::directory::model::{Contact, Group, Member, MemberKind, User};
use crate::directory::DirectoryStore;
use crate::mfa::otp_store::DeviceRow;
use crate::mfa::store::FactorRow;
use crate::session::SessionRecord;
use http::Method;
use portcullis_policy::input::Identity;
use serde_json::{json, Value};
use std::collections::HashMap;
use tokio::sync::mpsc::UnboundedReceiver;

type Chain = UnboundedReceiver<(crate::audit::chain::Event, String)>;

const CSRF: &str = "csrf-token-of-the-admin-session";

struct Fixture {
    api: Api,
    chain: Chain,
    /// Directory ids: `root` (admin of every tenant, in `""`), `ann` (admin bound to
    /// `acme`), `bob` (acme, local password, two sessions, a factor and a device), `eve`
    /// (tenant `other`).
    ids: HashMap<&'static str, String>,
    ops: String,
    other_group: String,
}

fn sso(audit: crate::audit::Audit) -> Arc<Sso> {
    let text = "session:\n  keys: [\"AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=\"]\nroutes:\n  - { id: a, upstream: \"http://127.0.0.1:9\", policy: public }\n";
    let cfg = crate::config::load_str(text, "t", &HashMap::<String, String>::new()).unwrap();
    Arc::new(Sso::new(&cfg, audit, Clock::system()).unwrap())
}

fn user(name: &str) -> User {
    User {
        user_name: name.into(),
        display_name: Some(format!("{name} Example")),
        emails: vec![Contact {
            value: format!("{name}@example.com"),
            kind: None,
            primary: Some(true),
        }],
        active: true,
        source: "local".into(),
        ..User::default()
    }
}

fn session(idp: &str, sub: &str) -> SessionRecord {
    let now = Clock::system().unix();
    SessionRecord {
        identity: Identity {
            user: sub.into(),
            ..Default::default()
        },
        idp: idp.into(),
        sub: sub.into(),
        idp_sid: None,
        created: now,
        last_seen: now,
        refresh_token: None,
        refresh_at: None,
        id_token: None,
        csrf: "c".into(),
    }
}

async fn fixture(db: crate::store::Db) -> Fixture {
    let (audit, chain) = crate::audit::Audit::capture();
    let sso = sso(audit.clone());
    let directory = DirectoryStore::new(db.clone(), Clock::system());
    let mfa = crate::mfa::store::over(&db);
    let credentials = Credentials::new(db.clone());
    let mut ids = HashMap::new();
    for (key, tenant) in [
        ("root", ""),
        ("ann", "acme"),
        ("bob", "acme"),
        ("eve", "other"),
    ] {
        let u = directory.create_user(tenant, &user(key)).await.unwrap();
        directory.link("staff", &u.id, &u.id).await.unwrap();
        ids.insert(key, u.id);
    }
    let bob = ids["bob"].clone();
    let h = crate::password::hash("bob's old password").unwrap();
    credentials.set(&bob, &h, 1).await.unwrap();
    directory.link("corp", "bob-at-corp", &bob).await.unwrap();
    sso.store
        .save("bob-session-1", &session("staff", &bob), 600)
        .await
        .unwrap();
    sso.store
        .save("bob-session-2", &session("corp", "bob-at-corp"), 600)
        .await
        .unwrap();
    mfa.add(&FactorRow {
        id: "f1".into(),
        user: format!("staff:{bob}"),
        kind: "totp".into(),
        label: "phone".into(),
        secret: b"SEALED-SECRET-BYTES".to_vec(),
        created: 5,
        last_step: None,
    })
    .await
    .unwrap();
    mfa.add_device(&DeviceRow {
        id: "d1".into(),
        user: format!("staff:{bob}"),
        token_hash: "TOKEN-HASH-NEVER-SHOWN".into(),
        method: "totp".into(),
        label: "Firefox".into(),
        created: 6,
        expires: i64::MAX / 2,
        last_used: 7,
    })
    .await
    .unwrap();
    let ops = directory
        .create_group(
            "acme",
            &Group {
                display_name: "ops".into(),
                members: vec![Member {
                    id: bob.clone(),
                    kind: MemberKind::User,
                }],
                roles: vec!["operator".into()],
                source: "local".into(),
                ..Group::default()
            },
        )
        .await
        .unwrap()
        .id;
    let other_group = directory
        .create_group(
            "other",
            &Group {
                display_name: "others".into(),
                source: "local".into(),
                ..Group::default()
            },
        )
        .await
        .unwrap()
        .id;
    let lifecycle = Lifecycle {
        store: directory.clone(),
        audit: audit.clone(),
        revoker: Some(sso.clone() as Arc<dyn crate::directory::SessionRevoker>),
        mfa: Some(mfa.clone()),
        settings: Default::default(),
    };
    let api = Api {
        directory,
        lifecycle,
        sso,
        mfa: Some(mfa),
        credentials,
        audit,
        clock: Clock::system(),
    };
    let mut f = Fixture {
        api,
        chain,
        ids,
        ops,
        other_group,
    };
    drain(&mut f.chain);
    f
}

fn drain(chain: &mut Chain) -> Vec<crate::audit::chain::Event> {
    std::iter::from_fn(|| chain.try_recv().ok())
        .map(|(e, _)| e)
        .collect()
}

impl Fixture {
    async fn admin(&self, who: &str) -> Admin {
        let identity = Identity {
            user: who.into(),
            claims: [(
                crate::directory::signin::DIRECTORY_ID_CLAIM.to_string(),
                json!(self.ids[who]),
            )]
            .into_iter()
            .collect(),
            ..Default::default()
        };
        self.api.admin_of(&identity, CSRF).await.unwrap()
    }
}

fn get(path: &str) -> LocalRequest {
    LocalRequest::new(Method::GET, &format!("{PREFIX}{path}"))
}

/// A same-origin JSON POST with the session's token: what the console sends.
fn post(path: &str, body: &str) -> LocalRequest {
    let mut r = LocalRequest::new(Method::POST, &format!("{PREFIX}{path}"));
    r.headers
        .insert("content-type", "application/json".parse().unwrap());
    r.headers
        .insert("origin", "https://gateway.test".parse().unwrap());
    r.headers.insert("x-csrf-token", CSRF.parse().unwrap());
    r.body = Ok(body.as_bytes().to_vec());
    r
}

async fn call(api: &Api, admin: &Admin, req: &LocalRequest) -> (u16, Value) {
    let r = api.serve(admin, req).await;
    assert_eq!(r.content_type, "application/json");
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    (r.status, v)
}

#[tokio::test]
async fn the_admin_is_an_active_directory_user_bound_to_their_tenant() {
    for (db_name, db, _dir) in databases().await {
        let f = fixture(db).await;
        let root = f.admin("root").await;
        assert_eq!(root.tenant, None, "{db_name}");
        assert_eq!(root.csrf, CSRF);
        let ann = f.admin("ann").await;
        assert_eq!(ann.tenant.as_deref(), Some("acme"));
        // No directory id in the session: not an admin the API can act for.
        let anon = Identity {
            user: "x".into(),
            ..Default::default()
        };
        assert!(matches!(
            f.api.admin_of(&anon, CSRF).await,
            Err(ApiError::Forbidden)
        ));
        // A token that says another tenant than the directory does: refused.
        let mut lying = Identity {
            user: "ann".into(),
            tenant: Some("other".into()),
            ..Default::default()
        };
        lying.claims.insert(
            crate::directory::signin::DIRECTORY_ID_CLAIM.into(),
            json!(f.ids["ann"]),
        );
        assert!(matches!(
            f.api.admin_of(&lying, CSRF).await,
            Err(ApiError::Forbidden)
        ));
        // A disabled admin's old session (say its revocation failed) is nobody's.
        f.api
            .directory
            .set_user_active("acme", &f.ids["ann"], false)
            .await
            .unwrap();
        lying.tenant = None;
        assert!(matches!(
            f.api.admin_of(&lying, CSRF).await,
            Err(ApiError::Unauthenticated)
        ));
    }
}

#[tokio::test]
async fn lists_search_page_and_stay_in_the_admins_tenant() {
    for (db_name, db, _dir) in databases().await {
        let mut f = fixture(db).await;
        let root = f.admin("root").await;
        let ann = f.admin("ann").await;
        let (s, v) = call(&f.api, &root, &get("users")).await;
        assert_eq!(s, 200, "{db_name}: {v}");
        assert_eq!(v["users"].as_array().unwrap().len(), 4, "all tenants");
        assert_eq!(v["next_cursor"], Value::Null);
        let (_, v) = call(&f.api, &ann, &get("users")).await;
        let names: Vec<&str> = v["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["userName"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["ann", "bob"], "only acme");
        // Another tenant, asked for by a tenant admin, does not exist for them.
        let (s, _) = call(&f.api, &ann, &get("users?tenant=other")).await;
        assert_eq!(s, 404);
        let (_, v) = call(&f.api, &root, &get("users?tenant=other")).await;
        assert_eq!(v["users"][0]["userName"], "eve");
        // Search by userName, display name or email prefix, case-insensitively.
        for q in ["BO", "bob%20ex", "bob%40example"] {
            let (_, v) = call(&f.api, &root, &get(&format!("users?q={q}"))).await;
            assert_eq!(v["users"].as_array().unwrap().len(), 1, "{q}: {v}");
            assert_eq!(v["users"][0]["userName"], "bob");
        }
        let (_, v) = call(&f.api, &root, &get("users?q=%25")).await;
        assert!(
            v["users"].as_array().unwrap().is_empty(),
            "% is a character"
        );
        let long = "a".repeat(super::paging::MAX_QUERY + 1);
        let (s, _) = call(&f.api, &root, &get(&format!("users?q={long}"))).await;
        assert_eq!(s, 400);
        let (s, _) = call(&f.api, &root, &get("users?active=maybe")).await;
        assert_eq!(s, 400);
        f.api
            .directory
            .set_user_active("other", &f.ids["eve"], false)
            .await
            .unwrap();
        let (_, v) = call(&f.api, &root, &get("users?active=false")).await;
        assert_eq!(v["users"][0]["userName"], "eve");
        // Pages of two, following the cursor, cover everyone once.
        let mut seen = Vec::new();
        let mut url = "users?limit=2".to_string();
        loop {
            let (s, v) = call(&f.api, &root, &get(&url)).await;
            assert_eq!(s, 200);
            for u in v["users"].as_array().unwrap() {
                seen.push(u["userName"].as_str().unwrap().to_string());
            }
            match v["next_cursor"].as_str() {
                Some(c) => url = format!("users?limit=2&cursor={c}"),
                None => break,
            }
        }
        assert_eq!(seen, ["root", "ann", "bob", "eve"]);
        for bad in ["users?limit=201", "users?limit=0", "users?cursor=%21%21"] {
            let (s, _) = call(&f.api, &root, &get(bad)).await;
            assert_eq!(s, 400, "{bad}");
        }
        // Groups: the tenant admin sees acme's only.
        let (_, v) = call(&f.api, &ann, &get("groups")).await;
        assert_eq!(v["groups"].as_array().unwrap().len(), 1);
        assert_eq!(v["groups"][0]["roles"], json!(["operator"]));
        assert_eq!(v["groups"][0]["members"], 1);
        let (_, v) = call(&f.api, &root, &get("groups?q=oth")).await;
        assert_eq!(v["groups"][0]["displayName"], "others");
        let (s, v) = call(&f.api, &ann, &get(&format!("groups/{}", f.ops))).await;
        assert_eq!(s, 200);
        assert_eq!(v["members"], json!([{"id": f.ids["bob"], "type": "User"}]));
        // Every call is recorded, reads and refusals included, with actor and outcome.
        let events = drain(&mut f.chain);
        assert_eq!(events.len(), 19, "one event per call");
        assert!(events.iter().all(|e| e.kind.starts_with("console.")));
        let refused = events
            .iter()
            .find(|e| e.data["outcome"] == "not_found")
            .unwrap();
        assert_eq!(refused.kind, "console.users_listed");
        assert_eq!(refused.actor.as_deref(), Some("ann"));
        assert_eq!(refused.data["tenant"], "acme");
    }
}

#[tokio::test]
async fn a_user_in_detail_shows_groups_roles_links_sessions_factors_and_devices_never_secrets() {
    for (db_name, db, _dir) in databases().await {
        let f = fixture(db).await;
        let ann = f.admin("ann").await;
        let (s, v) = call(&f.api, &ann, &get(&format!("users/{}", f.ids["bob"]))).await;
        assert_eq!(s, 200, "{db_name}: {v}");
        assert_eq!(v["groups"], json!(["ops"]));
        assert_eq!(v["roles"], json!(["operator"]));
        assert_eq!(v["local_password"], true);
        assert_eq!(v["links"].as_array().unwrap().len(), 2);
        let sessions = v["sessions"].as_array().unwrap();
        assert_eq!(sessions.len(), 2, "{v}");
        assert!(sessions
            .iter()
            .any(|s| s["id"] == super::users::session_label("bob-session-1")));
        assert_eq!(v["mfa_factors"][0]["kind"], "totp");
        assert_eq!(v["mfa_factors"][0]["label"], "phone");
        assert_eq!(v["remembered_devices"][0]["label"], "Firefox");
        let text = v.to_string();
        for secret in [
            "bob-session-1",
            "bob-session-2",
            "SEALED",
            "U0VBTEVE",
            "TOKEN-HASH",
            "argon2",
        ] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
    }
}

#[tokio::test]
async fn another_tenants_ids_read_as_not_found_on_every_endpoint_and_change_nothing() {
    for (db_name, db, _dir) in databases().await {
        let f = fixture(db).await;
        let ann = f.admin("ann").await;
        let eve = f.ids["eve"].clone();
        let calls = [
            get(&format!("users/{eve}")),
            get(&format!("groups/{}", f.other_group)),
            post(&format!("users/{eve}/disable"), "{}"),
            post(&format!("users/{eve}/enable"), "{}"),
            post(&format!("users/{eve}/sessions/revoke"), "{}"),
            post(&format!("users/{eve}/password"), r#"{"generate":true}"#),
            get("users/no-such-id"),
        ];
        for req in &calls {
            let (s, v) = call(&f.api, &ann, req).await;
            assert_eq!(s, 404, "{db_name} {}: {v}", req.path);
            assert_eq!(v["error"], "not_found");
        }
        assert!(
            f.api
                .directory
                .get_user("other", &eve)
                .await
                .unwrap()
                .active
        );
        // The admin of every tenant reaches it.
        let root = f.admin("root").await;
        let (s, _) = call(&f.api, &root, &get(&format!("users/{eve}"))).await;
        assert_eq!(s, 200);
    }
}

#[tokio::test]
async fn state_changes_need_post_json_same_origin_and_the_csrf_token() {
    for (db_name, db, _dir) in databases().await {
        let f = fixture(db).await;
        let root = f.admin("root").await;
        let path = format!("users/{}/sessions/revoke", f.ids["bob"]);
        let refused = |r: LocalRequest, status: u16, code: &'static str| (r, status, code);
        let mut cases = Vec::new();
        cases.push(refused(get(&path), 405, "method_not_allowed"));
        let mut r = post(&path, "{}");
        r.headers.remove("content-type");
        cases.push(refused(r, 415, "unsupported_media_type"));
        // What a plain HTML form on another site can send.
        for ct in [
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "text/plain",
            "application/json-seq",
        ] {
            let mut r = post(&path, "{}");
            r.headers.insert("content-type", ct.parse().unwrap());
            cases.push(refused(r, 415, "unsupported_media_type"));
        }
        for origin in [
            "https://evil.test",
            "null",
            "https://gateway.test.evil.test",
        ] {
            let mut r = post(&path, "{}");
            r.headers.insert("origin", origin.parse().unwrap());
            cases.push(refused(r, 403, "cross_origin"));
        }
        let mut r = post(&path, "{}");
        r.headers.remove("x-csrf-token");
        cases.push(refused(r, 403, "csrf"));
        for token in [
            "",
            "wrong",
            "csrf-token-of-the-admin-sessioN",
            &CSRF[..CSRF.len() - 1],
        ] {
            let mut r = post(&path, "{}");
            r.headers.insert("x-csrf-token", token.parse().unwrap());
            cases.push(refused(r, 403, "csrf"));
        }
        let mut r = post(&path, "{}");
        r.headers.append("x-csrf-token", "wrong".parse().unwrap());
        cases.push(refused(r, 403, "csrf"));
        let mut r = post(&path, "{}");
        r.body = Err(crate::local_request::BodyError::TooLarge);
        cases.push(refused(r, 413, "body_too_large"));
        for (req, status, code) in cases {
            let (s, v) = call(&f.api, &root, &req).await;
            assert_eq!(
                (s, v["error"].as_str()),
                (status, Some(code)),
                "{db_name}: {req:?}"
            );
        }
        assert_eq!(
            f.api
                .sso
                .store
                .sessions_of("staff", &f.ids["bob"])
                .await
                .unwrap()
                .len(),
            1,
            "nothing refused was done"
        );
        // No Origin header at all (some clients) is fine with the token; JSON with a charset too.
        let mut r = post(&path, "{}");
        r.headers.remove("origin");
        r.headers.insert(
            "content-type",
            "Application/JSON; charset=utf-8".parse().unwrap(),
        );
        let (s, v) = call(&f.api, &root, &r).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["sessions_ended"], 2, "both linked identities' sessions");
        let r = f.api.serve(&root, &get("users")).await;
        let allow = f.api.serve(&root, &post("users", "{}")).await;
        assert_eq!(r.status, 200);
        assert_eq!(allow.status, 405);
        assert!(allow.headers.contains(&("allow".into(), "GET".into())));
    }
}

#[tokio::test]
async fn path_tricks_find_nothing() {
    for (db_name, db, _dir) in databases().await {
        let mut f = fixture(db).await;
        let root = f.admin("root").await;
        for p in [
            "users/",
            "Users",
            "users//x",
            "users/x/disable/",
            "users/x/sessions",
            "users/x/sessions/revoke/all",
            "",
            "me/",
        ] {
            let (s, v) = call(&f.api, &root, &get(p)).await;
            assert_eq!(s, 404, "{db_name} {p:?}: {v}");
        }
        let events = drain(&mut f.chain);
        assert_eq!(events.len(), 8);
        assert!(events.iter().all(|e| e.kind == "console.refused"));
        assert_eq!(events[0].data["target"], format!("{PREFIX}users/"));
    }
}

#[tokio::test]
async fn disable_and_enable_go_through_the_lifecycle_and_an_admin_cannot_disable_themselves() {
    for (db_name, db, _dir) in databases().await {
        let mut f = fixture(db).await;
        let ann = f.admin("ann").await;
        let (s, v) = call(
            &f.api,
            &ann,
            &post(&format!("users/{}/disable", f.ids["ann"]), "{}"),
        )
        .await;
        assert_eq!(
            (s, v["error"].as_str()),
            (409, Some("self_disable")),
            "{db_name}"
        );
        assert!(
            f.api
                .directory
                .get_user("acme", &f.ids["ann"])
                .await
                .unwrap()
                .active
        );
        let bob = f.ids["bob"].clone();
        let (s, v) = call(&f.api, &ann, &post(&format!("users/{bob}/disable"), "{}")).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["user"]["active"], false);
        assert_eq!(v["sessions_ended"], 2);
        assert!(f
            .api
            .sso
            .store
            .load("bob-session-1")
            .await
            .unwrap()
            .is_none());
        let kinds: Vec<(String, Option<String>)> = drain(&mut f.chain)
            .into_iter()
            .map(|e| (e.kind, e.actor))
            .collect();
        assert!(kinds.contains(&(
            "directory.user_deprovisioned".into(),
            Some("console:ann".into())
        )));
        assert!(kinds.contains(&("console.user_disabled".into(), Some("ann".into()))));
        assert!(kinds.iter().any(|(k, _)| k == "session.revoked"));
        let (s, v) = call(&f.api, &ann, &post(&format!("users/{bob}/enable"), "{}")).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["user"]["active"], true);
        let kinds: Vec<String> = drain(&mut f.chain).into_iter().map(|e| e.kind).collect();
        assert_eq!(kinds, ["directory.user_updated", "console.user_enabled"]);
    }
}

#[tokio::test]
async fn a_password_reset_replaces_the_hash_ends_sessions_and_shows_a_generated_one_once() {
    for (db_name, db, _dir) in databases().await {
        let mut f = fixture(db).await;
        let root = f.admin("root").await;
        let bob = f.ids["bob"].clone();
        let path = format!("users/{bob}/password");
        for (body, status, code) in [
            (r#"{"password":"short"}"#, 400, "password_rules"),
            (r#"{"password":"BOB"}"#, 400, "password_rules"),
            (
                r#"{"password":"a long new password","generate":true}"#,
                400,
                "bad_request",
            ),
            (r#"{}"#, 400, "bad_request"),
            (
                r#"{"password":"a long new password","admin":true}"#,
                400,
                "bad_request",
            ),
            ("not json", 400, "bad_request"),
        ] {
            let (s, v) = call(&f.api, &root, &post(&path, body)).await;
            assert_eq!(
                (s, v["error"].as_str()),
                (status, Some(code)),
                "{db_name} {body}"
            );
        }
        // Users without a local password are not local accounts.
        let (s, v) = call(
            &f.api,
            &root,
            &post(
                &format!("users/{}/password", f.ids["eve"]),
                r#"{"generate":true}"#,
            ),
        )
        .await;
        assert_eq!((s, v["error"].as_str()), (409, Some("not_local_account")));
        drain(&mut f.chain);

        let (s, v) = call(
            &f.api,
            &root,
            &post(&path, r#"{"password":"bob's new password"}"#),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["sessions_ended"], 2);
        assert!(
            v.get("password").is_none(),
            "a chosen password is not echoed"
        );
        let h = f.api.credentials.hash_of(&bob).await.unwrap();
        assert!(crate::password::verify("bob's new password", h.as_deref()));

        let (s, v) = call(&f.api, &root, &post(&path, r#"{"generate":true}"#)).await;
        assert_eq!(s, 200);
        let generated = v["password"].as_str().unwrap().to_string();
        assert_eq!(generated.len(), 24);
        let h = f.api.credentials.hash_of(&bob).await.unwrap();
        assert!(crate::password::verify(&generated, h.as_deref()));
        let events = drain(&mut f.chain);
        let resets: Vec<_> = events
            .iter()
            .filter(|e| e.kind == "console.user_password_reset")
            .collect();
        assert_eq!(resets.len(), 2);
        assert_eq!(resets[0].data["target"], bob.as_str());
        assert_eq!(resets[0].data["outcome"], "ok");
        let all = format!("{events:?}");
        assert!(!all.contains(&generated) && !all.contains("bob's new password"));
    }
}

#[tokio::test]
async fn me_names_the_admin_and_their_csrf_token() {
    for (_, db, _dir) in databases().await {
        let f = fixture(db).await;
        let ann = f.admin("ann").await;
        let (s, v) = call(&f.api, &ann, &get("me")).await;
        assert_eq!(s, 200);
        assert_eq!(v["user"], "ann");
        assert_eq!(v["tenant"], "acme");
        assert_eq!(v["csrf_token"], CSRF);
    }
}

async fn databases() -> Vec<(&'static str, crate::store::Db, Option<tempfile::TempDir>)> {
    crate::store::test_databases(
        "console",
        &[
            &crate::directory::MIGRATIONS,
            &crate::local::credentials::MIGRATIONS,
            &crate::mfa::store::MIGRATIONS,
        ],
    )
    .await
}
