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
