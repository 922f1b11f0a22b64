//! Single sign-on against a real OpenID Provider (npm `oidc-provider`): the browser flow with a
//! cookie-jar client, identity and signed assertion at the upstream, API 401s, logout with
//! CSRF, back-channel logout, refresh, and replayed callbacks.

use portcullis_e2e::oidc::*;
use portcullis_e2e::*;
use std::time::Duration;

struct Setup {
    op: OpenIdProvider,
    gw: Gateway,
    up: Whoami,
}

fn config(ports: &Ports, issuer: &str, up: &str, extra_session: &str) -> String {
    format!(
        "{SERVER}session:
  keys: [\"{SESSION_KEY}\"]
{extra_session}identity_providers:
  - id: corp
    type: oidc
    issuer: \"{issuer}\"
    client_id: {CLIENT_ID}
    client_secret: {CLIENT_SECRET}
    scopes: [openid, email, profile, groups]
    userinfo: true
    post_logout_redirect_uri: \"https://127.0.0.1:{https}/\"
routes:
  - {{ id: app, path: /app, upstream: \"{up}\", policy: authenticated }}
  - {{ id: open, path: /, upstream: \"{up}\", policy: public }}
",
        https = ports.https
    )
}

fn setup(at_ttl: u64) -> Setup {
    setup_inner(at_ttl, false)
}

/// [`setup`] with the gateway on a test clock ([`Gateway::start_with_clock`]).
fn setup_with_clock(at_ttl: u64) -> Setup {
    setup_inner(at_ttl, true)
}

fn setup_inner(at_ttl: u64, clock: bool) -> Setup {
    let ports = Ports::fresh();
    let up = Whoami::start("app");
    let bc = format!(
        "http://127.0.0.1:{}/.portcullis/backchannel-logout",
        ports.http
    );
    let op = OpenIdProvider::start(&[ports.https], Some(&bc), at_ttl);
    let cfg = config(&ports, &op.issuer, &up.url(), "");
    let gw = if clock {
        Gateway::start_with_clock(ports, &cfg)
    } else {
        Gateway::start_on(ports, &cfg)
    };
    Setup { op, gw, up }
}

#[tokio::test(flavor = "multi_thread")]
async fn browser_login_reaches_the_app_with_verified_identity() {
    let s = setup(3600);
    let b = Browser::new();
    let app = format!("{}/app/page?x=1", s.gw.https());
    let w = b.login(&app, "alice").await;
    let last = w.last();
    assert_eq!(last.status, 200, "{w:#?}");
    assert_eq!(last.url, app, "lands back on the page it started from");
    let cookie = w.session_set_cookie().expect("session cookie set");
    for attr in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    assert!(cookie.len() < 300, "cookie carries only an id: {cookie}");
    let j = whoami_json(&w.body);
    let h = &j["headers"];
    assert_eq!(h["x-portcullis-user"], serde_json::json!(["alice"]));
    assert_eq!(
        h["x-portcullis-email"],
        serde_json::json!(["alice@example.com"])
    );
    assert_eq!(h["x-portcullis-groups"], serde_json::json!(["eng,admins"]));
    assert_eq!(
        h["x-portcullis-roles"],
        serde_json::json!(["payroll-admin"])
    );
    let cookies = h["cookie"].to_string();
    assert!(
        !cookies.contains("portcullis"),
        "session cookie leaked upstream: {cookies}"
    );
    let token = h["x-portcullis-assertion"][0].as_str().expect("assertion");
    let jwks: serde_json::Value = client(None)
        .get(format!("{}/.portcullis/jwks.json", s.gw.https()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        verify_es256(&jwks, token),
        "assertion verifies with jwks.json"
    );
    let c = jwt_claims(token);
    assert_eq!(c["sub"], "alice");
    assert_eq!(c["aud"], "app");
    assert!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap() <= 60);
    // A forged assertion from the client is replaced, not forwarded.
    let r = b
        .client
        .get(&app)
        .header("x-portcullis-assertion", "forged")
        .header("X_Portcullis_User", "mallory")
        .send()
        .await
        .unwrap();
    let j = whoami_json(&r.text().await.unwrap());
    assert_eq!(
        j["headers"]["x-portcullis-user"],
        serde_json::json!(["alice"])
    );
    assert_ne!(j["headers"]["x-portcullis-assertion"][0], "forged");
    assert!(j["headers"].get("x_portcullis_user").is_none());
    let m = s.gw.metrics();
    assert!(
        m.contains(
            "portcullis_auth_events_total{event=\"login\",idp=\"corp\",outcome=\"success\"} 1"
        ),
        "{m}"
    );
    assert!(m.contains("portcullis_sessions_active 1"), "{m}");
    drop(s.up);
}

#[tokio::test(flavor = "multi_thread")]
async fn api_clients_get_401_and_browsers_a_pkce_redirect_to_the_provider() {
    let s = setup(3600);
    let api = client(None)
        .get(format!("{}/app/x", s.gw.https()))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 401);
    assert!(api.headers().get("www-authenticate").is_some());
    assert_eq!(
        api.json::<serde_json::Value>().await.unwrap()["error"],
        "unauthenticated"
    );
    let b = Browser::new();
    let w = b
        .walk_until(&format!("{}/app/x", s.gw.https()), |_| true)
        .await;
    let hop = w.last();
    assert_eq!(hop.status, 302);
    let loc = hop.location.clone().unwrap();
    assert!(loc.starts_with(&format!("{}/auth?", s.op.issuer)), "{loc}");
    let q: std::collections::HashMap<String, String> = url::Url::parse(&loc)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["response_type"], "code");
    assert!(q["state"].len() >= 16 && q["nonce"].len() >= 16);
    assert!(hop
        .set_cookies
        .iter()
        .any(|c| c.starts_with("__Host-portcullis-auth=")
            && c.contains("HttpOnly")
            && c.contains("Secure")));
    // Public routes stay public.
    let r = client(None)
        .get(format!("{}/", s.gw.https()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn callback_replayed_in_another_browser_creates_no_session() {
    let s = setup(3600);
    let a = Browser::new();
    let app = format!("{}/app/", s.gw.https());
    let w = a.walk(&app).await;
    let page = w.last().clone();
    let form = Form::parse(&page.url, &w.body);
    let mut fields = form.fields;
    fields.push(("login".into(), "alice".into()));
    fields.push(("password".into(), "x".into()));
    let w = a
        .walk_from(a.client.post(&form.action).form(&fields), |u| {
            u.contains("/.portcullis/callback")
        })
        .await;
    let callback = w.last().location.clone().expect("callback URL");
    assert!(
        callback.contains("/.portcullis/callback/corp?"),
        "each provider has its own callback: {callback}"
    );
    let before = whoami_hits(&s);
    let mallory = Browser::new();
    let r = mallory.walk_until(&callback, |_| true).await;
    assert_eq!(r.last().status, 401);
    assert!(r
        .last()
        .set_cookies
        .iter()
        .all(|c| !c.starts_with("__Host-portcullis=")));
    // The same callback with an altered state in the right browser fails too.
    let altered = callback.replace("state=", "state=x");
    let r = a.walk_until(&altered, |_| true).await;
    assert_eq!(r.last().status, 401);
    assert!(r
        .last()
        .set_cookies
        .iter()
        .all(|c| !c.starts_with("__Host-portcullis=")));
    assert_eq!(whoami_hits(&s), before, "upstream never reached");
    let logs = s.gw.proc.logs();
    assert!(
        logs.contains("no login in progress in this browser"),
        "{logs}"
    );
    assert!(logs.contains("state does not match"), "{logs}");
}

fn whoami_hits(s: &Setup) -> usize {
    s.gw.metrics()
        .lines()
        .filter(|l| {
            l.starts_with("portcullis_http_requests_total{")
                && l.contains("route=\"app\"")
                && l.contains("decision=\"allow\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as usize
}

#[tokio::test(flavor = "multi_thread")]
async fn logout_is_a_csrf_protected_post_that_ends_the_session_and_the_provider_session() {
    let s = setup(3600);
    let b = Browser::new();
    let app = format!("{}/app/", s.gw.https());
    assert_eq!(b.login(&app, "bob").await.last().status, 200);
    let logout = format!("{}/.portcullis/logout", s.gw.https());
    let r = b
        .client
        .post(&logout)
        .form(&[("csrf", "guess")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = b.client.get(&app).send().await.unwrap();
    assert_eq!(r.status(), 200, "still signed in after a forged logout");
    let form = b.form_at(&logout).await;
    let w = b
        .walk_from(b.client.post(&form.action).form(&form.fields), |_| true)
        .await;
    let hop = w.last();
    assert_eq!(hop.status, 302);
    let loc = hop.location.clone().unwrap();
    assert!(
        loc.starts_with(&format!("{}/session/end?", s.op.issuer)),
        "{loc}"
    );
    assert!(loc.contains("id_token_hint="), "{loc}");
    assert!(hop
        .set_cookies
        .iter()
        .any(|c| c.starts_with("__Host-portcullis=;") && c.contains("Max-Age=0")));
    let r = b.api_get(&app).await;
    assert_eq!(r.status(), 401, "session destroyed server-side");
}

#[tokio::test(flavor = "multi_thread")]
async fn backchannel_logout_from_the_provider_revokes_the_session() {
    let s = setup(3600);
    let b = Browser::new();
    let app = format!("{}/app/", s.gw.https());
    assert_eq!(b.login(&app, "alice").await.last().status, 200);
    // Sign out at the provider directly (another app's logout, an admin...).
    let end = format!("{}/session/end", s.op.issuer);
    let form = b.form_at(&end).await;
    let mut fields = form.fields;
    fields.push(("logout".into(), "yes".into()));
    let r = b
        .client
        .post(&form.action)
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_redirection() || r.status().is_success(),
        "{}",
        r.status()
    );
    let gone = eventually(Duration::from_secs(10), || {
        s.gw.proc.logs().contains("audit session.revoked")
    })
    .await;
    assert!(
        gone,
        "gateway logs:\n{}\nprovider logs:\n{}",
        s.gw.proc.logs(),
        s.op.peer.logs()
    );
    let r = b.api_get(&app).await;
    assert_eq!(r.status(), 401);
    assert!(s.gw.metrics().contains(
        "portcullis_auth_events_total{event=\"backchannel_logout\",idp=\"corp\",outcome=\"success\"} 1"
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_access_token_is_refreshed_and_the_session_continues() {
    let s = setup_with_clock(2);
    let b = Browser::new();
    let app = format!("{}/app/", s.gw.https());
    assert_eq!(b.login(&app, "alice").await.last().status, 200);
    // The refresh time is the gateway's (login + expires_in): move its clock past it. The
    // provider only checks the refresh token, which lives far longer.
    s.gw.clock().advance(3);
    let r = b.client.get(&app).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let j = whoami_json(&r.text().await.unwrap());
    assert_eq!(
        j["headers"]["x-portcullis-user"],
        serde_json::json!(["alice"])
    );
    let m = s.gw.metrics();
    assert!(
        m.contains(
            "portcullis_auth_events_total{event=\"refresh\",idp=\"corp\",outcome=\"success\"}"
        ),
        "{m}\n{}",
        s.gw.proc.logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_share_sessions_and_revocations_through_redis() {
    let redis = Redis::start();
    let up = Whoami::start("app");
    let (pa, pb) = (Ports::fresh(), Ports::fresh());
    let op = OpenIdProvider::start(&[pa.https, pb.https], None, 3600);
    let store = format!("  store: \"{}\"\n", redis.url());
    let a = Gateway::start_on(pa, &config(&pa, &op.issuer, &up.url(), &store));
    let bgw = Gateway::start_on(pb, &config(&pb, &op.issuer, &up.url(), &store));
    let browser = Browser::new();
    assert_eq!(
        browser
            .login(&format!("{}/app/", a.https()), "alice")
            .await
            .last()
            .status,
        200
    );
    // Cookies are per host, not per port: the same browser now talks to replica B.
    let r = browser
        .client
        .get(format!("{}/app/", bgw.https()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "replica B knows the session");
    let j = whoami_json(&r.text().await.unwrap());
    assert_eq!(
        j["headers"]["x-portcullis-user"],
        serde_json::json!(["alice"])
    );
    assert_eq!(browser.logout(&a.https()).await.status(), 302);
    let r = browser
        .client
        .get(format!("{}/app/", bgw.https()))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "logout on A ends the session on B");
    // Sign in again, then lose the store: fail closed, nothing forwarded.
    let w = browser.walk(&format!("{}/app/", a.https())).await;
    let w = if w.last().url.starts_with(&op.issuer) {
        browser
            .submit_login(&w.last().url.clone(), &w.body, "alice")
            .await
    } else {
        w
    };
    assert_eq!(w.last().status, 200, "{w:#?}");
    drop(redis);
    let r = browser
        .client
        .get(format!("{}/app/", bgw.https()))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503, "store unreachable: refuse, never forward");
    // Public routes do not depend on the session store: the same browser, cookie and all,
    // still reaches them (the session is read only where a route needs to know the user).
    let r = browser
        .client
        .get(format!("{}/news", bgw.https()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "a public route survives a session-store outage"
    );
}

/// `private_key_jwt`: the gateway authenticates at the token endpoint with a JWT signed by
/// its own key (no shared secret registered at the provider), for the code exchange and for
/// refresh; a gateway holding another key gets no tokens and no session.
#[tokio::test(flavor = "multi_thread")]
async fn private_key_jwt_client_authentication_signs_in_and_refreshes() {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let pk = key.public_key_raw();
    let b64 =
        |b: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, b);
    let jwk = serde_json::json!({"kty": "EC", "crv": "P-256", "kid": "gw-1", "use": "sig",
        "x": b64(&pk[1..33]), "y": b64(&pk[33..65])});
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("client.pem");
    std::fs::write(&good, key.serialize_pem()).unwrap();
    let other = dir.path().join("other.pem");
    std::fs::write(
        &other,
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .unwrap()
            .serialize_pem(),
    )
    .unwrap();

    let up = Whoami::start("app");
    let (pa, pb) = (Ports::fresh(), Ports::fresh());
    let op = OpenIdProvider::start_with(&[pa.https, pb.https], None, 2, |c| {
        let o = c.as_object_mut().unwrap();
        o.remove("client_secret");
        o.insert(
            "token_endpoint_auth_method".into(),
            "private_key_jwt".into(),
        );
        o.insert("jwks".into(), serde_json::json!({"keys": [jwk]}));
    });
    let cfg = |ports: &Ports, key_file: &std::path::Path| {
        config(ports, &op.issuer, &up.url(), "").replace(
            &format!("    client_secret: {CLIENT_SECRET}\n"),
            &format!(
                "    token_auth: private_key_jwt\n    client_key_file: \"{}\"\n    client_key_id: gw-1\n",
                key_file.display()
            ),
        )
    };
    let gw = Gateway::start_with_clock(pa, &cfg(&pa, &good));
    let b = Browser::new();
    let app = format!("{}/app/", gw.https());
    let w = b.login(&app, "alice").await;
    assert_eq!(w.last().status, 200, "{w:#?}\n{}", gw.proc.logs());
    assert_eq!(
        whoami_json(&w.body)["headers"]["x-portcullis-user"],
        serde_json::json!(["alice"])
    );
    // Past the gateway's refresh time without waiting (the client assertion's `iat` is then
    // 3 s ahead of the provider, well within its clock tolerance).
    gw.clock().advance(3);
    let r = b.client.get(&app).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(gw.metrics().contains(
        "portcullis_auth_events_total{event=\"refresh\",idp=\"corp\",outcome=\"success\"}"
    ));

    let impostor = Gateway::start_on(pb, &cfg(&pb, &other));
    let b = Browser::new();
    let w = b
        .login(&format!("{}/app/", impostor.https()), "alice")
        .await;
    assert_ne!(w.last().status, 200, "{w:#?}");
    assert!(w.session_set_cookie().is_none());
    assert!(
        impostor.proc.logs().contains("token request failed"),
        "{}",
        impostor.proc.logs()
    );
}

/// Issue 11: a refresh that changes the user's groups rotates the session id; the new cookie
/// must ride on whatever answer that request gets — here a 403, because the user just lost the
/// group the route needs. Dropping it (as error answers once did) signs the user out.
#[tokio::test(flavor = "multi_thread")]
async fn a_session_id_rotated_by_a_refresh_reaches_the_browser_on_an_error_answer() {
    let ports = Ports::fresh();
    let up = Whoami::start("app");
    let op = OpenIdProvider::start(&[ports.https], None, 1);
    let gw = Gateway::start_with_clock(
        ports,
        &format!(
            "{SERVER}{}routes:
  - {{ id: app, path: /app, upstream: \"{1}\", policy: authenticated }}
  - {{ id: admins, path: /admins, upstream: \"{1}\", policy: {{ allow: [ {{ groups: [admins] }} ] }} }}
",
            op.sso_config(),
            up.url()
        ),
    );
    let b = Browser::new();
    assert_eq!(
        b.login(&format!("{}/app/", gw.https()), "alice")
            .await
            .last()
            .status,
        200
    );
    op.set_accounts(&serde_json::json!({"alice": {"groups": ["eng"]}}));
    let admins = format!("{}/admins/x", gw.https());
    // Past the 1 s access token on the gateway's clock: the next request refreshes.
    gw.clock().advance(2);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let rotated = loop {
        let r = b.api_get(&admins).await;
        let set = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with("__Host-portcullis="))
            .map(str::to_string);
        if let Some(c) = set {
            assert_eq!(r.status(), 403, "the refresh removed the admins group");
            break c;
        }
        assert_eq!(r.status(), 200, "before the refresh alice is an admin");
        assert!(
            std::time::Instant::now() < deadline,
            "no refresh rotated the session"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        !rotated.contains("Max-Age=0"),
        "a new session, not a logout: {rotated}"
    );
    // The browser kept the new cookie from the 403 and is still signed in.
    assert_eq!(
        b.api_get(format!("{}/app/", gw.https())).await.status(),
        200
    );
    assert_eq!(b.api_get(&admins).await.status(), 403);
}
