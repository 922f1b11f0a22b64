//! Validated `identity_providers[]` entry of `type: ldap`. Every problem is reported with its
//! key path; the rules that protect passwords are security-relevant:
//!
//! - TLS is required: `ldaps://`, or `ldap://` with `start_tls: true`. A plain `ldap://` URL
//!   sends every user's password in clear and is refused unless `allow_insecure: true` says so
//!   explicitly (logged loudly at start; meant for tests on loopback).
//! - The service account's password must be non-empty: an LDAP simple bind with a DN and an
//!   empty password is an *unauthenticated* bind that servers answer with success (RFC 4513
//!   5.1.2).
//! - `user_filter` must contain `{username}` (replaced by the RFC 4515-escaped name) and
//!   `group_filter` `{dn}`; both must parse as LDAP filters.
//! - Referrals are not followed (`referrals: true` is refused: a referral could send the
//!   service account's or a user's password to another server).

use crate::config::auth_schema::IdpSpec;
use crate::config::problems::{duration as dur, Problems};
use std::time::Duration;

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `ldaps://`: TLS from the first byte.
    Ldaps,
    /// `ldap://` upgraded with the StartTLS extended operation before any bind.
    StartTls,
    /// `ldap://` in clear (`allow_insecure: true` only).
    Insecure,
}

/// How group membership is resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nested {
    /// Direct groups only (`nested_groups: false`, the default).
    Direct,
    /// Groups of groups, by repeated searches, bounded by `max_group_depth`, cycles cut
    /// (`nested_groups: true` or `recursive`).
    Recursive,
    /// Active Directory's `LDAP_MATCHING_RULE_IN_CHAIN` (1.2.840.113556.1.4.1941): one search
    /// that the domain controller expands (`nested_groups: in_chain`; needs `group_base`).
    InChain,
}

/// Attribute names read into the session identity (`claims:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    /// User name (default `uid`; AD: `sAMAccountName` or `userPrincipalName`).
    pub user: String,
    /// Email (default `mail`).
    pub email: String,
    /// Group name, read from each group entry (default `cn`).
    pub groups: String,
    /// Tenant; none by default.
    pub tenant: Option<String>,
}

/// A validated LDAP provider.
#[derive(Clone)]
pub struct LdapConfig {
    /// Provider id.
    pub id: String,
    /// Position in `identity_providers` (for messages).
    pub index: usize,
    /// Server URL (`ldaps://host:636`, `ldap://host:389`).
    pub url: String,
    /// TLS mode.
    pub transport: Transport,
    /// PEM of the CA certificates that sign the server's certificate (`ca_file`); none: the
    /// system's roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Service account DN.
    pub bind_dn: String,
    /// Service account password (never printed: see the `Debug` impl).
    pub bind_password: String,
    /// Base of the user search.
    pub user_base: String,
    /// User filter with `{username}`.
    pub user_filter: String,
    /// Base of the group search; none: the user's `memberOf` values.
    pub group_base: Option<String>,
    /// Group filter with `{dn}`.
    pub group_filter: String,
    /// Nested groups.
    pub nested: Nested,
    /// Recursion bound for [`Nested::Recursive`].
    pub max_group_depth: u32,
    /// Attribute mapping.
    pub attributes: Attributes,
    /// TCP + TLS connect timeout.
    pub connect_timeout: Duration,
    /// Timeout of each operation.
    pub timeout: Duration,
    /// Service-account connections kept open.
    pub pool_size: usize,
    /// Just-in-time directory users.
    pub jit: bool,
}

impl std::fmt::Debug for LdapConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapConfig")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("transport", &self.transport)
            .field("bind_dn", &self.bind_dn)
            .field("bind_password", &"<redacted>")
            .field("user_base", &self.user_base)
            .field("user_filter", &self.user_filter)
            .field("group_base", &self.group_base)
            .field("nested", &self.nested)
            .finish_non_exhaustive()
    }
}

