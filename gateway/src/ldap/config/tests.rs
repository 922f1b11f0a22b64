//! `type: ldap` validation, through the real loader (text → every problem with its key path).

use crate::config::load_str;
use crate::ldap::config::{Nested, Transport};
use std::collections::HashMap;

fn env() -> HashMap<String, String> {
    [("LDAP_PW".to_string(), "s3rvice".to_string())].into()
}

fn config(provider: &str) -> String {
    format!(
        "identity_providers:\n  - {provider}\nroutes:\n  - {{ id: app, upstream: \"http://127.0.0.1:9000\", policy: authenticated }}\n"
    )
}

const GOOD: &str = "{ id: corp, type: ldap, url: \"ldaps://dc1.corp.example.com:636\", bind_dn: \"cn=svc,dc=corp\", bind_password: \"${LDAP_PW}\", user_base: \"ou=people,dc=corp\" }";

fn problems(provider: &str) -> Vec<String> {
    match load_str(&config(provider), "c.yaml", &env()) {
        Ok(_) => panic!("config should be rejected: {provider}"),
        Err(e) => e.to_string().lines().map(str::to_string).collect(),
    }
}

fn has(problems: &[String], needle: &str) -> bool {
    problems.iter().any(|p| p.contains(needle))
}

#[test]
fn a_minimal_ldaps_provider_loads_with_documented_defaults() {
    let c = load_str(&config(GOOD), "c.yaml", &env()).unwrap();
    let l = &c.ldap_providers[0];
    assert_eq!(l.transport, Transport::Ldaps);
    assert_eq!(
        l.bind_password, "s3rvice",
        "env-substituted like other secrets"
    );
    assert_eq!(l.user_filter, "(uid={username})");
    assert_eq!(l.nested, Nested::Direct);
    assert_eq!(l.pool_size, 4);
    assert_eq!(l.timeout, std::time::Duration::from_secs(10));
    assert_eq!(l.connect_timeout, std::time::Duration::from_secs(5));
    assert_eq!(
        (
            l.attributes.user.as_str(),
            l.attributes.email.as_str(),
            l.attributes.groups.as_str()
        ),
        ("uid", "mail", "cn")
    );
    assert!(
        !format!("{l:?}").contains("s3rvice"),
        "the password is never printed"
    );
}

#[test]
fn plain_ldap_is_refused_without_the_opt_in() {
    let plain = GOOD.replace("ldaps://dc1.corp.example.com:636", "ldap://dc1:389");
    let p = problems(&plain);
    assert!(
        has(&p, "identity_providers[0].url") && has(&p, "in clear"),
        "{p:?}"
    );
    // With StartTLS, or the explicit opt-in, it loads.
    let starttls = plain.replace("type: ldap,", "type: ldap, start_tls: true,");
    let c = load_str(&config(&starttls), "c.yaml", &env()).unwrap();
    assert_eq!(c.ldap_providers[0].transport, Transport::StartTls);
    let insecure = plain.replace("type: ldap,", "type: ldap, allow_insecure: true,");
    let c = load_str(&config(&insecure), "c.yaml", &env()).unwrap();
    assert_eq!(c.ldap_providers[0].transport, Transport::Insecure);
    // Contradictions are named.
    let both = plain.replace(
        "type: ldap,",
        "type: ldap, allow_insecure: true, start_tls: true,",
    );
    assert!(has(
        &problems(&both),
        "identity_providers[0].allow_insecure"
    ));
    let s_on_ldaps = GOOD.replace("type: ldap,", "type: ldap, start_tls: true,");
    assert!(has(
        &problems(&s_on_ldaps),
        "identity_providers[0].start_tls"
    ));
}

#[test]
fn every_problem_is_reported_at_once_with_its_key() {
    let bad = "{ id: corp, type: ldap, url: \"http://x\", bind_password: \"\", user_filter: \"(uid=x)\", group_filter: \"member\", nested_groups: in_chain, claims: { user: \"a b\", shoe: x }, pool_size: 0, timeout: 0s, referrals: true, issuer: \"https://x\", ca_file: /nonexistent/ca.pem }";
    let p = problems(bad);
    for key in [
        "identity_providers[0].url",
        "identity_providers[0].bind_dn",
        "identity_providers[0].bind_password",
        "identity_providers[0].user_base",
        "identity_providers[0].user_filter",
        "identity_providers[0].group_filter",
        "identity_providers[0].nested_groups",
        "identity_providers[0].claims.user",
        "identity_providers[0].claims.shoe",
        "identity_providers[0].pool_size",
        "identity_providers[0].timeout",
        "identity_providers[0].referrals",
        "identity_providers[0].issuer",
        "identity_providers[0].ca_file",
    ] {
        assert!(has(&p, key), "{key} missing from {p:#?}");
    }
    assert!(has(&p, "must contain {username}"), "{p:#?}");
}

#[test]
fn nested_group_spellings() {
    for (v, want) in [
        ("false", Nested::Direct),
        ("direct", Nested::Direct),
        ("true", Nested::Recursive),
        ("recursive", Nested::Recursive),
        ("in_chain", Nested::InChain),
    ] {
        let s = GOOD.replace(
            "type: ldap,",
            &format!("type: ldap, nested_groups: {v}, group_base: \"ou=groups,dc=corp\","),
        );
        let c = load_str(&config(&s), "c.yaml", &env()).unwrap();
        assert_eq!(c.ldap_providers[0].nested, want, "{v}");
    }
    let s = GOOD.replace("type: ldap,", "type: ldap, nested_groups: sideways,");
    assert!(has(&problems(&s), "identity_providers[0].nested_groups"));
}

#[test]
fn ldap_keys_on_other_providers_and_unknown_login_domains_are_named() {
    let text = "identity_providers:
  - { id: corp, type: oidc, issuer: \"https://login.example.com\", client_id: c, client_secret: s }
  - { id: other, type: oidc, issuer: \"https://login.example.com\", client_id: c, client_secret: s, bind_dn: \"cn=x\" }
login: { domains: { example.com: corp, partner.org: nobody } }
routes:
  - { id: app, upstream: \"http://127.0.0.1:9000\", policy: authenticated }
";
    let p: Vec<String> = match load_str(text, "c.yaml", &env()) {
        Ok(_) => panic!("should be rejected"),
        Err(e) => e.to_string().lines().map(str::to_string).collect(),
    };
    assert!(has(&p, "identity_providers[1].bind_dn"), "{p:?}");
    assert!(has(&p, "login.domains.partner.org"), "{p:?}");
    assert!(!has(&p, "login.domains.example.com"), "{p:?}");
}
