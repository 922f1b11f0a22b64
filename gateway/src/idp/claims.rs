//! Claims → session identity, with configurable claim names. Handles Entra ID's shapes: `tid`
//! as tenant, app `roles`, and the groups overage form (`_claim_names.groups` or
//! `hasgroups: true` instead of a list), which is recorded as `groups_overage: true` so that
//! policies and operators see that the list was cut instead of silently losing access.

use crate::config::auth_model::ClaimNames;
use chrono::{TimeZone, Utc};
use portcullis_policy::input::{AuthEvent, Identity};
use serde_json::{Map, Value};

fn string(claims: &Map<String, Value>, name: &str) -> Option<String> {
    match claims.get(name)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn list(claims: &Map<String, Value>, name: &str) -> Vec<String> {
    match claims.get(name) {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        Some(Value::String(s)) => s
            .split([',', ' '])
            .filter(|x| !x.is_empty())
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether the provider said the groups list was too long to include (Entra ID overage).
pub fn groups_overage(claims: &Map<String, Value>, groups_claim: &str) -> bool {
    let named = claims
        .get("_claim_names")
        .and_then(Value::as_object)
        .is_some_and(|m| m.contains_key(groups_claim));
    named || claims.get("hasgroups") == Some(&Value::Bool(true))
}

/// Whether the provider vouched for the address: `email_verified: true` (or the string
/// `"true"`, which some providers send). Absent counts as unverified unless the provider is
/// configured with `dangerous_trust_email_without_verified_claim`; `false` always does.
/// Policy `emails`/`email_domains` rules match only verified addresses (issue 10, M2).
fn email_verified(names: &ClaimNames, claims: &Map<String, Value>) -> bool {
    match claims.get("email_verified") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true",
        None => names.trust_email_without_verified_claim,
        Some(_) => false,
    }
}

/// Prefix of authentication methods reported by the provider (`amr`), as policies see them.
pub const IDP_METHOD_PREFIX: &str = "idp:";

/// When a provider factor was done, for an ID token without `auth_time` (finding M8): the
/// gateway never invents freshness. `Unknown` is recorded as the Unix epoch, so the factor
/// still counts on routes without `max_age` but fails every `max_age`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoAuthTime {
    /// The authorization request forced a fresh authentication (`prompt=login` or `max_age`):
    /// the login time is a safe upper bound of the factor's age.
    ForcedAt(chrono::DateTime<Utc>),
    /// Nothing says when the user authenticated.
    Unknown,
}

/// The time recorded for a factor whose age is unknown: old enough to fail any `max_age`.
pub fn unknown_time() -> chrono::DateTime<Utc> {
    chrono::DateTime::<Utc>::UNIX_EPOCH
}

/// Builds the identity of provider `idp` from verified claims. `auth_time` (checked not to
/// be in the future by the caller) times the provider's factors; without it, `missing` says.
pub fn identity(
    idp: &str,
    names: &ClaimNames,
    claims: &Map<String, Value>,
    missing: NoAuthTime,
) -> Identity {
    let sub = string(claims, "sub").unwrap_or_default();
    let user = string(claims, &names.user).unwrap_or_else(|| sub.clone());
    let mut extra = std::collections::BTreeMap::new();
    extra.insert("idp".to_string(), Value::String(idp.to_string()));
    extra.insert("sub".to_string(), Value::String(sub));
    if let Some(iss) = string(claims, "iss") {
        extra.insert("iss".to_string(), Value::String(iss));
    }
    if let Some(n) = string(claims, &names.name) {
        extra.insert("name".to_string(), Value::String(n));
    }
    if groups_overage(claims, &names.groups) {
        extra.insert("groups_overage".to_string(), Value::Bool(true));
    }
    // Destinations for email/SMS codes, with the provider's verification flags when sent
    // (an address or number the provider says is unverified gets no codes: mfa::otp).
    if let Some(p) = string(claims, &names.phone) {
        extra.insert("phone_number".to_string(), Value::String(p));
    }
    for flag in ["email_verified", "phone_number_verified"] {
        if let Some(v @ (Value::Bool(_) | Value::String(_))) = claims.get(flag) {
            extra.insert(flag.to_string(), v.clone());
        }
    }
    let at = claims
        .get("auth_time")
        .and_then(Value::as_i64)
        .and_then(|t| Utc.timestamp_opt(t, 0).single())
        .unwrap_or(match missing {
            NoAuthTime::ForcedAt(t) => t,
            NoAuthTime::Unknown => unknown_time(),
        });
    // Methods done at the provider are namespaced: `idp:mfa` can never be mistaken for a
    // factor the gateway verified itself (`sms`, `otp`... are RFC 8176 `amr` values too), so a
    // route accepts provider MFA only when it lists it, e.g. `methods: [webauthn, "idp:mfa"]`.
    let mut methods: Vec<String> = list(claims, "amr")
        .into_iter()
        .map(|m| format!("{IDP_METHOD_PREFIX}{m}"))
        .collect();
    if methods.is_empty() {
        methods.push(format!("{IDP_METHOD_PREFIX}pwd"));
    }
    // The authentication context class the provider claims (`acr`), for routes that accept a
    // level rather than methods: `idp:acr:<value>`.
    if let Some(acr) = string(claims, "acr") {
        methods.push(format!("{IDP_METHOD_PREFIX}acr:{acr}"));
    }
    Identity {
        user,
        provider: Some(idp.to_string()),
        email: string(claims, &names.email),
        email_verified: email_verified(names, claims),
        groups: list(claims, &names.groups),
        roles: list(claims, &names.roles),
        department: names.department.as_deref().and_then(|d| string(claims, d)),
        tenant: names.tenant.as_deref().and_then(|t| string(claims, t)),
        claims: extra,
        auth_methods: methods
            .into_iter()
            .map(|method| AuthEvent { method, at })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names() -> ClaimNames {
        ClaimNames {
            user: "preferred_username".into(),
            email: "email".into(),
            name: "name".into(),
            groups: "groups".into(),
            roles: "roles".into(),
            tenant: Some("tid".into()),
            department: Some("department".into()),
            phone: "phone_number".into(),
            trust_email_without_verified_claim: false,
        }
    }

    /// Issue 10, M2: only a provider's `email_verified: true` makes the address count for
    /// email rules; absent is unverified unless the provider is explicitly trusted for it.
    #[test]
    fn email_verified_comes_only_from_the_provider() {
        let id = |c: serde_json::Value, trust: bool| {
            let n = ClaimNames {
                trust_email_without_verified_claim: trust,
                ..names()
            };
            identity("corp", &n, c.as_object().unwrap(), NoAuthTime::Unknown).email_verified
        };
        let e = "a@corp.example";
        assert!(id(
            json!({"sub": "s", "email": e, "email_verified": true}),
            false
        ));
        assert!(id(
            json!({"sub": "s", "email": e, "email_verified": "true"}),
            false
        ));
        assert!(!id(
            json!({"sub": "s", "email": e, "email_verified": false}),
            false
        ));
        assert!(!id(
            json!({"sub": "s", "email": e, "email_verified": 1}),
            false
        ));
        assert!(
            !id(json!({"sub": "s", "email": e}), false),
            "absent = unverified"
        );
        assert!(
            id(json!({"sub": "s", "email": e}), true),
            "opt-out for absent only"
        );
        assert!(!id(
            json!({"sub": "s", "email": e, "email_verified": false}),
            true
        ));
    }

    #[test]
    fn entra_shapes_map_to_the_identity() {
        let c = json!({"sub": "s1", "preferred_username": "alice@contoso.com", "tid": "t-123",
            "roles": ["Payroll.Admin"], "groups": ["g1", "g2"], "email": "a@c.com",
            "department": "Finance", "amr": ["pwd", "mfa"], "auth_time": 1700000000,
            "acr": "urn:example:loa:3"});
        let id = identity(
            "entra",
            &names(),
            c.as_object().unwrap(),
            NoAuthTime::Unknown,
        );
        assert_eq!(id.user, "alice@contoso.com");
        assert_eq!(id.tenant.as_deref(), Some("t-123"));
        assert_eq!(id.roles, vec!["Payroll.Admin"]);
        assert_eq!(id.groups, vec!["g1", "g2"]);
        assert_eq!(id.department.as_deref(), Some("Finance"));
        assert_eq!(id.auth_methods.len(), 3);
        assert_eq!(id.auth_methods[1].method, "idp:mfa");
        assert_eq!(id.auth_methods[2].method, "idp:acr:urn:example:loa:3");
        assert_eq!(id.auth_methods[1].at.timestamp(), 1700000000);
        assert!(!id.claims.contains_key("groups_overage"));
    }

    #[test]
    fn groups_overage_is_recorded_not_dropped_silently() {
        let c = json!({"sub": "s1", "_claim_names": {"groups": "src1"},
            "_claim_sources": {"src1": {"endpoint": "https://graph.microsoft.com/..."}}});
        let id = identity(
            "entra",
            &names(),
            c.as_object().unwrap(),
            NoAuthTime::Unknown,
        );
        assert_eq!(id.claims.get("groups_overage"), Some(&json!(true)));
        assert!(id.groups.is_empty());
        let c = json!({"sub": "s1", "hasgroups": true});
        assert!(groups_overage(c.as_object().unwrap(), "groups"));
    }

    #[test]
    fn missing_user_claim_falls_back_to_sub() {
        let c = json!({"sub": "s9"});
        let id = identity(
            "corp",
            &names(),
            c.as_object().unwrap(),
            NoAuthTime::Unknown,
        );
        assert_eq!(id.user, "s9");
        assert_eq!(id.auth_methods[0].method, "idp:pwd");
    }
}
