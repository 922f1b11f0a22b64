//! MFA step-up end to end, after a real OIDC login (npm `oidc-provider`) with a cookie-jar
//! client: first visit to an MFA route sends the browser to TOTP enrolment; the test reads the
//! secret from the page and computes codes itself (RFC 6238 with ring); the step-up is honoured
//! per route and expires after `max_age`; replayed and wrong codes are refused; the user is
//! locked out after the limit; recovery codes (shown once) work once; API clients keep the 401 challenge; CSRF is required; events
//! are counted in `portcullis_mfa_events_total` and recorded in the audit log.

use portcullis_e2e::oidc::*;
use portcullis_e2e::totp::*;
use portcullis_e2e::*;

const MFA_KEY: &str = "CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=";

fn config(issuer: &str, up: &str, dir: &str) -> String {
    format!(
        "{SERVER}  data_dir: \"{dir}\"
session:
  keys: [\"{SESSION_KEY}\"]
identity_providers:
  - id: corp
    type: oidc
    issuer: \"{issuer}\"
    client_id: {CLIENT_ID}
    client_secret: {CLIENT_SECRET}
    scopes: [openid, email, profile, groups]
store: \"sqlite://{dir}/portcullis.db\"
audit: {{ checkpoint_interval: 1h }}
mfa:
  encryption_key: {MFA_KEY}
  totp: {{ issuer: Acme }}
  attempts: {{ per_user: 4, per_ip: 100, lockout: 1h }}
  branding: {{ title: Acme Access, primary_color: \"#123456\" }}
routes:
  - id: admin
    path: /admin
    upstream: \"{up}\"
    policy: {{ allow: [ {{ mfa: {{ methods: [totp], max_age: 40s }} }} ] }}
  - id: glass
    path: /break-glass
    upstream: \"{up}\"
    policy: {{ allow: [ {{ mfa: {{ methods: [recovery], max_age: 1h }} }} ] }}
  - id: app
    path: /app
    upstream: \"{up}\"
    policy: authenticated
"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn totp_step_up_enrol_verify_replay_expiry_lockout() {
    let ports = Ports::fresh();
    let up = Whoami::start("app");
    let op = OpenIdProvider::start(&[ports.https], None, 3600);
    let dir = tempfile::tempdir().unwrap();
    // The gateway runs on a test clock: the step-up expiry and the next TOTP step are reached
    // by moving it, not by waiting (this test used to sleep ~45 s).
    let gw = Gateway::start_with_clock(
        ports,
        &config(&op.issuer, &up.url(), &dir.path().display().to_string()),
    );
    let clock = gw.clock();
    let b = Browser::new();

    // Sign in on a route without MFA.
    let app = format!("{}/app/x", gw.https());
    let w = b.login(&app, "alice").await;
    assert_eq!(w.last().status, 200, "{w:#?}");

    // An API client on the MFA route gets the machine-readable challenge, not a page.
    let r = b
        .client
        .get(format!("{}/admin/api", gw.https()))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let j: serde_json::Value = r.json().await.unwrap();
    assert_eq!(j["error"], "step_up_required");
    assert_eq!(j["methods"], serde_json::json!(["totp"]));
    assert_eq!(j["max_age"], 40);

    // A browser is sent to the MFA page, which (no factor yet) offers TOTP enrolment.
    let admin = format!("{}/admin/page?q=1", gw.https());
    let w = b.walk(&admin).await;
    assert_eq!(w.hops[0].status, 302, "{w:#?}");
    let loc = w.hops[0].location.clone().unwrap();
    assert!(
        loc.starts_with(&format!("{}/.portcullis/mfa?return=", gw.https())),
        "{loc}"
    );
    let page_url = w.last().url.clone();
    let page = w.body.clone();
    assert_eq!(w.last().status, 200, "{page}");
    assert!(page.contains("Acme Access"), "branded title");
    assert!(page.contains("#123456"), "branded colour");
    assert!(!page.contains("<script"), "no scripts");
    assert!(page.contains("<svg role=\"img\""), "QR code as inline SVG");
    assert!(!page.contains("src=\"http"), "no external assets");
    let secret_b32 = field(&page, "totp-secret").to_string();
    let uri = field(&page, "otpauth-uri").replace("&amp;", "&");
    assert!(
        uri.starts_with("otpauth://totp/Acme:alice?secret=") && uri.contains(&secret_b32),
        "{uri}"
    );
    assert_eq!(base32_decode(&secret_b32).len(), 20);
    // Security headers on the page.
    let r = b
        .client
        .get(&loc)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    // That second GET issued a new key; enrol with the page we keep (its cookie was replaced,
    // so use the latest page).
    let page = r.text().await.unwrap();

    // A wrong code is refused with the form shown again.
    let w = b.post_code(&page_url, &page, "000000").await;
    assert_eq!(w.last().status, 401, "{w:#?}");
    assert!(w.body.contains("not right"), "{}", w.body);

    // Without the CSRF token the form is refused.
    let form = Form::parse(&page_url, &w.body);
    let no_csrf: Vec<(String, String)> = form
        .fields
        .iter()
        .filter(|(k, _)| k != "csrf")
        .cloned()
        .chain([("code".to_string(), "123456".to_string())])
        .collect();
    let r = b
        .client
        .post(&form.action)
        .form(&no_csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // The right code enrols, records the factor, rotates the session and returns to the page.
    // The error page issued a new key (and cookie): enrol that one.
    let page = w.body.clone();
    let secret_b32 = field(&page, "totp-secret").to_string();
    let secret = base32_decode(&secret_b32);
    clock.fresh_step(8);
    let t0 = clock.now();
    let code = totp(&secret, t0);
    let w = b.post_code(&page_url, &page, &code).await;
    // Enrolled: recovery codes are shown once, with a link back to the page.
    assert_eq!(w.hops[0].status, 200, "{w:#?}");
    assert!(
        w.hops[0]
            .set_cookies
            .iter()
            .any(|c| c.starts_with("__Host-portcullis=")),
        "new session id after step-up: {w:#?}"
    );
    let code_re =
        regex_lite::Regex::new(r"<li><code>([a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4})</code></li>")
            .unwrap();
    let recovery: Vec<String> = code_re
        .captures_iter(&w.body)
        .map(|c| c[1].to_string())
        .collect();
    assert_eq!(recovery.len(), 10, "{}", w.body);
    assert!(
        w.body
            .contains(&format!("href=\"{}\"", admin.replace('&', "&amp;"))),
        "{}",
        w.body
    );
    let w = b.walk(&admin).await;
    assert_eq!(w.last().url, admin, "back to the page it started from");
    assert_eq!(w.last().status, 200, "{w:#?}");
    let j: serde_json::Value = serde_json::from_str(&w.body).unwrap();
    assert_eq!(
        j["headers"]["x-portcullis-user"],
        serde_json::json!(["alice"])
    );

    // Step-up done: the MFA route now passes.
    let r = b
        .client
        .get(&admin)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Enrolled: the MFA page now asks for a code (no new key shown).
    let mfa_url = format!("{}/.portcullis/mfa?return=%2Fadmin%2Fagain", gw.https());
    let w = b.walk(&mfa_url).await;
    assert_eq!(w.last().status, 200);
    assert!(!w.body.contains("totp-secret"), "{}", w.body);
    let verify_page = w.body.clone();

    // The enrolment code is single use: replaying it is refused (and counted).
    let w = b.post_code(&mfa_url, &verify_page, &code).await;
    assert_eq!(w.last().status, 401, "{w:#?}");
    assert!(w.body.contains("already used"), "{}", w.body);

    // The secret is not stored in clear.
    let db = std::fs::read(dir.path().join("portcullis.db")).unwrap_or_default();
    let wal = std::fs::read(dir.path().join("portcullis.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_slice()));
        assert!(!bytes
            .windows(secret_b32.len())
            .any(|w| w == secret_b32.as_bytes()));
    }

    // After max_age the step-up expires: the browser is sent to verify again, and the next
    // step's code works once.
    clock.advance((t0 + 41).saturating_sub(clock.now()));
    let w = b.walk(&admin).await;
    assert_eq!(w.hops[0].status, 302, "expired step-up asks again: {w:#?}");
    assert!(w.body.contains("authenticator app"), "{}", w.body);
    clock.fresh_step(5);
    let code2 = totp(&secret, clock.now());
    assert_ne!(code2, code);
    let w2 = b.post_code(&w.last().url, &w.body, &code2).await;
    assert_eq!(w2.last().url, admin, "{w2:#?}");
    assert_eq!(w2.last().status, 200);
    // Replay of that code is refused.
    let w3 = b.walk(&mfa_url).await;
    let w3 = b.post_code(&mfa_url, &w3.body, &code2).await;
    assert_eq!(w3.last().status, 401);

    // A recovery code opens a route that accepts it, once.
    let glass = format!("{}/break-glass/x", gw.https());
    let w = b.walk(&glass).await;
    assert_eq!(w.hops[0].status, 302, "{w:#?}");
    let form = Form::parse(&w.last().url, &w.body);
    let recovery_post = |code: &str| {
        let mut f = form.fields.clone();
        f.push(("code".into(), code.to_string()));
        b.walk_from(
            b.client
                .post(format!("{}/.portcullis/mfa/recovery", gw.https()))
                .form(&f),
            |_| false,
        )
    };
    let w = recovery_post(&recovery[3].to_uppercase()).await;
    assert_eq!(w.last().url, glass, "{w:#?}");
    assert_eq!(w.last().status, 200);
    let w = recovery_post(&recovery[3]).await;
    assert_eq!(w.last().status, 401, "a recovery code works once: {w:#?}");
    let db = std::fs::read(dir.path().join("portcullis.db")).unwrap_or_default();
    let wal = std::fs::read(dir.path().join("portcullis.db-wal")).unwrap_or_default();
    for c in &recovery {
        for bytes in [&db, &wal] {
            assert!(
                !bytes.windows(c.len()).any(|w| w == c.as_bytes()),
                "recovery code stored in clear"
            );
        }
    }

    // Lockout: a success resets the user's count, so the reuse above is failure 1 of 4;
    // two more wrong codes are refused normally and the fourth failure locks.
    let mut last_form = String::new();
    for _ in 0..2 {
        let w = b.walk(&mfa_url).await;
        let w = b.post_code(&mfa_url, &w.body, "999999").await;
        assert_eq!(w.last().status, 401, "{w:#?}");
        last_form = w.body.clone();
    }
    let w = b.walk(&mfa_url).await;
    let w = b.post_code(&mfa_url, &w.body, "999999").await;
    assert_eq!(w.last().status, 429, "locked after the limit: {w:#?}");
    // Even the right code is refused while locked.
    let w = b.walk(&mfa_url).await;
    assert_eq!(w.last().status, 429);
    assert!(!w.body.contains("<form"), "no form while locked");
    // The next step's code (never used) is refused too.
    clock.advance(30 - clock.now() % 30);
    let w = b
        .post_code(&mfa_url, &last_form, &totp(&secret, clock.now()))
        .await;
    assert_eq!(
        w.last().status,
        429,
        "right code refused while locked: {w:#?}"
    );
    assert_eq!(
        gw.metric("portcullis_mfa_events_total{factor=\"totp\",outcome=\"success\"}"),
        Some(1.0),
        "only the one verification before the lockout succeeded"
    );

    let m = gw.metrics();
    for (series, min) in [
        (
            "portcullis_mfa_events_total{factor=\"totp\",outcome=\"enrolled\"}",
            1.0,
        ),
        (
            "portcullis_mfa_events_total{factor=\"totp\",outcome=\"success\"}",
            1.0,
        ),
        (
            "portcullis_mfa_events_total{factor=\"totp\",outcome=\"failure\"}",
            2.0,
        ),
        (
            "portcullis_mfa_events_total{factor=\"totp\",outcome=\"replay\"}",
            2.0,
        ),
        (
            "portcullis_mfa_events_total{factor=\"totp\",outcome=\"lockout\"}",
            1.0,
        ),
        ("portcullis_audit_events_total{kind=\"mfa.enrolled\"}", 1.0),
        (
            "portcullis_mfa_events_total{factor=\"recovery\",outcome=\"issued\"}",
            1.0,
        ),
        (
            "portcullis_mfa_events_total{factor=\"recovery\",outcome=\"success\"}",
            1.0,
        ),
        (
            "portcullis_mfa_events_total{factor=\"recovery\",outcome=\"failure\"}",
            1.0,
        ),
        ("portcullis_audit_events_total{kind=\"mfa.replay\"}", 2.0),
        ("portcullis_audit_events_total{kind=\"mfa.lockout\"}", 1.0),
    ] {
        // Audit events are counted when the audit writer takes them, a moment after the
        // request that caused them: wait for the count rather than read it once.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut v = gw.metric(series);
        while !v.is_some_and(|v| v >= min) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
            v = gw.metric(series);
        }
        assert!(v.is_some_and(|v| v >= min), "{series} = {v:?}\n{m}");
    }
    let logs = gw.proc.logs();
    assert!(
        !logs.contains(&code) && !logs.contains(&code2),
        "codes never logged"
    );
    drop(op);
}