/// Default user filter (OpenLDAP, 389-ds); AD: `(sAMAccountName={username})`.
pub const DEFAULT_USER_FILTER: &str = "(uid={username})";
/// Default group filter: `groupOfNames` and `groupOfUniqueNames` members.
pub const DEFAULT_GROUP_FILTER: &str = "(|(member={dn})(uniqueMember={dn}))";

/// Whether `a` is an LDAP attribute description we accept (letters, digits, `-`, `;`, `.`).
fn is_attribute(a: &str) -> bool {
    !a.is_empty()
        && a.len() <= 64
        && a.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b';' | b'.'))
}

/// Keys of the other provider types: set on an LDAP provider they are a mistake to report.
fn check_foreign_keys(s: &IdpSpec, base: &str, p: &mut Problems) {
    let set = [
        ("issuer", !s.issuer.is_empty()),
        ("client_id", !s.client_id.is_empty()),
        ("client_secret", s.client_secret.is_some()),
        ("client_secret_file", s.client_secret_file.is_some()),
        ("token_auth", s.token_auth.is_some()),
        ("client_key_file", s.client_key_file.is_some()),
        ("scopes", !s.scopes.is_empty()),
        ("algorithms", !s.algorithms.is_empty()),
        ("userinfo", s.userinfo),
        ("redirect_uri", s.redirect_uri.is_some()),
        ("auth_params", !s.auth_params.is_empty()),
        ("entra", s.entra.is_some()),
    ];
    for (key, present) in set {
        if present {
            p.add(
                format!("{base}.{key}"),
                "does not apply to an ldap provider (it is an OpenID Connect key)",
            );
        }
    }
}

/// The LDAP keys set on a provider of another type (each is reported there).
pub fn ldap_keys_set(s: &IdpSpec) -> Vec<&'static str> {
    [
        ("url", s.url.is_some()),
        ("start_tls", s.start_tls),
        ("allow_insecure", s.allow_insecure),
        ("ca_file", s.ca_file.is_some()),
        ("bind_dn", s.bind_dn.is_some()),
        ("bind_password", s.bind_password.is_some()),
        ("bind_password_file", s.bind_password_file.is_some()),
        ("user_base", s.user_base.is_some()),
        ("user_filter", s.user_filter.is_some()),
        ("group_base", s.group_base.is_some()),
        ("group_filter", s.group_filter.is_some()),
        ("nested_groups", s.nested_groups.is_some()),
        ("max_group_depth", s.max_group_depth.is_some()),
        ("connect_timeout", s.connect_timeout.is_some()),
        ("timeout", s.timeout.is_some()),
        ("pool_size", s.pool_size.is_some()),
        ("referrals", s.referrals),
    ]
    .into_iter()
    .filter_map(|(k, set)| set.then_some(k))
    .collect()
}

/// Checks that `filter` with `placeholder` is a filter once filled in.
fn check_filter(filter: &str, placeholder: &str, key: &str, p: &mut Problems) {
    if !filter.contains(placeholder) {
        p.add(key, format!("must contain {placeholder}"));
        return;
    }
    let sample = filter.replace(placeholder, "x");
    if !sample.starts_with('(') || ldap3::parse_filter(&sample).is_err() {
        p.add(
            key,
            format!("{filter:?} is not an LDAP filter like (uid={{username}})"),
        );
    }
}

