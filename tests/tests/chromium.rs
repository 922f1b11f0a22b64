//! A real headless Chromium (Debian `chromium`, driven by npm `playwright-core`) completes one
//! login against the real OpenID Provider and lands on the app behind the gateway; and signs in
//! with a local account and enrols an authenticator app on the way to a route that needs it.
//! Screenshots are kept under `target/test-artifacts/` (not in git).

use portcullis_e2e::oidc::*;
use portcullis_e2e::*;
use std::process::Command;

fn artifact(name: &str) -> std::path::PathBuf {
    let artifacts =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join(name);
    let _ = std::fs::remove_file(&shot);
    shot
}

/// Runs `tests/oidc/<script>` with `args`; its JSON answer.
async fn browser(script: &str, args: Vec<String>) -> serde_json::Value {
    let script = oidc_dir().join(script);
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .args(args)
            .current_dir(oidc_dir())
            .output()
            .expect("node (tests/run installs it)")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "chromium run failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from the browser script")
}

#[tokio::test(flavor = "multi_thread")]
async fn headless_chromium_signs_in_and_lands_on_the_app() {
    let ports = Ports::fresh();
    let up = Whoami::start("app");
    let op = OpenIdProvider::start(&[ports.https], None, 3600);
    let _gw = Gateway::start_on(
        ports,
        &format!(
            "{SERVER}session:
  keys: [\"{SESSION_KEY}\"]
identity_providers:
  - {{ id: corp, type: oidc, issuer: \"{}\", client_id: {CLIENT_ID}, client_secret: {CLIENT_SECRET}, scopes: [openid, email, groups] }}
routes:
  - {{ id: app, path: /app, upstream: \"{}\", policy: authenticated }}
",
            op.issuer,
            up.url()
        ),
    );
    let shot = artifact("chromium-login.png");
    let app = format!("https://127.0.0.1:{}/app/dashboard", ports.https);
    let args = vec![app.clone(), "alice".into(), shot.display().to_string()];
    let r = browser("browser.mjs", args).await;
    assert_eq!(r["url"], app.as_str());
    let page = whoami_json(r["body"].as_str().unwrap());
    assert_eq!(
        page["headers"]["x-portcullis-user"],
        serde_json::json!(["alice"])
    );
    let session = r["cookies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "__Host-portcullis")
        .expect("session cookie in the browser");
    assert_eq!(session["secure"], true);
    assert_eq!(session["httpOnly"], true);
    assert_eq!(session["sameSite"], "Lax");
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 1000,
        "screenshot written"
    );
}

/// The quick start's path in a real browser: a local account signs in with its password, is
/// sent to enrol an authenticator app because the route needs one, types the code, keeps its
/// recovery codes, and lands on the route (which only a session with a TOTP factor passes).
#[tokio::test(flavor = "multi_thread")]
async fn headless_chromium_signs_in_with_a_local_account_and_enrols_totp() {
    const PASSWORD: &str = "correct horse battery staple";
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.yaml");
    std::fs::write(
        &users,
        format!(
            "users:\n  - {{ user_name: alice, password_hash: \"{}\", groups: [admins] }}\n",
            hash_password(PASSWORD)
        ),
    )
    .unwrap();
    let up = Whoami::start("app");
    let gw = Gateway::start(&format!(
        "{SERVER}store: \"sqlite://{d}/portcullis.db\"
session: {{ keys: [\"{SESSION_KEY}\"] }}
identity_providers:
  - {{ id: staff, type: local }}
directory: {{ users_file: \"{u}\" }}
mfa:
  encryption_key: \"CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=\"
  totp: {{ issuer: Acme }}
routes:
  - id: app
    path: /app
    upstream: \"{up}\"
    policy: {{ allow: [ {{ all: [ {{ groups: [admins] }}, {{ mfa: {{ methods: [totp] }} }} ] }} ] }}
",
        d = dir.path().display(),
        u = users.display(),
        up = up.url()
    ));
    let shot = artifact("chromium-local-mfa.png");
    let app = format!("{}/app/dashboard", gw.https());
    let args = vec![
        app.clone(),
        "alice".into(),
        PASSWORD.into(),
        shot.display().to_string(),
    ];
    let r = browser("local_mfa.mjs", args).await;
    assert_eq!(r["url"], app.as_str());
    assert_eq!(r["recovery_codes"].as_array().unwrap().len(), 10, "{r}");
    let page = whoami_json(r["body"].as_str().unwrap());
    assert_eq!(
        page["headers"]["x-portcullis-user"],
        serde_json::json!(["alice"])
    );
    assert_eq!(
        page["headers"]["x-portcullis-groups"],
        serde_json::json!(["admins"])
    );
    assert!(std::fs::metadata(&shot).unwrap().len() > 1000);
}

#[tokio::test(flavor = "multi_thread")]
async fn headless_chromium_signs_in_over_saml_with_the_cross_site_post() {
    use portcullis_e2e::saml::{python, SamlIdp};
    let Some(py) = python() else { return };
    let up = Whoami::start("app");
    let idp = SamlIdp::start(&py);
    let d = idp.dir.path().display();
    let gw = Gateway::start(&format!(
        "{SERVER}session:
  keys: [\"{SESSION_KEY}\"]
identity_providers:
  - {{ id: partner, type: saml, idp_metadata_file: {d}/idp.xml, sp_entity_id: https://gw.test/saml, sp_key_file: {d}/sp.key, sp_cert_file: {d}/sp.crt }}
routes:
  - {{ id: app, path: /app, upstream: \"{}\", policy: authenticated }}
",
        up.url()
    ));
    let md = Browser::new()
        .client
        .get(format!("{}/.portcullis/saml/metadata", gw.https()))
        .send()
        .await
        .unwrap();
    idp.trust_sp(&md.text().await.unwrap());
    let shot = artifact("chromium-saml-login.png");
    let app = format!("{}/app/dashboard", gw.https());
    let r = browser(
        "saml_browser.mjs",
        vec![app.clone(), shot.display().to_string()],
    )
    .await;
    assert_eq!(r["url"], app.as_str(), "{}", gw.proc.logs());
    let page = whoami_json(r["body"].as_str().unwrap());
    assert_eq!(
        page["headers"]["x-portcullis-user"],
        serde_json::json!(["alice@example.com"])
    );
    let session = r["cookies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "__Host-portcullis")
        .expect("session cookie in the browser");
    assert_eq!(session["secure"], true);
    assert_eq!(session["sameSite"], "Lax");
}
