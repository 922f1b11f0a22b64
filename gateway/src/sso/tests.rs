use super::*;
use portcullis_policy::input::Identity;
use std::collections::HashMap;

fn sso(extra: &str) -> Sso {
    sso_with_clock(extra, crate::clock::Clock::system())
}

fn sso_with_clock(extra: &str, clock: crate::clock::Clock) -> Sso {
    let text = format!(
        "session:\n  keys: [\"{}\"]\n  idle_timeout: 10m\n  absolute_timeout: 1h\n  return_to_allow: [\"https://docs.example.com\"]\n{extra}routes:\n  - {{ id: a, upstream: \"http://127.0.0.1:9\", policy: public }}\n",
        "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="
    );
    let cfg = crate::config::load_str(&text, "t", &HashMap::<String, String>::new()).unwrap();
    Sso::new(&cfg, crate::audit::Audit::disabled(), clock).unwrap()
}

/// The provider the test sessions come from (nothing is fetched until a login).
const CORP: &str = "identity_providers:\n  - { id: corp, type: oidc, issuer: \"https://op.example\", client_id: c, client_secret: s }\n";

fn record(created_ago: i64, seen_ago: i64) -> SessionRecord {
    record_at(crate::clock::Clock::system().unix(), created_ago, seen_ago)
}

fn record_at(now: i64, created_ago: i64, seen_ago: i64) -> SessionRecord {
    SessionRecord {
        identity: Identity {
            user: "alice".into(),
            ..Default::default()
        },
        idp: "corp".into(),
        sub: "alice".into(),
        idp_sid: None,
        created: now - created_ago,
        last_seen: now - seen_ago,
        refresh_token: None,
        refresh_at: None,
        id_token: None,
        csrf: "tok".into(),
    }
}

fn headers_with(s: &Sso, sid: &str, tls: bool) -> http::HeaderMap {
    let set = s.session_cookie(sid, tls).unwrap();
    let pair = set.split(';').next().unwrap().to_string();
    let mut h = http::HeaderMap::new();
    h.insert("cookie", pair.parse().unwrap());
    h
}

#[test]
fn return_urls_stay_on_this_origin_or_the_allow_list() {
    let s = sso("");
    let o = "https://app.test";
    assert_eq!(s.return_to(Some("/x?y=1"), o), "https://app.test/x?y=1");
    assert_eq!(s.return_to(Some("//evil.test/x"), o), "https://app.test/");
    assert_eq!(s.return_to(Some("/\\evil.test"), o), "https://app.test/");
    assert_eq!(
        s.return_to(Some("https://evil.test/"), o),
        "https://app.test/"
    );
    assert_eq!(
        s.return_to(Some("https://app.test/p"), o),
        "https://app.test/p"
    );
    assert_eq!(
        s.return_to(Some("https://docs.example.com/a"), o),
        "https://docs.example.com/a"
    );
    assert_eq!(
        s.return_to(Some("javascript:alert(1)"), o),
        "https://app.test/"
    );
    assert_eq!(s.return_to(None, o), "https://app.test/");
}

#[tokio::test]
async fn a_valid_cookie_finds_the_session_and_timeouts_end_it() {
    let s = sso(CORP);
    s.store.save("live", &record(10, 5), 600).await.unwrap();
    s.store.save("idle", &record(700, 660), 600).await.unwrap();
    s.store.save("old", &record(3700, 5), 600).await.unwrap();
    let a = s
        .identify(&headers_with(&s, "live", true), true)
        .await
        .unwrap();
    assert_eq!(a.unwrap().record.identity.user, "alice");
    assert!(s
        .identify(&headers_with(&s, "idle", true), true)
        .await
        .unwrap()
        .is_none());
    assert!(
        s.store.load("idle").await.unwrap().is_none(),
        "idle session removed"
    );
    assert!(s
        .identify(&headers_with(&s, "old", true), true)
        .await
        .unwrap()
        .is_none());
    assert!(
        s.store.load("old").await.unwrap().is_none(),
        "expired session removed"
    );
}

