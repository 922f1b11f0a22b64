//! Envoy's gRPC `Check` (see [`crate::ext_authz`]): the facts from Envoy's attributes, the
//! session from the client's cookie, then the same judgement as `/.portcullis/auth`; counted,
//! access-logged and handed to the decision log like a proxied request.

use crate::errors::{GatewayError, Reply};
use crate::ext_authz::{check, pb};
use crate::forward_auth::ForwardAuthError;
use crate::metrics;
use crate::proxy::{Ctx, Gateway};
use pingora::proxy::ProxyHttp;
use pingora_http::RequestHeader;
use std::net::IpAddr;

/// The request a check describes, as the decision record and access log name it (method,
/// path and query, the client's `X-Request-Id`).
fn described(facts: &check::Facts) -> Option<RequestHeader> {
    let o = &facts.original;
    let mut req = RequestHeader::build(o.method.clone(), o.path_and_query.as_bytes(), None).ok()?;
    if let Some(id) = facts.headers.get("x-request-id") {
        let _ = req.insert_header("x-request-id", id.clone());
    }
    Some(req)
}

impl Gateway {
    /// The answer to Envoy's `Check` from `peer` (the TCP peer of the gRPC call).
    pub(crate) async fn ext_authz_check(
        &self,
        peer: IpAddr,
        req: &pb::CheckRequest,
    ) -> pb::CheckResponse {
        let mut ctx = self.new_ctx();
        ctx.peer_ip = peer;
        ctx.peer_trusted =
            crate::forwarded::is_trusted(peer, &ctx.rt.config.server.trusted_proxies);
        let facts = check::facts(req);
        let result = match &facts {
            Ok(f) => self.ext_authz_judge(&mut ctx, f).await,
            Err(e) => Err(GatewayError::ForwardAuth(e.clone())),
        };
        let (decision, status) = match &result {
            Ok(_) => ("allow", 200),
            Err(e) => (e.decision(), e.status()),
        };
        let answer = match &result {
            Ok(reply) => check::allowed(reply),
            Err(e) => check::denied(e, ctx.set_cookie.as_deref()),
        };
        let elapsed = ctx.start.elapsed();
        let route = ctx.route_id().to_string();
        let m = metrics::get();
        m.requests
            .with_label_values(&[&route, decision, metrics::status_label(status).as_ref()])
            .inc();
        m.request_duration
            .with_label_values(&[&route])
            .observe(elapsed.as_secs_f64());
        let described = facts.as_ref().ok().and_then(described);
        if ctx.rt.config.server.access_log {
            tracing::info!(
                target: "access",
                via = "ext_authz",
                method = described.as_ref().map(|r| r.method.as_str()),
                host = %ctx.host,
                path = ctx.path.as_ref().map(|p| p.decoded()),
                route = %route,
                decision,
                rule = ctx.decision.as_ref().map(|d| d.explanation.rule.to_string()),
                reason = ctx.decision.as_ref().filter(|d| !d.is_allow()).map(|d| d.explanation.reason()),
                error = result.as_ref().err().map(ToString::to_string),
                status,
                client_ip = %ctx.client_ip,
                tls = ctx.tls,
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                "request"
            );
        }
        if let Some(req) = &described {
            self.record_decision(req, &mut ctx, decision, status, elapsed);
        }
        answer
    }

    async fn ext_authz_judge(
        &self,
        ctx: &mut Ctx,
        facts: &check::Facts,
    ) -> Result<Reply, GatewayError> {
        if !ctx.peer_trusted {
            return Err(GatewayError::ForwardAuth(ForwardAuthError::Untrusted));
        }
        ctx.client_ip = facts.client_ip;
        ctx.tls = facts.tls;
        ctx.host = facts.original.host.clone();
        // Fail closed: a check whose decision record could not be kept is refused.
        self.reserve_log_slot(ctx)?;
        self.identify_headers(&facts.headers, ctx).await?;
        self.check_original(ctx, &facts.headers, &facts.original)
    }
}
