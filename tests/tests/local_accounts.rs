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
    let w = b.walk(&format!("{}/app/x", gw.https())).await;
    assert_eq!(w.last().status, 200, "the sign-in form: {w:#?}");
    assert!(w.body.contains("name=\"password\""), "{}", w.body);
    let form = Form::parse(&w.last().url, &w.body);
    let mut fields = form.fields;
    fields.push(("username".into(), user.into()));
    fields.push(("password".into(), password.into()));
    b.walk_from(b.client.post(&form.action).form(&fields), |_| false)
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
    let found: serde_json::Value = c
        .get(format!("{scim}/Users?filter=userName%20eq%20%22alice%22"))
        .bearer_auth(SCIM_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = found["Resources"][0]["id"]
        .as_str()
        .expect("alice in the directory")
        .to_string();
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
    let b = Browser::new();
    for _ in 0..5 {
        assert_eq!(sign_in(&b, &gw, "alice", "guess").await.last().status, 401);
    }
    let w = sign_in(&b, &gw, "alice", PASSWORD).await;
    assert_eq!(w.last().status, 429, "locked even with the right password");
    assert!(w.body.contains("Too many attempts"));
}
