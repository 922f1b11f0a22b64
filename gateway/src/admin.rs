//! The admin listener: `/metrics` (behind a bearer token when `server.admin.metrics_token` is
//! set), `/healthz` (the process serves), `/readyz` (503 naming the
//! dependency while one that protected routes need is down, see [`crate::health`], and 503
//! `draining` from SIGTERM until exit), `/audit/keys`. Bind it to loopback or a private network.
//!
//! It is its own accept loop (a background service), not a pingora listening service, because
//! pingora closes every listener the moment SIGTERM arrives: a readiness probe would then see a
//! refused connection instead of the 503 that tells a load balancer or the kubelet to stop
//! sending traffic while in-flight requests finish. This loop keeps answering until the process
//! exits. The socket is bound with `SO_REUSEPORT`, so during a zero-downtime upgrade the new
//! process binds beside the draining one.

use crate::routes::SharedRuntime;
use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use hyper_util::rt::{TokioIo, TokioTimer};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The admin answers, over the process's shared state.
pub struct AdminApp {
    /// Running config, for readiness.
    pub runtime: SharedRuntime,
    /// Latest dependency probes and the draining flag.
    pub readiness: Arc<crate::health::Readiness>,
    /// The audit handle, for the published verification keys.
    pub audit: crate::audit::Audit,
}

fn reply(status: u16, ctype: &str, body: String) -> Response<Vec<u8>> {
    let body = body.into_bytes();
    Response::builder()
        .status(status)
        .header("content-type", ctype)
        .header("content-length", body.len())
        .header("cache-control", "no-store")
        .body(body)
        .unwrap_or_else(|_| Response::new(Vec::new()))
}

/// Whether `authorization` carries the bearer token whose SHA-256 is `want` (compared in
/// constant time over the digests).
fn bearer_matches(authorization: Option<&str>, want: &[u8; 32]) -> bool {
    use sha2::Digest;
    use subtle::ConstantTimeEq;
    let Some(token) = authorization.and_then(|h| {
        let (scheme, rest) = h.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
    }) else {
        return false;
    };
    let got: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
    got.ct_eq(want).into()
}

impl AdminApp {
    /// The answer to a request for `path` with this `Authorization` header.
    pub fn answer(&self, path: &str, authorization: Option<&str>) -> Response<Vec<u8>> {
        match path {
            "/metrics" => {
                let want = self.runtime.load().config.server.metrics_token_sha256;
                match want {
                    Some(want) if !bearer_matches(authorization, &want) => {
                        let mut r =
                            reply(401, "text/plain", "metrics need a bearer token\n".into());
                        r.headers_mut().insert(
                            http::header::WWW_AUTHENTICATE,
                            http::HeaderValue::from_static("Bearer realm=\"portcullis-metrics\""),
                        );
                        r
                    }
                    _ => reply(200, "text/plain; version=0.0.4", crate::metrics::render()),
                }
            }
            "/healthz" => reply(200, "text/plain", "ok\n".into()),
            "/audit/keys" => reply(200, "application/json", self.audit.published_keys_json()),
            "/readyz" => {
                let rt = self.runtime.load();
                let (status, state, down) = if self.readiness.draining() {
                    (503, "draining", Default::default())
                } else {
                    match self.readiness.status() {
                        Ok(()) => (200, "ready", Default::default()),
                        Err(down) if down.is_empty() => (503, "starting", down),
                        Err(down) => (503, "not_ready", down),
                    }
                };
                let body = serde_json::json!({
                    "status": state,
                    "down": down,
                    "routes": rt.config.routes.len(),
                    "config_sha256": rt.config_hash,
                });
                reply(status, "application/json", body.to_string())
            }
            _ => reply(404, "text/plain", "not found\n".into()),
        }
    }
}

/// The admin listener service.
pub struct AdminListener {
    /// `server.admin.listen`.
    pub addr: SocketAddr,
    /// What it answers.
    pub app: Arc<AdminApp>,
}

/// A slow client cannot hold an admin connection open without sending its request.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(128)
}

async fn serve(stream: tokio::net::TcpStream, app: Arc<AdminApp>) {
    let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let authorization = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let resp = app
            .answer(req.uri().path(), authorization)
            .map(|b| Full::new(Bytes::from(b)));
        async move { Ok::<_, std::convert::Infallible>(resp) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), svc)
        .await;
}