/// Idle and absolute timeouts, the `last_seen` touch and the refresh deadline, all by moving
/// a manual clock (idle 10m, absolute 1h): no sleeping, no dependence on the real time.
#[tokio::test]
async fn timeouts_touch_and_refresh_follow_the_clock() {
    use std::time::Duration;
    let m = crate::clock::ManualClock::at_unix(1_700_000_000);
    // Port 9 refuses at once: a refresh attempt shows up as "provider unavailable".
    let s = sso_with_clock(
        "identity_providers:\n  - { id: corp, type: oidc, issuer: \"http://127.0.0.1:9\", client_id: c, client_secret: s }\n",
        m.clock(),
    );
    let now = s.clock.unix();
    let ok = |sid: &'static str| {
        let h = headers_with(&s, sid, true);
        let s = &s;
        async move { s.identify(&h, true).await }
    };
    s.store
        .save("a", &record_at(now, 0, 0), 7200)
        .await
        .unwrap();
    // Touched every 9 minutes: never idle for 10, so it lives until the absolute timeout.
    for _ in 0..6 {
        m.advance(Duration::from_secs(9 * 60));
        let a = ok("a").await.unwrap().expect("still signed in");
        assert_eq!(a.record.last_seen, s.clock.unix(), "touched");
    }
    m.advance(Duration::from_secs(7 * 60));
    assert!(
        ok("a").await.unwrap().is_none(),
        "absolute timeout (61 min)"
    );
    assert!(s.store.load("a").await.unwrap().is_none());

    let now = s.clock.unix();
    s.store
        .save("b", &record_at(now, 0, 0), 7200)
        .await
        .unwrap();
    m.advance(Duration::from_secs(10 * 60));
    assert!(
        ok("b").await.unwrap().is_some(),
        "exactly 10 min idle is allowed"
    );
    m.advance(Duration::from_secs(10 * 60 + 1));
    assert!(ok("b").await.unwrap().is_none(), "idle timeout");

    let now = s.clock.unix();
    let mut r = record_at(now, 0, 0);
    r.refresh_token = Some("rt".into());
    r.refresh_at = Some(now + 300);
    s.store.save("c", &r, 7200).await.unwrap();
    m.advance(Duration::from_secs(299));
    assert!(ok("c").await.unwrap().is_some(), "refresh not yet due");
    m.advance(Duration::from_secs(1));
    assert!(
        matches!(ok("c").await, Err(AuthError::ProviderUnavailable(_))),
        "refresh due: the provider is asked"
    );
}

#[tokio::test]
async fn cookies_for_another_scheme_or_forged_are_ignored() {
    let s = sso("");
    s.store.save("live", &record(10, 5), 600).await.unwrap();
    // A __Host- cookie value is sealed for its name; it does not open as the plain cookie.
    let https = headers_with(&s, "live", true);
    let v = https["cookie"]
        .to_str()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_string();
    let mut h = http::HeaderMap::new();
    h.insert("cookie", format!("portcullis={v}").parse().unwrap());
    assert!(s.identify(&h, false).await.unwrap().is_none());
    let mut h = http::HeaderMap::new();
    h.insert("cookie", "__Host-portcullis=live".parse().unwrap());
    assert!(s.identify(&h, true).await.unwrap().is_none());
}

#[tokio::test]
async fn logout_needs_the_csrf_token_and_same_origin() {
    let s = sso(CORP);
    s.store.save("live", &record(10, 5), 600).await.unwrap();
    let h = headers_with(&s, "live", true);
    let o = "https://app.test";
    assert!(matches!(
        s.logout("csrf=wrong", &h, o, true, "127.0.0.1").await,
        Err(AuthError::Csrf)
    ));
    let mut cross = h.clone();
    cross.insert("origin", "https://evil.test".parse().unwrap());
    assert!(matches!(
        s.logout("csrf=tok", &cross, o, true, "127.0.0.1").await,
        Err(AuthError::Csrf)
    ));
    assert!(s.store.load("live").await.unwrap().is_some());
    let r = s
        .logout("csrf=tok", &h, o, true, "127.0.0.1")
        .await
        .unwrap();
    assert!(r.cookies[0].contains("Max-Age=0"));
    assert!(s.store.load("live").await.unwrap().is_none());
}

