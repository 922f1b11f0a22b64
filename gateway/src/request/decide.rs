//! Route policy evaluation for a request (or a forward-auth check's original request), and
//! the answers a decision turns into: sign-in for browsers, 401 for APIs, the MFA page for
//! step-up, and the checks an upgraded (WebSocket) connection needs.

use super::facts::is_browser;
use crate::errors::GatewayError;
use crate::policy_input::{self, RequestContext};
use crate::proxy::{Ctx, Gateway};
use pingora::proxy::Session;
use pingora_http::RequestHeader;
use portcullis_policy::compile::CompiledPolicy;
use portcullis_policy::engine::{evaluate, Challenge, Outcome};

/// The request a policy decision is about: the one received, or for forward-auth the original
/// request the front proxy described.
pub(crate) struct Judged<'a> {
    /// Method, query and headers the policy sees.
    pub(crate) req: &'a RequestHeader,
    /// Host as routed.
    pub(crate) host: &'a str,
    /// Normalised, decoded path.
    pub(crate) path: &'a str,
    /// Issuer of the client certificate verified on this connection. Never set for forward-auth:
    /// the connection there is the proxy's, not the client's device.
    pub(crate) client_cert_ca: Option<String>,
}

/// A redirect to this origin's sign-in page (provider chooser) that returns to `rd`.
pub(crate) fn login_page(origin: &str, rd: &str) -> GatewayError {
    let q: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("rd", rd)
        .finish();
    GatewayError::Login(crate::sso::Redirect {
        location: format!("{origin}/.portcullis/login?{q}"),
        cookies: Vec::new(),
    })
}

impl Gateway {
    /// Finds the route for `host` + `decoded` path and evaluates its policy against the
    /// request and `ctx.identity`; records route and decision in `ctx`. Shared by proxied
    /// requests and forward-auth checks, so both answer the same way.
    pub(crate) fn decide(&self, ctx: &mut Ctx, judged: &Judged<'_>) -> Result<(), GatewayError> {
        let rt = ctx.rt.clone();
        let (idx, route) = rt
            .route(judged.host, judged.path)
            .ok_or(GatewayError::NoRoute)?;
        ctx.route = Some(idx);
        if route.policy.is_public() {
            return Ok(());
        }
        if let Err(mismatch) = crate::provider_pin::check(route, ctx.identity.as_ref()) {
            self.audit.record(*mismatch);
            return Err(GatewayError::Unauthenticated);
        }
        self.judge(ctx, judged, &route.policy, &route.id)
    }

