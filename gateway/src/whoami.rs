//! `portcullis whoami`: a tiny upstream that answers with what it received — request line,
//! headers, and (once SSO lands) the verified assertion — so a newcomer can see the gateway work
//! with no other software, and tests have a real upstream. WebSocket requests are echoed.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Options of the whoami server.
#[derive(Debug, Clone)]
pub struct WhoamiOptions {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Name reported in every answer (default: the listen address).
    pub name: Option<String>,
    /// Serve TLS with this certificate and key.
    pub tls: Option<(String, String)>,
}

/// Runs the server until the process ends.
pub async fn serve(opts: WhoamiOptions) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let listener = TcpListener::bind(opts.listen).await?;
    let local = listener.local_addr()?;
    let name: Arc<str> = opts.name.unwrap_or_else(|| local.to_string()).into();
    let acceptor = match &opts.tls {
        Some((c, k)) => {
            let bundle = crate::tls::load_cert_bundle(c, k)?;
            let cfg = rustls::ServerConfig::builder()
                .with_no_client_auth()
                .with_cert_resolver(Arc::new(crate::tls::SniResolver::new(
                    crate::tls::CertSet::new(&[Arc::new(bundle)]).ok_or("no certificate")?,
                )));
            Some(TlsAcceptor::from(Arc::new(cfg)))
        }
        None => None,
    };
    tracing::info!(listen = %local, name = %name, tls = acceptor.is_some(), "whoami listening");
    loop {
        let (stream, remote) = listener.accept().await?;
        let name = name.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| answer(req, name.clone(), remote));
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let result = match acceptor {
                Some(a) => match a.accept(stream).await {
                    Ok(tls) => {
                        builder
                            .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                            .await
                    }
                    Err(e) => Err(e.into()),
                },
                None => {
                    builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                        .await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "whoami connection ended with an error");
            }
        });
    }
}

async fn answer(
    mut req: Request<Incoming>,
    name: Arc<str>,
    remote: SocketAddr,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let is_ws = req
        .headers()
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if is_ws {
        return Ok(websocket(&mut req));
    }
    let delay = req.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("delay_ms="))
            .and_then(|v| v.parse::<u64>().ok())
    });
    if let Some(ms) = delay {
        tokio::time::sleep(Duration::from_millis(ms.min(60_000))).await;
    }
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in req.headers() {
        headers
            .entry(k.as_str().to_string())
            .or_default()
            .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
    }
    let body = serde_json::json!({
        "server": &*name,
        "remote_addr": remote.to_string(),
        "method": req.method().as_str(),
        "uri": req.uri().to_string(),
        "path": req.uri().path(),
        "query": req.uri().query(),
        "version": format!("{:?}", req.version()),
        "headers": headers,
    });
    let mut text = serde_json::to_string_pretty(&body).unwrap_or_default();
    text.push('\n');
    let resp = Response::builder()
        .header("content-type", "application/json")
        .header("x-whoami-server", &*name)
        .body(Full::new(Bytes::from(text)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())));
    Ok(resp)
}

fn websocket(req: &mut Request<Incoming>) -> Response<Full<Bytes>> {
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        let mut r = Response::new(Full::new(Bytes::from_static(
            b"missing sec-websocket-key\n",
        )));
        *r.status_mut() = StatusCode::BAD_REQUEST;
        return r;
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::protocol::Role;
        use tokio_tungstenite::tungstenite::Message;
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            Role::Server,
            None,
        )
        .await;
        while let Some(Ok(msg)) = ws.next().await {
            let reply = match msg {
                Message::Text(t) => Message::Text(format!("echo: {t}").into()),
                Message::Binary(b) => Message::Binary(b),
                Message::Close(_) => break,
                _ => continue,
            };
            if ws.send(reply).await.is_err() {
                break;
            }
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(http::header::UPGRADE, "websocket")
        .header(http::header::CONNECTION, "Upgrade")
        .header("sec-websocket-accept", accept)
        .body(Full::new(Bytes::new()))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}