/// The sign-in endpoints are a plain function over the dispatcher's one `LocalRequest`: the
/// logout form and its POST run here without pingora, and a body the dispatcher could not read
/// is refused before anything changes.
#[tokio::test]
async fn sign_in_endpoints_serve_a_local_request_without_the_proxy() {
    use crate::auth_endpoints::serve;
    use crate::errors::GatewayError;
    use crate::local_request::{BodyError, LocalRequest};
    let s = sso(CORP);
    s.store.save("live", &record(10, 5), 600).await.unwrap();
    let mut get = LocalRequest::new(http::Method::GET, "/.portcullis/logout");
    get.headers = headers_with(&s, "live", true);
    let page = serve(&s, &get).await.unwrap();
    assert_eq!(page.status, 200);
    assert!(String::from_utf8(page.body)
        .unwrap()
        .contains("value=\"tok\""));

    let mut post = get.clone();
    post.method = http::Method::POST;
    post.body = Err(BodyError::TooLarge);
    assert!(matches!(
        serve(&s, &post).await,
        Err(GatewayError::Auth {
            err: AuthError::BadRequest("body too large"),
            ..
        })
    ));
    post.body = Ok(vec![0xff]);
    assert!(matches!(
        serve(&s, &post).await,
        Err(GatewayError::Auth {
            err: AuthError::BadRequest("body is not UTF-8"),
            ..
        })
    ));
    assert!(s.store.load("live").await.unwrap().is_some());
    post.body = Ok(b"csrf=tok".to_vec());
    assert_eq!(serve(&s, &post).await.unwrap().status, 302);
    assert!(s.store.load("live").await.unwrap().is_none());

    let unknown = LocalRequest::new(http::Method::DELETE, "/.portcullis/logout");
    assert!(matches!(
        serve(&s, &unknown).await,
        Err(GatewayError::NoRoute)
    ));
}

#[test]
fn redis_store_without_configured_keys_is_refused() {
    let text = "session:\n  store: redis://127.0.0.1:6379/0\nroutes: []\n";
    let e = crate::config::load_str(text, "t", &HashMap::<String, String>::new()).unwrap_err();
    assert!(e.to_string().contains("session.keys"), "{e}");
}