fn transport(s: &IdpSpec, base: &str, p: &mut Problems) -> Option<(String, Transport)> {
    let Some(raw) = s.url.as_deref() else {
        p.add(
            format!("{base}.url"),
            "missing: ldaps://host:636, or ldap://host:389 with start_tls: true",
        );
        return None;
    };
    let url = match url::Url::parse(raw) {
        Ok(u) => u,
        Err(e) => {
            p.add(format!("{base}.url"), format!("{raw:?} is not a URL ({e})"));
            return None;
        }
    };
    if url.host_str().is_none_or(str::is_empty) {
        p.add(format!("{base}.url"), "has no host");
        return None;
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() {
        p.add(
            format!("{base}.url"),
            "must be only scheme, host and port (set user_base and user_filter apart)",
        );
        return None;
    }
    let t = match (url.scheme(), s.start_tls, s.allow_insecure) {
        ("ldaps", false, false) => Transport::Ldaps,
        ("ldaps", true, _) => {
            p.add(
                format!("{base}.start_tls"),
                "is for ldap:// URLs (ldaps:// is TLS already)",
            );
            return None;
        }
        ("ldaps", false, true) => {
            p.add(
                format!("{base}.allow_insecure"),
                "does not apply to ldaps:// (remove it)",
            );
            return None;
        }
        ("ldap", true, false) => Transport::StartTls,
        ("ldap", true, true) => {
            p.add(
                format!("{base}.allow_insecure"),
                "contradicts start_tls: true (remove it)",
            );
            return None;
        }
        ("ldap", false, true) => Transport::Insecure,
        ("ldap", false, false) => {
            // Security-relevant: a plain connection carries every user's password in clear.
            p.add(
                format!("{base}.url"),
                "plain ldap:// would send passwords in clear: use ldaps://, or start_tls: true, \
                 or (tests only) allow_insecure: true",
            );
            return None;
        }
        (other, _, _) => {
            p.add(
                format!("{base}.url"),
                format!("scheme {other:?} is not ldaps or ldap"),
            );
            return None;
        }
    };
    Some((raw.trim_end_matches('/').to_string(), t))
}

fn nested(s: &IdpSpec, base: &str, p: &mut Problems) -> Nested {
    use serde_yaml::Value;
    let key = format!("{base}.nested_groups");
    match &s.nested_groups {
        None | Some(Value::Bool(false)) => Nested::Direct,
        Some(Value::Bool(true)) => Nested::Recursive,
        Some(Value::String(v)) => match v.as_str() {
            "direct" | "false" => Nested::Direct,
            "recursive" | "true" => Nested::Recursive,
            "in_chain" => Nested::InChain,
            other => {
                p.add(
                    key,
                    format!("{other:?} is not one of false, true, direct, recursive, in_chain"),
                );
                Nested::Direct
            }
        },
        Some(_) => {
            p.add(key, "must be false, true, direct, recursive or in_chain");
            Nested::Direct
        }
    }
}

fn ca(s: &IdpSpec, base: &str, t: Option<Transport>, p: &mut Problems) -> Option<Vec<u8>> {
    let f = s.ca_file.as_deref()?;
    let key = format!("{base}.ca_file");
    if t == Some(Transport::Insecure) {
        p.add(key, "does not apply without TLS");
        return None;
    }
    let pem = match std::fs::read(f) {
        Ok(b) => b,
        Err(e) => {
            p.add(key, format!("cannot read {f:?}: {e}"));
            return None;
        }
    };
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice()).collect();
    if certs.is_empty() || certs.iter().any(Result::is_err) {
        p.add(key, format!("{f:?} holds no PEM certificate"));
        return None;
    }
    Some(pem)
}

