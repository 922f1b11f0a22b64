//! A real headless Chromium (Debian `chromium`, driven by npm `playwright-core`) completes one
//! login against the real OpenID Provider and lands on the app behind the gateway. The
//! screenshot is kept at `target/test-artifacts/chromium-login.png` (not in git).

use portcullis_e2e::oidc::*;
use portcullis_e2e::*;
use std::process::Command;

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
    let artifacts =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("chromium-login.png");
    let _ = std::fs::remove_file(&shot);
    let app = format!("https://127.0.0.1:{}/app/dashboard", ports.https);
    let out = tokio::task::spawn_blocking({
        let shot = shot.clone();
        let app = app.clone();
        move || {
            Command::new("node")
                .arg(oidc_dir().join("browser.mjs"))
                .args([app.as_str(), "alice", shot.to_str().unwrap()])
                .current_dir(oidc_dir())
                .output()
                .expect("node (tests/run installs it)")
        }
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "chromium run failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON from browser.mjs");
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
