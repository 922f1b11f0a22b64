//! The pingora `ProxyHttp` phases: thin glue, each phase calls one module.
//! request_filter: listener rules → normalise path → route → policy.
//! upstream_peer: endpoint choice. upstream_request_filter: path, identity and forwarding headers.
//! logging: metrics, the access log and the decision record.

use crate::auth_endpoints;
use crate::decisionlog::{record::DecisionRecord, DecisionLog, Reservation};
use crate::errors::{respond, send, GatewayError};
use crate::forwarded;
use crate::identity;
use crate::metrics;
use crate::policy_input::{self, RequestContext};
use crate::routes::{Runtime, SharedRuntime};
use crate::sso::Sso;
use crate::tls::ClientCertFacts;
use async_trait::async_trait;
use pingora::prelude::*;
use pingora::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora_http::RequestHeader;
use portcullis_policy::engine::{evaluate, Challenge, Decision, Outcome};
use portcullis_policy::input::Identity;
use portcullis_policy::path::{normalise, NormalisedPath};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// The gateway's proxy logic.
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
}

/// Per-request state.
pub struct Ctx {
    rt: Arc<Runtime>,
    start: Instant,
    route: Option<usize>,
    path: Option<NormalisedPath>,
    host: String,
    client_ip: IpAddr,
    peer_ip: IpAddr,
    peer_trusted: bool,
    tls: bool,
    tried: Vec<usize>,
    current: Option<usize>,
    upstream_start: Option<Instant>,
    outcome: Option<&'static str>,
    received: SystemTime,
    log_slot: Option<Reservation>,
    log_refused: bool,
    /// Network and device facts and the addressed tenant, as the policy saw them (for the record).
    facts: Option<
        Box<(
            portcullis_policy::input::NetworkFacts,
            portcullis_policy::input::DeviceFacts,
            Option<String>,
        )>,
    >,
    upstream_status: Option<u16>,
    /// The signed-in identity (filled by the session layer when single sign-on is configured).
    pub identity: Option<Identity>,
    /// The policy decision and its explanation, for logs.
    pub decision: Option<Decision>,
    /// A `Set-Cookie` to add to the upstream's response (session id rotated by a refresh).
    set_cookie: Option<String>,
}

impl Ctx {
    fn route_id(&self) -> &str {
        self.route
            .and_then(|i| self.rt.config.routes.get(i))
            .map_or("_unmatched_", |r| r.id.as_str())
    }
}

fn peer_ip(session: &Session) -> IpAddr {
    match session.client_addr() {
        Some(PingoraAddr::Inet(a)) => a.ip(),
        _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
    }
}

/// A browser navigation (HTML `Accept`), as opposed to an API client.
fn is_browser(req: &RequestHeader) -> bool {
    req.headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html"))
}

fn request_host(req: &RequestHeader) -> Option<String> {
    let raw = req
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))?;
    valid_host(raw)
}

/// A redirect to this origin's sign-in page (provider chooser) that returns to `rd`.
fn login_page(origin: &str, rd: &str) -> GatewayError {
    let q: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("rd", rd)
        .finish();
    GatewayError::Login(crate::sso::Redirect {
        location: format!("{origin}/.portcullis/login?{q}"),
        cookies: Vec::new(),
    })
}

/// The first value of query parameter `name`, decoded.
fn query_param(req: &RequestHeader, name: &str) -> Option<String> {
    url::form_urlencoded::parse(req.uri.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A `Host` value the route table may see: a name or address with an optional port.
fn valid_host(raw: &str) -> Option<String> {
    let ok = !raw.is_empty()
        && raw.len() <= 255
        && raw.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']' | b'_')
        });
    ok.then(|| raw.to_string())
}

