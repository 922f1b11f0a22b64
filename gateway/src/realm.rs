//! Home-realm discovery: `login: { domains: { example.com: corp } }` maps the domain of an
//! email address to the provider that signs its users in. The chooser page asks for the
//! address first and sends the browser on (an OpenID Connect redirect, or the password form of
//! a local or LDAP provider with the name filled in); an address whose domain is not mapped
//! gets the list of providers. This is a convenience, not a control: the provider still
//! authenticates the user, and a user may pick any provider from the list.

use crate::config::problems::Problems;
use serde::Deserialize;
use std::collections::BTreeMap;

/// `login:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginSpec {
    /// Email domain → provider id.
    #[serde(default)]
    pub domains: BTreeMap<String, String>,
}

/// Whether `d` is a domain name (ASCII labels of letters, digits and `-`, at least two).
fn is_domain(d: &str) -> bool {
    let labels: Vec<&str> = d.split('.').collect();
    d.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Validates `login:` against the provider ids; the map keyed by lower-case domain.
pub fn build(
    spec: Option<LoginSpec>,
    ids: &[String],
    p: &mut Problems,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (domain, id) in spec.unwrap_or_default().domains {
        let key = format!("login.domains.{domain}");
        if !is_domain(&domain) {
            p.add(&key, "is not a domain name like example.com");
            continue;
        }
        if !ids.contains(&id) {
            p.add(
                &key,
                format!("{id:?} is not the id of an identity_providers entry"),
            );
            continue;
        }
        if out.insert(domain.to_ascii_lowercase(), id).is_some() {
            p.add(&key, "is listed twice (domains are case-insensitive)");
        }
    }
    out
}

/// The provider of `email`'s domain, if mapped. Only the part after the LAST `@` counts, so
/// `"a@evil.org"@example.com`-style tricks resolve to the domain a mail server would use.
pub fn provider_for<'a>(domains: &'a BTreeMap<String, String>, email: &str) -> Option<&'a str> {
    let (_, domain) = email.trim().rsplit_once('@')?;
    domains
        .get(&domain.trim_end_matches('.').to_ascii_lowercase())
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> Vec<String> {
        vec!["corp".into(), "partner".into()]
    }

    #[test]
    fn domains_must_be_names_and_map_to_configured_providers() {
        let mut p = Problems::default();
        let spec = LoginSpec {
            domains: [
                ("Example.com", "corp"),
                ("partner.org", "partner"),
                ("nodot", "corp"),
                ("x.org", "nobody"),
            ]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        };
        let m = build(Some(spec), &ids(), &mut p);
        let paths: Vec<&str> = p.0.iter().map(|x| x.path.as_str()).collect();
        assert_eq!(paths, ["login.domains.nodot", "login.domains.x.org"]);
        assert_eq!(m.len(), 2);
        assert_eq!(provider_for(&m, "Alice@EXAMPLE.com"), Some("corp"));
        assert_eq!(provider_for(&m, "bob@partner.org."), Some("partner"));
        assert_eq!(
            provider_for(&m, "\"x@partner.org\"@example.com"),
            Some("corp")
        );
        assert_eq!(
            provider_for(&m, "eve@sub.example.com"),
            None,
            "exact domains only"
        );
        assert_eq!(provider_for(&m, "no-at-sign"), None);
    }

    #[test]
    fn a_domain_twice_in_different_case_is_a_problem() {
        let mut p = Problems::default();
        let spec = LoginSpec {
            domains: [("example.com", "corp"), ("EXAMPLE.COM", "partner")]
                .into_iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        };
        build(Some(spec), &ids(), &mut p);
        assert_eq!(p.0.len(), 1, "{:?}", p.0);
    }
}
