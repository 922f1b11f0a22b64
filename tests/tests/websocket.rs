//! WebSocket upgrades pass through the gateway to the upstream.

use futures_util::{SinkExt, StreamExt};
use portcullis_e2e::*;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread")]
async fn websocket_echo_through_the_gateway() {
    let up = Whoami::start("ws");
    let gw = Gateway::start(&format!(
        "{SERVER}routes:\n  - {{ id: ws, path: /ws, upstream: \"{}\", policy: public }}\n  - {{ id: closed, path: /closed, upstream: \"{}\", policy: authenticated }}\n",
        up.url(),
        up.url()
    ));
    // pingora 0.9 can tear an upgraded tunnel down right after a fast upstream's 101 when it
    // reads the 101 before the request's empty body (cloudflare/pingora#946, open upstream;
    // README "Known issues"). A client sees the socket close before the first reply; it
    // reconnects. The test allows that, but every attempt must be either a torn-down tunnel or
    // a fully working one, and one of 5 must work.
    let url = format!("ws://127.0.0.1:{}/ws/chat", gw.ports.http);
    let mut torn_down = 0;
    let mut ws = loop {
        let (mut ws, resp) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .expect("websocket handshake through the gateway");
        assert_eq!(resp.status(), 101);
        ws.send(Message::Text("hello 0".into())).await.unwrap();
        match ws.next().await {
            Some(Ok(msg)) => {
                assert_eq!(msg.into_text().unwrap().as_str(), "echo: hello 0");
                break ws;
            }
            other => {
                torn_down += 1;
                eprintln!(
                    "upgraded tunnel torn down before the first reply ({other:?}); pingora#946"
                );
                assert!(torn_down < 5, "the WebSocket tunnel never worked");
            }
        }
    };
    for i in 1..4 {
        ws.send(Message::Text(format!("hello {i}").into()))
            .await
            .unwrap();
        let msg = ws.next().await.expect("a reply").expect("a frame");
        assert_eq!(
            msg.into_text().unwrap().as_str(),
            format!("echo: hello {i}")
        );
    }
    ws.close(None).await.ok();
    // An upgrade does not bypass the route's policy.
    let denied =
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{}/closed", gw.ports.http)).await;
    match denied {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("expected 401, got {other:?}"),
    }
}

/// L15: a WebSocket on a route that needs a user is refused from a foreign `Origin`
/// (cross-site WebSocket hijacking with the user's cookie), and logout ends an open tunnel.
/// The plain listener plays a TLS-terminating proxy's backend (trusted, `X-Forwarded-Proto:
/// https`), so the `__Host-` session cookie from the HTTPS login applies.
#[tokio::test(flavor = "multi_thread")]
async fn websocket_tunnels_need_this_origin_and_end_with_the_session() {
    use portcullis_e2e::oidc::*;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let ports = Ports::fresh();
    let up = Whoami::start("ws");
    let op = OpenIdProvider::start(&[ports.https], None, 3600);
    let gw = Gateway::start_on(
        ports,
        &format!(
            "{SERVER}  trusted_proxies: [127.0.0.1/32]
session:
  keys: [\"{SESSION_KEY}\"]
identity_providers:
  - {{ id: corp, type: oidc, issuer: \"{}\", client_id: {CLIENT_ID}, client_secret: {CLIENT_SECRET} }}
routes:
  - {{ id: ws, path: /ws, upstream: \"{}\", policy: authenticated }}
",
            op.issuer,
            up.url()
        ),
    );
    let b = Browser::new();
    let w = b.login(&format!("{}/ws/", gw.https()), "alice").await;
    assert_eq!(w.last().status, 200, "{w:#?}");
    let cookie = w.session_cookie().unwrap();
    let own_origin = format!("https://127.0.0.1:{}", ports.http);
    let request = |origin: &str| {
        let mut r = format!("ws://127.0.0.1:{}/ws/chat", ports.http)
            .into_client_request()
            .unwrap();
        let h = r.headers_mut();
        h.insert("cookie", cookie.parse().unwrap());
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        h.insert("origin", origin.parse().unwrap());
        r
    };
    match tokio_tungstenite::connect_async(request("https://evil.example")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
        other => panic!("a foreign Origin must be refused, got {other:?}"),
    }
    // A working tunnel (pingora#946 may tear the first attempts down, see above).
    let mut ws = None;
    for _ in 0..5 {
        let (mut s, resp) = tokio_tungstenite::connect_async(request(&own_origin))
            .await
            .expect("same-origin upgrade");
        assert_eq!(resp.status(), 101);
        s.send(Message::Text("hi".into())).await.unwrap();
        if let Some(Ok(m)) = s.next().await {
            assert_eq!(m.into_text().unwrap().as_str(), "echo: hi");
            ws = Some(s);
            break;
        }
    }
    let mut ws = ws.expect("the WebSocket tunnel never worked");

    assert_eq!(b.logout(&gw.https()).await.status(), 302);
    // The next frames after the session ended close the tunnel (the session is looked up
    // again every second).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the tunnel outlived the session"
        );
        if ws.send(Message::Text("still there?".into())).await.is_err() {
            break;
        }
        match tokio::time::timeout(std::time::Duration::from_millis(500), ws.next()).await {
            Ok(Some(Ok(Message::Text(_)))) | Err(_) => continue,
            Ok(_) => break,
        }
    }
}
