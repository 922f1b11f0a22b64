//! `/.portcullis/auth`: a front proxy's check, judged on the original request it describes
//! (see [`crate::forward_auth`] for which headers are read, and from whom).

use super::decide::{login_page, Judged};
use super::facts::{is_browser, valid_host};
use crate::errors::GatewayError;
use crate::proxy::{Ctx, Gateway};
use pingora::proxy::Session;
use pingora_http::RequestHeader;
use portcullis_policy::path::normalise_with;

/// The original request of a forward-auth check as a request header the policy can read:
/// its method, path and query, its host, and the check's other headers (the client's cookies,
/// user agent…) minus those that describe the hop.
pub(crate) fn original_request(
    check: &http::HeaderMap,
    original: &crate::forward_auth::Original,
    host: &str,
) -> Result<RequestHeader, GatewayError> {
    let bad = |_| GatewayError::ForwardAuth(crate::forward_auth::ForwardAuthError::Invalid("URI"));
    let mut req = RequestHeader::build(
        original.method.clone(),
        original.path_and_query.as_bytes(),
        Some(check.len()),
    )
    .map_err(bad)?;
    for (name, value) in check {
        if name != http::header::HOST && !crate::forward_auth::is_family_header(name.as_str()) {
            req.append_header(name.clone(), value.clone())
                .map_err(bad)?;
        }
    }
    req.insert_header(http::header::HOST, host).map_err(bad)?;
    Ok(req)
}

impl Gateway {
    /// `/.portcullis/auth`: the policy of the route the original request would take, judged on
    /// the original request (method, host, path, query, client IP) as the configured front
    /// proxy describes it (see [`crate::forward_auth`]). Only trusted proxies are answered; no
    /// route is a denial; 200 carries the identity headers and an assertion for the audience of
    /// the route whose policy allowed the request — never one the caller chose.
    pub(crate) async fn forward_auth(
        &self,
        session: &Session,
        ctx: &mut Ctx,
    ) -> Result<crate::errors::Reply, GatewayError> {
        use crate::forward_auth as fa;
        let rt = ctx.rt.clone();
        let Some(cfg) = rt.config.forward_auth.as_ref() else {
            return Err(GatewayError::Reserved);
        };
        let req = session.req_header();
        let refused = |e: fa::ForwardAuthError| {
            tracing::warn!(peer = %ctx.peer_ip, error = %e, "forward-auth check refused");
            GatewayError::ForwardAuth(e)
        };
        if !ctx.peer_trusted {
            return Err(refused(fa::ForwardAuthError::Untrusted));
        }
        let raw = req.uri.path_and_query().map_or("/", |p| p.as_str());
        let check = fa::CheckRequest {
            headers: &req.headers,
            method: &req.method,
            path_and_query: raw,
            host: &ctx.host,
        };
        let original = fa::original(cfg.mode, &check).map_err(refused)?;
        ctx.client_ip = fa::client_ip(ctx.peer_ip, &req.headers, &rt.config.server.trusted_proxies)
            .map_err(refused)?;
        self.check_original(ctx, &req.headers, &original)
    }

