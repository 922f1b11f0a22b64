//! The pipeline's steps, one request at a time, on pingora's in-memory session (a mock stream
//! instead of a socket): what each step decides, without a listener, an upstream or a peer.

use super::Flow;
use crate::config::{self, env::EnvLookup};
use crate::errors::GatewayError;
use crate::proxy::Gateway;
use crate::routes::Runtime;
use crate::session::SessionCookie;
use crate::sso::Sso;
use pingora::proxy::{ProxyHttp, Session};
use std::sync::Arc;

struct NoEnv;
impl EnvLookup for NoEnv {
    fn var(&self, _: &str) -> Option<String> {
        None
    }
}

const KEY: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";

fn gateway(yaml: &str) -> Gateway {
    gateway_with_clock(yaml, crate::clock::Clock::system())
}

fn gateway_with_clock(yaml: &str, clock: crate::clock::Clock) -> Gateway {
    let cfg = config::load_str(yaml, "test.yaml", &NoEnv).expect("valid config");
    let sso = Arc::new(Sso::new(&cfg, crate::audit::Audit::disabled(), clock).expect("sso"));
    Gateway {
        runtime: Arc::new(arc_swap::ArcSwap::from_pointee(Runtime::new(cfg, yaml))),
        https_port: Some(8443),
        sso,
        decision_log: None,
        mfa: None,
        audit: crate::audit::Audit::disabled(),
        scim: None,
        console: None,
    }
}

async fn session(head: &str) -> Session {
    let mock = tokio_test::io::Builder::new().read(head.as_bytes()).build();
    let mut s = Session::new_h1(Box::new(mock));
    assert!(s.read_request().await.expect("a request head"));
    s
}

async fn run(gw: &Gateway, head: &str) -> (Result<Flow, GatewayError>, crate::proxy::Ctx) {
    let mut s = session(head).await;
    let mut ctx = gw.new_ctx();
    let r = gw.pipeline(&mut s, &mut ctx).await;
    (r, ctx)
}

