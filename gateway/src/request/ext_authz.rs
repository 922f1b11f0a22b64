//! Envoy's gRPC `Check` (see [`crate::ext_authz`]): the facts from Envoy's attributes, the
//! session from the client's cookie, then the same judgement as `/.portcullis/auth`.

use crate::errors::GatewayError;
use crate::ext_authz::{check, pb};
use crate::forward_auth::ForwardAuthError;
use crate::proxy::{Ctx, Gateway};
use pingora::proxy::ProxyHttp;
use std::net::IpAddr;

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
        let result = self.ext_authz_judge(&mut ctx, req).await;
        let route = ctx.route_id().to_string();
        match result {
            Ok(reply) => {
                tracing::debug!(peer = %peer, client_ip = %ctx.client_ip, route = %route, "ext_authz: allow");
                check::allowed(&reply)
            }
            Err(e) => {
                tracing::info!(peer = %peer, client_ip = %ctx.client_ip, route = %route, decision = e.decision(), status = e.status(), error = %e, "ext_authz: refused");
                check::denied(&e, ctx.set_cookie.as_deref())
            }
        }
    }

    async fn ext_authz_judge(
        &self,
        ctx: &mut Ctx,
        req: &pb::CheckRequest,
    ) -> Result<crate::errors::Reply, GatewayError> {
        if !ctx.peer_trusted {
            return Err(GatewayError::ForwardAuth(ForwardAuthError::Untrusted));
        }
        let facts = check::facts(req)?;
        ctx.client_ip = facts.client_ip;
        ctx.tls = facts.tls;
        ctx.host = facts.original.host.clone();
        self.identify_headers(&facts.headers, ctx).await?;
        self.check_original(ctx, &facts.headers, &facts.original)
    }
}
