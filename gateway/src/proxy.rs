//! The pingora `ProxyHttp` phases: thin glue, each phase calls one module.
//! request_filter: the ordered pipeline of [`crate::request`].
//! upstream_peer: endpoint choice. upstream_request_filter: path, identity and forwarding headers.
//! logging: metrics, the access log and the decision record.

use crate::decisionlog::{DecisionLog, Reservation};
use crate::errors::{respond, send, GatewayError};
use crate::forwarded;
use crate::identity;
use crate::metrics;
use crate::request::Flow;
use crate::routes::{Runtime, SharedRuntime};
use crate::sso::Sso;
use async_trait::async_trait;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora_http::RequestHeader;
use portcullis_policy::engine::Decision;
use portcullis_policy::input::Identity;
use portcullis_policy::path::NormalisedPath;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// The gateway's proxy logic (cheap to clone: shared handles; the ext_authz listener holds one).
#[derive(Clone)]
pub struct Gateway {
    /// Running config.
    pub runtime: SharedRuntime,
    /// Port of the HTTPS listener, for redirects from the plain one.
    pub https_port: Option<u16>,
    /// Single sign-on: sessions, providers, assertion keys.
    pub sso: Arc<Sso>,
    /// The decision-log pipeline, when `decision_log:` is configured.
    pub decision_log: Option<Arc<DecisionLog>>,
    /// Second factors and step-up, when `mfa:` is configured.
    pub mfa: Option<Arc<crate::mfa::flow::Service>>,
    /// Where denials on privileged routes are recorded.
    pub audit: crate::audit::Audit,
    /// The SCIM service provider, when `directory.scim` is configured.
    pub scim: Option<Arc<crate::scim::service::ScimService>>,
    /// The admin API, when `console:` and the directory are configured at start.
    pub console: Option<Arc<crate::console::api::Api>>,
}

