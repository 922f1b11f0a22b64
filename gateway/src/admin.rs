//! The admin listener: `/metrics`, `/healthz` (the process serves), `/readyz` (503 naming the
//! dependency while one that protected routes need is down, see [`crate::health`]). Bind it to
//! loopback or a private network.

use crate::routes::SharedRuntime;
use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

/// The admin HTTP app.
pub struct AdminApp {
    /// Running config, for readiness.
    pub runtime: SharedRuntime,
    /// Latest dependency probes.
    pub readiness: std::sync::Arc<crate::health::Readiness>,
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

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_string();
        match path.as_str() {
            "/metrics" => reply(200, "text/plain; version=0.0.4", crate::metrics::render()),
            "/healthz" => reply(200, "text/plain", "ok\n".into()),
            "/audit/keys" => reply(200, "application/json", crate::audit::published_keys_json()),
            "/readyz" => {
                let rt = self.runtime.load();
                let (status, state, down) = match self.readiness.status() {
                    Ok(()) => (200, "ready", Default::default()),
                    Err(down) if down.is_empty() => (503, "starting", down),
                    Err(down) => (503, "not_ready", down),
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