impl Gateway {
    /// Serves `/.portcullis/...` endpoints; `None` for reserved paths that are not endpoints.
    async fn auth_endpoint(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
    ) -> Result<Option<crate::errors::Reply>, GatewayError> {
        let Some(path) = ctx.path.as_ref().map(|p| p.decoded().to_string()) else {
            return Ok(None);
        };
        if crate::mfa::flow::Service::is_endpoint(&path) {
            let Some(mfa) = &self.mfa else {
                return Ok(None);
            };
            let req = session.req_header();
            let method = req.method.as_str().to_string();
            let headers = req.headers.clone();
            let query: HashMap<String, String> =
                url::form_urlencoded::parse(req.uri.query().unwrap_or("").as_bytes())
                    .into_owned()
                    .collect();
            let body = if method == "POST" {
                auth_endpoints::body(session).await?
            } else {
                String::new()
            };
            let origin = self.origin(ctx);
            let req = crate::mfa::flow::Request {
                headers: &headers,
                method: &method,
                path: &path,
                query: &query,
                body: &body,
                origin: &origin,
                tls: ctx.tls,
                client_ip: ctx.client_ip,
            };
            return mfa.serve(&self.sso, &req).await.map(Some);
        }
        if crate::forward_auth::is_forward_auth(&path) {
            return self.forward_auth(session, ctx).await.map(Some);
        }
        if !auth_endpoints::is_endpoint(&path) {
            return Ok(None);
        }
        if path == "/.portcullis/login" {
            self.login_needs_step_up(session, ctx)?;
        }
        let req = auth_endpoints::Request {
            path: &path,
            origin: self.origin(ctx),
            tls: ctx.tls,
            client_ip: ctx.client_ip,
        };
        auth_endpoints::serve(&self.sso, session, &req)
            .await
            .map(Some)
    }

    /// `/.portcullis/auth`: the policy of the route the original request would take (see
    /// [`crate::forward_auth`]), or, when the proxy did not say which request that is or no
    /// route matches it, "is there a session". 200 carries the identity headers and an
    /// assertion for the route's audience (or `?aud=`).
    async fn forward_auth(
        &self,
        session: &Session,
        ctx: &mut Ctx,
    ) -> Result<crate::errors::Reply, GatewayError> {
        let req = session.req_header();
        let raw = req.uri.path_and_query().map_or("/", |p| p.as_str());
        let original = crate::forward_auth::original(&req.headers, raw, &ctx.host);
        let mut aud = query_param(req, "aud").unwrap_or_else(|| "forward-auth".to_string());
        let mut decided = false;
        if let Some(o) = &original {
            let host = valid_host(&o.host).ok_or(GatewayError::BadHost)?;
            let path = normalise(o.path(), ctx.rt.config.server.path_params)?;
            match self.decide(session, ctx, &host, path.decoded()) {
                Ok(()) => {
                    decided = true;
                    if let Some(r) = ctx.route.and_then(|i| ctx.rt.config.routes.get(i)) {
                        aud = r.assertion_audience.clone();
                    }
                }
                Err(GatewayError::NoRoute) => ctx.route = None,
                Err(GatewayError::Unauthenticated) => {
                    return Err(self.forward_auth_challenge(session, ctx, original.as_ref()))
                }
                Err(e @ GatewayError::StepUp { .. }) => {
                    return Err(self.forward_auth_step_up(session, ctx, original.as_ref(), e))
                }
                Err(e) => return Err(e),
            }
        }
        if !decided && ctx.identity.is_none() {
            return Err(self.forward_auth_challenge(session, ctx, original.as_ref()));
        }
        let mut reply = crate::errors::Reply::json(200, "{}".to_string());
        if let Some(identity) = &ctx.identity {
            for (k, v) in crate::assertion::identity_headers(identity) {
                reply.headers.push((k.to_string(), v));
            }
            if let Some(t) = self.sso.assertions.sign(identity, &aud) {
                reply
                    .headers
                    .push(("x-portcullis-assertion".to_string(), t));
            }
        }
        if let Some(c) = ctx.set_cookie.take() {
            reply.headers.push(("set-cookie".to_string(), c));
        }
        Ok(reply)
    }

