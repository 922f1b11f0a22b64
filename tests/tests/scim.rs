//! SCIM 2.0 against the real gateway: the PyPI `scim2-tester` compliance suite (discovery,
//! create/read/replace/patch/delete of Users and Groups, attribute projection), then what a
//! provisioning client's token must never do over the wire (plain HTTP, another tenant).

use portcullis_e2e::*;
use std::path::PathBuf;
use std::process::Command;

const TOKEN_A: &str = "scim-token-tenant-a-0123456789";

fn config(dir: &std::path::Path) -> String {
    format!(
        "{SERVER}store: \"sqlite://{}/portcullis.db\"
directory:
  scim: {{ tokens: [\"{TOKEN_A}\"] }}
routes:
  - {{ id: app, path: /, upstream: \"http://127.0.0.1:9\", policy: public }}
",
        dir.display()
    )
}

/// The venv `tests/run` creates with `tests/scim/requirements.txt`.
fn python() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/scim-venv/bin/python");
    if !p.exists() {
        assert!(
            std::env::var("CI").is_err(),
            "CI must run the SCIM compliance suite: tests/run creates target/scim-venv"
        );
    }
    p
}

#[test]
fn scim2_tester_finds_no_violation() {
    let py = python();
    if !py.exists() {
        eprintln!("target/scim-venv missing: skipping scim2-tester (run ./tests/run)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&config(dir.path()));
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scim/check.py");
    let out = Command::new(&py)
        .arg(&script)
        .arg(format!("{}/.portcullis/scim/v2", gw.https()))
        .arg(TOKEN_A)
        .arg("-")
        .output()
        .expect("run scim2-tester");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary = stdout.lines().last().unwrap_or_default();
    let failed: Vec<&str> = stdout
        .lines()
        .filter(|l| {
            ["\"ERROR\"", "\"CRITICAL\"", "\"DEVIATION\""]
                .iter()
                .any(|s| l.contains(s))
        })
        .collect();
    assert!(
        out.status.success(),
        "scim2-tester: {summary}\n{}\n{stderr}\ngateway log:\n{}",
        failed.join("\n"),
        gw.proc.logs()
    );
    let total: serde_json::Value = serde_json::from_str(summary).expect("summary line");
    assert!(
        total["total"].as_u64().unwrap_or(0) >= 20,
        "ran the suite: {summary}"
    );
}

#[tokio::test]
async fn tokens_never_travel_in_clear_and_stay_in_their_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&config(dir.path()));
    let c = client(None);
    let users = |base: String| format!("{base}/.portcullis/scim/v2/Users");
    // Plain HTTP: refused before the token is even looked at.
    let r = c
        .get(users(format!("http://127.0.0.1:{}", gw.ports.http)))
        .bearer_auth(TOKEN_A)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = c.get(users(gw.https())).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["content-type"],
        "application/scim+json",
        "errors in the SCIM error schema"
    );
    let r = c
        .post(users(gw.https()))
        .bearer_auth(TOKEN_A)
        .header("content-type", "application/scim+json")
        .body(r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"e2e"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert!(r.headers().contains_key("etag"));
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with(&users(gw.https())));
    // A body over 1 MiB is refused from its Content-Length.
    let r = c
        .post(users(gw.https()))
        .bearer_auth(TOKEN_A)
        .body(vec![b' '; 1024 * 1024 + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
}
