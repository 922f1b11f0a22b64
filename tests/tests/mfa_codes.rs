//! Email and SMS one-time codes, remembered devices and shared attempt limits, end to end after
//! a real OIDC login (npm `oidc-provider`) with a cookie-jar client: codes arrive at a real SMTP
//! server (aiosmtpd) or a local HTTP receiver (generic webhook, and Twilio's wire format);
//! wrong, replayed and expired codes are refused; wrong codes lock out, on every replica when
//! sessions are in Redis; a remembered device skips the step-up until it is revoked; codes
//! never reach the gateway's log. With every factor configured at once (WebAuthn, TOTP, email,
//! remembered devices), one page offers what each route accepts, and a remembered device
//! re-asserts only the factor it was remembered for.

use portcullis_e2e::collector::Collector;
use portcullis_e2e::oidc::*;
use portcullis_e2e::smtp::{code_in, Smtp};
use portcullis_e2e::totp::{base32_decode, field, totp};
use portcullis_e2e::*;
use std::time::Duration;

const MFA_KEY: &str = "CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=";

/// A gateway config with an `/mail` route needing an email code, an `/sms` route needing an
/// SMS code, and `/app` for signing in; `mfa` is the factor block, `sessions` the store.
fn config(issuer: &str, up: &str, dir: &str, mfa: &str, sessions: &str) -> String {
    format!(
        "{SERVER}  data_dir: \"{dir}\"
session:
  keys: [\"{SESSION_KEY}\"]
  store: \"{sessions}\"
identity_providers:
  - id: corp
    type: oidc
    issuer: \"{issuer}\"
    client_id: {CLIENT_ID}
    client_secret: {CLIENT_SECRET}
    scopes: [openid, email, profile, groups, phone]
store: \"sqlite://{dir}/portcullis.db\"
audit: {{ checkpoint_interval: 1h }}
mfa:
  encryption_key: {MFA_KEY}
{mfa}
routes:
  - id: mail
    path: /mail
    upstream: \"{up}\"
    policy: {{ allow: [ {{ mfa: {{ methods: [email], max_age: 1h }} }} ] }}
  - id: sms
    path: /sms
    upstream: \"{up}\"
    policy: {{ allow: [ {{ mfa: {{ methods: [sms], max_age: 1h }} }} ] }}
  - id: app
    path: /app
    upstream: \"{up}\"
    policy: authenticated
"
    )
}

/// Starts a gateway on `config` and checks that it warns of no configured factor it would not
/// serve (every factor is served).
fn start_served(ports: Ports, config: &str) -> Gateway {
    check_served(Gateway::start_on(ports, config))
}

/// [`start_served`] on a test clock ([`Gateway::start_with_clock`]).
fn start_served_with_clock(ports: Ports, config: &str) -> Gateway {
    check_served(Gateway::start_with_clock(ports, config))
}

fn check_served(gw: Gateway) -> Gateway {
    let logs = gw.proc.logs();
    assert!(
        !logs.contains("not served"),
        "every factor is served: {logs}"
    );
    gw
}

/// The form on `page` that posts to `action`.
fn form(page_url: &str, page: &str, action: &str) -> Form {
    let start = page
        .find(&format!("action=\"{action}\""))
        .unwrap_or_else(|| panic!("no form for {action} in {page}"));
    let start = page[..start].rfind("<form").unwrap();
    let end = page[start..].find("</form>").unwrap() + start;
    Form::parse(page_url, &page[start..end])
}

/// Posts `f` with `extra` fields and follows redirects.
async fn post(b: &Browser, f: &Form, extra: &[(&str, &str)]) -> Walk {
    let mut fields = f.fields.clone();
    fields.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    b.walk_from(b.client.post(&f.action).form(&fields), |_| false)
        .await
}

/// Asks for a code on `channel` from the step-up page `w`: the walk to the code form, and
/// that form.
async fn send(b: &Browser, w: &Walk, channel: &str) -> (Walk, Form) {
    let send = form(
        &w.last().url,
        &w.body,
        &format!("/.portcullis/mfa/{channel}/send"),
    );
    let sent = post(b, &send, &[]).await;
    let verify = if sent.last().status == 200 {
        form(
            &sent.last().url,
            &sent.body,
            &format!("/.portcullis/mfa/{channel}/verify"),
        )
    } else {
        send
    };
    (sent, verify)
}

/// The `n`th JSON message the webhook receiver got.
fn hook_message(hook: &Collector, n: usize) -> serde_json::Value {
    serde_json::from_slice(&hook.received()[n].body).unwrap()
}

/// A well-formed code that is not `code`.
fn other_than(code: &str) -> &'static str {
    if code == "000000" {
        "111111"
    } else {
        "000000"
    }
}