    /// Evaluates `policy` (a route's, or the console's, named `label` in logs) against the
    /// request and `ctx.identity` with the engine, and turns the decision into the answer a
    /// protected route gives; records the decision in `ctx`.
    pub(crate) fn judge(
        &self,
        ctx: &mut Ctx,
        judged: &Judged<'_>,
        policy: &CompiledPolicy,
        label: &str,
    ) -> Result<(), GatewayError> {
        let rt = ctx.rt.clone();
        let canonical = portcullis_policy::routing::canonical_host(judged.host).into_owned();
        let input = policy_input::build(
            &rt.config,
            &RequestContext {
                req: judged.req,
                host: &canonical,
                path: judged.path,
                client_ip: ctx.client_ip,
                peer_trusted: ctx.peer_trusted,
                client_cert_ca: judged.client_cert_ca.clone(),
                now: self.sso.clock.utc(),
            },
            ctx.identity.clone(),
        );
        let decision = evaluate(policy, &input);
        if self.decision_log.is_some() {
            ctx.facts = Some(Box::new((
                input.network.clone(),
                input.device.clone(),
                input.request.tenant.clone(),
            )));
        }
        let explanation = &decision.explanation;
        if !explanation.sod_violations.is_empty() {
            tracing::warn!(route = %label, user = input.identity.as_ref().map(|i| i.user.as_str()), reason = %explanation.reason(), "segregation-of-duties violation: identity holds conflicting roles");
        }
        if explanation.cross_tenant {
            tracing::warn!(route = %label, user = input.identity.as_ref().map(|i| i.user.as_str()), tenant = input.request.tenant.as_deref(), "cross-tenant access by operator role");
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

    /// An unauthenticated request: browsers (HTML `Accept`) are sent to sign in, API clients
    /// get the 401.
    pub(crate) async fn challenge(&self, session: &Session, ctx: &Ctx) -> GatewayError {
        let req = session.req_header();
        let browser = is_browser(req);
        if !self.sso.enabled() || !browser || req.method != http::Method::GET {
            return GatewayError::Unauthenticated;
        }
        let origin = self.origin(ctx);
        let pq = req.uri.path_and_query().map_or("/", |p| p.as_str());
        let rd = self.sso.return_to(Some(pq), &origin);
        let route = ctx.route.and_then(|i| ctx.rt.config.routes.get(i));
        if let Some(sp) = self.sso.saml_for(route) {
            let ip = ctx.client_ip.to_string();
            return match self.sso.start_saml(&sp, rd, &origin, ctx.tls, &ip).await {
                Ok(r) => GatewayError::Login(r),
                Err(e) => e.into(),
            };
        }
        match self.sso.provider_for(route) {
            Some(p) => match self
                .sso
                .start_login(&p, rd, &origin, ctx.tls, &ctx.client_ip.to_string())
                .await
            {
                Ok(r) => GatewayError::Login(r),
                Err(e) => e.into(),
            },
            None => login_page(&origin, &rd),
        }
    }

    /// A step-up challenge: browsers (HTML `Accept`, GET) go to the MFA page and come back to
    /// this URL; API clients keep the machine-readable 401.
    pub(crate) fn step_up(&self, session: &Session, ctx: &Ctx, err: GatewayError) -> GatewayError {
        let req = session.req_header();
        if self.mfa.is_none() || !is_browser(req) || req.method != http::Method::GET {
            return err;
        }
        let pq = req.uri.path_and_query().map_or("/", |p| p.as_str());
        GatewayError::StepUpRedirect(self.mfa_page(ctx, pq, &err))
    }

    /// The MFA page URL that returns to `ret`, with the factors the step-up `err` accepts
    /// (a hint for what the page offers: the policy decides again when the browser comes back).
    pub(crate) fn mfa_page(&self, ctx: &Ctx, ret: &str, err: &GatewayError) -> String {
        self.mfa_page_at(&self.origin(ctx), ret, err)
    }

    /// [`Self::mfa_page`] at `origin` (forward-auth: the original request's host).
    pub(crate) fn mfa_page_at(&self, origin: &str, ret: &str, err: &GatewayError) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("return", ret);
        if let GatewayError::StepUp { methods, .. } = err {
            if !methods.is_empty() {
                q.append_pair("methods", &methods.join(","));
            }
        }
        format!("{origin}/.portcullis/mfa?{}", q.finish())
    }

    /// An upgrade (WebSocket) on a route that needs a user: refuse a foreign `Origin`, and
    /// watch the session so that logout or revocation ends the tunnel.
    pub(crate) fn admit_tunnel(
        &self,
        session: &Session,
        ctx: &mut Ctx,
    ) -> Result<(), GatewayError> {
        let (Some(sid), Some(route)) = (
            ctx.sid.as_ref(),
            ctx.route.and_then(|i| ctx.rt.config.routes.get(i)),
        ) else {
            return Ok(());
        };
        if !session.is_upgrade_req() || route.policy.is_public() {
            return Ok(());
        }
        let origin = session
            .req_header()
            .headers
            .get(http::header::ORIGIN)
            .map(|v| v.as_bytes());
        if !crate::tunnel::origin_allowed(
            origin,
            &self.origin(ctx),
            &ctx.rt.config.session.return_to_allow,
        ) {
            tracing::warn!(route = %route.id, client_ip = %ctx.client_ip, "WebSocket upgrade from a foreign Origin refused");
            return Err(GatewayError::Forbidden);
        }
        ctx.tunnel_ended = Some(crate::tunnel::watch(self.sso.store.clone(), sid.clone()));
        Ok(())
    }
}
