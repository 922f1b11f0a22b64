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

/// Replays the request sequences a real provisioning client sends, from its documentation
/// (`tests/scim/replay/{entra,okta}.json`: method, path, body, the statuses the client accepts,
/// JSON pointers it relies on, ids captured for later steps), against the real gateway.
#[tokio::test]
async fn entra_and_okta_request_sequences_replay_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&config(dir.path()));
    let c = client(None);
    let base = format!("{}/.portcullis/scim/v2", gw.https());
    let mut failures = Vec::new();
    for client_name in ["entra", "okta"] {
        let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(format!("scim/replay/{client_name}.json"));
        let script: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let mut ids = std::collections::HashMap::<String, String>::new();
        let fill = |text: &str, ids: &std::collections::HashMap<String, String>| {
            ids.iter().fold(text.to_string(), |t, (k, v)| {
                t.replace(&format!("{{{k}}}"), v)
            })
        };
        for step in script["steps"].as_array().unwrap() {
            let name = format!("{client_name}: {}", step["name"].as_str().unwrap());
            let path = fill(step["path"].as_str().unwrap(), &ids)
                .replace(' ', "%20")
                .replace('"', "%22");
            let method: reqwest::Method = step["method"].as_str().unwrap().parse().unwrap();
            let mut req = c
                .request(method, format!("{base}{path}"))
                .bearer_auth(TOKEN_A);
            if !step["body"].is_null() {
                req = req
                    .header("content-type", "application/scim+json")
                    .body(fill(&step["body"].to_string(), &ids));
            }
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let text = r.text().await.unwrap();
            let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            let allowed: Vec<u64> = step["status"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(serde_json::Value::as_u64)
                .collect();
            if !allowed.contains(&u64::from(status)) {
                failures.push(format!(
                    "{name}: status {status}, wanted {allowed:?}: {text}"
                ));
                continue;
            }
            for (key, pointer) in step["capture"].as_object().into_iter().flatten() {
                let v = body
                    .pointer(pointer.as_str().unwrap())
                    .and_then(|v| v.as_str());
                ids.insert(key.clone(), v.unwrap_or_default().to_string());
            }
            for (pointer, want) in step["expect"].as_object().into_iter().flatten() {
                let want: serde_json::Value =
                    serde_json::from_str(&fill(&want.to_string(), &ids)).unwrap();
                let got = body.pointer(pointer).cloned().unwrap_or_default();
                if got != want {
                    failures.push(format!("{name}: {pointer} is {got}, wanted {want}"));
                }
            }
            if let Some(members) = step["members"].as_array() {
                let mut want: Vec<String> = members
                    .iter()
                    .map(|m| fill(m.as_str().unwrap(), &ids))
                    .collect();
                let mut got: Vec<String> = body["members"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|m| m["value"].as_str().map(str::to_string))
                    .collect();
                want.sort();
                got.sort();
                if got != want {
                    failures.push(format!("{name}: members {got:?}, wanted {want:?}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
