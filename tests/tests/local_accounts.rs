//! Local accounts end to end: a user seeded from `directory.users_file` signs in with a
//! password at `/.portcullis/login` and reaches the app with the directory's groups; the form
//! is CSRF-bound, answers unknown users and wrong passwords alike, locks after five failures;
//! deprovisioning through SCIM ends the session and refuses the next sign-in.

use portcullis_e2e::oidc::{Browser, Form, Walk};
use portcullis_e2e::*;

const SCIM_TOKEN: &str = "scim-token-local-accounts-0123";
const PASSWORD: &str = "correct horse battery staple";

fn config(dir: &std::path::Path, up: &str) -> String {
    let users = dir.join("users.yaml");
    std::fs::write(
        &users,
        format!(
            "users:\n  - {{ user_name: alice, password_hash: \"{}\", email: alice@example.com, groups: [admins] }}\n",
            hash_password(PASSWORD)
        ),
    )
    .unwrap();
    format!(
        "{SERVER}store: \"sqlite://{d}/portcullis.db\"
session: {{ keys: [\"AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=\"] }}
identity_providers:
  - {{ id: staff, type: local }}
directory:
  users_file: \"{u}\"
  scim: {{ tokens: [\"{SCIM_TOKEN}\"] }}
routes:
  - {{ id: app, path: /app, upstream: \"{up}\", policy: {{ allow: [ {{ groups: [admins] }} ] }} }}
",
        d = dir.display(),
        u = users.display()
    )
}

async fn sign_in(b: &Browser, gw: &Gateway, user: &str, password: &str) -> Walk {
    b.password_sign_in(&format!("{}/app/x", gw.https()), user, password)
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn seeded_user_signs_in_and_deprovisioning_ends_it() {
    let dir = tempfile::tempdir().unwrap();
    let up = Whoami::start("app");
    let gw = Gateway::start(&config(dir.path(), &up.url()));

    // Unknown user and wrong password: the same answer.
    let b = Browser::new();
    let unknown = sign_in(&b, &gw, "mallory", PASSWORD).await;
    let wrong = sign_in(&b, &gw, "alice", "not the password").await;
    assert_eq!(unknown.last().status, 401, "{unknown:#?}");
    assert_eq!(wrong.last().status, 401);
    assert!(unknown.body.contains("Invalid username or password"));
    assert!(wrong.body.contains("Invalid username or password"));

    // A POST without this browser's form (another site, or no cookie) is refused unchecked.
    let stranger = Browser::new();
    let r = stranger
        .client
        .post(format!("{}/.portcullis/login", gw.https()))
        .form(&[
            ("state", "forged"),
            ("username", "alice"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // The right password: to the app, with the directory's group.
    let w = sign_in(&b, &gw, "alice", PASSWORD).await;
    assert_eq!(w.last().status, 200, "{w:#?}");
    let seen: serde_json::Value =
        serde_json::from_str(&w.body).unwrap_or_else(|e| panic!("{e}: {w:#?}\n{}", w.body));
    assert_eq!(seen["headers"]["x-portcullis-user"][0], "alice", "{seen}");
    assert!(
        seen["headers"]["x-portcullis-groups"][0]
            .as_str()
            .unwrap_or_default()
            .contains("admins"),
        "{seen}"
    );

    // SCIM deactivates alice: her session ends at once and she cannot sign in again.
    let c = client(None);
    let scim = format!("{}/.portcullis/scim/v2", gw.https());
    let id = scim_user_id(&gw, SCIM_TOKEN, "alice").await;
    let r = c
        .patch(format!("{scim}/Users/{id}"))
        .bearer_auth(SCIM_TOKEN)
        .header("content-type", "application/scim+json")
        .body(r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Replace","path":"active","value":"False"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let w = b.walk(&format!("{}/app/x", gw.https())).await;
    assert_eq!(w.last().status, 200);
    assert!(
        w.body.contains("name=\"password\""),
        "signed out: back to the form"
    );
    let again = sign_in(&b, &gw, "alice", PASSWORD).await;
    assert_eq!(
        again.last().status,
        401,
        "a deactivated user reads as a wrong password"
    );
    let logs = gw.proc.logs();
    assert!(
        logs.contains("audit directory.user_deprovisioned"),
        "{logs}"
    );
    assert!(logs.contains("audit session.revoked"), "{logs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn five_wrong_passwords_lock_the_account() {
    let dir = tempfile::tempdir().unwrap();
    let up = Whoami::start("app");
    let gw = Gateway::start(&config(dir.path(), &up.url()));
    // Signed in before the attack: the password change shares the lockout.
    let before = Browser::new();
    assert_eq!(
        sign_in(&before, &gw, "alice", PASSWORD).await.last().status,
        200
    );
    let b = Browser::new();
    for _ in 0..5 {
        assert_eq!(sign_in(&b, &gw, "alice", "guess").await.last().status, 401);
    }
    let w = sign_in(&b, &gw, "alice", PASSWORD).await;
    assert_eq!(w.last().status, 429, "locked even with the right password");
    assert!(w.body.contains("Too many attempts"));
    // Counted apart from wrong passwords: the SRE lockout alert reads this series.
    let series = |outcome: &str| {
        gw.metric(&format!(
            "portcullis_auth_events_total{{event=\"login\",idp=\"staff\",outcome=\"{outcome}\"}}"
        ))
    };
    assert_eq!(series("failure"), Some(5.0));
    assert_eq!(series("locked_out"), Some(1.0));
    let form = password_form(&before, &gw).await;
    let right = [
        ("current", PASSWORD),
        ("new", NEW_PASSWORD),
        ("confirm", NEW_PASSWORD),
    ];
    let (s, body) = change(&before, &form, &right, None).await;
    assert_eq!(s, 429, "the password change is locked too: {body}");
}

const NEW_PASSWORD: &str = "a brand new passphrase";

/// The password page's form fields and action, for a signed-in browser.
async fn password_form(b: &Browser, gw: &Gateway) -> Form {
    let url = format!("{}/.portcullis/password", gw.https());
    let w = b.walk(&url).await;
    assert_eq!(w.last().status, 200, "{w:#?}");
    assert!(
        w.body.contains("autocomplete=\"new-password\""),
        "{}",
        w.body
    );
    Form::parse(&url, &w.body)
}

async fn change(
    b: &Browser,
    form: &Form,
    fields: &[(&str, &str)],
    origin: Option<&str>,
) -> (u16, String) {
    let mut all: Vec<(String, String)> = form.fields.clone();
    all.extend(fields.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let mut req = b.client.post(&form.action).form(&all);
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_change_keeps_this_session_and_ends_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let up = Whoami::start("app");
    let gw = Gateway::start(&config(dir.path(), &up.url()));
    let url = format!("{}/.portcullis/password", gw.https());

    // Not signed in: sent to sign in first, and back here.
    let anon = Browser::new();
    let r = anon.client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 302);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert!(
        loc.contains("/.portcullis/login?rd=%2F.portcullis%2Fpassword"),
        "{loc}"
    );
    let r = anon
        .client
        .post(&url)
        .form(&[
            ("current", PASSWORD),
            ("new", NEW_PASSWORD),
            ("confirm", NEW_PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let (a, other) = (Browser::new(), Browser::new());
    assert_eq!(sign_in(&a, &gw, "alice", PASSWORD).await.last().status, 200);
    assert_eq!(
        sign_in(&other, &gw, "alice", PASSWORD).await.last().status,
        200
    );
    let form = password_form(&a, &gw).await;
    let good = [
        ("current", PASSWORD),
        ("new", NEW_PASSWORD),
        ("confirm", NEW_PASSWORD),
    ];

    // Forged: no token, a wrong token, another site's Origin.
    let stranger = Browser::new();
    assert_eq!(
        sign_in(&stranger, &gw, "alice", PASSWORD)
            .await
            .last()
            .status,
        200
    );
    let no_token = Form {
        action: form.action.clone(),
        fields: Vec::new(),
    };
    assert_eq!(change(&a, &no_token, &good, None).await.0, 403);
    let wrong = Form {
        action: form.action.clone(),
        fields: vec![("csrf".into(), "forged".into())],
    };
    assert_eq!(change(&a, &wrong, &good, None).await.0, 403);
    // Another session's token is not this one's.
    let theirs = password_form(&stranger, &gw).await;
    assert_eq!(change(&a, &theirs, &good, None).await.0, 403);
    assert_eq!(
        change(&a, &form, &good, Some("https://evil.example"))
            .await
            .0,
        403
    );

    // Rules, each with its message; nothing changes.
    for (fields, status, message) in [
        (
            [
                ("current", PASSWORD),
                ("new", NEW_PASSWORD),
                ("confirm", "something else entirely"),
            ],
            400,
            "do not match",
        ),
        (
            [
                ("current", PASSWORD),
                ("new", "too short"),
                ("confirm", "too short"),
            ],
            400,
            "at least 12",
        ),
        (
            [
                ("current", PASSWORD),
                ("new", PASSWORD),
                ("confirm", PASSWORD),
            ],
            400,
            "differ",
        ),
        (
            [
                ("current", "not the password"),
                ("new", NEW_PASSWORD),
                ("confirm", NEW_PASSWORD),
            ],
            401,
            "The current password is not right.",
        ),
        (
            [
                ("current", ""),
                ("new", NEW_PASSWORD),
                ("confirm", NEW_PASSWORD),
            ],
            401,
            "The current password is not right.",
        ),
    ] {
        let (s, body) = change(&a, &form, &fields, None).await;
        assert_eq!(s, status, "{fields:?}: {body}");
        assert!(body.contains(message), "{fields:?}: {body}");
    }
    let huge = "x".repeat(1025);
    let (s, _) = change(
        &a,
        &form,
        &[("current", PASSWORD), ("new", &huge), ("confirm", &huge)],
        None,
    )
    .await;
    assert_eq!(s, 400);

    // The change: this session continues, every other one ends.
    let (s, body) = change(&a, &form, &good, Some(&gw.https())).await;
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("Your password was changed"));
    let app = format!("{}/app/x", gw.https());
    assert_eq!(
        a.api_get(&app).await.status(),
        200,
        "this session continues"
    );
    for b in [&other, &stranger] {
        let w = b.walk(&app).await;
        assert!(w.body.contains("name=\"password\""), "signed out: {w:#?}");
    }
    let fresh = Browser::new();
    assert_eq!(
        sign_in(&fresh, &gw, "alice", PASSWORD).await.last().status,
        401
    );
    assert_eq!(
        sign_in(&fresh, &gw, "alice", NEW_PASSWORD)
            .await
            .last()
            .status,
        200
    );
    let logs = gw.proc.logs();
    assert!(logs.contains("audit auth.password_changed"), "{logs}");
    assert!(logs.contains("audit auth.password_change_failed"), "{logs}");
    assert!(!logs.contains(NEW_PASSWORD), "a password is never logged");
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_current_passwords_count_in_the_sign_in_lockout() {
    let dir = tempfile::tempdir().unwrap();
    let up = Whoami::start("app");
    let gw = Gateway::start(&config(dir.path(), &up.url()));
    let a = Browser::new();
    assert_eq!(sign_in(&a, &gw, "alice", PASSWORD).await.last().status, 200);
    let form = password_form(&a, &gw).await;
    let guess = [
        ("current", "a wrong guess"),
        ("new", NEW_PASSWORD),
        ("confirm", NEW_PASSWORD),
    ];
    for _ in 0..5 {
        assert_eq!(change(&a, &form, &guess, None).await.0, 401);
    }
    let right = [
        ("current", PASSWORD),
        ("new", NEW_PASSWORD),
        ("confirm", NEW_PASSWORD),
    ];
    let (s, body) = change(&a, &form, &right, None).await;
    assert_eq!(s, 429, "locked, even with the right password: {body}");
    let w = sign_in(&Browser::new(), &gw, "alice", PASSWORD).await;
    assert_eq!(w.last().status, 429, "the sign-in form is locked too");
}
