//! `evaluate`: one pure function from a compiled policy and an input to a decision.
//!
//! Order of reasoning, which is the contract:
//! 1. `public` allows without looking at anything; `authenticated` needs any identity.
//! 2. Deny rules first: one that holds denies, whatever the allow rules say.
//! 3. Allow rules in order: the first that holds allows. If none holds but one could after a
//!    challenge, the answer is that challenge (sign-in when anonymous, MFA step-up otherwise).
//!    If a deny rule could only be ruled out with an identity (e.g. `groups` on an anonymous
//!    request), sign-in is required even when an allow rule holds — deny must keep overriding.
//! 4. Nothing holds: deny (default deny).
//! 5. Tenant isolation, on every non-public policy: a signed-in identity addressing another
//!    tenant than its own is denied unless the deciding rule granted it through an operator role
//!    (`tenant: { operator_roles: [...] }`), and such an allow is flagged `cross_tenant`.

use std::time::Duration;

use crate::compile::{CompiledPolicy, Kind};
use crate::conditions::{eval, first_failure, first_match, Cx, Node, Tri};
use crate::explain::{Detail, Explanation, Rule};
use crate::input::Input;

/// A challenge the gateway answers with a redirect (browsers) or 401 (APIs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// No identity, and the policy needs one.
    Login,
    /// Identity fine, but a recent enough second factor is missing.
    StepUp {
        /// Factors that would satisfy the rule.
        methods: Vec<String>,
        /// How recent the factor must be.
        max_age: Option<Duration>,
    },
}

/// The engine's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Forward the request.
    Allow,
    /// Refuse it (403).
    Deny,
    /// Ask the user to authenticate (more).
    Challenge(Challenge),
}

impl Outcome {
    /// The decision-log spelling: `allow`, `deny`, `login`, `step_up`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Deny => "deny",
            Outcome::Challenge(Challenge::Login) => "login",
            Outcome::Challenge(Challenge::StepUp { .. }) => "step_up",
        }
    }
}

/// An outcome and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// What to do.
    pub outcome: Outcome,
    /// Why, for the decision log.
    pub explanation: Explanation,
}

impl Decision {
    fn new(outcome: Outcome, explanation: Explanation) -> Self {
        Decision {
            outcome,
            explanation,
        }
    }

    /// Shorthand for `outcome == Allow`.
    pub fn is_allow(&self) -> bool {
        self.outcome == Outcome::Allow
    }
}

/// Decides one request. Pure: same policy and input, same decision; no I/O, no clock.
pub fn evaluate(policy: &CompiledPolicy, input: &Input) -> Decision {
    let sod = &policy.lib.sod;
    let mut d = match &policy.kind {
        Kind::Public => return Decision::new(Outcome::Allow, Explanation::rule(Rule::Public)),
        Kind::Authenticated => match input.identity {
            None => Decision::new(
                Outcome::Challenge(Challenge::Login),
                Explanation::rule(Rule::Authenticated),
            ),
            Some(_) => tenant_guard(
                input,
                Decision::new(Outcome::Allow, Explanation::rule(Rule::Authenticated)),
            ),
        },
        Kind::Rules { allow, deny } => rules(allow, deny, input, sod),
    };
    if let Some(id) = &input.identity {
        if sod.iter().any(|r| r.violated_by(&id.roles)) {
            d.explanation.sod_violations = policy
                .lib
                .sod_violations(&id.roles)
                .into_iter()
                .map(|v| v.rule)
                .collect();
        }
    }
    d
}

fn rules(allow: &[Node], deny: &[Node], input: &Input, sod: &[crate::sod::SodRule]) -> Decision {
    let cx_deny = Cx {
        input,
        sod,
        deny_mode: true,
    };
    let mut deny_needs_login = None;
    for (i, rule) in deny.iter().enumerate() {
        match eval(rule, &cx_deny) {
            Tri::True { .. } => {
                let mut e = Explanation::rule(Rule::Deny(i));
                e.detail = first_match(rule, &cx_deny, &mut format!("deny[{i}]"));
                return Decision::new(Outcome::Deny, e);
            }
            Tri::Login => {
                deny_needs_login.get_or_insert(i);
            }
            Tri::False | Tri::StepUp(_) => {}
        }
    }

    let cx = Cx {
        input,
        sod,
        deny_mode: false,
    };
    let mut pending: Option<(usize, Tri<'_>)> = None;
    for (i, rule) in allow.iter().enumerate() {
        match eval(rule, &cx) {
            Tri::True { cross } => {
                if let Some(j) = deny_needs_login {
                    let mut e = Explanation::rule(Rule::Deny(j));
                    e.detail = first_failure(&deny[j], &cx_deny, &mut format!("deny[{j}]"));
                    return Decision::new(Outcome::Challenge(Challenge::Login), e);
                }
                let mut e = Explanation::rule(Rule::Allow(i));
                e.cross_tenant = cross;
                return tenant_guard(input, Decision::new(Outcome::Allow, e));
            }
            Tri::False => {}
            t => {
                pending.get_or_insert((i, t));
            }
        }
    }

    let (outcome, rule, node) = match pending {
        Some((i, Tri::StepUp(req))) => (
            Outcome::Challenge(Challenge::StepUp {
                methods: req.methods.iter().map(|m| m.to_string()).collect(),
                max_age: req.max_age,
            }),
            Rule::Allow(i),
            allow.get(i),
        ),
        Some((i, _)) => (
            Outcome::Challenge(Challenge::Login),
            Rule::Allow(i),
            allow.get(i),
        ),
        None => (Outcome::Deny, Rule::Default, allow.first()),
    };
    let mut e = Explanation::rule(rule);
    if let Some(node) = node {
        let idx = match rule {
            Rule::Allow(i) => i,
            _ => 0,
        };
        e.detail = first_failure(node, &cx, &mut format!("allow[{idx}]"));
    }
    Decision::new(outcome, e)
}

/// Applies tenant isolation to an allow (see the module doc, point 5).
fn tenant_guard(input: &Input, d: Decision) -> Decision {
    let (Some(id), Some(req)) = (&input.identity, input.request.tenant.as_deref()) else {
        return d;
    };
    if d.outcome != Outcome::Allow
        || d.explanation.cross_tenant
        || id.tenant.as_deref() == Some(req)
    {
        return d;
    }
    let mut e = Explanation::rule(Rule::TenantIsolation);
    e.detail = Some(Detail {
        path: "tenant".to_owned(),
        expected: req.to_owned(),
        actual: id.tenant.clone().unwrap_or_else(|| "none".to_owned()),
        matched: false,
    });
    Decision::new(Outcome::Deny, e)
}
