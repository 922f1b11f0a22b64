//! H5 (issue 10): the MFA attempt limit counts an attempt *before* its code is checked. The
//! attack: 30 wrong TOTP codes posted at once by one signed-in session. With the old
//! check-then-act limiter (`locked()` before verifying, `fail()` after) every request that
//! checked before the fifth failure was recorded got its code evaluated (11 of 30 in the
//! review); now at most `per_user` are, the rest are refused as locked out, and the right code
//! afterwards is refused too. Run against the real binary with the counters in memory and in
//! Redis (several replicas' setting).

use portcullis_e2e::oidc::*;
use portcullis_e2e::totp::*;
use portcullis_e2e::*;
use std::time::Duration;

const MFA_KEY: &str = "CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=";
const PER_USER: u32 = 5;
const BURST: usize = 30;

fn config(issuer: &str, up: &str, dir: &str, sessions: &str) -> String {
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
    scopes: [openid, email, profile, groups]
store: \"sqlite://{dir}/portcullis.db\"
audit: {{ checkpoint_interval: 1h }}
mfa:
  encryption_key: {MFA_KEY}
  totp: {{ issuer: Acme }}
  recovery_codes: 0
  attempts: {{ per_user: {PER_USER}, per_ip: 100, lockout: 1h }}
routes:
  - id: admin
    path: /admin
    upstream: \"{up}\"
    policy: {{ allow: [ {{ mfa: {{ methods: [totp], max_age: 1h }} }} ] }}
  - id: app
    path: /app
    upstream: \"{up}\"
    policy: authenticated
"
    )
}

/// A well-formed code that no step near `t` (the gateway's now) accepts for `secret`.
fn wrong_code(secret: &[u8], t: u64) -> String {
    let near: Vec<String> = [t - 60, t - 30, t, t + 30, t + 60]
        .iter()
        .map(|s| totp(secret, *s))
        .collect();
    (0..10)
        .map(|d| format!("{d}{d}{d}{d}{d}{d}"))
        .find(|c| !near.contains(c))
        .unwrap_or_default()
}

/// Waits until the series reaches `want` (MFA events are counted as requests finish).
async fn metric_at_least(gw: &Gateway, series: &str, want: f64) -> f64 {
    eventually(Duration::from_secs(10), || {
        gw.metric(series).unwrap_or(0.0) >= want
    })
    .await;
    gw.metric(series).unwrap_or(0.0)
}

async fn burst_of_wrong_codes_is_evaluated_at_most_per_user_times(redis: Option<&Redis>) {
    let sessions = redis.map_or("memory".to_string(), Redis::url);
    let sessions = sessions.as_str();
    let ports = Ports::fresh();
    let up = Whoami::start("app");
    let op = OpenIdProvider::start(&[ports.https], None, 3600);
    let dir = tempfile::tempdir().unwrap();
    // On a test clock: a TOTP step with time left is reached by moving it, not by waiting.
    let gw = Gateway::start_with_clock(
        ports,
        &config(
            &op.issuer,
            &up.url(),
            &dir.path().display().to_string(),
            sessions,
        ),
    );
    let clock = gw.clock();
    let admin = format!("{}/admin/x", gw.https());

    // alice enrols an authenticator app (one success).
    let b = Browser::new();
    assert_eq!(
        b.login(&format!("{}/app/x", gw.https()), "alice")
            .await
            .last()
            .status,
        200
    );
    let w = b.walk(&admin).await;
    let secret = base32_decode(field(&w.body, "totp-secret"));
    clock.fresh_step(5);
    let w = b
        .post_code(&w.last().url, &w.body, &totp(&secret, clock.now()))
        .await;
    assert_eq!(w.last().url, admin, "enrolled: {w:#?}");

    // A second session of alice's (the attacker holds her password, not her phone) is asked
    // for a code, and fires 30 wrong ones at once.
    let m = Browser::new();
    m.login(&format!("{}/app/x", gw.https()), "alice").await;
    let w = m.walk(&admin).await;
    assert!(w.body.contains("/.portcullis/mfa/verify"), "{}", w.body);
    let (page_url, page) = (w.last().url.clone(), w.body.clone());
    let form = Form::parse(&page_url, &page);
    assert!(
        form.action.ends_with("/.portcullis/mfa/verify"),
        "{}",
        form.action
    );
    let wrong = wrong_code(&secret, clock.now());
    let tasks: Vec<_> = (0..BURST)
        .map(|_| {
            let client = m.client.clone();
            let (action, mut fields) = (form.action.clone(), form.fields.clone());
            fields.push(("code".into(), wrong.clone()));
            tokio::spawn(async move {
                client
                    .post(&action)
                    .header("accept", "text/html")
                    .form(&fields)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap().expect("response"));
    }
    assert!(
        statuses.iter().all(|s| matches!(s, 401 | 429)),
        "{statuses:?}"
    );

    // Every attempt is accounted for: evaluated (failure) or refused unevaluated (locked_out);
    // at most per_user were evaluated.
    let failure = "portcullis_mfa_events_total{factor=\"totp\",outcome=\"failure\"}";
    let locked_out = "portcullis_mfa_events_total{factor=\"totp\",outcome=\"locked_out\"}";
    eventually(Duration::from_secs(10), || {
        gw.metric(failure).unwrap_or(0.0) + gw.metric(locked_out).unwrap_or(0.0) >= BURST as f64
    })
    .await;
    let evaluated = gw.metric(failure).unwrap_or(0.0);
    assert!(
        evaluated >= 1.0 && evaluated <= f64::from(PER_USER),
        "{evaluated} wrong codes evaluated, limit {PER_USER}\n{}",
        gw.metrics()
    );
    let refused = metric_at_least(&gw, locked_out, BURST as f64 - evaluated).await;
    assert_eq!(evaluated + refused, BURST as f64, "{statuses:?}");

    // Locked: the right code is refused, and the route still asks for a second factor.
    clock.fresh_step(5);
    let w = m
        .post_code(&page_url, &page, &totp(&secret, clock.now()))
        .await;
    assert_eq!(
        w.last().status,
        429,
        "right code refused while locked: {w:#?}"
    );
    assert_ne!(w.last().url, admin);
    let r = m.api_get(&admin).await;
    assert_eq!(r.status(), 401, "step-up still required");
    assert_eq!(
        gw.metric("portcullis_mfa_events_total{factor=\"totp\",outcome=\"success\"}"),
        None,
        "no verification succeeded (the enrolment is counted as `enrolled`)"
    );
    // Sessions and the MFA limiter shared one connection (plus the revocation subscriber,
    // which Redis's protocol keeps on a connection of its own).
    if let Some(redis) = redis {
        let clients = redis.clients();
        let (subscribers, commands): (Vec<_>, Vec<_>) =
            clients.iter().partition(|c| c.contains("sub=1"));
        assert_eq!(commands.len(), 1, "one command connection: {clients:#?}");
        assert!(subscribers.len() <= 1, "{clients:#?}");
    }
    drop(op);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_wrong_totp_codes_are_counted_before_evaluation_in_memory() {
    burst_of_wrong_codes_is_evaluated_at_most_per_user_times(None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_wrong_totp_codes_are_counted_before_evaluation_in_redis() {
    let redis = Redis::start();
    burst_of_wrong_codes_is_evaluated_at_most_per_user_times(Some(&redis)).await;
}