    /// Not signed in at forward-auth: 401 (nginx `auth_request` maps it with `error_page`),
    /// or, for a browser when a Traefik/Caddy-style proxy gave the full original URL, a 302
    /// to sign in and come back there (the return URL is still checked at login).
    fn forward_auth_challenge(
        &self,
        session: &Session,
        ctx: &Ctx,
        original: Option<&crate::forward_auth::Original>,
    ) -> GatewayError {
        match original.and_then(crate::forward_auth::Original::url) {
            Some(rd) if self.sso.enabled() && is_browser(session.req_header()) => {
                login_page(&self.origin(ctx), &rd)
            }
            _ => GatewayError::Unauthenticated,
        }
    }

    /// Step-up needed at forward-auth: the machine-readable 401, or for a browser with the
    /// full original URL a 302 to the MFA page that returns there. (nginx `auth_request`
    /// passes only 2xx/401/403, so it gets the 401 and its `error_page` sends the browser to
    /// `/.portcullis/login`, which forwards a signed-in user to the MFA page.)
    fn forward_auth_step_up(
        &self,
        session: &Session,
        ctx: &Ctx,
        original: Option<&crate::forward_auth::Original>,
        err: GatewayError,
    ) -> GatewayError {
        match original.and_then(crate::forward_auth::Original::url) {
            Some(ret) if self.mfa.is_some() && is_browser(session.req_header()) => {
                GatewayError::StepUpRedirect(self.mfa_page(ctx, &ret, &err))
            }
            _ => err,
        }
    }

