//! The quick start: `portcullis run` with no config serves the embedded `config.example.yaml`
//! (demo upstream in-process, a local account `demo` created at start) and a browser signs in
//! with the printed password, then enrols an authenticator app on the way to `/admin`. Uses the example's fixed ports (8443, 8080, 9090, 9000), which no
//! other test uses.

use portcullis_e2e::oidc::{Browser, Form};
use portcullis_e2e::totp::{base32_decode, field, fresh_step, now, totp};
use portcullis_e2e::*;
use std::time::Duration;

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_embedded_config_signs_in_the_demo_user() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr.log");
    let password = "quick-start-password-0123";
    let _gw = Killed(
        std::process::Command::new(bin())
            .arg("run")
            .current_dir(dir.path())
            .env("PORTCULLIS_DEMO_PASSWORD", password)
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for_port(8443, Duration::from_secs(30));
    wait_for_port(9000, Duration::from_secs(30));
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(
        logs.contains("sign in at https://localhost:8443/admin/ as demo"),
        "{logs}"
    );
    assert!(
        dir.path().join("portcullis-data/portcullis.db").exists(),
        "store under data_dir"
    );

    let b = Browser::new();
    let w = b.walk("https://127.0.0.1:8443/admin/").await;
    assert_eq!(w.last().status, 200, "{w:#?}");
    let form = Form::parse(&w.last().url, &w.body);
    let mut fields = form.fields;
    fields.push(("username".into(), "demo".into()));
    fields.push(("password".into(), password.into()));
    let w = b
        .walk_from(b.client.post(&form.action).form(&fields), |_| false)
        .await;
    // `/admin` needs an authenticator app: the first visit enrols one (the key that seals it
    // was created under portcullis-data at start).
    assert_eq!(w.last().status, 200, "{w:#?}");
    assert!(
        dir.path().join("portcullis-data/mfa.key").exists(),
        "MFA key created under data_dir"
    );
    let secret = base32_decode(field(&w.body, "totp-secret"));
    fresh_step(5).await;
    let w = b
        .post_code(&w.last().url, &w.body, &totp(&secret, now()))
        .await;
    assert!(w.body.contains("id=\"recovery-codes\""), "{w:#?}");
    let next = w
        .body
        .split("<a href=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a Continue link")
        .replace("&amp;", "&");
    let w = b.walk(&next).await;
    assert_eq!(w.last().status, 200, "{w:#?}");
    let seen: serde_json::Value = serde_json::from_str(&w.body).expect("whoami JSON");
    assert_eq!(seen["headers"]["x-portcullis-user"][0], "demo", "{seen}");
    assert_eq!(
        seen["headers"]["x-portcullis-groups"][0], "admins",
        "{seen}"
    );
}
