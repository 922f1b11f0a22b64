//! A route pinned to an identity provider (`routes[].identity_provider`) admits only sessions
//! from that provider (M1, issue 10). User names are the provider's to give: a partner IdP can
//! issue `preferred_username: alice` as easily as the corporate one, so `users: [alice]` on a
//! corp-pinned route must never be judged against a partner session. The check runs before the
//! policy, at decision time, for proxied requests and forward-auth alike; a session from
//! another provider is treated as not signed in for this route (browsers are sent to sign in
//! with the pinned provider, API clients get 401), never as that provider's user.

use crate::audit::AuditEvent;
use crate::config::model::Route;
use portcullis_policy::input::Identity;

/// Refuses `identity` on `route` when the route is pinned to another provider (security-
/// relevant); the error is the audit event to record, and the caller answers as for a request
/// that is not signed in. An identity without a provider (it cannot come from a session: the
/// gateway always sets it) is refused on a pinned route too: fail closed.
pub fn check(route: &Route, identity: Option<&Identity>) -> Result<(), Box<AuditEvent>> {
    let (Some(pin), Some(id)) = (route.identity_provider.as_deref(), identity) else {
        return Ok(());
    };
    if id.provider.as_deref() == Some(pin) {
        return Ok(());
    }
    Err(Box::new(AuditEvent::ProviderMismatch {
        route: route.id.clone(),
        user: id.user.clone(),
        provider: id.provider.clone().unwrap_or_else(|| "-".into()),
        pinned: pin.to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_pinned_providers_users_pass() {
        let text = "identity_providers:
  - { id: corp, type: oidc, issuer: \"https://corp.example\", client_id: c, client_secret: s }
  - { id: partner, type: oidc, issuer: \"https://partner.example\", client_id: c, client_secret: s }
routes:
  - { id: app, upstream: \"http://127.0.0.1:9\", policy: authenticated }
";
        let mut c = crate::config::load_str(
            text,
            "c.yaml",
            &std::collections::HashMap::<String, String>::new(),
        )
        .unwrap();
        let route = &mut c.routes[0];
        let id = |p: Option<&str>| Identity {
            user: "alice".into(),
            provider: p.map(str::to_string),
            ..Default::default()
        };
        assert!(check(route, Some(&id(Some("partner")))).is_ok(), "unpinned");
        route.identity_provider = Some("corp".into());
        assert!(check(route, Some(&id(Some("corp")))).is_ok());
        assert!(
            check(route, None).is_ok(),
            "anonymous: the policy asks to sign in"
        );
        for other in [Some("partner"), None] {
            let refused = check(route, Some(&id(other))).expect_err("another provider");
            assert!(
                matches!(&*refused, AuditEvent::ProviderMismatch { pinned, .. } if pinned == "corp")
            );
        }
    }
}