    /// The MFA page URL that returns to `ret`, with the factors the step-up `err` accepts
    /// (a hint for what the page offers: the policy decides again when the browser comes back).
    fn mfa_page(&self, ctx: &Ctx, ret: &str, err: &GatewayError) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("return", ret);
        if let GatewayError::StepUp { methods, .. } = err {
            if !methods.is_empty() {
                q.append_pair("methods", &methods.join(","));
            }
        }
        format!("{}/.portcullis/mfa?{}", self.origin(ctx), q.finish())
    }

    /// A signed-in user sent to `/.portcullis/login?rd=URL` (nginx's `error_page 401` after a
    /// forward-auth step-up) goes to the MFA page when `URL`'s route asks for step-up, instead
    /// of signing in again and looping.
    fn login_needs_step_up(&self, session: &Session, ctx: &mut Ctx) -> Result<(), GatewayError> {
        if self.mfa.is_none() || ctx.identity.is_none() {
            return Ok(());
        }
        let req = session.req_header();
        let Some(rd) = query_param(req, "rd") else {
            return Ok(());
        };
        let origin = self.origin(ctx);
        let target = self.sso.return_to(Some(&rd), &origin);
        let Ok(u) = url::Url::parse(&target) else {
            return Ok(());
        };
        let Some(host) = crate::forward_auth::authority(&u) else {
            return Ok(());
        };
        let Ok(path) = normalise(u.path(), ctx.rt.config.server.path_params) else {
            return Ok(());
        };
        let decision = self.decide(session, ctx, &host, path.decoded());
        ctx.route = None;
        ctx.decision = None;
        if let Err(err @ GatewayError::StepUp { .. }) = decision {
            return Err(GatewayError::StepUpRedirect(
                self.mfa_page(ctx, &target, &err),
            ));
        }
        Ok(())
    }

    fn origin(&self, ctx: &Ctx) -> String {
        format!("{}://{}", if ctx.tls { "https" } else { "http" }, ctx.host)
    }

    /// An unauthenticated request: browsers (HTML `Accept`) are sent to sign in, API clients
    /// get the 401.
    async fn challenge(&self, session: &Session, ctx: &Ctx) -> GatewayError {
        let req = session.req_header();
        let browser = is_browser(req);
        if !self.sso.enabled() || !browser || req.method != http::Method::GET {
            return GatewayError::Unauthenticated;
        }
        let origin = self.origin(ctx);
        let pq = req.uri.path_and_query().map_or("/", |p| p.as_str());
        let rd = self.sso.return_to(Some(pq), &origin);
        let route = ctx.route.and_then(|i| ctx.rt.config.routes.get(i));
        match self.sso.provider_for(route) {
            Some(p) => match self.sso.start_login(&p, rd, &origin, ctx.tls).await {
                Ok(r) => GatewayError::Login(r),
                Err(e) => e.into(),
            },
            None => login_page(&origin, &rd),
        }
    }

    /// A step-up challenge: browsers (HTML `Accept`, GET) go to the MFA page and come back to
    /// this URL; API clients keep the machine-readable 401.
    fn step_up(&self, session: &Session, ctx: &Ctx, err: GatewayError) -> GatewayError {
        let req = session.req_header();
        if self.mfa.is_none() || !is_browser(req) || req.method != http::Method::GET {
            return err;
        }
        let pq = req.uri.path_and_query().map_or("/", |p| p.as_str());
        GatewayError::StepUpRedirect(self.mfa_page(ctx, pq, &err))
    }

    /// Decides what happens to a request before any upstream is involved.
    fn admit(&self, session: &Session, ctx: &mut Ctx) -> Result<(), GatewayError> {
        let rt = ctx.rt.clone();
        let server = &rt.config.server;
        let req = session.req_header();
        let host = request_host(req).ok_or(GatewayError::BadHost)?;
        ctx.host = host.clone();
        let raw_path = req.uri.path();
        if !ctx.tls {
            if let Some(http) = &server.http {
                if http.redirect_to_https {
                    let name = portcullis_policy::routing::canonical_host(&host).into_owned();
                    let port = match self.https_port {
                        Some(443) | None => String::new(),
                        Some(p) => format!(":{p}"),
                    };
                    let pq = req.uri.path_and_query().map_or("/", |p| p.as_str());
                    return Err(GatewayError::RedirectHttps(format!(
                        "https://{name}{port}{pq}"
                    )));
                }
            }
        }
        let path = normalise(raw_path, server.path_params)?;
        let decoded = path.decoded().to_string();
        ctx.path = Some(path);
        if decoded == "/.portcullis" || decoded.starts_with("/.portcullis/") {
            return Err(GatewayError::Reserved);
        }
        self.decide(session, ctx, &host, &decoded)
    }

    /// Finds the route for `host` + `decoded` path and evaluates its policy against the
    /// request and `ctx.identity`; records route and decision in `ctx`. Shared by proxied
    /// requests and forward-auth checks, so both answer the same way.
    fn decide(
        &self,
        session: &Session,
        ctx: &mut Ctx,
        host: &str,
        decoded: &str,
    ) -> Result<(), GatewayError> {
        let rt = ctx.rt.clone();
        let req = session.req_header();
        let (idx, route) = rt.route(host, decoded).ok_or(GatewayError::NoRoute)?;
        ctx.route = Some(idx);
        if route.policy.is_public() {
            return Ok(());
        }
        let client_cert_ca = session
            .digest()
            .and_then(|d| d.ssl_digest.as_ref())
            .and_then(|d| d.extension.get::<ClientCertFacts>())
            .map(|f| f.ca.clone());
        let canonical = portcullis_policy::routing::canonical_host(host).into_owned();
        let input = policy_input::build(
            &rt.config,
            &RequestContext {
                req,
                host: &canonical,
                path: decoded,
                client_ip: ctx.client_ip,
                peer_trusted: ctx.peer_trusted,
                client_cert_ca,
            },
            ctx.identity.clone(),
        );
        let decision = evaluate(&route.policy, &input);
        if self.decision_log.is_some() {
            ctx.facts = Some(Box::new((
                input.network.clone(),
                input.device.clone(),
                input.request.tenant.clone(),
            )));
        }
        let explanation = &decision.explanation;
        if !explanation.sod_violations.is_empty() {
            tracing::warn!(route = %route.id, user = input.identity.as_ref().map(|i| i.user.as_str()), reason = %explanation.reason(), "segregation-of-duties violation: identity holds conflicting roles");
        }
        if explanation.cross_tenant {
            tracing::warn!(route = %route.id, user = input.identity.as_ref().map(|i| i.user.as_str()), tenant = input.request.tenant.as_deref(), "cross-tenant access by operator role");
        }
        let result = match &decision.outcome {
            Outcome::Allow => Ok(()),
            Outcome::Deny => Err(GatewayError::Forbidden),
            Outcome::Challenge(Challenge::Login) => Err(GatewayError::Unauthenticated),
            Outcome::Challenge(Challenge::StepUp { methods, max_age }) => {
                Err(GatewayError::StepUp {
                    methods: methods.clone(),
                    max_age_secs: max_age.map(|d| d.as_secs()),
                })
            }
        };
        ctx.decision = Some(decision);
        result
    }
}