#[test]
fn provider_config_is_validated_with_key_paths() {
    let text = "identity_providers:
  - id: corp
    type: oidc
    issuer: http://idp.example.com
    client_id: c
    algorithms: [none]
    claims: { colour: x }
routes: []
";
    let e = crate::config::load_str(text, "t", &HashMap::<String, String>::new())
        .unwrap_err()
        .to_string();
    for want in [
        "identity_providers[0].issuer: must be https",
        "identity_providers[0].client_secret: missing: set client_secret or client_secret_file",
        "identity_providers[0].algorithms[0]: \"none\" is not one of",
        "identity_providers[0].claims.colour",
    ] {
        assert!(e.contains(want), "missing {want:?} in:\n{e}");
    }
    let ok = "identity_providers:
  - { id: corp, type: oidc, issuer: \"http://127.0.0.1:5556\", client_id: c, client_secret: s }
routes: []
";
    assert!(crate::config::load_str(ok, "t", &HashMap::<String, String>::new()).is_ok());
}

/// Users' access tokens go to `entra.graph_url`: only over HTTPS (plain HTTP to this machine
/// only, for tests), and the default is Microsoft Graph.
#[test]
fn entra_graph_url_must_be_https() {
    let load = |entra: &str| {
        let text = format!(
            "identity_providers:\n  - {{ id: corp, type: oidc, issuer: \"https://op.example\", client_id: c, client_secret: s, entra: {entra} }}\nroutes: []\n"
        );
        crate::config::load_str(&text, "t", &HashMap::<String, String>::new())
    };
    for bad in [
        "{ graph_url: \"http://graph.example.com\" }",
        "{ graph_url: \"not a url\" }",
    ] {
        let e = load(bad).unwrap_err().to_string();
        assert!(
            e.contains("identity_providers[0].entra.graph_url"),
            "{bad}: {e}"
        );
    }
    let cfg = load("{}").unwrap();
    let graph = cfg.identity_providers[0].entra.as_ref().unwrap();
    assert_eq!(graph.graph_url.as_str(), "https://graph.microsoft.com/");
    assert!(load("{ graph_url: \"http://127.0.0.1:9\" }").is_ok());
}

#[tokio::test]
async fn sessions_of_a_removed_provider_end_at_their_next_request() {
    let s = sso(CORP);
    s.store.save("live", &record(10, 5), 600).await.unwrap();
    let h = headers_with(&s, "live", true);
    assert!(s.identify(&h, true).await.unwrap().is_some());
    s.set_providers(&[]);
    assert!(s.identify(&h, true).await.unwrap().is_none());
    assert!(
        s.store.load("live").await.unwrap().is_none(),
        "the session is gone"
    );
}

/// Deprovisioning through [`Sso::revoke_user`] ends that user's sessions at that provider only
/// and writes one `session.revoked` event with the reason and the count.
#[tokio::test]
async fn revoke_user_ends_the_users_sessions_and_is_audited() {
    let (audit, mut chain) = crate::audit::Audit::capture();
    let text = format!(
        "session:\n  keys: [\"{}\"]\n{CORP}routes:\n  - {{ id: a, upstream: \"http://127.0.0.1:9\", policy: public }}\n",
        "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="
    );
    let cfg = crate::config::load_str(&text, "t", &HashMap::<String, String>::new()).unwrap();
    let s = Sso::new(&cfg, audit, crate::clock::Clock::system()).unwrap();
    let mut other = record(0, 0);
    other.idp = "partner".into();
    for (sid, rec) in [("1", record(0, 0)), ("2", record(0, 0)), ("3", other)] {
        s.store.save(sid, &rec, 60).await.unwrap();
    }
    assert_eq!(
        s.revoke_user("corp", "alice", "deprovisioned")
            .await
            .unwrap(),
        2
    );
    assert!(
        s.store.load("3").await.unwrap().is_some(),
        "partner's alice kept"
    );
    let (event, _) = chain.recv().await.unwrap();
    assert_eq!(event.kind, "session.revoked");
    assert_eq!(event.data["reason"], "deprovisioned");
    assert_eq!(event.data["sessions"], 2);
    assert_eq!(event.data["sub"], "alice");
}

/// With Redis sessions the process has one Redis connection, which the attempt limiters are
/// given (`server.rs` passes `Sso::redis` to MFA and local accounts); with memory sessions none.
#[test]
/// Only whether a connection is offered is checked here; that sessions and limiters really
/// share it is counted at a real Redis (`tests/tests/mfa_limits.rs`, `CLIENT LIST`).
fn a_redis_session_store_offers_its_connection_to_the_limiters() {
    let text = "session:\n  keys: [\"AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=\"]\n  store: \"redis://127.0.0.1:1/0\"\nroutes: []\n";
    let cfg = crate::config::load_str(text, "t", &HashMap::<String, String>::new()).unwrap();
    let s = Sso::new(
        &cfg,
        crate::audit::Audit::disabled(),
        crate::clock::Clock::system(),
    )
    .unwrap();
    assert!(s.redis().is_some(), "a Redis store offers its connection");
    assert!(sso("").redis().is_none(), "memory sessions: no Redis");
}