/// Per-request state.
pub struct Ctx {
    pub(crate) rt: Arc<Runtime>,
    pub(crate) start: Instant,
    pub(crate) route: Option<usize>,
    pub(crate) path: Option<NormalisedPath>,
    pub(crate) host: String,
    pub(crate) client_ip: IpAddr,
    pub(crate) peer_ip: IpAddr,
    pub(crate) peer_trusted: bool,
    pub(crate) tls: bool,
    pub(crate) tried: Vec<usize>,
    pub(crate) current: Option<usize>,
    pub(crate) upstream_start: Option<Instant>,
    pub(crate) outcome: Option<&'static str>,
    pub(crate) received: SystemTime,
    pub(crate) log_slot: Option<Reservation>,
    pub(crate) log_refused: bool,
    /// Network and device facts and the addressed tenant, as the policy saw them (for the record).
    pub(crate) facts: Option<
        Box<(
            portcullis_policy::input::NetworkFacts,
            portcullis_policy::input::DeviceFacts,
            Option<String>,
        )>,
    >,
    pub(crate) upstream_status: Option<u16>,
    /// The signed-in identity (filled by the session layer when single sign-on is configured).
    pub identity: Option<Identity>,
    /// The policy decision and its explanation, for logs.
    pub decision: Option<Decision>,
    /// A `Set-Cookie` to add to the upstream's response (session id rotated by a refresh).
    pub(crate) set_cookie: Option<String>,
    /// Session id of the signed-in user, if any.
    pub(crate) sid: Option<String>,
    /// That session's CSRF token (the console API compares `X-CSRF-Token` with it).
    pub(crate) csrf: Option<String>,
    /// For an upgraded connection on a route that needs a user: set once the session ends,
    /// which tears the tunnel down (see [`crate::tunnel`]).
    pub(crate) tunnel_ended: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl Ctx {
    /// Whether this upgraded connection's session has ended.
    pub(crate) fn tunnel_ended(&self) -> bool {
        self.tunnel_ended
            .as_ref()
            .is_some_and(|f| f.load(std::sync::atomic::Ordering::Acquire))
    }
}

impl Ctx {
    pub(crate) fn route_id(&self) -> &str {
        self.route
            .and_then(|i| self.rt.config.routes.get(i))
            .map_or("_unmatched_", |r| r.id.as_str())
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            rt: self.runtime.load_full(),
            start: Instant::now(),
            route: None,
            path: None,
            host: String::new(),
            client_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            peer_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            peer_trusted: false,
            tls: false,
            tried: Vec::new(),
            current: None,
            upstream_start: None,
            outcome: None,
            received: SystemTime::now(),
            log_slot: None,
            log_refused: false,
            facts: None,
            upstream_status: None,
            identity: None,
            set_cookie: None,
            decision: None,
            sid: None,
            csrf: None,
            tunnel_ended: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        match self.pipeline(session, ctx).await {
            Ok(Flow::Proxy) => {
                ctx.outcome = Some("allow");
                Ok(false)
            }
            Ok(Flow::Reply(mut reply)) => {
                ctx.outcome = Some("allow");
                if let Some(c) = ctx.set_cookie.take() {
                    reply.headers.push(("set-cookie".to_string(), c));
                }
                send(session, reply).await?;
                Ok(true)
            }
            Err(e) => {
                ctx.outcome = Some(e.decision());
                respond(session, &e, ctx.set_cookie.take()).await?;
                Ok(true)
            }
        }
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        _body: &mut Option<bytes::Bytes>,
        _end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if ctx.tunnel_ended() {
            return Err(crate::tunnel::ended_error());
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        _body: &mut Option<bytes::Bytes>,
        _end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<std::time::Duration>> {
        if ctx.tunnel_ended() {
            return Err(crate::tunnel::ended_error());
        }
        Ok(None)
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream: &mut pingora_http::ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(a) = ctx
            .route
            .and_then(|i| ctx.rt.config.routes.get(i))
            .and_then(|r| r.adapter.as_ref())
        {
            a.apply_response(upstream)?;
        }
        if let Some(c) = ctx.set_cookie.take() {
            upstream.append_header("set-cookie", c)?;
        }
        Ok(())
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let idx = ctx
            .route
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route selected"))?;
        let (route, pool) = ctx
            .rt
            .config
            .routes
            .get(idx)
            .zip(ctx.rt.pools.get(idx))
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "route index out of range"))?;
        let ep = pool
            .pick(&ctx.tried)
            .ok_or_else(|| Error::explain(ErrorType::ConnectNoRoute, "every endpoint failed"))?;
        ctx.current = Some(ep);
        ctx.upstream_start = Some(Instant::now());
        let peer = pool
            .peer(route, ep)
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "endpoint out of range"))?;
        Ok(Box::new(peer))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let (Some(idx), Some(ep)) = (ctx.route, ctx.current.take()) {
            if let Some(pool) = ctx.rt.pools.get(idx) {
                pool.mark_down(ep);
                ctx.tried.push(ep);
                let endpoints = ctx
                    .rt
                    .config
                    .routes
                    .get(idx)
                    .map_or(0, |r| r.endpoints.len());
                metrics::get()
                    .upstream_failures
                    .with_label_values(&[ctx.route_id(), "connect"])
                    .inc();
                tracing::warn!(route = ctx.route_id(), endpoint = ep, error = %e, "upstream endpoint failed to connect; skipping it for a while");
                if ctx.tried.len() < endpoints {
                    e.set_retry(true);
                }
            }
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let Some(path) = ctx.path.as_ref() else {
            return Error::e_explain(ErrorType::InternalError, "no normalised path");
        };
        let route = ctx.route.and_then(|i| ctx.rt.config.routes.get(i));
        let adapter = route.and_then(|r| r.adapter.as_ref());
        let encoded = match adapter {
            Some(a) => std::borrow::Cow::Owned(a.rewrite_path(path.encoded())),
            None => std::borrow::Cow::Borrowed(path.encoded()),
        };
        let target = match session.req_header().uri.query() {
            Some(q) => format!("{encoded}?{q}"),
            None => encoded.into_owned(),
        };
        let uri: http::Uri = target.parse().map_err(|_| {
            Error::explain(ErrorType::InternalError, "normalised path is not a URI")
        })?;
        upstream.set_uri(uri);
        let stripped = identity::strip_client_identity(upstream);
        if stripped > 0 {
            tracing::warn!(client_ip = %ctx.client_ip, headers = stripped, "removed client-supplied X-Portcullis-* headers");
        }
        let overrides = forwarded::strip_overrides(upstream);
        if overrides > 0 {
            tracing::warn!(client_ip = %ctx.client_ip, headers = overrides, "removed client-supplied path/method override headers");
        }
        let fwd = forwarded::forwarded(
            ctx.peer_ip,
            ctx.peer_trusted,
            session.req_header(),
            ctx.tls,
            &ctx.host,
        );
        forwarded::apply(upstream, &fwd)?;
        // The identity the route vouches for upstream (none on public routes unless opted in).
        let vouched = ctx
            .identity
            .as_ref()
            .filter(|_| route.is_some_and(|r| r.identity_headers));
        if let (Some(id), Some(route)) = (vouched, route) {
            identity::set_identity(upstream, &self.sso, id, &route.assertion_audience)?;
        }
        identity::strip_session_cookies(upstream)?;
        if let Some(a) = adapter {
            let identity = vouched;
            let token = upstream
                .headers
                .get("x-portcullis-assertion")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            a.apply_request(upstream, identity, token.as_deref())?;
        }
        let endpoint = route.zip(ctx.current).and_then(|(r, e)| r.endpoints.get(e));
        match (route, endpoint) {
            (Some(r), Some(ep)) if !r.preserve_host => {
                upstream.insert_header(http::header::HOST, ep.authority.as_str())?;
            }
            _ if upstream.headers.get(http::header::HOST).is_none() => {
                upstream.insert_header(http::header::HOST, ctx.host.as_str())?;
            }
            _ => {}
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut pingora_http::ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        ctx.upstream_status = Some(upstream_response.status.as_u16());
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let err = match e.etype() {
            ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
                GatewayError::UpstreamTimeout
            }
            _ => GatewayError::BadGateway,
        };
        let code = match e.esource() {
            // The client went away or sent garbage: nothing useful to write.
            ErrorSource::Downstream => 0,
            _ => {
                if respond(session, &err, None).await.is_err() {
                    0
                } else {
                    err.status()
                }
            }
        };
        if code != 0 {
            tracing::warn!(route = ctx.route_id(), error = %e, status = code, "request failed upstream");
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let elapsed = ctx.start.elapsed();
        let route = ctx.route_id();
        let decision = ctx.outcome.unwrap_or("deny");
        let m = metrics::get();
        m.requests
            .with_label_values(&[route, decision, metrics::status_label(status).as_ref()])
            .inc();
        m.request_duration
            .with_label_values(&[route])
            .observe(elapsed.as_secs_f64());
        if let Some(t) = ctx.upstream_start {
            m.upstream_duration
                .with_label_values(&[route])
                .observe(t.elapsed().as_secs_f64());
        }
        if ctx.rt.config.server.access_log {
            let req = session.req_header();
            tracing::info!(
                target: "access",
                method = %req.method,
                host = %ctx.host,
                path = ctx.path.as_ref().map_or(req.uri.path(), |p| p.decoded()),
                route = %route,
                decision,
                rule = ctx.decision.as_ref().map(|d| d.explanation.rule.to_string()),
                reason = ctx.decision.as_ref().filter(|d| !d.is_allow()).map(|d| d.explanation.reason()),
                status,
                client_ip = %ctx.client_ip,
                tls = ctx.tls,
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                "request"
            );
        }
        self.record_decision(session.req_header(), ctx, decision, status, elapsed);
    }
}