/// Builds the LDAP provider at `identity_providers[index]`.
pub fn build(s: &IdpSpec, index: usize, p: &mut Problems) -> Option<LdapConfig> {
    let base = format!("identity_providers[{index}]");
    let before = p.0.len();
    check_foreign_keys(s, &base, p);
    let t = transport(s, &base, p);
    let ca_pem = ca(s, &base, t.as_ref().map(|(_, t)| *t), p);
    let bind_dn = s.bind_dn.clone().unwrap_or_default();
    if bind_dn.trim().is_empty() {
        p.add(
            format!("{base}.bind_dn"),
            "missing: the service account that searches users",
        );
    }
    let bind_password = crate::config::secret::resolve(
        s.bind_password.as_deref(),
        s.bind_password_file.as_deref(),
        &base,
        "bind_password",
        true,
        p,
    );
    if bind_password.as_deref() == Some("") {
        // Security-relevant: an empty password makes an unauthenticated bind that "succeeds".
        p.add(
            format!("{base}.bind_password"),
            "is empty (an empty password is an unauthenticated bind)",
        );
    }
    let user_base = s.user_base.clone().unwrap_or_default();
    if user_base.trim().is_empty() {
        p.add(
            format!("{base}.user_base"),
            "missing: where users are searched, e.g. ou=people,dc=example,dc=com",
        );
    }
    let user_filter = s
        .user_filter
        .clone()
        .unwrap_or_else(|| DEFAULT_USER_FILTER.to_string());
    check_filter(
        &user_filter,
        "{username}",
        &format!("{base}.user_filter"),
        p,
    );
    let group_filter = s
        .group_filter
        .clone()
        .unwrap_or_else(|| DEFAULT_GROUP_FILTER.to_string());
    check_filter(&group_filter, "{dn}", &format!("{base}.group_filter"), p);
    if s.group_filter.is_some() && s.group_base.is_none() {
        p.add(
            format!("{base}.group_filter"),
            "is used only with group_base (without it, groups come from memberOf)",
        );
    }
    let nested = nested(s, &base, p);
    if nested == Nested::InChain && s.group_base.is_none() {
        p.add(
            format!("{base}.nested_groups"),
            "in_chain searches group_base: set it",
        );
    }
    let max_group_depth = s.max_group_depth.unwrap_or(8);
    if !(1..=32).contains(&max_group_depth) {
        p.add(format!("{base}.max_group_depth"), "must be 1 to 32");
    }
    let mut attributes = Attributes {
        user: "uid".into(),
        email: "mail".into(),
        groups: "cn".into(),
        tenant: None,
    };
    for (k, v) in &s.claims {
        let key = format!("{base}.claims.{k}");
        if !is_attribute(v) {
            p.add(&key, format!("{v:?} is not an attribute name"));
            continue;
        }
        match k.as_str() {
            "user" => attributes.user = v.clone(),
            "email" => attributes.email = v.clone(),
            "groups" => attributes.groups = v.clone(),
            "tenant" => attributes.tenant = Some(v.clone()),
            _ => p.add(key, "is not one of user, email, groups, tenant"),
        }
    }
    let connect_timeout = dur(
        s.connect_timeout.as_deref(),
        Duration::from_secs(5),
        &format!("{base}.connect_timeout"),
        p,
    );
    let timeout = dur(
        s.timeout.as_deref(),
        Duration::from_secs(10),
        &format!("{base}.timeout"),
        p,
    );
    for (key, d) in [("connect_timeout", connect_timeout), ("timeout", timeout)] {
        if d.is_zero() || d > Duration::from_secs(120) {
            p.add(format!("{base}.{key}"), "must be between 1ms and 2m");
        }
    }
    let pool_size = s.pool_size.unwrap_or(4);
    if !(1..=64).contains(&pool_size) {
        p.add(format!("{base}.pool_size"), "must be 1 to 64");
    }
    if s.referrals {
        p.add(
            format!("{base}.referrals"),
            "following referrals is not supported (a referral could send passwords to another \
             server); referrals are ignored",
        );
    }
    if p.0.len() != before {
        return None;
    }
    let (url, transport) = t?;
    Some(LdapConfig {
        id: s.id.clone(),
        index,
        url,
        transport,
        ca_pem,
        bind_dn,
        bind_password: bind_password?,
        user_base,
        user_filter,
        group_base: s.group_base.clone(),
        group_filter,
        nested,
        max_group_depth,
        attributes,
        connect_timeout,
        timeout,
        pool_size,
        jit: s.jit,
    })
}

#[cfg(test)]
mod tests;