/// The value a response set for cookie `name`.
fn set_cookie(w: &Walk, name: &str) -> Option<String> {
    w.hops
        .iter()
        .flat_map(|h| &h.set_cookies)
        .find_map(|c| c.strip_prefix(&format!("{name}=")))
        .map(|c| c.split(';').next().unwrap_or("").to_string())
        .filter(|v| !v.is_empty())
}

/// Signs `user` in through `/app` on `gw`.
async fn signed_in(gw: &Gateway, user: &str) -> Browser {
    let b = Browser::new();
    let w = b.login(&format!("{}/app/x", gw.https()), user).await;
    assert_eq!(w.last().status, 200, "{w:#?}");
    b
}

/// Opens `url` and expects the step-up page (returns the walk ending on it).
async fn step_up_page(b: &Browser, gw: &Gateway, url: &str) -> Walk {
    let w = b.walk(url).await;
    assert_eq!(w.hops[0].status, 302, "{w:#?}");
    assert!(
        w.last()
            .url
            .starts_with(&format!("{}/.portcullis/mfa?", gw.https())),
        "{w:#?}"
    );
    w
}

/// Asserts a metric, waiting a little: audit events are counted when the audit writer
/// has stored them, off the request path.
fn assert_metric(gw: &Gateway, series: &str, want: f64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while gw.metric(series) != Some(want) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let v = gw.metric(series);
    assert_eq!(v, Some(want), "{series}\n{}", gw.metrics());
}

