//! The request path, as one ordered pipeline of small steps: request facts → decision-log
//! slot → HTTPS redirect → normalise → reserved endpoints → route → identify (only where the
//! route needs to know the user) → decide → tunnel checks. Each step continues or ends the
//! request with an answer ([`Flow`] or a [`GatewayError`], both written by `errors.rs`);
//! nothing reaches an upstream unless every step continued. `proxy.rs` is the pingora glue
//! around it.
//!
//! - `facts`: peer, host, client address and browser detection, read once.
//! - `decide`: route policy evaluation and the answers for sign-in and step-up.
//! - `endpoints`: the one dispatcher for `/.portcullis/*`.
//! - `console`: the console policy in front of the admin API.
//! - `forward_auth`: `/.portcullis/auth`, judged on the original request.
//! - `ext_authz`: Envoy's gRPC `Check`, judged the same way (see [`crate::ext_authz`]).
//! - `record`: the decision record and audit event of each request.

pub(crate) mod console;
pub(crate) mod decide;
pub(crate) mod endpoints;
pub(crate) mod ext_authz;
pub(crate) mod facts;
pub(crate) mod forward_auth;
pub(crate) mod record;
pub(crate) mod scim;
#[cfg(test)]
mod tests;

use crate::errors::GatewayError;
use crate::forwarded;
use crate::proxy::{Ctx, Gateway};
use decide::Judged;
use facts::{client_cert_ca, peer_ip, request_host};
use pingora::proxy::Session;
use pingora_http::RequestHeader;
use portcullis_policy::path::normalise_with;

/// How the request path ends for one request.
#[derive(Debug)]
pub(crate) enum Flow {
    /// Every step continued: proxy to the route's upstream.
    Proxy,
    /// A reserved endpoint answered.
    Reply(crate::errors::Reply),
}

impl Gateway {
    /// The request path, in order: request facts → decision-log slot → HTTPS redirect →
    /// normalise → reserved endpoints → route → identify (only where the route needs to know
    /// the user) → decide → tunnel checks. Each step either continues or ends the request with
    /// an answer; nothing reaches an upstream unless every step continued.
    pub(crate) async fn pipeline(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
    ) -> Result<Flow, GatewayError> {
        self.request_facts(session, ctx);
        self.reserve_log_slot(ctx)?;
        let rt = ctx.rt.clone();
        let host = request_host(session.req_header()).ok_or(GatewayError::BadHost)?;
        ctx.host = host.clone();
        self.https_redirect(session.req_header(), ctx)?;
        let server = &rt.config.server;
        let path = normalise_with(
            session.req_header().uri.path(),
            server.path_params,
            server.path_limits,
        )?;
        let decoded = path.decoded().to_string();
        ctx.path = Some(path);
        if decoded == "/.portcullis" || decoded.starts_with("/.portcullis/") {
            return match self.auth_endpoint(session, ctx).await? {
                Some(reply) => Ok(Flow::Reply(reply)),
                None => Err(GatewayError::Reserved),
            };
        }
        let (idx, route) = rt.route(&host, &decoded).ok_or(GatewayError::NoRoute)?;
        ctx.route = Some(idx);
        if !route.policy.is_public() {
            self.identify(session, ctx).await?;
        } else if route.identity_headers {
            // Opted-in public route: tell the upstream who is signed in when that can be
            // known, but never fail a public route because the session store is down.
            if let Err(e) = self.identify(session, ctx).await {
                tracing::warn!(route = %route.id, error = %e, "session unreadable on a public route: serving it anonymously");
            }
        }
        let judged = Judged {
            req: session.req_header(),
            host: &host,
            path: &decoded,
            client_cert_ca: client_cert_ca(session),
        };
        match self.decide(ctx, &judged) {
            Ok(()) => {}
            Err(GatewayError::Unauthenticated) => return Err(self.challenge(session, ctx).await),
            Err(e @ GatewayError::StepUp { .. }) => return Err(self.step_up(session, ctx, e)),
            Err(e) => return Err(e),
        }
        self.admit_tunnel(session, ctx)?;
        Ok(Flow::Proxy)
    }

    /// Peer, trusted-proxy status, TLS (also as reported by a trusted TLS-terminating proxy)
    /// and the client address.
    pub(crate) fn request_facts(&self, session: &Session, ctx: &mut Ctx) {
        ctx.peer_ip = peer_ip(session);
        let trusted = &ctx.rt.config.server.trusted_proxies;
        ctx.peer_trusted = forwarded::is_trusted(ctx.peer_ip, trusted);
        let headers = &session.req_header().headers;
        // A trusted TLS-terminating proxy on the plain listener: the client used HTTPS, so
        // cookies keep `Secure`/`__Host-` and redirect URIs stay `https://`.
        ctx.tls = session.digest().is_some_and(|d| d.ssl_digest.is_some())
            || (ctx.peer_trusted && forwarded::trusted_proto(headers) == Some("https"));
        // Only a trusted proxy's chain is read: from anyone else it is not joined at all.
        let xff = if ctx.peer_trusted {
            forwarded::joined(headers, "x-forwarded-for")
        } else {
            None
        };
        ctx.client_ip = forwarded::client_ip(ctx.peer_ip, xff.as_deref(), trusted);
    }

    /// Fail closed: a request whose decision record could not be kept is not served.
    pub(crate) fn reserve_log_slot(&self, ctx: &mut Ctx) -> Result<(), GatewayError> {
        let Some(log) = &self.decision_log else {
            return Ok(());
        };
        match log.reserve() {
            Ok(slot) => {
                ctx.log_slot = slot;
                Ok(())
            }
            Err(full) => {
                tracing::error!(error = %full, "decision log full: refusing the request (decision_log.spool.when_full: block)");
                ctx.log_refused = true;
                Err(GatewayError::LogUnavailable)
            }
        }
    }

    /// The plain listener configured to redirect: 308 to the same URL over HTTPS.
    pub(crate) fn https_redirect(
        &self,
        req: &RequestHeader,
        ctx: &Ctx,
    ) -> Result<(), GatewayError> {
        let redirect = !ctx.tls
            && ctx
                .rt
                .config
                .server
                .http
                .as_ref()
                .is_some_and(|h| h.redirect_to_https);
        if !redirect {
            return Ok(());
        }
        let name = portcullis_policy::routing::canonical_host(&ctx.host).into_owned();
        let port = match self.https_port {
            Some(443) | None => String::new(),
            Some(p) => format!(":{p}"),
        };
        let pq = req.uri.path_and_query().map_or("/", |p| p.as_str());
        Err(GatewayError::RedirectHttps(format!(
            "https://{name}{port}{pq}"
        )))
    }

    /// Reads the session once per request; a rotated session id's cookie is kept in `ctx` and
    /// attached to whatever answer the request gets.
    pub(crate) async fn identify(
        &self,
        session: &Session,
        ctx: &mut Ctx,
    ) -> Result<(), GatewayError> {
        self.identify_headers(&session.req_header().headers, ctx)
            .await
    }

    /// [`Self::identify`] from the request headers `headers` (the session cookie).
    pub(crate) async fn identify_headers(
        &self,
        headers: &http::HeaderMap,
        ctx: &mut Ctx,
    ) -> Result<(), GatewayError> {
        if ctx.identity.is_some() {
            return Ok(());
        }
        if let Some(a) = self.sso.identify(headers, ctx.tls).await? {
            ctx.set_cookie = a.set_cookie;
            ctx.identity = Some(a.record.identity);
            ctx.csrf = Some(a.record.csrf);
            ctx.sid = Some(a.sid);
        }
        Ok(())
    }
}