    /// The answer to a check about `original` (a trusted front proxy's description of the
    /// client's request; `headers` are the check's, carrying the client's cookies and `Accept`),
    /// shared by `/.portcullis/auth` and the gRPC ext_authz listener: the same path rules, the
    /// same policy decision, the same sign-in and step-up answers, the same identity headers.
    /// `ctx` holds the caller's trust, the client address and the identity already read.
    pub(crate) fn check_original(
        &self,
        ctx: &mut Ctx,
        headers: &http::HeaderMap,
        original: &crate::forward_auth::Original,
    ) -> Result<crate::errors::Reply, GatewayError> {
        use crate::forward_auth as fa;
        let rt = ctx.rt.clone();
        let host = valid_host(&original.host).ok_or(GatewayError::BadHost)?;
        let server = &rt.config.server;
        let path = normalise_with(original.path(), server.path_params, server.path_limits)?;
        if !fa::is_normal_form(original.path(), &path) {
            tracing::warn!(peer = %ctx.peer_ip, "forward-auth check refused: the original path is not in normal form");
            return Err(GatewayError::ForwardAuth(fa::ForwardAuthError::NotNormal));
        }
        let judged = original_request(headers, original, &host)?;
        let browser = is_browser(&judged);
        let decision = self.decide(
            ctx,
            &Judged {
                req: &judged,
                host: &host,
                path: path.decoded(),
                client_cert_ca: None,
            },
        );
        ctx.path = Some(path);
        match decision {
            Ok(()) => {}
            // Default deny: a URL no route serves is nobody's to reach.
            Err(GatewayError::NoRoute) => return Err(GatewayError::Forbidden),
            Err(GatewayError::Unauthenticated) => {
                return Err(self.forward_auth_challenge(ctx, original, browser))
            }
            Err(e @ GatewayError::StepUp { .. }) => {
                return Err(self.forward_auth_step_up(ctx, original, browser, e))
            }
            Err(e) => return Err(e),
        }
        let route = ctx
            .route
            .and_then(|i| rt.config.routes.get(i))
            .ok_or(GatewayError::Forbidden)?;
        let mut reply = crate::errors::Reply::json(200, "{}".to_string());
        if let Some(identity) = ctx.identity.as_ref().filter(|_| route.identity_headers) {
            for (k, v) in crate::assertion::identity_headers(identity) {
                reply.headers.push((k.to_string(), v));
            }
            if let Some(t) = self
                .sso
                .assertions
                .sign(identity, &route.assertion_audience)
            {
                reply
                    .headers
                    .push(("x-portcullis-assertion".to_string(), t));
            }
        }
        // The names not vouched for, empty: a proxy that copies (Caddy, Traefik) or overwrites
        // (Envoy, nginx) them then blanks a client's copy instead of passing it to the app.
        for name in crate::assertion::ALL_IDENTITY_HEADERS {
            if !reply.headers.iter().any(|(k, _)| k == name) {
                reply.headers.push((name.to_string(), String::new()));
            }
        }
        if let Some(c) = ctx.set_cookie.take() {
            reply.headers.push(("set-cookie".to_string(), c));
        }
        Ok(reply)
    }

    /// Not signed in at forward-auth: 401 (nginx `auth_request` maps it with `error_page`),
    /// or, for a browser when a Traefik/Caddy/Envoy-style proxy gave the full original URL, a
    /// 302 to sign in *at the original host* (the proxy routes `/.portcullis/` there to the
    /// gateway, so the session cookie is that host's) and come back (the return URL is still
    /// checked at login). The gateway's own address as the proxy calls it is often internal.
    pub(crate) fn forward_auth_challenge(
        &self,
        ctx: &Ctx,
        original: &crate::forward_auth::Original,
        browser: bool,
    ) -> GatewayError {
        match original.url() {
            Some(rd) if self.sso.enabled() && browser => {
                let origin = original.origin().unwrap_or_else(|| self.origin(ctx));
                login_page(&origin, &rd)
            }
            _ => GatewayError::Unauthenticated,
        }
    }

    /// Step-up needed at forward-auth: the machine-readable 401, or for a browser with the
    /// full original URL a 302 to the MFA page that returns there. (nginx `auth_request`
    /// passes only 2xx/401/403, so it gets the 401 and its `error_page` sends the browser to
    /// `/.portcullis/login`, which forwards a signed-in user to the MFA page.)
    pub(crate) fn forward_auth_step_up(
        &self,
        ctx: &Ctx,
        original: &crate::forward_auth::Original,
        browser: bool,
        err: GatewayError,
    ) -> GatewayError {
        match original.url() {
            Some(ret) if self.mfa.is_some() && browser => {
                let origin = original.origin().unwrap_or_else(|| self.origin(ctx));
                GatewayError::StepUpRedirect(self.mfa_page_at(&origin, &ret, &err))
            }
            _ => err,
        }
    }
}
