//! The explanation attached to every decision: which rule decided and, for anything but an
//! allow, the first condition that failed with expected vs actual. It goes to the decision log,
//! never in detail to the user's browser.

use std::fmt;

/// The rule that decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// The route's policy is `public`.
    Public,
    /// The route's policy is `authenticated`.
    Authenticated,
    /// `allow[i]` of the route's rules.
    Allow(usize),
    /// `deny[i]` of the route's rules.
    Deny(usize),
    /// No allow rule held: default deny.
    Default,
    /// The request addressed another tenant than the identity's, without an operator grant.
    TenantIsolation,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Public => f.write_str("public"),
            Rule::Authenticated => f.write_str("authenticated"),
            Rule::Allow(i) => write!(f, "allow[{i}]"),
            Rule::Deny(i) => write!(f, "deny[{i}]"),
            Rule::Default => f.write_str("default"),
            Rule::TenantIsolation => f.write_str("tenant-isolation"),
        }
    }
}

/// One condition, located in the rule, with what it wanted and what the input had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detail {
    /// Key path of the condition within the policy, e.g. `allow[0].all[1].country`.
    pub path: String,
    /// What the condition requires, e.g. `[FR, DE]`.
    pub expected: String,
    /// What the input had, e.g. `US`.
    pub actual: String,
    /// `true` when this condition *matched* (deny rules), `false` when it failed.
    pub matched: bool,
}

impl fmt::Display for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.matched {
            write!(
                f,
                "{}: matched {}, got {}",
                self.path, self.expected, self.actual
            )
        } else {
            write!(
                f,
                "{}: want {}, got {}",
                self.path, self.expected, self.actual
            )
        }
    }
}

/// Why the engine decided what it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The deciding rule.
    pub rule: Rule,
    /// For deny and challenges: the failed (or, for deny rules, matched) condition.
    pub detail: Option<Detail>,
    /// The allow relied on an operator role crossing tenants; always logged and reviewed.
    pub cross_tenant: bool,
    /// Names of SoD rules the identity violates (the roles involved were not honoured).
    pub sod_violations: Vec<String>,
}

impl Explanation {
    pub(crate) fn rule(rule: Rule) -> Self {
        Explanation {
            rule,
            detail: None,
            cross_tenant: false,
            sod_violations: Vec::new(),
        }
    }

    /// One line for the decision log's `reason` field.
    pub fn reason(&self) -> String {
        let mut s = match &self.detail {
            Some(d) => d.to_string(),
            None => self.rule.to_string(),
        };
        if self.cross_tenant {
            s.push_str(" (cross-tenant operator access)");
        }
        if !self.sod_violations.is_empty() {
            s.push_str(" (SoD violations: ");
            s.push_str(&self.sod_violations.join(", "));
            s.push(')');
        }
        s
    }
}
