//! M1 (issue 10): with several identity providers, users are who a *provider* says they are.
//! Two real OpenID Providers (npm `oidc-provider`) both issue `alice`. The attack: partner's
//! alice signs in on a partner route, then (1) opens corp's route pinned to `corp` whose policy
//! is `users: [alice]`, and (2) opens the MFA page, where corp alice's authenticator app would
//! be offered to verify (or pre-empted by enrolling first). Old code: (1) passed, (2) showed
//! corp alice's factor. Now the pinned route treats the partner session as not signed in
//! (API 401, browser sent to corp's sign-in) and MFA state is keyed by `provider:subject`, so
//! partner alice sees none of corp alice's factors.

use portcullis_e2e::oidc::*;
use portcullis_e2e::totp::*;
use portcullis_e2e::*;

const MFA_KEY: &str = "CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=";

fn config(corp: &str, partner: &str, up: &str, dir: &str) -> String {
    format!(
        "{SERVER}  data_dir: \"{dir}\"
session:
  keys: [\"{SESSION_KEY}\"]
identity_providers:
  - {{ id: corp, type: oidc, issuer: \"{corp}\", client_id: {CLIENT_ID}, client_secret: {CLIENT_SECRET}, scopes: [openid, email, profile, groups] }}
  - {{ id: partner, type: oidc, issuer: \"{partner}\", client_id: {CLIENT_ID}, client_secret: {CLIENT_SECRET}, scopes: [openid, email, profile, groups] }}
store: \"sqlite://{dir}/portcullis.db\"
audit: {{ checkpoint_interval: 1h }}
mfa:
  encryption_key: {MFA_KEY}
  totp: {{ issuer: Acme }}
  recovery_codes: 0
routes:
  - id: corp
    path: /corp
    upstream: \"{up}\"
    identity_provider: corp
    policy: {{ allow: [ {{ users: [alice] }} ] }}
  - id: secure
    path: /secure
    upstream: \"{up}\"
    identity_provider: corp
    policy: {{ allow: [ {{ mfa: {{ methods: [totp], max_age: 1h }} }} ] }}
  - id: partner
    path: /partner
    upstream: \"{up}\"
    identity_provider: partner
    policy: authenticated
"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partner_user_with_a_corp_name_is_refused_on_corp_routes_and_sees_no_corp_factors() {
    let ports = Ports::fresh();
    let up = Whoami::start("app");
    let corp = OpenIdProvider::start(&[ports.https], None, 3600);
    // Each provider has its own callback (issue 10, L7): the partner's is /callback/partner.
    let partner = OpenIdProvider::start_with(&[ports.https], None, 3600, |c| {
        c["redirect_uris"] = serde_json::json!([format!(
            "https://127.0.0.1:{}/.portcullis/callback/partner",
            ports.https
        )]);
    });
    let dir = tempfile::tempdir().unwrap();
    // On a test clock: a TOTP step with time left is reached by moving it, not by waiting.
    let gw = Gateway::start_with_clock(
        ports,
        &config(
            &corp.issuer,
            &partner.issuer,
            &up.url(),
            &dir.path().display().to_string(),
        ),
    );
    let base = gw.https();

    // Corp alice signs in on her route and enrols an authenticator app.
    let c = Browser::new();
    let w = c.login(&format!("{base}/corp/x"), "alice").await;
    assert_eq!(w.last().status, 200, "{w:#?}");
    let secure = format!("{base}/secure/x");
    let w = c.walk(&secure).await;
    let secret = base32_decode(field(&w.body, "totp-secret"));
    gw.clock().fresh_step(5);
    let form = Form::parse(&w.last().url, &w.body);
    let mut fields = form.fields.clone();
    fields.push(("code".into(), totp(&secret, gw.clock().now())));
    let w = c
        .walk_from(c.client.post(&form.action).form(&fields), |_| false)
        .await;
    assert_eq!(w.last().url, secure, "corp alice enrolled: {w:#?}");

    // Partner alice signs in on the partner route.
    let p = Browser::new();
    let w = p.login(&format!("{base}/partner/x"), "alice").await;
    assert_eq!(w.last().status, 200, "{w:#?}");
    let j = whoami_json(&w.body);
    assert_eq!(j["headers"]["x-portcullis-user"][0], "alice", "{j}");

    // (1) On corp's pinned route, `users: [alice]` is not judged against her: an API client
    // gets 401, a browser is sent to sign in at corp, and nothing reaches the upstream.
    let r = p.api_get(format!("{base}/corp/x")).await;
    assert_eq!(r.status(), 401);
    let w = p
        .walk_until(&format!("{base}/corp/x"), |u| u.starts_with(&corp.issuer))
        .await;
    assert_eq!(w.hops.len(), 1, "{w:#?}");
    assert_eq!(w.hops[0].status, 302, "{w:#?}");
    let to = w.hops[0].location.clone().unwrap_or_default();
    assert!(to.starts_with(&corp.issuer), "to corp's sign-in: {to}");
    // The step-up route (pinned to corp) is refused the same way, not offered as a step-up.
    assert_eq!(p.api_get(&secure).await.status(), 401);

    // (2) The MFA page shows partner alice her own (empty) set: enrolment, not corp alice's app.
    let mfa = format!("{base}/.portcullis/mfa?return=%2Fsecure%2Fx&methods=totp");
    let w = p.walk(&mfa).await;
    assert_eq!(w.last().status, 200, "{w:#?}");
    assert!(
        w.body.contains("totp-secret"),
        "first-time enrolment: {}",
        w.body
    );
    assert!(!w.body.contains("/.portcullis/mfa/verify"), "{}", w.body);

    // Corp alice still has hers.
    let c2 = Browser::new();
    c2.login(&format!("{base}/corp/y"), "alice").await;
    let w = c2.walk(&secure).await;
    assert!(w.body.contains("/.portcullis/mfa/verify"), "{}", w.body);
    drop((corp, partner));
}