const ROUTES: &str = "routes:
  - { id: pub, path: /pub, upstream: \"http://127.0.0.1:9\", policy: public }
  - { id: app, path: /app, upstream: \"http://127.0.0.1:9\", policy: authenticated }
";

#[tokio::test]
async fn facts_host_normalise_and_route_decide_in_order() {
    let gw = gateway(ROUTES);
    let (r, ctx) = run(&gw, "GET /pub/a/../b HTTP/1.1\r\nHost: app.test\r\n\r\n").await;
    assert!(matches!(r, Ok(Flow::Proxy)), "{r:?}");
    assert_eq!(ctx.host, "app.test");
    assert_eq!(ctx.path.as_ref().map(|p| p.decoded()), Some("/pub/b"));
    assert!(!ctx.tls);

    let (r, _) = run(&gw, "GET /nowhere HTTP/1.1\r\nHost: app.test\r\n\r\n").await;
    assert!(matches!(r, Err(GatewayError::NoRoute)), "{r:?}");
    let (r, _) = run(&gw, "GET /pub/%2e%2e/%2e%2e/x HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert!(matches!(r, Err(GatewayError::BadPath(_))), "{r:?}");
    let (r, _) = run(&gw, "GET /pub HTTP/1.1\r\nHost: a b\r\n\r\n").await;
    assert!(matches!(r, Err(GatewayError::BadHost)), "{r:?}");
    let (r, _) = run(&gw, "GET /app/x HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert!(matches!(r, Err(GatewayError::Unauthenticated)), "{r:?}");
}

#[tokio::test]
async fn reserved_paths_never_reach_routes_and_forward_auth_is_off_by_default() {
    let gw = gateway(&format!(
        "{ROUTES}  - {{ id: all, path: /, upstream: \"http://127.0.0.1:9\", policy: public }}\n"
    ));
    for p in ["/.portcullis/auth", "/.portcullis/nope", "/.portcullis"] {
        let (r, _) = run(&gw, &format!("GET {p} HTTP/1.1\r\nHost: a\r\n\r\n")).await;
        assert!(matches!(r, Err(GatewayError::Reserved)), "{p}: {r:?}");
    }
    let (r, _) = run(
        &gw,
        "GET /.portcullis/jwks.json HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .await;
    assert!(matches!(r, Ok(Flow::Reply(_))), "{r:?}");
}

#[tokio::test]
async fn the_plain_listener_redirects_unless_a_trusted_proxy_says_https() {
    let gw = gateway(&format!(
        "server:
  http: {{ listen: \"127.0.0.1:8080\", redirect_to_https: true }}
  trusted_proxies: [127.0.0.1/32]
{ROUTES}"
    ));
    let (r, _) = run(
        &gw,
        "GET /pub/x?q=1 HTTP/1.1\r\nHost: app.test:8080\r\n\r\n",
    )
    .await;
    match r {
        Err(GatewayError::RedirectHttps(to)) => assert_eq!(to, "https://app.test:8443/pub/x?q=1"),
        other => panic!("{other:?}"),
    }
    // The in-memory session has no peer address: it counts as 127.0.0.1, a trusted proxy here.
    let (r, ctx) = run(
        &gw,
        "GET /pub/x HTTP/1.1\r\nHost: app.test\r\nX-Forwarded-Proto: https\r\n\r\n",
    )
    .await;
    assert!(matches!(r, Ok(Flow::Proxy)), "{r:?}");
    assert!(ctx.tls, "a trusted TLS-terminating proxy");
}

/// With the session store down, a public route is served (the session is not read there) and
/// a protected one fails closed with 503.
#[tokio::test]
async fn public_routes_do_not_read_the_session() {
    let gw = gateway(&format!(
        "session:\n  keys: [\"{KEY}\"]\n  store: \"redis://127.0.0.1:1/0\"\n{ROUTES}"
    ));
    let cookie = gw
        .sso
        .codec
        .seal(
            "portcullis",
            &SessionCookie {
                sid: "some-session".into(),
            },
        )
        .expect("seal");
    let head =
        |p: &str| format!("GET {p} HTTP/1.1\r\nHost: a\r\nCookie: portcullis={cookie}\r\n\r\n");
    let (r, ctx) = run(&gw, &head("/pub/x")).await;
    assert!(matches!(r, Ok(Flow::Proxy)), "{r:?}");
    assert!(ctx.identity.is_none());
    let (r, _) = run(&gw, &head("/app/x")).await;
    let e = r.expect_err("fails closed");
    assert_eq!(e.status(), 503, "{e:?}");
}

/// A denial on a privileged route is one typed `policy.denied` event in the chain, with the
/// facts of the request; repeats from the same address in the window are counted, not
/// recorded again (M7); a denial on another route records nothing.
#[tokio::test]
async fn privileged_denials_reach_the_audit_chain_once_per_window() {
    let mut gw = gateway(&format!("audit: {{ privileged_routes: [app] }}\n{ROUTES}"));
    let (audit, mut chain) = crate::audit::Audit::capture();
    gw.audit = audit;
    for (path, times) in [("/app/x", 3), ("/pub/y", 1)] {
        for _ in 0..times {
            let head = format!("DELETE {path} HTTP/1.1\r\nHost: a\r\n\r\n");
            let s = session(&head).await;
            let mut ctx = gw.new_ctx();
            let _ = gw.pipeline(&mut session(&head).await, &mut ctx).await;
            gw.record_decision(
                s.req_header(),
                &mut ctx,
                "challenge",
                401,
                Default::default(),
            );
        }
    }
    let (event, _) = chain.try_recv().expect("one policy.denied record");
    assert_eq!(event.kind, "policy.denied");
    assert_eq!(event.actor, None);
    assert_eq!(event.data["route"], "app");
    assert_eq!(event.data["method"], "DELETE");
    assert_eq!(event.data["path"], "/app/x");
    assert_eq!(event.data["status"], 401);
    assert!(
        chain.try_recv().is_err(),
        "repeats are counted, the public route records nothing"
    );
}

/// A step-up ages on the gateway's clock: `max_age: 40s` passes at 40 s and asks again at
/// 41 s, by moving a manual clock instead of waiting (the policy's `now` is that clock).
#[tokio::test]
async fn step_up_max_age_expires_with_the_clock() {
    use crate::session::store::tests::record;
    use portcullis_policy::input::AuthEvent;
    use std::time::Duration;
    let m = crate::clock::ManualClock::at_unix(1_800_000_000);
    let gw = gateway_with_clock(
        &format!(
            "session:\n  keys: [\"{KEY}\"]\nidentity_providers:\n  - {{ id: corp, type: oidc, issuer: \"https://op.example\", client_id: c, client_secret: s }}\nroutes:\n  - {{ id: admin, path: /admin, upstream: \"http://127.0.0.1:9\", policy: {{ allow: [ {{ mfa: {{ methods: [totp], max_age: 40s }} }} ] }} }}\n"
        ),
        m.clock(),
    );
    let mut rec = record("corp", "alice", None);
    let now = gw.sso.clock.unix();
    (rec.created, rec.last_seen) = (now, now);
    rec.identity.auth_methods = vec![AuthEvent {
        method: "totp".into(),
        at: gw.sso.clock.utc(),
    }];
    gw.sso.store.save("s1", &rec, 3600).await.expect("save");
    let cookie = gw
        .sso
        .codec
        .seal("portcullis", &SessionCookie { sid: "s1".into() })
        .expect("seal");
    let head = format!("GET /admin/x HTTP/1.1\r\nHost: a\r\nCookie: portcullis={cookie}\r\n\r\n");
    m.advance(Duration::from_secs(40));
    let (r, _) = run(&gw, &head).await;
    assert!(matches!(r, Ok(Flow::Proxy)), "fresh at 40 s: {r:?}");
    m.advance(Duration::from_secs(1));
    let (r, _) = run(&gw, &head).await;
    assert!(
        matches!(r, Err(GatewayError::StepUp { .. })),
        "expired at 41 s: {r:?}"
    );
}

/// Envoy's gRPC check is judged like `/.portcullis/auth`: a public route is allowed with every
/// identity header blanked, a protected one is denied 401, a path the normaliser would change
/// 400, a URL no route serves 403, and a caller outside `server.trusted_proxies` 403.
#[tokio::test]
async fn ext_authz_checks_are_judged_like_forward_auth() {
    use crate::ext_authz::pb;
    let gw = gateway(&format!(
        "server: {{ trusted_proxies: [10.0.0.0/8] }}\n{ROUTES}"
    ));
    let check = |path: &str| pb::CheckRequest {
        attributes: Some(pb::AttributeContext {
            source: Some(pb::Peer {
                address: Some(pb::Address {
                    socket_address: Some(pb::SocketAddress {
                        address: "198.51.100.7".into(),
                        port_value: 1,
                    }),
                }),
            }),
            request: Some(pb::Request {
                http: Some(pb::HttpRequest {
                    method: "GET".into(),
                    headers: [("x-portcullis-user".to_string(), "admin".to_string())].into(),
                    path: path.into(),
                    host: "a".into(),
                    scheme: "https".into(),
                }),
            }),
        }),
    };
    let proxy: std::net::IpAddr = "10.0.0.2".parse().unwrap();
    let http_status = |r: &pb::CheckResponse| {
        r.denied_response
            .as_ref()
            .and_then(|d| d.status.as_ref())
            .map_or(200, |s| s.code)
    };
    let r = gw.ext_authz_check(proxy, &check("/pub/x?q=1")).await;
    assert_eq!(r.status.as_ref().map(|s| s.code), Some(pb::OK));
    let ok = r.ok_response.expect("allowed");
    for name in crate::assertion::ALL_IDENTITY_HEADERS {
        assert!(
            ok.headers.iter().any(|o| o
                .header
                .as_ref()
                .is_some_and(|h| h.key == name && h.value.is_empty())),
            "{name} blanked"
        );
    }
    for (path, want) in [
        ("/app/x", 401),
        ("/pub/%2e%2e/app/x", 400),
        ("/pub/../app/x", 400),
        ("/nothing", 403),
    ] {
        let r = gw.ext_authz_check(proxy, &check(path)).await;
        assert_ne!(r.status.as_ref().map(|s| s.code), Some(pb::OK), "{path}");
        assert_eq!(http_status(&r), want, "{path}");
    }
    let stranger: std::net::IpAddr = "198.51.100.9".parse().unwrap();
    let r = gw.ext_authz_check(stranger, &check("/pub/x")).await;
    assert_eq!(http_status(&r), 403, "untrusted caller");
}
