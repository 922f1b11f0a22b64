//! The one dispatcher for `/.portcullis/*`: it names the endpoint, reads the request once into
//! a [`LocalRequest`] (query decoded, body bounded for that endpoint) and hands it to the
//! handler — MFA pages, SCIM, the console API, or the sign-in, callback, logout, password and
//! key endpoints of [`crate::auth_endpoints`]. Forward-auth, which judges another URL against
//! the route table, is served from the pipeline's context instead.

use super::decide::Judged;
use super::facts::{client_cert_ca, query_param};
use crate::auth_endpoints;
use crate::errors::{GatewayError, Reply};
use crate::local_request::{BodyError, LocalRequest, MAX_BODY};
use crate::proxy::{Ctx, Gateway};
use crate::scim::discovery::MAX_PAYLOAD;
use pingora::proxy::Session;
use portcullis_policy::path::normalise_with;

/// Which handler a reserved path belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Mfa,
    Scim,
    ForwardAuth,
    SignIn,
    Console,
    Saml,
}

impl Endpoint {
    fn of(path: &str) -> Option<Self> {
        if crate::mfa::flow::Service::is_endpoint(path) {
            Some(Self::Mfa)
        } else if super::scim::is_scim(path) {
            Some(Self::Scim)
        } else if crate::forward_auth::is_forward_auth(path) {
            Some(Self::ForwardAuth)
        } else if auth_endpoints::is_endpoint(path) {
            Some(Self::SignIn)
        } else if crate::console::is_console(path) {
            Some(Self::Console)
        } else if crate::saml::is_endpoint(path) {
            Some(Self::Saml)
        } else {
            None
        }
    }

    /// The largest body this endpoint reads; `None`: none is read (SCIM over plain HTTP is
    /// refused without reading what it sent).
    fn body_limit(self, tls: bool) -> Option<usize> {
        match self {
            Self::Scim if !tls => None,
            Self::Scim => Some(MAX_PAYLOAD),
            Self::Mfa | Self::SignIn => Some(MAX_BODY),
            Self::Console => Some(crate::console::api::MAX_BODY),
            Self::Saml => Some(crate::saml::MAX_BODY),
            Self::ForwardAuth => None,
        }
    }
}

/// Reads a request body of at most `max` bytes; stops reading as soon as it is over (a
/// `Content-Length` above `max` is refused before reading anything).
async fn body_capped(session: &mut Session, max: usize) -> Result<Vec<u8>, BodyError> {
    let announced = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > max as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut buf = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                buf.extend_from_slice(&chunk);
                if buf.len() > max {
                    return Err(BodyError::TooLarge);
                }
            }
            Ok(None) => return Ok(buf),
            Err(_) => return Err(BodyError::Unreadable),
        }
    }
}

impl Gateway {
    /// Serves `/.portcullis/...` endpoints; `None` for reserved paths that are not endpoints
    /// (or whose feature is off), which the pipeline answers 404.
    pub(crate) async fn auth_endpoint(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
    ) -> Result<Option<Reply>, GatewayError> {
        let Some(path) = ctx.path.as_ref().map(|p| p.decoded().to_string()) else {
            return Ok(None);
        };
        let Some(endpoint) = Endpoint::of(&path) else {
            return Ok(None);
        };
        match endpoint {
            Endpoint::ForwardAuth => {
                self.identify(session, ctx).await?;
                self.forward_auth(session, ctx).await.map(Some)
            }
            Endpoint::Mfa => {
                let Some(mfa) = &self.mfa else {
                    return Ok(None);
                };
                let req = self.local_request(session, ctx, path, endpoint).await;
                mfa.serve(&self.sso, &req).await.map(Some)
            }
            Endpoint::Scim => {
                let Some(scim) = &self.scim else {
                    return Ok(None);
                };
                let req = self.local_request(session, ctx, path, endpoint).await;
                Ok(Some(super::scim::reply(scim.handle(&req).await)))
            }
            Endpoint::Console => self.console(session, ctx, path).await,
            Endpoint::Saml => {
                let req = self.local_request(session, ctx, path, endpoint).await;
                crate::saml::endpoints::serve(&self.sso, &req)
                    .await
                    .map(Some)
            }
            Endpoint::SignIn => {
                if path == "/.portcullis/login" {
                    self.identify(session, ctx).await?;
                    self.login_needs_step_up(session, ctx)?;
                }
                let req = self.local_request(session, ctx, path, endpoint).await;
                auth_endpoints::serve(&self.sso, &req).await.map(Some)
            }
        }
    }

    /// The one [`LocalRequest`] of this request, its body read within `endpoint`'s bound.
    pub(crate) async fn local_request(
        &self,
        session: &mut Session,
        ctx: &Ctx,
        path: String,
        endpoint: Endpoint,
    ) -> LocalRequest {
        let body = match endpoint.body_limit(ctx.tls) {
            Some(max) => body_capped(session, max).await,
            None => Ok(Vec::new()),
        };
        let head = session.req_header();
        let query = head.uri.query().unwrap_or("").to_string();
        LocalRequest {
            method: head.method.clone(),
            params: url::form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect(),
            query,
            path,
            headers: head.headers.clone(),
            body,
            origin: self.origin(ctx),
            tls: ctx.tls,
            client_ip: ctx.client_ip,
        }
    }

    /// A signed-in user sent to `/.portcullis/login?rd=URL` (nginx's `error_page 401` after a
    /// forward-auth step-up) goes to the MFA page when `URL`'s route asks for step-up, instead
    /// of signing in again and looping.
    pub(crate) fn login_needs_step_up(
        &self,
        session: &Session,
        ctx: &mut Ctx,
    ) -> Result<(), GatewayError> {
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
        let server = &ctx.rt.config.server;
        let Ok(path) = normalise_with(u.path(), server.path_params, server.path_limits) else {
            return Ok(());
        };
        let decision = self.decide(
            ctx,
            &Judged {
                req,
                host: &host,
                path: path.decoded(),
                client_cert_ca: client_cert_ca(session),
            },
        );
        ctx.route = None;
        ctx.decision = None;
        if let Err(err @ GatewayError::StepUp { .. }) = decision {
            return Err(GatewayError::StepUpRedirect(
                self.mfa_page(ctx, &target, &err),
            ));
        }
        Ok(())
    }

    pub(crate) fn origin(&self, ctx: &Ctx) -> String {
        format!("{}://{}", if ctx.tls { "https" } else { "http" }, ctx.host)
    }
}
