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
    let (mut ws, resp) =
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{}/ws/chat", gw.ports.http))
            .await
            .expect("websocket handshake through the gateway");
    assert_eq!(resp.status(), 101);
    for i in 0..3 {
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