#[async_trait::async_trait]
impl BackgroundService for AdminListener {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        // The address was proven bindable at start (`server::check_listeners`); after an
        // upgrade the old process may hold it without SO_REUSEPORT for a moment: keep trying.
        let listener = loop {
            match bind(self.addr) {
                Ok(l) => break l,
                Err(e) => {
                    tracing::error!(listen = %self.addr, error = %e, "admin listener cannot bind; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        let mut draining = false;
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        tokio::spawn(serve(stream, self.app.clone()));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "admin listener: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                _ = shutdown.changed(), if !draining => {
                    draining = true;
                    self.app.readiness.set_draining();
                    tracing::info!("shutting down: /readyz answers 503 draining until exit");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readyz_says_starting_then_draining_after_sigterm() {
        let cfg = crate::config::load_str(
            "routes: []\n",
            "t.yaml",
            &std::collections::HashMap::<String, String>::new(),
        )
        .expect("config");
        let app = AdminApp {
            runtime: Arc::new(arc_swap::ArcSwap::from_pointee(
                crate::routes::Runtime::new(cfg, ""),
            )),
            readiness: Arc::default(),
            audit: crate::audit::Audit::disabled(),
        };
        let body = |r: Response<Vec<u8>>| (r.status().as_u16(), String::from_utf8(r.into_body()));
        let (status, text) = body(app.answer("/readyz", None));
        assert_eq!(status, 503);
        assert!(text.unwrap().contains("\"starting\""));
        app.readiness.set_draining();
        let (status, text) = body(app.answer("/readyz", None));
        assert_eq!(status, 503);
        assert!(text.unwrap().contains("\"draining\""));
        assert_eq!(
            app.answer("/healthz", None).status(),
            200,
            "alive while draining"
        );
        assert_eq!(app.answer("/nope", None).status(), 404);
        assert_eq!(
            app.answer("/metrics", None).status(),
            200,
            "no token configured"
        );
    }

    #[test]
    fn metrics_need_the_bearer_token_when_one_is_configured_and_probes_do_not() {
        let cfg = crate::config::load_str(
            "server: { admin: { listen: \"127.0.0.1:0\", metrics_token: \"${T}\" } }\nroutes: []\n",
            "t.yaml",
            &std::collections::HashMap::from([(
                "T".to_string(),
                "s3cret-token-0123456789".to_string(),
            )]),
        )
        .expect("config");
        let app = AdminApp {
            runtime: Arc::new(arc_swap::ArcSwap::from_pointee(
                crate::routes::Runtime::new(cfg, ""),
            )),
            readiness: Arc::default(),
            audit: crate::audit::Audit::disabled(),
        };
        let status = |auth: Option<&str>| app.answer("/metrics", auth).status().as_u16();
        assert_eq!(status(None), 401);
        assert_eq!(status(Some("Bearer wrong-token-0123456789")), 401);
        assert_eq!(status(Some("Basic czNjcmV0LXRva2VuLTAxMjM0NTY3ODk=")), 401);
        assert_eq!(
            status(Some("Bearer s3cret-token-0123456789x")),
            401,
            "a longer token"
        );
        assert_eq!(status(Some("Bearer s3cret-token-0123456789")), 200);
        assert_eq!(
            status(Some("bearer s3cret-token-0123456789")),
            200,
            "scheme is case-insensitive"
        );
        let r = app.answer("/metrics", None);
        assert!(r.headers().get("www-authenticate").is_some());
        assert!(
            !String::from_utf8_lossy(r.body()).contains("portcullis_"),
            "nothing leaks"
        );
        assert_eq!(app.answer("/healthz", None).status(), 200);
        assert_eq!(
            app.answer("/readyz", None).status(),
            503,
            "starting, not 401"
        );
    }

    #[test]
    fn a_short_metrics_token_is_a_config_error() {
        let errs = crate::config::load_str(
            "server: { admin: { metrics_token: short } }\nroutes: []\n",
            "t.yaml",
            &std::collections::HashMap::<String, String>::new(),
        )
        .expect_err("too short");
        assert!(
            errs.to_string().contains("server.admin.metrics_token"),
            "{errs}"
        );
    }
}