#[tokio::test(flavor = "multi_thread")]
async fn email_code_step_up_with_replay_resend_remember_and_revoke() {
    let ports = Ports::fresh();
    let up = Whoami::start("app");
    let op = OpenIdProvider::start(&[ports.https], None, 3600);
    let smtp = Smtp::start();
    let dir = tempfile::tempdir().unwrap();
    let mfa = format!(
        "  email: {{ smtp: \"{}\", from: \"Acme <no-reply@example.com>\", subject: \"Acme sign-in\", body: \"Code {{{{code}}}} ({{{{minutes}}}} min)\", code_ttl: 5m }}
  remember_device_days: 30
  attempts: {{ per_user: 5, per_ip: 100, lockout: 1h }}",
        smtp.url()
    );
    let gw = start_served(
        ports,
        &config(
            &op.issuer,
            &up.url(),
            &dir.path().display().to_string(),
            &mfa,
            "memory",
        ),
    );
    let b = signed_in(&gw, "alice").await;
    let page_url = format!("{}/mail/page?q=1", gw.https());

    // The step-up page offers the email code (address masked), nothing the route does not take.
    let w = step_up_page(&b, &gw, &page_url).await;
    assert!(w.last().url.contains("methods=email"), "{w:#?}");
    assert!(
        w.body.contains("Send a code by email to a•••@example.com"),
        "{}",
        w.body
    );
    assert!(!w.body.contains("text message"), "{}", w.body);
    let send_form = form(&w.last().url, &w.body, "/.portcullis/mfa/email/send");

    // Without the CSRF token nothing is sent.
    let r = b
        .client
        .post(&send_form.action)
        .form(&[("return", "/mail/page")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(smtp.messages().is_empty());

    // Send: the code arrives by mail, in the body only.
    let (sent, verify) = send(&b, &w, "email").await;
    assert_eq!(sent.last().status, 200, "{sent:#?}");
    assert!(
        sent.body.contains("It expires in 5 minutes"),
        "{}",
        sent.body
    );
    let pending = set_cookie(&sent, "__Host-portcullis-otp").expect("pending code cookie");
    let mail = smtp.wait_for(0).await;
    let code = code_in(&mail);
    assert!(mail.contains("Subject: Acme sign-in"), "{mail}");
    assert!(mail.contains("X-RcptTo: alice@example.com"), "{mail}");
    assert!(mail.contains(&format!("Code {code} (5 min)")), "{mail}");
    assert!(!pending.contains(&code), "the cookie holds no code");

    // Asking again at once is refused (rate limit), and sends nothing.
    let (again, _) = send(&b, &sent, "email").await;
    assert_eq!(again.last().status, 429, "{again:#?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(smtp.messages().len(), 1);

    // A wrong code is refused with the form again.
    let wrong = other_than(&code);
    let w = post(&b, &verify, &[("code", wrong)]).await;
    assert_eq!(w.last().status, 401, "{w:#?}");
    assert!(w.body.contains("not right"), "{}", w.body);

    // The right code, with "remember this device": a new session id, the device cookie, and
    // back to the page.
    let w = post(&b, &verify, &[("code", &code), ("remember", "1")]).await;
    assert_eq!(w.hops[0].status, 302, "{w:#?}");
    assert!(
        set_cookie(&w, "__Host-portcullis").is_some(),
        "new session id: {w:#?}"
    );
    let device = set_cookie(&w, "__Host-portcullis-device").expect("device cookie");
    let attrs = w.hops[0]
        .set_cookies
        .iter()
        .find(|c| c.starts_with("__Host-portcullis-device="))
        .unwrap();
    for a in [
        "Path=/",
        "HttpOnly",
        "SameSite=Lax",
        "Secure",
        "Max-Age=2592000",
    ] {
        assert!(attrs.contains(a), "{attrs}");
    }
    assert_eq!(w.last().url, page_url);
    assert_eq!(w.last().status, 200);
    assert_eq!(
        whoami_json(&w.body)["headers"]["x-portcullis-user"],
        serde_json::json!(["alice"])
    );

    // Replaying the same pending code (cookie put back) is refused: single use.
    b.jar.add_cookie_str(
        &format!("__Host-portcullis-otp={pending}; Path=/; Secure; HttpOnly"),
        &url::Url::parse(&gw.https()).unwrap(),
    );
    let w = post(&b, &verify, &[("code", &code)]).await;
    assert_eq!(w.last().status, 401, "{w:#?}");
    assert!(w.body.contains("already used"), "{}", w.body);

    // A second browser with the remembered device: signing in again, the step-up page offers
    // to continue on the device; no code is asked.
    let jar_url = url::Url::parse(&gw.https()).unwrap();
    let device_cookie = format!("__Host-portcullis-device={device}; Path=/; Secure; HttpOnly");
    let b2 = signed_in(&gw, "alice").await;
    b2.jar.add_cookie_str(&device_cookie, &jar_url);
    let w = step_up_page(&b2, &gw, &page_url).await;
    assert!(w.body.contains("Continue on this device"), "{}", w.body);
    assert!(!w.body.contains("Send a code"), "{}", w.body);
    // L11: that GET changed nothing — the route still asks for a factor — and the POST that
    // uses the device needs the CSRF token.
    assert_eq!(b2.api_get(&page_url).await.status(), 401);
    let offer = form(&w.last().url, &w.body, "/.portcullis/mfa/remembered");
    let no_csrf: Vec<_> = offer
        .fields
        .iter()
        .filter(|(k, _)| k != "csrf")
        .cloned()
        .collect();
    let r = b2
        .client
        .post(&offer.action)
        .form(&no_csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(b2.api_get(&page_url).await.status(), 401);
    let w = post(&b2, &offer, &[]).await;
    assert_eq!(w.last().url, page_url, "{w:#?}");
    assert_eq!(w.last().status, 200, "{w:#?}");
    assert_metric(
        &gw,
        "portcullis_mfa_events_total{factor=\"email\",outcome=\"remembered\"}",
        1.0,
    );

    // Another user's browser holding alice's device cookie is still asked.
    let b3 = signed_in(&gw, "bob").await;
    b3.jar.add_cookie_str(&device_cookie, &jar_url);
    let w = step_up_page(&b3, &gw, &page_url).await;
    assert_eq!(w.last().status, 200);
    assert!(w.body.contains("Send a code by email"), "{}", w.body);

    // The MFA page lists the device; revoking it (POST + CSRF) takes effect at once.
    let w = b2.walk(&format!("{}/.portcullis/mfa", gw.https())).await;
    assert_eq!(w.last().status, 200, "{w:#?}");
    assert!(w.body.contains("<ul id=\"devices\">"), "{}", w.body);
    assert!(w.body.contains("(email; remembered"), "{}", w.body);
    let revoke = form(&w.last().url, &w.body, "/.portcullis/mfa/devices/revoke");
    let no_csrf: Vec<_> = revoke
        .fields
        .iter()
        .filter(|(k, _)| k != "csrf")
        .cloned()
        .collect();
    let r = b2
        .client
        .post(&revoke.action)
        .form(&no_csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "revocation needs the CSRF token");
    let r = post(&b2, &revoke, &[]).await;
    assert_eq!(r.last().status, 200, "{r:#?}");
    assert!(!r.body.contains("<ul id=\"devices\">"), "{}", r.body);
    let b4 = signed_in(&gw, "alice").await;
    b4.jar.add_cookie_str(&device_cookie, &jar_url);
    let w = step_up_page(&b4, &gw, &page_url).await;
    assert_eq!(
        w.last().status,
        200,
        "revoked device no longer skips the step-up"
    );
    assert!(w.body.contains("Send a code by email"), "{}", w.body);

    // A user whose address the provider has not verified is offered no email code.
    let b5 = signed_in(&gw, "eve").await;
    let w = step_up_page(&b5, &gw, &page_url).await;
    assert_eq!(w.last().status, 403, "{w:#?}");
    assert!(!w.body.contains("Send a code"), "{}", w.body);

    for (outcome, n) in [
        ("sent", 1.0),
        ("success", 1.0),
        ("failure", 1.0),
        ("replay", 1.0),
        ("send_limited", 1.0),
    ] {
        assert_metric(
            &gw,
            &format!("portcullis_mfa_events_total{{factor=\"email\",outcome=\"{outcome}\"}}"),
            n,
        );
    }
    assert_metric(
        &gw,
        "portcullis_audit_events_total{kind=\"mfa.device_revoked\"}",
        1.0,
    );
    let logs = gw.proc.logs();
    assert!(!logs.contains(&code), "code in the gateway log");
    drop(op);
}

#[tokio::test(flavor = "multi_thread")]
async fn sms_codes_by_webhook_and_twilio_expiry_lockout_and_provider_failure() {
    let (p1, p2) = (Ports::fresh(), Ports::fresh());
    let up = Whoami::start("app");
    let op = OpenIdProvider::start(&[p1.https, p2.https], None, 3600);
    let hook = Collector::start();
    let twilio = Collector::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let webhook = format!(
        "  sms: {{ webhook: {{ url: \"{}/send\", headers: {{ Authorization: \"Bearer hook-secret\" }}, body: '{{\"to\":\"{{{{phone}}}}\",\"text\":\"{{{{message}}}}\"}}' }}, message: \"Code {{{{code}}}}\", code_ttl: 3s }}
  attempts: {{ per_user: 3, per_ip: 100, lockout: 1h }}",
        hook.url()
    );
    // On a test clock: the 3 s code lifetime runs out by moving it, not by sleeping.
    let gw = Gateway::start_with_clock(
        p1,
        &config(&op.issuer, &up.url(), &format!("{d}/a"), &webhook, "memory"),
    );
    let page_url = format!("{}/sms/x", gw.https());

    // Webhook: the message goes to the receiver as configured.
    let b = signed_in(&gw, "bob").await;
    let w = step_up_page(&b, &gw, &page_url).await;
    assert!(
        w.body.contains("Send a code by text message to •••02"),
        "{}",
        w.body
    );
    let (sent, verify) = send(&b, &w, "sms").await;
    assert_eq!(sent.last().status, 200, "{sent:#?}");
    let got = hook.received();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].method.as_str(), got[0].path.as_str()),
        ("POST", "/send")
    );
    assert_eq!(got[0].header("authorization"), Some("Bearer hook-secret"));
    assert_eq!(got[0].header("content-type"), Some("application/json"));
    let j: serde_json::Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(j["to"], "+15550102");
    let code = code_in(j["text"].as_str().unwrap());
    assert_eq!(j["text"], format!("Code {code}"));

    // After code_ttl the code is refused (the resend wait, as long, is over too).
    gw.clock().advance(4);
    let w = post(&b, &verify, &[("code", &code)]).await;
    assert_eq!(w.last().status, 401, "{w:#?}");
    assert!(w.body.contains("expired"), "{}", w.body);

    // A new code (the resend wait is the code lifetime when shorter than 30 s) works.
    let w = b.walk(&page_url).await;
    let (sent, verify) = send(&b, &w, "sms").await;
    assert_eq!(sent.last().status, 200, "{sent:#?}");
    let j = hook_message(&hook, 1);
    let code2 = code_in(j["text"].as_str().unwrap());
    let w = post(&b, &verify, &[("code", &code2)]).await;
    assert_eq!(w.last().url, page_url, "{w:#?}");
    assert_eq!(w.last().status, 200);

    // Lockout: the third wrong code locks carol; then even the right code is refused.
    let c = signed_in(&gw, "carol").await;
    let w = step_up_page(&c, &gw, &page_url).await;
    let (_, verify) = send(&c, &w, "sms").await;
    let j = hook_message(&hook, 2);
    assert_eq!(j["to"], "+15550103");
    let right = code_in(j["text"].as_str().unwrap());
    let wrong = other_than(&right);
    for i in 1..=3 {
        let w = post(&c, &verify, &[("code", wrong)]).await;
        let want = if i < 3 { 401 } else { 429 };
        assert_eq!(w.last().status, want, "attempt {i}: {w:#?}");
    }
    let w = post(&c, &verify, &[("code", &right)]).await;
    assert_eq!(
        w.last().status,
        429,
        "right code refused while locked: {w:#?}"
    );
    assert!(!w.body.contains("<form"), "{}", w.body);
    assert_metric(
        &gw,
        "portcullis_mfa_events_total{factor=\"sms\",outcome=\"lockout\"}",
        1.0,
    );

    // Provider failure: fail closed with a clear page and an audited event, no code anywhere.
    hook.status.store(500, std::sync::atomic::Ordering::SeqCst);
    let dv = signed_in(&gw, "dave").await;
    let w = step_up_page(&dv, &gw, &page_url).await;
    let (failed, _) = send(&dv, &w, "sms").await;
    assert_eq!(failed.last().status, 502, "{failed:#?}");
    assert!(failed.body.contains("could not be sent"), "{}", failed.body);
    assert!(
        set_cookie(&failed, "__Host-portcullis-otp").is_none(),
        "no pending code"
    );
    assert_metric(
        &gw,
        "portcullis_mfa_events_total{factor=\"sms\",outcome=\"delivery_failed\"}",
        1.0,
    );
    assert_metric(
        &gw,
        "portcullis_audit_events_total{kind=\"mfa.delivery_failed\"}",
        1.0,
    );
    let logs = gw.proc.logs();
    for c in [&code, &code2, &right] {
        assert!(!logs.contains(c.as_str()), "code {c} in the gateway log");
    }
    assert!(
        !logs.contains("hook-secret"),
        "webhook credentials in the log"
    );

    // Twilio preset: Twilio's documented wire format.
    let tw = format!(
        "  sms: {{ twilio: {{ account_sid: AC0123, auth_token: tw-token, from: \"+15550199\", base_url: \"{}\" }} }}",
        twilio.url()
    );
    let gw2 = Gateway::start_on(
        p2,
        &config(&op.issuer, &up.url(), &format!("{d}/b"), &tw, "memory"),
    );
    let page2 = format!("{}/sms/x", gw2.https());
    let b = signed_in(&gw2, "alice").await;
    let w = step_up_page(&b, &gw2, &page2).await;
    let (sent, verify) = send(&b, &w, "sms").await;
    assert_eq!(sent.last().status, 200, "{sent:#?}");
    let got = twilio.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].method, "POST");
    assert_eq!(got[0].path, "/2010-04-01/Accounts/AC0123/Messages.json");
    assert_eq!(
        got[0].header("authorization"),
        Some("Basic QUMwMTIzOnR3LXRva2Vu"),
        "HTTP Basic AC0123:tw-token"
    );
    assert_eq!(
        got[0].header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let fields: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(&got[0].body)
            .into_owned()
            .collect();
    assert_eq!(fields.get("To").map(String::as_str), Some("+15550101"));
    assert_eq!(fields.get("From").map(String::as_str), Some("+15550199"));
    let tcode = code_in(&fields["Body"]);
    assert_eq!(fields["Body"], format!("Your sign-in code is {tcode}"));
    let w = post(&b, &verify, &[("code", &tcode)]).await;
    assert_eq!(w.last().url, page2, "{w:#?}");
    assert_eq!(w.last().status, 200);
    assert!(!gw2.proc.logs().contains(&tcode));
    assert!(!gw2.proc.logs().contains("tw-token"));
    drop(op);
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_share_lockout_and_single_use_through_redis_and_the_store() {
    let (p1, p2) = (Ports::fresh(), Ports::fresh());
    let up = Whoami::start("app");
    let op = OpenIdProvider::start(&[p1.https, p2.https], None, 3600);
    let redis = Redis::start();
    let hook = Collector::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let mfa = format!(
        "  sms: {{ webhook: {{ url: \"{}/send\" }} }}
  attempts: {{ per_user: 3, per_ip: 100, lockout: 1h }}",
        hook.url()
    );
    // Two replicas: same session keys, same Redis, same MFA store.
    let gw1 = Gateway::start_on(p1, &config(&op.issuer, &up.url(), &d, &mfa, &redis.url()));
    let gw2 = Gateway::start_on(p2, &config(&op.issuer, &up.url(), &d, &mfa, &redis.url()));
    let jar_url = url::Url::parse(&gw1.https()).unwrap();
    let text = |n: usize| code_in(hook_message(&hook, n)["text"].as_str().unwrap());

    // A code accepted by replica 1 is refused by replica 2 (nonce claimed in the store).
    let a = signed_in(&gw1, "alice").await;
    let w = step_up_page(&a, &gw1, &format!("{}/sms/x", gw1.https())).await;
    let (sent, verify) = send(&a, &w, "sms").await;
    let pending = set_cookie(&sent, "__Host-portcullis-otp").unwrap();
    let code = text(0);
    let w = post(&a, &verify, &[("code", &code)]).await;
    assert_eq!(w.last().status, 200, "{w:#?}");
    a.jar.add_cookie_str(
        &format!("__Host-portcullis-otp={pending}; Path=/; Secure"),
        &jar_url,
    );
    let mut on2 = verify.clone();
    on2.action = on2.action.replace(&gw1.https(), &gw2.https());
    let w = post(&a, &on2, &[("code", &code)]).await;
    assert_eq!(w.last().status, 401, "{w:#?}");
    assert!(w.body.contains("already used"), "{}", w.body);

    // Wrong codes on replica 1 lock the user out on replica 2 too.
    let b = signed_in(&gw1, "bob").await;
    let w = step_up_page(&b, &gw1, &format!("{}/sms/x", gw1.https())).await;
    let (_, verify) = send(&b, &w, "sms").await;
    let right = text(1);
    let wrong = other_than(&right);
    for _ in 0..2 {
        assert_eq!(
            post(&b, &verify, &[("code", wrong)]).await.last().status,
            401
        );
    }
    let mut on2 = verify.clone();
    on2.action = on2.action.replace(&gw1.https(), &gw2.https());
    let w = post(&b, &on2, &[("code", wrong)]).await;
    assert_eq!(
        w.last().status,
        429,
        "third failure, on replica 2, locks: {w:#?}"
    );
    let w = b.walk(&format!("{}/.portcullis/mfa", gw1.https())).await;
    assert_eq!(w.last().status, 429, "locked on replica 1 too: {w:#?}");
    let w = post(&b, &verify, &[("code", &right)]).await;
    assert_eq!(w.last().status, 429, "right code refused while locked");

    for gw in [&gw1, &gw2] {
        assert!(!gw.proc.logs().contains(&code) && !gw.proc.logs().contains(&right));
    }
    drop(op);
}

/// Routes for the combined suite, appended to [`config`]'s list: `/strong` takes a security
/// key, TOTP or an email code; `/key` only a security key.
const COMBINED_ROUTES: &str = "  - id: strong
    path: /strong
    upstream: \"{up}\"
    policy: { allow: [ { mfa: { methods: [webauthn, totp, email], max_age: 1h } } ] }
  - id: key
    path: /key
    upstream: \"{up}\"
    policy: { allow: [ { mfa: { methods: [webauthn], max_age: 1h } } ] }
";

#[tokio::test(flavor = "multi_thread")]
async fn every_factor_on_one_page_and_devices_reassert_only_their_factor() {
    let ports = Ports::fresh();
    let up = Whoami::start("app");
    let op = OpenIdProvider::start(&[ports.https], None, 3600);
    let smtp = Smtp::start();
    let dir = tempfile::tempdir().unwrap();
    let mfa = format!(
        "  totp: {{ issuer: Acme }}
  webauthn: {{ rp_id: localhost, rp_origin: \"https://localhost:{{https}}\" }}
  email: {{ smtp: \"{}\", from: \"no-reply@example.com\" }}
  remember_device_days: 7
  attempts: {{ per_user: 10, per_ip: 100, lockout: 1h }}",
        smtp.url()
    );
    let d = dir.path().display().to_string();
    // On a test clock: a TOTP step with time left is reached by moving it, not by waiting.
    let gw = start_served_with_clock(
        ports,
        &(config(&op.issuer, &up.url(), &d, &mfa, "memory")
            + &COMBINED_ROUTES.replace("{up}", &up.url())),
    );
    let b = signed_in(&gw, "alice").await;
    let strong = format!("{}/strong/x", gw.https());

    // First time, on a route taking all three: key and app enrolment next to the email offer,
    // the remember box on the TOTP form, and the page script for the key.
    let w = step_up_page(&b, &gw, &strong).await;
    assert!(
        w.last().url.ends_with("&methods=webauthn%2Ctotp%2Cemail"),
        "{w:#?}"
    );
    let page = &w.body;
    for want in [
        "id=\"webauthn-register\"",
        "id=\"totp-secret\"",
        "Send a code by email to a•••@example.com",
        "name=\"remember\"",
        "<script src=\"/.portcullis/mfa/webauthn.js\" defer></script>",
    ] {
        assert!(page.contains(want), "{want}: {page}");
    }
    assert!(!page.contains("id=\"devices\""), "{page}");

    // A key-only route offers only key enrolment; an email-only route only the code (no script).
    let w = step_up_page(&b, &gw, &format!("{}/key/x", gw.https())).await;
    assert!(w.body.contains("id=\"webauthn-register\""), "{}", w.body);
    assert!(!w.body.contains("totp-secret"), "{}", w.body);
    assert!(!w.body.contains("Send a code"), "{}", w.body);
    let w = step_up_page(&b, &gw, &format!("{}/mail/x", gw.https())).await;
    assert!(w.body.contains("Send a code by email"), "{}", w.body);
    assert!(!w.body.contains("webauthn"), "{}", w.body);
    assert!(!w.body.contains("totp-secret"), "{}", w.body);

    // Enrol the app on /strong and remember this device: back on the page, device cookie set.
    let w = step_up_page(&b, &gw, &strong).await;
    let secret = base32_decode(field(&w.body, "totp-secret"));
    gw.clock().fresh_step(5);
    let enrol = form(&w.last().url, &w.body, "/.portcullis/mfa/enrol");
    let w = post(
        &b,
        &enrol,
        &[
            ("code", &totp(&secret, gw.clock().now())),
            ("remember", "1"),
        ],
    )
    .await;
    assert_eq!(w.last().status, 200, "{w:#?}");
    assert!(w.body.contains("id=\"recovery-codes\""), "{}", w.body);
    let device = set_cookie(&w, "__Host-portcullis-device").expect("device cookie");
    assert_eq!(b.walk(&strong).await.last().url, strong);

    // The key-only route still asks (TOTP cannot satisfy it, nor can the TOTP device); right
    // after the TOTP verification the page offers to add a key, and lists the device.
    let w = step_up_page(&b, &gw, &format!("{}/key/y", gw.https())).await;
    assert_eq!(w.last().status, 200, "{w:#?}");
    for want in [
        "Add a security key or passkey",
        "id=\"webauthn-register\"",
        "<ul id=\"devices\">",
        "(totp; remembered",
    ] {
        assert!(w.body.contains(want), "{want}: {}", w.body);
    }
    assert!(!w.body.contains("Send a code"), "{}", w.body);

    // A new sign-in with the device: /strong (which takes TOTP) is passed at once as `totp`;
    // /key is still asked; /mail (email only) too, since the device proved TOTP, not email.
    let jar_url = url::Url::parse(&gw.https()).unwrap();
    let b2 = signed_in(&gw, "alice").await;
    b2.jar.add_cookie_str(
        &format!("__Host-portcullis-device={device}; Path=/; Secure; HttpOnly"),
        &jar_url,
    );
    let w = step_up_page(&b2, &gw, &format!("{}/strong/z", gw.https())).await;
    let offer = form(&w.last().url, &w.body, "/.portcullis/mfa/remembered");
    let w = post(&b2, &offer, &[]).await;
    assert_eq!(w.last().url, format!("{}/strong/z", gw.https()), "{w:#?}");
    assert_eq!(w.last().status, 200, "{w:#?}");
    assert_metric(
        &gw,
        "portcullis_mfa_events_total{factor=\"totp\",outcome=\"remembered\"}",
        1.0,
    );
    let w = step_up_page(&b2, &gw, &format!("{}/key/z", gw.https())).await;
    assert_eq!(w.last().status, 200, "{w:#?}");
    assert!(
        !w.body.contains("Continue on this device"),
        "the factor page: {}",
        w.body
    );
    // The device cookie re-asserted TOTP, but whoever holds that cookie may not add a key.
    assert!(!w.body.contains("id=\"webauthn-register\""), "{}", w.body);
    let w = step_up_page(&b2, &gw, &format!("{}/mail/z", gw.https())).await;
    assert!(w.body.contains("Send a code by email"), "{}", w.body);
    assert_metric(
        &gw,
        "portcullis_mfa_events_total{factor=\"totp\",outcome=\"remembered\"}",
        1.0,
    );
    assert!(smtp.messages().is_empty());
    drop(op);
}

/// L14 (issue 10): a provider that says nothing about an address or number (no
/// `email_verified` / `phone_number_verified`) has not vouched for it, so no code goes there
/// (`require_verified` defaults to true). The attack: frank's IdP record carries an email and
/// phone but no verified flags; he is offered no code, and posting to the send endpoints
/// directly (with his CSRF token) sends nothing. Verified destinations still get codes.
#[tokio::test(flavor = "multi_thread")]
async fn codes_go_only_to_destinations_the_provider_marked_verified() {
    let ports = Ports::fresh();
    let up = Whoami::start("app");
    let op = OpenIdProvider::start(&[ports.https], None, 3600);
    let smtp = Smtp::start();
    let hook = Collector::start();
    let dir = tempfile::tempdir().unwrap();
    let mfa = format!(
        "  totp: {{ issuer: Acme }}
  email: {{ smtp: \"{}\", from: \"no-reply@example.com\" }}
  sms: {{ webhook: {{ url: \"{}/send\" }} }}",
        smtp.url(),
        hook.url()
    );
    let d = dir.path().display().to_string();
    let gw = start_served(ports, &config(&op.issuer, &up.url(), &d, &mfa, "memory"));

    let f = signed_in(&gw, "frank").await;
    for (route, channel) in [("mail", "email"), ("sms", "sms")] {
        let w = step_up_page(&f, &gw, &format!("{}/{route}/x", gw.https())).await;
        assert!(!w.body.contains("Send a code"), "{}", w.body);
        // The page still carries frank's CSRF token (TOTP enrolment form): use it to ask for a
        // code directly.
        let page = Form::parse(&w.last().url, &w.body);
        let send = Form {
            action: format!("{}/.portcullis/mfa/{channel}/send", gw.https()),
            fields: page.fields.clone(),
        };
        let r = post(&f, &send, &[]).await;
        assert_eq!(r.last().status, 403, "{r:#?}");
        assert!(
            r.body.contains("no verified address or number"),
            "{}",
            r.body
        );
    }
    assert!(smtp.messages().is_empty(), "no mail to frank");
    assert!(hook.received().is_empty(), "no text to frank");

    // Verified destinations are unaffected: alice's email, carol's phone.
    let a = signed_in(&gw, "alice").await;
    let w = step_up_page(&a, &gw, &format!("{}/mail/x", gw.https())).await;
    let (sent, _) = send(&a, &w, "email").await;
    assert_eq!(sent.last().status, 200, "{sent:#?}");
    smtp.wait_for(0).await;
    let c = signed_in(&gw, "carol").await;
    let w = step_up_page(&c, &gw, &format!("{}/sms/x", gw.https())).await;
    assert!(w.body.contains("Send a code by text message"), "{}", w.body);
    drop(op);
}
