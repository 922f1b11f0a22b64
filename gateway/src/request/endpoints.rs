//! The one dispatcher for `/.portcullis/*`: MFA pages, forward-auth, and the sign-in, callback,
//! logout and key endpoints of [`crate::auth_endpoints`].

use super::decide::Judged;
use super::facts::{client_cert_ca, query_param};
use crate::auth_endpoints;
use crate::errors::GatewayError;
use crate::proxy::{Ctx, Gateway};
use pingora::proxy::Session;
use portcullis_policy::path::normalise_with;
use std::collections::HashMap;

impl Gateway {
    /// Serves `/.portcullis/...` endpoints; `None` for reserved paths that are not endpoints.
    pub(crate) async fn auth_endpoint(
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
        if super::scim::is_scim(&path) {
            return self.scim(session, ctx, &path).await;
        }
        if crate::forward_auth::is_forward_auth(&path) {
            self.identify(session, ctx).await?;
            return self.forward_auth(session, ctx).await.map(Some);
        }
        if !auth_endpoints::is_endpoint(&path) {
            return Ok(None);
        }
        if path == "/.portcullis/login" {
            self.identify(session, ctx).await?;
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
