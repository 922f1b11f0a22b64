//! Least privilege: which granted roles were never exercised — the input for access reviews.
//!
//! The gateway attributes each allow to the granted roles that satisfied the deciding rule
//! ([`exercised_roles`]) and counts them per subject and role over a period; [`unused_roles`]
//! then lists grants with no allow at all.

use std::collections::{BTreeMap, BTreeSet};

use crate::compile::{CompiledPolicy, Kind};
use crate::conditions::mentioned_roles;
use crate::engine::{Decision, Outcome};
use crate::explain::Rule;
use crate::input::Identity;

/// Allows counted for one subject through one granted role over the review period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleUsage {
    /// User id.
    pub subject: String,
    /// Granted role.
    pub role: String,
    /// Number of allows it was exercised in.
    pub allows: u64,
}

/// A role granted to a subject and not exercised in the period.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct UnusedRole {
    /// User id.
    pub subject: String,
    /// Granted role.
    pub role: String,
}

/// Lists `(subject, role)` grants with no recorded allow. `grants` maps subject → granted roles.
pub fn unused_roles(
    grants: &BTreeMap<String, Vec<String>>,
    usage: &[RoleUsage],
) -> Vec<UnusedRole> {
    let used: BTreeSet<(&str, &str)> = usage
        .iter()
        .filter(|u| u.allows > 0)
        .map(|u| (u.subject.as_str(), u.role.as_str()))
        .collect();
    let mut out: Vec<UnusedRole> = grants
        .iter()
        .flat_map(|(s, roles)| roles.iter().map(move |r| (s, r)))
        .filter(|(s, r)| !used.contains(&(s.as_str(), r.as_str())))
        .map(|(s, r)| UnusedRole {
            subject: s.clone(),
            role: r.clone(),
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The identity's granted roles that an allow relied on: those whose hierarchy includes a role
/// the deciding rule asks for. Empty for anything but an allow by a rule with `roles:` tests.
pub fn exercised_roles(policy: &CompiledPolicy, decision: &Decision, id: &Identity) -> Vec<String> {
    let (Outcome::Allow, Rule::Allow(i), Kind::Rules { allow, .. }) =
        (&decision.outcome, decision.explanation.rule, &policy.kind)
    else {
        return Vec::new();
    };
    let Some(rule) = allow.get(i) else {
        return Vec::new();
    };
    let mut wanted = Vec::new();
    mentioned_roles(rule, decision.explanation.cross_tenant, &mut wanted);
    let graph = policy.library().roles();
    id.roles
        .iter()
        .filter(|g| {
            let closure = graph.closure_of(g);
            wanted.iter().any(|w| closure.contains(w))
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_grants_without_allows() {
        let grants = BTreeMap::from([
            (
                "alice".to_owned(),
                vec!["payroll-admin".to_owned(), "hr".to_owned()],
            ),
            ("bob".to_owned(), vec!["hr".to_owned()]),
        ]);
        let usage = vec![
            RoleUsage {
                subject: "alice".into(),
                role: "hr".into(),
                allows: 3,
            },
            RoleUsage {
                subject: "bob".into(),
                role: "hr".into(),
                allows: 0,
            },
        ];
        let got = unused_roles(&grants, &usage);
        let want = vec![
            UnusedRole {
                subject: "alice".into(),
                role: "payroll-admin".into(),
            },
            UnusedRole {
                subject: "bob".into(),
                role: "hr".into(),
            },
        ];
        assert_eq!(got, want);
    }
}

#[cfg(test)]
mod attribution_tests {
    use super::*;
    use crate::compile::Compiler;
    use crate::engine::evaluate;
    use crate::input::Input;
    use crate::spec::{LibrarySpec, PolicySpec};

    #[test]
    fn allow_is_attributed_to_the_granted_role_that_satisfied_it() {
        let lib: LibrarySpec = serde_yaml::from_str(
            "roles: { payroll-admin: { inherits: [payroll-viewer] }, hr: {} }",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let spec: PolicySpec = serde_yaml::from_str("allow: [ { roles: [payroll-viewer] } ]")
            .unwrap_or_else(|e| panic!("{e}"));
        let mut c = Compiler::new(&lib);
        let p = c.policy(&spec, "routes[0].policy");
        assert!(c.finish().is_ok());
        let input: Input = serde_yaml::from_str(
            "{ now: 2026-03-30T08:00:00Z, identity: { user: a, roles: [hr, payroll-admin] } }",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let d = evaluate(&p, &input);
        let id = input
            .identity
            .as_ref()
            .unwrap_or_else(|| panic!("identity"));
        assert_eq!(exercised_roles(&p, &d, id), ["payroll-admin"]);
    }
}
