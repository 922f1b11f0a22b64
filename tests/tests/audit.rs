//! Audit log end to end: the gateway records config and privileged-denial events in a
//! hash-chained SQLite store, signs checkpoints, publishes its key; `portcullis audit verify`
//! passes on the untouched log, and fails (exit 1, saying what) once a record is changed;
//! `audit export` writes records with their covering checkpoints.

use portcullis_e2e::*;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn config(up: &Whoami, data: &Path) -> String {
    format!(
        "{SERVER}  data_dir: \"{}\"
routes:
  - {{ id: app, path: /, upstream: \"{}\", policy: public }}
  - {{ id: admin, path: /admin, upstream: \"{}\", policy: authenticated }}
audit:
  checkpoint_interval: 200ms
  privileged_routes: [admin]
",
        data.display(),
        up.url(),
        up.url()
    )
}

fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin())
        .args(args)
        .output()
        .expect("run portcullis");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn wait_metric(gw: &Gateway, series: &str, min: f64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while gw.metric(series).unwrap_or(0.0) < min {
        assert!(
            Instant::now() < deadline,
            "{series} < {min}\n{}",
            gw.proc.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn verify_json(store: &str, extra: &[&str]) -> (i32, serde_json::Value) {
    let mut args = vec!["audit", "verify", "--store", store, "--json"];
    args.extend_from_slice(extra);
    let (code, out, err) = cli(&args);
    let v = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    (code, v)
}

#[test]
fn events_are_chained_signed_verified_exported_and_tampering_is_caught() {
    let up = Whoami::start("u");
    let data = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}/portcullis.db", data.path().display());
    let cfg = config(&up, data.path());
    let mut gw = Gateway::start(&cfg);
    assert_eq!(
        raw_request(gw.ports.http, "GET /admin/users HTTP/1.1", &[])
            .unwrap()
            .0,
        401
    );
    assert_eq!(
        raw_request(gw.ports.http, "GET /public HTTP/1.1", &[])
            .unwrap()
            .0,
        200
    );
    // The file watcher picks the change up (a SIGHUP too would be a second, explicit attempt,
    // recorded as such); the same bad content is rejected, and audited, once.
    gw.write_config("routes: [ { id: x, upstream: \"nope\", policy: public } ]\n");
    wait_metric(
        &gw,
        "portcullis_audit_events_total{kind=\"config.rejected\"}",
        1.0,
    );
    wait_metric(
        &gw,
        "portcullis_audit_events_total{kind=\"policy.denied\"}",
        1.0,
    );
    wait_metric(&gw, "portcullis_audit_checkpoints_total", 1.0);
    let keys = raw_request(gw.ports.admin, "GET /audit/keys HTTP/1.1", &[]).unwrap();
    assert_eq!(keys.0, 200);
    let keys_json: serde_json::Value = serde_json::from_str(&keys.2).unwrap();
    let key_id = keys_json["keys"][0]["key_id"].as_str().unwrap().to_string();
    assert_eq!(keys_json["keys"][0]["alg"], "Ed25519");
    let keys_file = data.path().join("keys.json");
    std::fs::write(&keys_file, &keys.2).unwrap();
    gw.proc.signal("TERM");
    gw.proc.wait_exit(Duration::from_secs(15)).expect("exit");

    // A restart continues the same chain with the same (generated, kept) key.
    gw = Gateway::start(&cfg);
    wait_metric(
        &gw,
        "portcullis_audit_events_total{kind=\"config.loaded\"}",
        1.0,
    );
    wait_metric(&gw, "portcullis_audit_checkpoints_total", 1.0);
    gw.proc.signal("TERM");
    gw.proc.wait_exit(Duration::from_secs(15)).expect("exit");

    let (code, report) = verify_json(&store, &["--keys", keys_file.to_str().unwrap()]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["ok"], true);
    assert_eq!(report["keys_source"], "pinned");
    assert_eq!(
        report["records"], 4,
        "loaded, denied, rejected, loaded: {report}"
    );
    assert!(report["checkpoints_verified"].as_u64().unwrap() >= 2);
    assert_eq!(report["last_checkpoint"]["key_id"], key_id.as_str());
    assert_eq!(report["last_checkpoint"]["count"], 4);
    let evidence = data.path().join("evidence.json");
    std::fs::write(&evidence, report.to_string()).unwrap();

    let (code, out, err) = cli(&[
        "audit", "export", "--store", &store, "--from", "2", "--to", "3",
    ]);
    assert_eq!(code, 0, "{err}");
    let export: serde_json::Value = serde_json::from_str(&out).unwrap();
    let kinds: Vec<&str> = export["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["policy.denied", "config.rejected"]);
    let denied: serde_json::Value =
        serde_json::from_str(export["records"][0]["data"].as_str().unwrap()).unwrap();
    assert_eq!(denied["route"], "admin");
    assert_eq!(denied["path"], "/admin/users");
    assert!(export["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["count"].as_i64().unwrap() >= 3));
    assert_eq!(export["keys"][0]["key_id"], key_id.as_str());

    // Tamper: change the denial into something harmless.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&format!("{store}?mode=rw"))
            .await
            .unwrap();
        sqlx::query("UPDATE audit_log SET kind = 'auth.login' WHERE seq = 2")
            .execute(&mut c)
            .await
            .unwrap();
    });
    let (code, report) = verify_json(&store, &[]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["ok"], false);
    assert_eq!(report["problems"][0]["kind"], "changed");
    assert_eq!(report["problems"][0]["seq"], 2);
    let (code, out, _) = cli(&["audit", "verify", "--store", &store]);
    assert_eq!(code, 1);
    assert!(out.contains("TAMPERED (Changed): record 2"), "{out}");

    // Truncation that also removes the checkpoints is caught against kept evidence.
    rt.block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&format!("{store}?mode=rw"))
            .await
            .unwrap();
        sqlx::query("UPDATE audit_log SET kind = 'policy.denied' WHERE seq = 2")
            .execute(&mut c)
            .await
            .unwrap();
        sqlx::query("DELETE FROM audit_log WHERE seq = 4")
            .execute(&mut c)
            .await
            .unwrap();
        sqlx::query("DELETE FROM audit_checkpoints WHERE count = 4")
            .execute(&mut c)
            .await
            .unwrap();
    });
    assert_eq!(verify_json(&store, &[]).0, 0, "consistent with itself");
    let (code, report) = verify_json(&store, &["--expect", evidence.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(report["problems"][0]["kind"], "truncated", "{report}");

    let (code, _, err) = cli(&[
        "audit",
        "verify",
        "--store",
        "sqlite:///nonexistent/dir/x.db",
    ]);
    assert_eq!(code, 2, "an unreadable store is not a pass: {err}");
    assert!(
        !data.path().join("missing").exists(),
        "verify never creates a store"
    );
}

/// Every record of the store, as `audit export` writes them, with `data` parsed.
fn exported(store: &str) -> Vec<serde_json::Value> {
    let (code, out, err) = cli(&["audit", "export", "--store", store]);
    assert_eq!(code, 0, "{err}");
    let export: serde_json::Value = serde_json::from_str(&out).unwrap();
    export["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r["data"] = serde_json::from_str(r["data"].as_str().unwrap()).unwrap();
            r
        })
        .collect()
}

/// Findings M7 and L13: while the audit store is stalled (another writer holds SQLite's write
/// lock), an anonymous client floods a privileged route with more denials than the old bounded
/// queue held (16,384); an MFA failure after the flood must still reach the chain, and the
/// denials must all be counted (first one in full, repeats in a summary). Sign-in, a failed
/// callback and sign-out with the real OpenID Provider are chain records, not log lines only.
#[tokio::test(flavor = "multi_thread")]
async fn a_denial_flood_loses_no_security_event_and_sign_in_and_out_are_chained() {
    use portcullis_e2e::oidc::*;
    use std::io::{BufRead, Write};
    const FLOOD: usize = 18_000;
    let ports = Ports::fresh();
    let up = Whoami::start("app");
    let op = OpenIdProvider::start(&[ports.https], None, 3600);
    let data = tempfile::tempdir().unwrap();
    let db = data.path().join("portcullis.db");
    let store = format!("sqlite://{}", db.display());
    let gw = Gateway::start_on(
        ports,
        &format!(
            "{SERVER}  data_dir: \"{dir}\"
session:
  keys: [\"{SESSION_KEY}\"]
identity_providers:
  - {{ id: corp, type: oidc, issuer: \"{iss}\", client_id: {CLIENT_ID}, client_secret: {CLIENT_SECRET} }}
store: \"{store}\"
audit: {{ checkpoint_interval: 1h, privileged_routes: [admin] }}
mfa:
  encryption_key: CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=
  totp: {{ issuer: Acme }}
routes:
  - {{ id: admin, path: /admin, upstream: \"{up}\", policy: {{ allow: [ {{ mfa: {{ methods: [totp], max_age: 1h }} }} ] }} }}
  - {{ id: app, path: /app, upstream: \"{up}\", policy: authenticated }}
",
            dir = data.path().display(),
            iss = op.issuer,
            up = up.url(),
        ),
    );
    let b = Browser::new();
    let w = b.login(&format!("{}/app/x", gw.https()), "alice").await;
    assert_eq!(w.last().status, 200, "{w:#?}");
    wait_metric(
        &gw,
        "portcullis_audit_events_total{kind=\"auth.login\"}",
        1.0,
    );

    // Stall the audit writer: hold the database's write lock from another process.
    let mut lock = std::process::Command::new("sqlite3")
        .arg(&db)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sqlite3 (Debian package sqlite3)");
    let mut lock_in = lock.stdin.take().unwrap();
    writeln!(lock_in, "BEGIN IMMEDIATE;\nSELECT 'locked';").unwrap();
    let mut line = String::new();
    std::io::BufReader::new(lock.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "locked");

    // The flood: anonymous API requests to the privileged route, 16 connections at a time.
    let flood = client(None);
    let url = format!("{}/admin/secrets", gw.http());
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (c, u) = (flood.clone(), url.clone());
            tokio::spawn(async move {
                for _ in 0..FLOOD / 16 {
                    let r = c.get(&u).header("accept", "application/json").send().await;
                    assert_eq!(r.unwrap().status(), 401);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }

    // An MFA failure after the flood (wrong enrolment code), a refused callback, a logout.
    let w = b.walk(&format!("{}/admin/page", gw.https())).await;
    assert_eq!(w.last().status, 200, "MFA page: {w:#?}");
    let form = Form::parse(&w.last().url, &w.body);
    let mut fields = form.fields.clone();
    fields.push(("code".into(), "000000".into()));
    let r = b
        .client
        .post(&form.action)
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = Browser::new()
        .api_get(format!(
            "{}/.portcullis/callback?state=x&code=y",
            gw.https()
        ))
        .await;
    assert_eq!(r.status(), 401);
    assert_eq!(b.logout(&gw.https()).await.status(), 302);

    // Let the store go; everything queued is written, the repeats summarised at shutdown.
    writeln!(lock_in, "COMMIT;").unwrap();
    drop(lock_in);
    lock.wait().unwrap();
    wait_metric(
        &gw,
        "portcullis_audit_events_total{kind=\"auth.logout\"}",
        1.0,
    );
    assert_eq!(gw.metric("portcullis_audit_dropped_total"), Some(0.0));
    let mut gw = gw;
    gw.proc.signal("TERM");
    gw.proc.wait_exit(Duration::from_secs(30)).expect("exit");

    let records = exported(&store);
    let of = |kind: &str| -> Vec<&serde_json::Value> {
        records.iter().filter(|r| r["kind"] == kind).collect()
    };
    let failure = of("mfa.failure");
    assert_eq!(failure.len(), 1, "the MFA failure survived the flood");
    // MFA state is keyed by provider and subject (issue 10, M1).
    assert_eq!(failure[0]["actor"], "corp:alice");
    let login = of("auth.login");
    assert_eq!(login.len(), 1);
    assert_eq!(login[0]["actor"], "alice");
    assert_eq!(login[0]["data"]["idp"], "corp");
    assert_eq!(of("auth.logout")[0]["actor"], "alice");
    let ended = of("session.ended");
    assert_eq!(ended.len(), 1, "the logout ended one session");
    assert_eq!(ended[0]["data"]["reason"], "logout");
    let failed = of("auth.login_failed");
    assert_eq!(failed.len(), 1);
    assert!(failed[0]["data"]["reason"]
        .as_str()
        .unwrap()
        .contains("no login in progress"));
    let denied = of("policy.denied");
    assert!(
        denied.len() <= 4,
        "repeats are summarised: {}",
        denied.len()
    );
    let counted: u64 = denied
        .iter()
        .map(|r| r["data"]["repeats"].as_u64().unwrap_or(1))
        .sum();
    assert!(counted >= FLOOD as u64, "every denial counted: {counted}");
    let (code, report) = verify_json(&store, &[]);
    assert_eq!(code, 0, "{report}");
}
