//! The hostile-provider suite: a provider that misbehaves on command. Every hostile case must
//! end without a session cookie, without reaching the upstream, and with an audit log line;
//! key rotation (a new `kid` published after discovery) must still be accepted.

use portcullis_e2e::hostile::{HostileProvider, Mode, HOSTILE_SID};
use portcullis_e2e::oidc::*;
use portcullis_e2e::*;

fn config(issuer: &str, up: &str, userinfo: bool) -> String {
    format!(
        "{SERVER}session:
  keys: [\"{SESSION_KEY}\"]
identity_providers:
  - {{ id: evil, type: oidc, issuer: \"{issuer}\", client_id: portcullis, client_secret: s, userinfo: {userinfo}, clock_skew: 30s }}
routes:
  - {{ id: app, path: /app, upstream: \"{up}\", policy: authenticated }}
"
    )
}

fn upstream_hits(gw: &Gateway) -> f64 {
    gw.metrics()
        .lines()
        .filter(|l| {
            l.starts_with("portcullis_http_requests_total{")
                && l.contains("decision=\"allow\"")
                && l.contains("route=\"app\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn refusals(gw: &Gateway) -> usize {
    gw.proc.logs().matches("audit auth.login_failed").count()
}

async fn attempt(gw: &Gateway) -> Walk {
    Browser::new().walk(&format!("{}/app/", gw.https())).await
}

#[tokio::test(flavor = "multi_thread")]
async fn every_hostile_token_or_response_is_refused_and_rotation_is_accepted() {
    let op = HostileProvider::start("portcullis", "").await;
    let up = Whoami::start("app");
    let gw = Gateway::start(&config(&op.issuer, &up.url(), false));
    let gw_ui = Gateway::start(&config(&op.issuer, &up.url(), true));

    op.set_mode(Mode::Good);
    let w = attempt(&gw).await;
    assert_eq!(
        w.last().status,
        200,
        "control login works: {w:#?}\n{}",
        gw.proc.logs()
    );
    assert!(w.session_set_cookie().is_some());

    // Rotation (before the cases that also trigger refetches, which are rate-limited): the token's kid is unknown to the cached JWKS; one refetch finds it.
    op.set_mode(Mode::RotatedKey);
    let w = attempt(&gw).await;
    assert_eq!(
        w.last().status,
        200,
        "rotated key accepted: {}",
        gw.proc.logs()
    );
    assert!(w.session_set_cookie().is_some());
    assert!(gw
        .proc
        .logs()
        .contains("unknown signing key id: JWKS refetched"));
    // The two logins above reached the app; their requests are counted after the answers are
    // sent, so wait for both before the cases compare the count (else the first case could see
    // a late count as its own upstream hit).
    assert!(
        eventually(std::time::Duration::from_secs(10), || upstream_hits(&gw)
            >= 2.0)
        .await,
        "{}",
        gw.metrics()
    );

    let cases = [
        (Mode::BadSignature, "Signature"),
        (Mode::AlgNone, "id_token rejected"),
        (Mode::Hs256WithRsaPublicKey, "id_token rejected"),
        (Mode::InjectedJkuJwk, "id_token rejected"),
        (Mode::WrongIssuer, "id_token rejected"),
        (Mode::TrailingSlashIssuer, "id_token rejected"),
        (Mode::WrongAudience, "id_token rejected"),
        (Mode::ExtraAudienceNoAzp, "id_token rejected"),
        (Mode::MissingExp, "id_token rejected"),
        (Mode::Expired, "id_token rejected"),
        (Mode::MissingIat, "id_token rejected"),
        (Mode::FutureNbf, "nbf is in the future"),
        (Mode::MissingSub, "id_token rejected"),
        (Mode::WrongNonce, "id_token rejected"),
        (Mode::MissingNonce, "id_token rejected"),
        (Mode::MixUpIss, "is not the provider this login started at"),
        (Mode::AlteredState, "state does not match"),
        // L7: the metadata promises `iss` (RFC 9207), so a response without it is refused.
        (Mode::NoIss, "has no iss"),
    ];
    let mut failures = Vec::new();
    for (mode, why) in cases {
        op.set_mode(mode);
        let hits = upstream_hits(&gw);
        let before = refusals(&gw);
        let w = attempt(&gw).await;
        // The log line is written before the response, but reaches the captured output
        // asynchronously: wait for it (bounded, generously: the whole suite shares two cores)
        // rather than race it.
        let logged = eventually(std::time::Duration::from_secs(10), || {
            refusals(&gw) == before + 1
                && gw
                    .proc
                    .logs()
                    .lines()
                    .rev()
                    .take(5)
                    .any(|l| l.contains(why))
        })
        .await;
        let logs = gw.proc.logs();
        let ok = w.last().status == 401
            && w.session_set_cookie().is_none()
            && upstream_hits(&gw) == hits
            && logged;
        if !ok {
            failures.push(format!(
                "{mode:?}: status {} session {} log tail:\n{}",
                w.last().status,
                w.session_set_cookie().is_some(),
                logs.lines().rev().take(3).collect::<Vec<_>>().join("\n")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "hostile cases not refused:\n{}",
        failures.join("\n\n")
    );

    op.set_mode(Mode::UserInfoSubMismatch);
    let w = attempt(&gw_ui).await;
    assert_eq!(w.last().status, 401);
    assert!(w.session_set_cookie().is_none());
    assert!(gw_ui.proc.logs().contains("userinfo rejected: sub differs"));

    // Finding L10: UserInfo is read with the same 1 MiB cap as every provider response.
    op.set_mode(Mode::HugeUserInfo);
    let w = attempt(&gw_ui).await;
    assert_eq!(w.last().status, 401, "{w:#?}");
    assert!(w.session_set_cookie().is_none());
    assert!(gw_ui
        .proc
        .logs()
        .contains("userinfo rejected: response too large"));

    let m = gw.metrics();
    assert!(
        m.contains(
            "portcullis_auth_events_total{event=\"login\",idp=\"evil\",outcome=\"failure\"} 18"
        ),
        "{m}\n{}",
        gw.proc.logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_with_a_different_issuer_spelling_is_refused_at_discovery() {
    let op = HostileProvider::start("portcullis", "/").await;
    let up = Whoami::start("app");
    let gw = Gateway::start(&config(&op.issuer, &up.url(), false));
    let w = attempt(&gw).await;
    assert_eq!(w.last().status, 502, "{w:#?}");
    assert!(
        w.hops.iter().all(|h| !h.url.contains("/authorize")),
        "never sent to the provider"
    );
    assert!(w.session_set_cookie().is_none());
    assert_eq!(upstream_hits(&gw), 0.0);
    let logs = gw.proc.logs();
    assert!(logs.to_lowercase().contains("issuer"), "{logs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn several_providers_are_chosen_by_route_or_on_a_chooser_page() {
    let a = HostileProvider::start("portcullis", "").await;
    let b = HostileProvider::start("portcullis", "").await;
    let up = Whoami::start("app");
    let gw = Gateway::start(&format!(
        "{SERVER}session:
  keys: [\"{SESSION_KEY}\"]
identity_providers:
  - {{ id: a, type: oidc, issuer: \"{}\", client_id: portcullis, client_secret: s }}
  - {{ id: b, type: oidc, issuer: \"{}\", client_id: portcullis, client_secret: s }}
routes:
  - {{ id: pinned, path: /b, upstream: \"{}\", policy: authenticated, identity_provider: b }}
  - {{ id: any, path: /, upstream: \"{}\", policy: authenticated }}
",
        a.issuer,
        b.issuer,
        up.url(),
        up.url()
    ));
    let w = Browser::new()
        .walk_until(&format!("{}/b/x", gw.https()), |_| true)
        .await;
    let loc = w.last().location.clone().unwrap();
    assert!(
        loc.starts_with(&format!("{}/authorize?", b.issuer)),
        "{loc}"
    );
    let w = Browser::new()
        .walk_until(&format!("{}/other", gw.https()), |_| true)
        .await;
    let loc = w.last().location.clone().unwrap();
    assert!(
        loc.starts_with(&format!("{}/.portcullis/login?rd=", gw.https())),
        "{loc}"
    );
    let browser = Browser::new();
    let page = browser.walk(&loc).await;
    assert_eq!(page.last().status, 200);
    assert!(
        page.body.contains("idp=a") && page.body.contains("idp=b"),
        "{}",
        page.body
    );
    // Picking a provider on the chooser completes the login and returns to the page.
    let link = format!("{}/.portcullis/login?idp=a&rd=%2Fother", gw.https());
    let w = browser.walk(&link).await;
    assert_eq!(w.last().status, 200, "{w:#?}");
    assert_eq!(w.last().url, format!("{}/other", gw.https()));

    // Finding L7: each provider has its own callback; the response to a login started at `a`
    // is refused at `b`'s callback.
    let br = Browser::new();
    let w = br
        .walk_until(
            &format!("{}/.portcullis/login?idp=a&rd=%2Fother", gw.https()),
            |u| u.contains("/.portcullis/callback"),
        )
        .await;
    let cb = w.last().location.clone().unwrap();
    assert!(
        cb.starts_with(&format!("{}/.portcullis/callback/a?", gw.https())),
        "{cb}"
    );
    let r = br
        .walk_until(&cb.replace("/callback/a?", "/callback/b?"), |_| true)
        .await;
    assert_eq!(r.last().status, 401, "{r:#?}");
    assert!(r.session_set_cookie().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn backchannel_logout_tokens_are_verified_and_never_replayed() {
    let op = HostileProvider::start("portcullis", "").await;
    let up = Whoami::start("app");
    let gw = Gateway::start(&config(&op.issuer, &up.url(), false));
    let b = Browser::new();
    let app = format!("{}/app/", gw.https());
    assert_eq!(b.walk(&app).await.last().status, 200);
    let post = |token: String| {
        let url = format!("{}/.portcullis/backchannel-logout", gw.http());
        async move {
            client(None)
                .post(url)
                .form(&[("logout_token", token)])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        post(op.logout_token("alice", "old", 3600)).await,
        400,
        "stale iat"
    );
    let mut forged = op.logout_token("alice", "forged", 0);
    forged.replace_range(forged.len() - 4.., "AAAA");
    assert_eq!(post(forged).await, 400, "bad signature");
    let r = b.api_get(&app).await;
    assert_eq!(r.status(), 200, "refused tokens revoke nothing");
    let token = op.logout_token("alice", "j1", 0);
    assert_eq!(post(token.clone()).await, 200);
    let r = b.api_get(&app).await;
    assert_eq!(r.status(), 401, "session revoked");
    assert_eq!(post(token).await, 400, "replayed token refused");
    assert!(gw.proc.logs().contains("logout_token replayed"));

    // A token naming only the provider session (`sid`, no `sub`, no `exp`: both optional in
    // the spec) ends the sessions of that provider session.
    let b = Browser::new();
    assert_eq!(b.walk(&app).await.last().status, 200);
    let api = |b: &Browser| {
        b.client
            .get(&app)
            .header("accept", "application/json")
            .send()
    };
    type Edit = Box<dyn FnOnce(&mut serde_json::Map<String, serde_json::Value>)>;
    let sid = |c: &mut serde_json::Map<String, serde_json::Value>| {
        c.insert("sid".into(), serde_json::json!(HOSTILE_SID));
    };
    let hostile: Vec<(&str, Edit)> = vec![
        ("no sub and no sid", Box::new(|_| {})),
        (
            "other audience",
            Box::new(move |c| {
                sid(c);
                c.insert("aud".into(), serde_json::json!("someone-else"));
            }),
        ),
        (
            "nonce present",
            Box::new(move |c| {
                sid(c);
                c.insert("nonce".into(), serde_json::json!("n"));
            }),
        ),
        (
            "exp passed",
            Box::new(move |c| {
                sid(c);
                let iat = c["iat"].as_i64().unwrap();
                c.insert("exp".into(), serde_json::json!(iat - 300));
            }),
        ),
        (
            "iat in the future",
            Box::new(move |c| {
                sid(c);
                let iat = c["iat"].as_i64().unwrap();
                c.insert("iat".into(), serde_json::json!(iat + 3600));
            }),
        ),
        (
            "no logout event",
            Box::new(move |c| {
                sid(c);
                c.insert("events".into(), serde_json::json!({}));
            }),
        ),
        (
            "access-token typed",
            Box::new(move |c| {
                sid(c);
                c.insert(
                    "header".into(),
                    serde_json::json!({"alg": "RS256", "kid": "k1", "typ": "at+jwt"}),
                );
            }),
        ),
        (
            "wrong issuer",
            Box::new(move |c| {
                sid(c);
                c.insert("iss".into(), serde_json::json!("https://other.example"));
            }),
        ),
    ];
    for (i, (why, edit)) in hostile.into_iter().enumerate() {
        let status = post(op.logout_token_with(&format!("h{i}"), edit)).await;
        assert!(matches!(status, 400 | 404), "{why}: {status}");
        assert_eq!(
            api(&b).await.unwrap().status(),
            200,
            "{why} revoked nothing"
        );
    }
    let unsigned = {
        let t = op.logout_token_with("none", sid);
        let mut p = t.split('.');
        let (_, payload) = (p.next(), p.next().unwrap());
        format!(
            "{}.{payload}.",
            base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                r#"{"alg":"none"}"#
            )
        )
    };
    assert_eq!(post(unsigned).await, 400, "alg none");
    assert_eq!(api(&b).await.unwrap().status(), 200);
    assert_eq!(post(op.logout_token_with("sid-only", sid)).await, 200);
    assert_eq!(
        api(&b).await.unwrap().status(),
        401,
        "the sid-only token ended the session"
    );
}

/// MFA done at the provider (`amr`) counts only where a route lists it as `idp:<amr>`: the
/// provider's `sms` is not the gateway's `sms` factor.
#[tokio::test(flavor = "multi_thread")]
async fn provider_mfa_counts_only_where_a_route_accepts_it() {
    let op = HostileProvider::start("portcullis", "").await;
    let up = Whoami::start("app");
    let gw = Gateway::start(&config(&op.issuer, &up.url(), false).replace(
        "routes:\n",
        &format!(
            "routes:
  - {{ id: idp-mfa, path: /idp-mfa, upstream: \"{0}\", policy: {{ allow: [ {{ mfa: {{ methods: [\"idp:mfa\"], max_age: 5m }} }} ] }} }}
  - {{ id: gw-mfa, path: /gw-mfa, upstream: \"{0}\", policy: {{ allow: [ {{ mfa: {{ methods: [totp, sms], max_age: 5m }} }} ] }} }}
",
            up.url()
        ),
    ));
    op.set_mode(Mode::IdpMfa);
    let b = Browser::new();
    assert_eq!(
        b.walk(&format!("{}/app/", gw.https())).await.last().status,
        200
    );
    let api = |path: &str| {
        b.client
            .get(format!("{}{path}", gw.https()))
            .header("accept", "application/json")
            .send()
    };
    assert_eq!(api("/idp-mfa/x").await.unwrap().status(), 200);
    let r = api("/gw-mfa/x").await.unwrap();
    assert_eq!(
        r.status(),
        401,
        "the provider's amr sms is not the gateway's sms"
    );
    let j: serde_json::Value = r.json().await.unwrap();
    assert_eq!(j["error"], "step_up_required");

    // Without amr from the provider, the provider-MFA route asks for step-up too.
    op.set_mode(Mode::Good);
    let b2 = Browser::new();
    assert_eq!(
        b2.walk(&format!("{}/app/", gw.https())).await.last().status,
        200
    );
    let r = b2
        .client
        .get(format!("{}/idp-mfa/x", gw.https()))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

/// Refresh extends a session only while the provider keeps vouching for the same user: a
/// refreshed ID token for another subject, or from another issuer, ends the session.
#[tokio::test(flavor = "multi_thread")]
async fn a_refresh_that_changes_subject_or_issuer_ends_the_session() {
    let op = HostileProvider::start("portcullis", "").await;
    let up = Whoami::start("app");
    // On a test clock: the 1 s access token expires by moving it, not by sleeping.
    let gw = Gateway::start_with_clock(Ports::fresh(), &config(&op.issuer, &up.url(), false));
    let app = format!("{}/app/", gw.https());
    let api = |b: &Browser| {
        b.client
            .get(&app)
            .header("accept", "application/json")
            .send()
    };
    op.set_expires_in(1);
    for (mode, why) in [
        (Mode::Good, None),
        (Mode::OtherSubject, Some("refreshed token changed sub")),
        (Mode::WrongIssuer, Some("id_token rejected")),
    ] {
        op.set_mode(Mode::Good);
        let b = Browser::new();
        assert_eq!(b.walk(&app).await.last().status, 200);
        op.set_mode(mode);
        gw.clock().advance(3);
        let r = api(&b).await.unwrap();
        match why {
            None => {
                assert_eq!(r.status(), 200, "an honest refresh keeps the session");
                let j = whoami_json(&r.text().await.unwrap());
                assert_eq!(
                    j["headers"]["x-portcullis-user"],
                    serde_json::json!(["alice"])
                );
            }
            Some(why) => {
                assert_eq!(r.status(), 401, "{mode:?}");
                assert!(
                    eventually(std::time::Duration::from_secs(3), || gw
                        .proc
                        .logs()
                        .lines()
                        .any(|l| l.contains("refresh refused") && l.contains(why)))
                    .await,
                    "{mode:?}: {}",
                    gw.proc.logs()
                );
                assert_eq!(api(&b).await.unwrap().status(), 401, "the session is gone");
            }
        }
    }
    assert!(gw.metrics().contains(
        "portcullis_auth_events_total{event=\"refresh\",idp=\"evil\",outcome=\"failure\"} 2"
    ));
}

/// A user in hundreds of groups (Entra ID object ids) keeps a small cookie: the identity lives
/// in the session store, and the upstream still receives every group and a verifiable assertion.
#[tokio::test(flavor = "multi_thread")]
async fn hundreds_of_groups_stay_server_side() {
    let op = HostileProvider::start("portcullis", "").await;
    let up = Whoami::start("app");
    let gw = Gateway::start(&config(&op.issuer, &up.url(), false));
    op.set_mode(Mode::ManyGroups);
    let b = Browser::new();
    let w = b.walk(&format!("{}/app/", gw.https())).await;
    assert_eq!(w.last().status, 200, "{w:#?}");
    let cookie = w.session_set_cookie().unwrap();
    assert!(cookie.len() < 300, "{} bytes: {cookie}", cookie.len());
    let j = whoami_json(&w.body);
    let groups = j["headers"]["x-portcullis-groups"][0].as_str().unwrap();
    assert_eq!(groups.split(',').count(), 400);
    let token = j["headers"]["x-portcullis-assertion"][0].as_str().unwrap();
    assert_eq!(jwt_claims(token)["groups"].as_array().unwrap().len(), 400);
}

/// An unknown `kid` triggers at most one JWKS refetch per interval: a stream of tokens with
/// invented key ids cannot make the gateway hammer the provider.
#[tokio::test(flavor = "multi_thread")]
async fn unknown_key_ids_refetch_the_jwks_at_most_once_per_interval() {
    let op = HostileProvider::start("portcullis", "").await;
    let up = Whoami::start("app");
    let gw = Gateway::start(&config(&op.issuer, &up.url(), false));
    assert_eq!(attempt(&gw).await.last().status, 200);
    let after_login = op.jwks_fetches();
    assert_eq!(after_login, 1, "discovery fetched the keys once");
    op.set_mode(Mode::InjectedJkuJwk);
    for _ in 0..5 {
        assert_eq!(attempt(&gw).await.last().status, 401);
    }
    assert_eq!(
        op.jwks_fetches(),
        after_login + 1,
        "five tokens with an unknown kid: one refetch"
    );
}

/// Identity providers follow the config file without a restart: a provider added by a reload
/// signs users in at once, and the sessions of a provider removed by it end at their next
/// request.
#[tokio::test(flavor = "multi_thread")]
async fn identity_providers_are_reloaded_and_removed_ones_end_their_sessions() {
    let a = HostileProvider::start("portcullis", "").await;
    let b = HostileProvider::start("portcullis", "").await;
    let up = Whoami::start("app");
    let cfg = |issuer: &str, id: &str| {
        config(issuer, &up.url(), false).replace("id: evil,", &format!("id: {id},"))
    };
    let gw = Gateway::start(&cfg(&a.issuer, "first"));
    let app = format!("{}/app/", gw.https());
    let old = Browser::new();
    assert_eq!(old.walk(&app).await.last().status, 200);

    gw.write_config(&cfg(&b.issuer, "second"));
    assert!(
        eventually(std::time::Duration::from_secs(10), || gw
            .metric("portcullis_config_reloads_total{result=\"success\"}")
            .is_some_and(|n| n >= 1.0))
        .await,
        "{}",
        gw.proc.logs()
    );
    let r = old.api_get(&app).await;
    assert_eq!(r.status(), 401, "the removed provider's session ended");
    let new = Browser::new();
    let w = new.walk(&app).await;
    assert_eq!(w.last().status, 200, "{w:#?}");
    assert!(
        w.hops.iter().any(|h| h.url.starts_with(&b.issuer)),
        "signed in at the new provider"
    );
    assert!(!w.hops.iter().any(|h| h.url.starts_with(&a.issuer)));
    assert!(gw.metrics().contains(
        "portcullis_auth_events_total{event=\"login\",idp=\"second\",outcome=\"success\"} 1"
    ));
}

/// Finding M8: a provider factor's `max_age` is measured from the ID token's `auth_time`, and
/// the gateway never invents freshness. Without `auth_time` (and no `prompt=login`/`max_age`
/// sent) the age is unknown and fails `max_age`; a future `auth_time` is refused at login; a
/// refresh whose ID token has no (newer) `auth_time` keeps the factor's old time, so the route
/// asks again once `max_age` has passed.
#[tokio::test(flavor = "multi_thread")]
async fn provider_factor_age_is_never_invented_by_login_or_refresh() {
    let op = HostileProvider::start("portcullis", "").await;
    let up = Whoami::start("app");
    let gw = Gateway::start(&config(&op.issuer, &up.url(), false).replace(
        "routes:\n",
        &format!(
            "routes:
  - {{ id: idp-mfa, path: /idp-mfa, upstream: \"{0}\", policy: {{ allow: [ {{ mfa: {{ methods: [\"idp:mfa\"], max_age: 3s }} }} ] }} }}
",
            up.url()
        ),
    ));
    let status = |b: &Browser| {
        let url = format!("{}/idp-mfa/x", gw.https());
        let c = b.client.clone();
        async move {
            let r = c
                .get(url)
                .header("accept", "application/json")
                .send()
                .await
                .unwrap();
            let code = r.status().as_u16();
            let body: serde_json::Value = r.json().await.unwrap_or_default();
            (code, body["error"].as_str().unwrap_or_default().to_string())
        }
    };

    // No auth_time: signed in, but the provider MFA has no known age.
    op.set_mode(Mode::IdpMfaNoAuthTime);
    let b = Browser::new();
    assert_eq!(
        b.walk(&format!("{}/app/", gw.https())).await.last().status,
        200
    );
    assert_eq!(
        status(&b).await,
        (401, "step_up_required".to_string()),
        "an unknown auth_time is not 'now'"
    );

    // A future auth_time is refused: no session.
    op.set_mode(Mode::IdpMfaFutureAuthTime);
    let b = Browser::new();
    let w = b.walk(&format!("{}/app/", gw.https())).await;
    assert_eq!(w.last().status, 401, "{w:#?}");
    assert!(w.session_cookie().is_none());
    assert!(gw.proc.logs().contains("auth_time is in the future"));

    // Fresh at login; refreshes without auth_time do not re-stamp it.
    op.set_mode(Mode::IdpMfa);
    op.set_expires_in(1);
    let b = Browser::new();
    assert_eq!(
        b.walk(&format!("{}/app/", gw.https())).await.last().status,
        200
    );
    assert_eq!(status(&b).await.0, 200, "fresh provider MFA counts");
    op.set_mode(Mode::IdpMfaNoAuthTime);
    let refreshes = || {
        gw.metric(
            "portcullis_auth_events_total{event=\"refresh\",idp=\"evil\",outcome=\"success\"}",
        )
        .unwrap_or(0.0)
    };
    let before = refreshes();
    // Each request after 1 s refreshes (expires_in: 1); the factor goes stale at 3 s.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let stale = loop {
        let s = status(&b).await;
        if s.0 != 200 {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "after max_age the provider factor is stale, refresh or not"
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    };
    assert_eq!(
        stale,
        (401, "step_up_required".to_string()),
        "the session lives on"
    );
    assert!(refreshes() > before, "refreshes happened in between");
}

/// Finding L6, with two replicas on one Redis: a back-channel logout that meets a hung session
/// store gets 503 and the provider's retry still revokes (the `jti` is recorded only after the
/// revocation); a token with `sid` and `sub` also ends the subject's sessions recorded without
/// a `sid`; and the `jti` is shared, so the other replica refuses the replay.
#[tokio::test(flavor = "multi_thread")]
async fn backchannel_logout_retries_after_store_errors_and_replays_are_refused_on_every_replica() {
    let op = HostileProvider::start("portcullis", "").await;
    let up = Whoami::start("app");
    let redis = Redis::start();
    let cfg = config(&op.issuer, &up.url(), false).replace(
        "session:\n",
        &format!("session:\n  store: \"{}\"\n", redis.url()),
    );
    let (a, b) = (Gateway::start(&cfg), Gateway::start(&cfg));
    op.set_mode(Mode::NoSid);
    let user = Browser::new();
    let app = format!("{}/app/", a.https());
    assert_eq!(user.walk(&app).await.last().status, 200);
    let post = |gw: &Gateway, token: String| {
        let url = format!("{}/.portcullis/backchannel-logout", gw.http());
        async move {
            client(None)
                .post(url)
                .form(&[("logout_token", token)])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let token = op.logout_token_with("j-retry", |c| {
        c.insert("sub".into(), serde_json::json!("alice"));
        c.insert("sid".into(), serde_json::json!(HOSTILE_SID));
    });
    redis.peer.signal("STOP");
    let first = post(&a, token.clone()).await;
    redis.peer.signal("CONT");
    assert_eq!(first, 503, "a hung store fails closed");
    assert_eq!(
        user.api_get(&app).await.status(),
        200,
        "nothing revoked yet"
    );
    assert_eq!(
        post(&a, token.clone()).await,
        200,
        "the retry is not a replay"
    );
    assert_eq!(
        user.api_get(&app).await.status(),
        401,
        "sid+sub ends the subject's session recorded without sid"
    );
    assert_eq!(
        post(&b, token).await,
        400,
        "replay refused by the other replica"
    );
    assert!(b.proc.logs().contains("logout_token replayed"));
}

/// Finding L5: when the access token has expired, parallel requests of one session redeem the
/// refresh token once (the others wait and use the result), so a provider that rotates refresh
/// tokens and treats reuse as theft does not revoke the grant.
#[tokio::test(flavor = "multi_thread")]
async fn parallel_requests_at_refresh_time_redeem_the_refresh_token_once() {
    let op = HostileProvider::start("portcullis", "").await;
    let up = Whoami::start("app");
    // On a test clock: the 1 s access token expires by moving it, not by sleeping.
    let gw = Gateway::start_with_clock(Ports::fresh(), &config(&op.issuer, &up.url(), false));
    let app = format!("{}/app/", gw.https());
    op.set_expires_in(1);
    let b = Browser::new();
    assert_eq!(b.walk(&app).await.last().status, 200);
    op.set_expires_in(3600);
    // The access token lives 1 s: move the gateway's clock past it.
    gw.clock().advance(3);
    let before = op.refreshes();
    let requests: Vec<_> = (0..8)
        .map(|_| {
            let (c, u) = (b.client.clone(), app.clone());
            tokio::spawn(async move {
                c.get(u)
                    .header("accept", "application/json")
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    for r in requests {
        assert_eq!(r.await.unwrap(), 200);
    }
    assert_eq!(op.refreshes() - before, 1, "one redemption for 8 requests");
}

/// CR/LF injection: a provider-controlled claim holding a newline (logged as the user and
/// `sub` at sign-in, with the text log format) cannot start a forged line in the gateway log.
#[tokio::test(flavor = "multi_thread")]
async fn provider_claims_cannot_forge_log_lines() {
    let op = HostileProvider::start("portcullis", "").await;
    let up = Whoami::start("app");
    let gw = Gateway::start(&config(&op.issuer, &up.url(), false));
    op.set_mode(Mode::NewlineSub);
    let w = attempt(&gw).await;
    assert_eq!(w.last().status, 200, "{w:#?}");
    assert!(
        eventually(std::time::Duration::from_secs(3), || gw
            .proc
            .logs()
            .contains("audit auth.login "))
        .await
    );
    let logs = gw.proc.logs();
    assert!(
        logs.lines()
            .all(|l| !l.contains("FORGED-LINE") || l.contains("audit auth.login ")),
        "a claim started a log line of its own:\n{logs}"
    );
    assert!(
        logs.contains("alice\\r\\n2026-12-03"),
        "escaped in place:\n{logs}"
    );
}

/// Entra ID's groups overage (`_claim_names.groups`, no list): with `entra:` the gateway reads
/// the groups from Microsoft Graph (both pages) with the user's token, and a group rule sees
/// them, again at every refresh; without `entra:` the session says `groups_overage` and a group
/// rule denies; with Graph down the refresh and the sign-in are refused (a partial list could slip past a rule that denies a group).
#[tokio::test(flavor = "multi_thread")]
async fn entra_groups_overage_is_resolved_through_graph_or_refused() {
    let op = HostileProvider::start("portcullis", "").await;
    let up = Whoami::start("app");
    let cfg = |entra: &str| {
        format!(
            "{SERVER}session:
  keys: [\"{SESSION_KEY}\"]
identity_providers:
  - {{ id: evil, type: oidc, issuer: \"{i}\", client_id: portcullis, client_secret: s{entra} }}
routes:
  - {{ id: team, path: /team, upstream: \"{u}\", policy: {{ allow: [ {{ groups: [g-3] }} ] }} }}
  - {{ id: app, path: /app, upstream: \"{u}\", policy: authenticated }}
",
            i = op.issuer,
            u = up.url()
        )
    };
    // On a test clock: the 1 s access token expires by moving it, so refreshes resolve again.
    let resolved = Gateway::start_with_clock(
        Ports::fresh(),
        &cfg(&format!(", entra: {{ graph_url: \"{}\" }}", op.issuer)),
    );
    op.set_expires_in(1);
    let recorded = Gateway::start(&cfg(""));
    op.set_mode(Mode::GroupsOverage);

    let b = Browser::new();
    let w = b.walk(&format!("{}/team/", resolved.https())).await;
    assert_eq!(w.last().status, 200, "{w:#?}\n{}", resolved.proc.logs());
    let j = whoami_json(&w.body);
    assert_eq!(j["headers"]["x-portcullis-groups"][0], "g-1,g-2,g-3");
    let token = j["headers"]["x-portcullis-assertion"][0].as_str().unwrap();
    assert!(jwt_claims(token).get("groups_overage").is_none());

    // A refresh resolves the groups again; with Graph down it ends the session.
    let team = format!("{}/team/", resolved.https());
    let before = op.refreshes();
    resolved.clock().advance(3);
    let r = b.api_get(&team).await;
    assert_eq!(r.status(), 200);
    assert!(op.refreshes() > before, "the session was refreshed");
    let j = whoami_json(&r.text().await.unwrap());
    assert_eq!(j["headers"]["x-portcullis-groups"][0], "g-1,g-2,g-3");
    op.set_mode(Mode::GroupsOverageGraphDown);
    resolved.clock().advance(3);
    assert_eq!(b.api_get(&team).await.status(), 401, "refresh refused");
    op.set_mode(Mode::GroupsOverage);

    let b = Browser::new();
    let w = b.walk(&format!("{}/app/", recorded.https())).await;
    assert_eq!(w.last().status, 200, "{w:#?}");
    let token = whoami_json(&w.body)["headers"]["x-portcullis-assertion"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(jwt_claims(&token)["groups_overage"], true);
    let r = b.api_get(&format!("{}/team/", recorded.https())).await;
    assert_eq!(r.status(), 403, "no group list: a group rule denies");

    op.set_mode(Mode::GroupsOverageGraphDown);
    let w = Browser::new()
        .walk(&format!("{}/app/", resolved.https()))
        .await;
    assert_eq!(w.last().status, 401, "{w:#?}");
    assert!(w.session_set_cookie().is_none());
    let logs = resolved.proc.logs();
    assert!(logs.contains("groups overage not resolved"), "{logs}");
}