impl Gateway {
    /// Hands this request's decision record to the decision log and, for denials on
    /// privileged routes, records an audit event. Never waits.
    fn record_decision(
        &self,
        session: &Session,
        ctx: &mut Ctx,
        decision: &str,
        status: u16,
        elapsed: std::time::Duration,
    ) {
        let req = session.req_header();
        let route_id = || {
            ctx.route
                .and_then(|i| ctx.rt.config.routes.get(i))
                .map(|r| r.id.clone())
        };
        let path_of = || {
            ctx.path
                .as_ref()
                .map_or(req.uri.path(), |p| p.decoded())
                .to_string()
        };
        if decision != "allow" {
            if let (Some(audit), Some(r)) = (&ctx.rt.config.audit, route_id()) {
                if audit.privileged_routes.contains(&r) {
                    // Anonymous clients can cause these in bulk: repeats are counted (M7).
                    let ip = ctx.client_ip.to_string();
                    crate::audit::emit_repeatable(
                        "policy.denied",
                        &r,
                        &ip,
                        None,
                        serde_json::json!({
                            "route": r, "decision": decision, "method": req.method.as_str(),
                            "path": path_of(), "client_ip": ctx.client_ip.to_string(), "status": status,
                        }),
                    );
                }
            }
        }
        // Nothing below runs (or allocates) unless a decision log is configured.
        let Some(log) = &self.decision_log else {
            return;
        };
        if ctx.log_refused {
            // Refused because the log is full: there is no room for its record either.
            return;
        }
        let route = route_id();
        let path = path_of();
        let request_id = req
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() <= 128);
        let mut rec = DecisionRecord::new(ctx.received, &log.gateway_id, request_id);
        rec.route = route;
        rec.method = req.method.as_str().to_string();
        rec.host = ctx.host.clone();
        rec.path = path;
        rec.client_ip = ctx.client_ip.to_string();
        rec.decision = decision.to_string();
        rec.status = status;
        rec.upstream_status = ctx.upstream_status;
        if let Some(facts) = ctx.facts.take() {
            let (network, device, tenant) = *facts;
            rec.country = network.country;
            if network.region.is_some() || network.asn.is_some() {
                rec.geo = Some(serde_json::json!({"region": network.region, "asn": network.asn}));
            }
            if device != Default::default() {
                rec.device = serde_json::to_value(&device).ok();
            }
            rec.tenant = tenant;
        }
        if let Some(id) = &ctx.identity {
            rec.user = Some(id.user.clone());
            rec.tenant = rec.tenant.take().or_else(|| id.tenant.clone());
            rec.groups = id.groups.clone();
            rec.roles = id.roles.clone();
            let now = chrono::Utc::now();
            rec.auth = id
                .auth_methods
                .iter()
                .map(|a| crate::decisionlog::record::AuthMethod {
                    method: a.method.clone(),
                    age_s: (now - a.at).num_seconds().max(0) as u64,
                })
                .collect();
        }
        if let Some(d) = &ctx.decision {
            rec.rule = Some(d.explanation.rule.to_string());
            if !d.is_allow() {
                rec.reason = Some(d.explanation.reason());
                rec.condition = d.explanation.detail.as_ref().map(ToString::to_string);
            }
        }
        rec.duration_ms = elapsed.as_secs_f64() * 1000.0;
        log.submit(ctx.log_slot.take(), &rec);
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
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        ctx.tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
        ctx.peer_ip = peer_ip(session);
        let trusted = &ctx.rt.config.server.trusted_proxies;
        ctx.peer_trusted = forwarded::is_trusted(ctx.peer_ip, trusted);
        let xff = session
            .req_header()
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok());
        ctx.client_ip = forwarded::client_ip(ctx.peer_ip, xff, trusted);
        // Fail closed: a request whose decision record could not be kept is not served.
        if let Some(log) = &self.decision_log {
            match log.reserve() {
                Ok(slot) => ctx.log_slot = slot,
                Err(full) => {
                    tracing::error!(error = %full, "decision log full: refusing the request (decision_log.spool.when_full: block)");
                    ctx.outcome = Some("deny");
                    ctx.log_refused = true;
                    respond(session, &GatewayError::LogUnavailable).await?;
                    return Ok(true);
                }
            }
        }
        let result = match self
            .sso
            .identify(&session.req_header().headers, ctx.tls)
            .await
        {
            Ok(a) => {
                if let Some(a) = a {
                    ctx.set_cookie = a.set_cookie;
                    ctx.identity = Some(a.record.identity);
                }
                self.admit(session, ctx)
            }
            Err(e) => Err(e.into()),
        };
        let result = match result {
            Err(GatewayError::Reserved) => match self.auth_endpoint(session, ctx).await {
                Ok(Some(reply)) => {
                    ctx.outcome = Some("allow");
                    send(session, reply).await?;
                    return Ok(true);
                }
                Ok(None) => Err(GatewayError::Reserved),
                Err(e) => Err(e),
            },
            Err(GatewayError::Unauthenticated) => Err(self.challenge(session, ctx).await),
            Err(e @ GatewayError::StepUp { .. }) => Err(self.step_up(session, ctx, e)),
            other => other,
        };
        match result {
            Ok(()) => {
                ctx.outcome = Some("allow");
                Ok(false)
            }
            Err(e) => {
                ctx.outcome = Some(e.decision());
                respond(session, &e).await?;
                Ok(true)
            }
        }
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream: &mut pingora_http::ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
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
        let target = match session.req_header().uri.query() {
            Some(q) => format!("{}?{q}", path.encoded()),
            None => path.encoded().to_string(),
        };
        let uri: http::Uri = target.parse().map_err(|_| {
            Error::explain(ErrorType::InternalError, "normalised path is not a URI")
        })?;
        upstream.set_uri(uri);
        let stripped = identity::strip_client_identity(upstream);
        if stripped > 0 {
            tracing::warn!(client_ip = %ctx.client_ip, headers = stripped, "removed client-supplied X-Portcullis-* headers");
        }
        let fwd = forwarded::forwarded(
            ctx.peer_ip,
            ctx.peer_trusted,
            session.req_header(),
            ctx.tls,
            &ctx.host,
        );
        forwarded::apply(upstream, &fwd)?;
        if let Some(id) = ctx.identity.as_ref() {
            let route = ctx.route.and_then(|i| ctx.rt.config.routes.get(i));
            let aud = route.map_or("_unmatched_", |r| r.assertion_audience.as_str());
            identity::set_identity(upstream, &self.sso, id, aud)?;
        }
        identity::strip_session_cookies(upstream)?;
        let route = ctx.route.and_then(|i| ctx.rt.config.routes.get(i));
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
                if respond(session, &err).await.is_err() {
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
        self.record_decision(session, ctx, decision, status, elapsed);
    }
}
