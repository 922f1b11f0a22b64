//! `/.portcullis/console/*`: the console policy decided by the engine, then the admin API.
//!
//! A call that fails the policy gets exactly what a protected route's API client gets, from
//! the same [`Gateway::judge`]: 401 JSON without a session (never a redirect: this is an
//! API), 401 `step_up_required` naming `mfa` and the factors when a recent second factor is
//! missing, 403 otherwise (the engine's reason is in the decision record and the audit
//! event `console.denied`). Only then is the body read and the admin established.

use super::decide::Judged;
use super::endpoints::Endpoint;
use super::facts::client_cert_ca;
use crate::audit::AuditEvent;
use crate::console::api::{self, error::ApiError};
use crate::errors::{GatewayError, Reply};
use crate::proxy::{Ctx, Gateway};
use pingora::proxy::Session;

impl Gateway {
    /// Serves a console path; `None` when the console is not configured or the path is not
    /// one it serves (the pipeline answers 404).
    pub(crate) async fn console(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        path: String,
    ) -> Result<Option<Reply>, GatewayError> {
        let rt = ctx.rt.clone();
        let (Some(cfg), Some(api)) = (&rt.config.console, &self.console) else {
            return Ok(None);
        };
        if !api::is_api(&path) {
            // The console pages are issue 15's.
            return Ok(None);
        }
        self.identify(session, ctx).await?;
        let host = ctx.host.clone();
        let judged = Judged {
            req: session.req_header(),
            host: &host,
            path: &path,
            client_cert_ca: client_cert_ca(session),
        };
        if let Err(e) = self.judge(ctx, &judged, &cfg.policy, "console") {
            let reason = ctx
                .decision
                .as_ref()
                .map(|d| d.explanation.reason())
                .unwrap_or_default();
            self.audit.record(AuditEvent::ConsoleDenied {
                user: ctx.identity.as_ref().map(|i| i.user.clone()),
                reason: format!("{}: {reason}", e.decision()),
                method: session.req_header().method.as_str().to_string(),
                path: path.clone(),
                client_ip: ctx.client_ip.to_string(),
            });
            return Err(e);
        }
        let (Some(identity), Some(csrf)) = (ctx.identity.clone(), ctx.csrf.clone()) else {
            // A console policy that lets anonymous callers through still gets no admin.
            return Err(GatewayError::Unauthenticated);
        };
        let admin = match api.admin_of(&identity, &csrf).await {
            Ok(a) => a,
            Err(e) => {
                self.audit.record(AuditEvent::ConsoleDenied {
                    user: Some(identity.user.clone()),
                    reason: format!("{}: not an active admin of the directory", e.code()),
                    method: session.req_header().method.as_str().to_string(),
                    path,
                    client_ip: ctx.client_ip.to_string(),
                });
                return match e {
                    ApiError::Unauthenticated => Err(GatewayError::Unauthenticated),
                    other => Ok(Some(other.reply())),
                };
            }
        };
        let req = self
            .local_request(session, ctx, path, Endpoint::Console)
            .await;
        Ok(Some(api.serve(&admin, &req).await))
    }
}
