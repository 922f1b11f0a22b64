//! WebAuthn step-up end to end in a real headless Chromium (Debian `chromium` driven by npm
//! `playwright-core`, `tests/oidc/webauthn.mjs`) with DevTools virtual authenticators, after a
//! real OIDC login against the real `oidc-provider`: enrolment on the MFA page, a second
//! credential, a later step-up, forged assertions and a cloned key refused with nothing
//! recorded; and the TOTP pages once through the same browser. WebAuthn needs a domain name,
//! so the browser talks to `https://localhost:PORT` (rp_id `localhost`).

use portcullis_e2e::oidc::*;
use portcullis_e2e::*;
use std::process::Command;

const MFA_KEY: &str = "CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=";

fn config(issuer: &str, up: &str, dir: &str) -> String {
    format!(
        "{SERVER}  data_dir: \"{dir}\"
session:
  keys: [\"{SESSION_KEY}\"]
identity_providers:
  - {{ id: corp, type: oidc, issuer: \"{issuer}\", client_id: {CLIENT_ID}, client_secret: {CLIENT_SECRET}, scopes: [openid, email, groups] }}
store: \"sqlite://{dir}/portcullis.db\"
audit: {{ checkpoint_interval: 1h }}
mfa:
  encryption_key: {MFA_KEY}
  totp: {{ issuer: Acme }}
  webauthn: {{ rp_id: localhost, rp_origin: \"https://localhost:{{https}}\", user_verification: required }}
  attempts: {{ per_user: 10, per_ip: 100, lockout: 1h }}
routes:
  - id: admin
    path: /admin
    upstream: \"{up}\"
    policy: {{ allow: [ {{ mfa: {{ methods: [webauthn], max_age: 1h }} }} ] }}
  - id: totp
    path: /totp
    upstream: \"{up}\"
    policy: {{ allow: [ {{ mfa: {{ methods: [totp], max_age: 1h }} }} ] }}
"
    )
}

fn user_of(body: &serde_json::Value) -> serde_json::Value {
    whoami_json(body.as_str().expect("page body"))["headers"]["x-portcullis-user"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn chromium_webauthn_enrol_step_up_forgery_clone_and_totp() {
    let ports = Ports::fresh();
    let up = Whoami::start("app");
    let op = OpenIdProvider::start(&[ports.https], None, 3600);
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start_on(
        ports,
        &config(&op.issuer, &up.url(), &dir.path().display().to_string()),
    );
    let base = format!("https://localhost:{}", ports.https);
    let started = std::time::Instant::now();
    let out = tokio::task::spawn_blocking({
        let base = base.clone();
        move || {
            Command::new("node")
                .arg(oidc_dir().join("webauthn.mjs"))
                .arg(&base)
                .current_dir(oidc_dir())
                .output()
                .expect("node (tests/run installs it)")
        }
    })
    .await
    .unwrap();
    eprintln!("chromium run: {:?}", started.elapsed());
    let f: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON from webauthn.mjs ({e}):\n{}\n{}\ngateway:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            gw.proc.logs()
        )
    });
    assert!(
        out.status.success() && f.get("error").is_none(),
        "chromium run failed: {f:#}\n{}\ngateway:\n{}",
        String::from_utf8_lossy(&out.stderr),
        gw.proc.logs()
    );
    let alice = serde_json::json!(["alice"]);
    let mfa_page = format!("{base}/.portcullis/mfa?return=");

    // 1. Login → MFA page (WebAuthn only, as the route asks) → enrol → recovery codes → app.
    let enrol_page = f["enrol_page"].as_str().unwrap();
    assert!(enrol_page.starts_with(&mfa_page), "{enrol_page}");
    assert!(enrol_page.ends_with("&methods=webauthn"), "{enrol_page}");
    assert_eq!(
        f["enrol_page_scripts"],
        serde_json::json!(["/.portcullis/mfa/webauthn.js"]),
        "one script, from the gateway itself"
    );
    assert_eq!(f["enrol"]["url"], format!("{base}/admin/page?x=1"));
    assert_eq!(user_of(&f["enrol"]["body"]), alice, "{f:#}");
    assert_eq!(f["enrol"]["recovery_codes"], 10);
    assert_eq!(f["enrol"]["cookie"]["secure"], true);
    assert_eq!(f["enrol"]["cookie"]["httpOnly"], true);
    assert_eq!(
        f["passkey_credentials"], 1,
        "the passkey holds the credential"
    );

    // 2. A second credential, right after the first verification.
    assert_eq!(f["second"]["url"], format!("{base}/admin/second"));
    assert_eq!(user_of(&f["second"]["body"]), alice);

    // 3. Later step-up in a new session (no "add a key" offer without a fresh verification).
    assert!(f["later_page"].as_str().unwrap().starts_with(&mfa_page));
    assert_eq!(f["later_offers_register"], 0);
    assert_eq!(
        f["later_keys"],
        serde_json::json!(["Laptop passkey", "Backup key"]),
        "both credentials listed with their labels"
    );
    assert_eq!(f["later"]["url"], format!("{base}/admin/later"));
    assert_eq!(user_of(&f["later"]["body"]), alice);
    assert_ne!(
        f["later"]["cookie"]["value"], f["enrol"]["cookie"]["value"],
        "a new session id"
    );

    // 3b. Managing keys right after a verification: the passkey is removed; the last key stays.
    assert_eq!(f["manage_before"], 2, "{f:#}");
    assert_eq!(f["manage_after_keys"], serde_json::json!(["Backup key"]));
    assert_eq!(
        f["manage_after_list"], 0,
        "one factor left: nothing to choose from"
    );
    assert_eq!(f["remove_last"], 409, "the last factor cannot be removed");

    // 4. Forged assertions are refused and record nothing: the route still asks for the key.
    for case in ["tampered_client_data", "stale_challenge", "bad_signature"] {
        assert_eq!(f["forged"][case]["status"], 401, "{case}: {f:#}");
        assert_eq!(f["forged"][case]["body"]["error"], "mfa_refused", "{case}");
    }
    assert_eq!(f["forged"]["no_csrf"]["status"], 403);
    assert_eq!(
        f["forged"]["register_unverified"]["status"], 403,
        "no new key without a recent second factor"
    );
    assert_eq!(
        f["forged"]["remove_unverified"]["status"], 403,
        "no removal without a recent second factor"
    );
    assert!(
        f["forged_after"].as_str().unwrap().starts_with(&mfa_page),
        "{f:#}"
    );

    // 5. A cloned key (counter reset) is refused, audited, and records nothing.
    assert!(f["usb_sign_count"].as_u64().unwrap() > 1, "{f:#}");
    assert_eq!(f["clone"]["error"], "second factor refused", "{f:#}");
    assert!(f["clone_after"].as_str().unwrap().starts_with(&mfa_page));

    // 6. TOTP through the real pages, without any script.
    assert!(f["totp_page"].as_str().unwrap().starts_with(&mfa_page));
    assert_eq!(f["totp_page_scripts"], 0);
    assert_eq!(f["totp"]["url"], format!("{base}/totp/x"));
    assert_eq!(user_of(&f["totp"]["body"]), serde_json::json!(["bob"]));

    assert_eq!(
        f["csp_errors"],
        serde_json::json!([]),
        "the pages pass their CSP"
    );

    // Stored: two labelled credentials, sealed, the used one with its counter.
    use sqlx::Row;
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}/portcullis.db", dir.path().display()))
        .await
        .unwrap();
    let rows = sqlx::query("SELECT label, secret, last_step FROM mfa_factors WHERE user_id = 'corp:alice' AND kind = 'webauthn' ORDER BY created, id")
        .fetch_all(&db)
        .await
        .unwrap();
    let labels: Vec<String> = rows.iter().map(|r| r.get("label")).collect();
    assert_eq!(
        labels,
        vec!["Backup key".to_string()],
        "the passkey was removed"
    );
    for r in &rows {
        let s: Vec<u8> = r.get("secret");
        assert!(
            !s.windows(7).any(|w| w == b"cred_id"),
            "credential record sealed"
        );
    }
    let counters: Vec<Option<i64>> = rows.iter().map(|r| r.get("last_step")).collect();
    assert!(
        counters.iter().any(|c| c.is_some_and(|c| c > 0)),
        "{counters:?}"
    );

    let m = gw.metrics();
    for (factor, outcome, want) in [
        ("webauthn", "enrolled", 2.0),
        ("webauthn", "success", 1.0),
        ("webauthn", "failure", 3.0),
        ("webauthn", "clone", 1.0),
        ("webauthn", "removed", 1.0),
        ("totp", "enrolled", 1.0),
        ("recovery", "issued", 2.0),
    ] {
        let series =
            format!("portcullis_mfa_events_total{{factor=\"{factor}\",outcome=\"{outcome}\"}}");
        assert_eq!(gw.metric(&series), Some(want), "{series}\n{m}");
    }
    assert_eq!(
        gw.metric("portcullis_audit_events_total{kind=\"mfa.clone\"}"),
        Some(1.0),
        "clone audited"
    );
    drop(op);
}
