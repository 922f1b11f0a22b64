//! The decision record of each request (handed to the decision log without waiting) and the
//! audit event for denials on privileged routes.

use crate::decisionlog::record::DecisionRecord;
use crate::proxy::{Ctx, Gateway};
use pingora_http::RequestHeader;

impl Gateway {
    /// Hands the decision record of `req` (the request received, or the one an ext_authz check
    /// describes) to the decision log and, for denials on
    /// privileged routes, records an audit event. Never waits.
    pub(crate) fn record_decision(
        &self,
        req: &RequestHeader,
        ctx: &mut Ctx,
        decision: &str,
        status: u16,
        elapsed: std::time::Duration,
    ) {
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
                    self.audit.record(crate::audit::AuditEvent::PolicyDenied {
                        route: r,
                        decision: decision.to_string(),
                        method: req.method.as_str().to_string(),
                        path: path_of(),
                        client_ip: ctx.client_ip.to_string(),
                        status,
                    });
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
            // Factor ages on the clock that stamped them (the gateway's), not the wall clock.
            let now = self.sso.clock.utc();
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
