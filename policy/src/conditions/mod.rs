//! Compiled conditions and their evaluation.
//!
//! Evaluation is three-valued in the Kleene sense: a condition is true, false, or *not yet
//! known* because a challenge (sign-in or MFA step-up) could still make it true. That is what
//! lets the engine answer "sign in" or "step up" only when doing so could actually lead to an
//! allow, and answer deny straight away otherwise (a user in the wrong country is not asked to
//! sign in first).
//!
//! Evaluation never allocates; explaining a decision (only done for non-allow answers) does.

pub(crate) mod leaf;
pub(crate) mod time;

use std::sync::Arc;

use crate::explain::Detail;
use crate::input::Input;
use crate::sod::SodRule;

pub(crate) use leaf::{Leaf, MfaReq, RoleReq, Test};

/// A compiled condition plus the key segment it came from (`country`, `all`, `[2]`...), so that
/// explanations can point at the exact config key.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) seg: Box<str>,
    pub(crate) cond: Cond,
}

/// The combinators and leaves of the language.
#[derive(Debug, Clone)]
pub(crate) enum Cond {
    All(Vec<Node>),
    Any(Vec<Node>),
    Not(Box<Node>),
    Named { name: Box<str>, node: Arc<Node> },
    Leaf(Box<Leaf>),
}

/// Outcome of evaluating one condition.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Tri<'p> {
    /// Holds. `cross` = it holds only because an operator role allowed crossing tenants.
    True { cross: bool },
    /// Does not hold, and no challenge would change that.
    False,
    /// Would need an identity: sign-in could make it hold.
    Login,
    /// Holds except for this MFA requirement: a step-up could make it hold.
    StepUp(&'p MfaReq),
}

impl Tri<'_> {
    pub(crate) fn is_true(&self) -> bool {
        matches!(self, Tri::True { .. })
    }
}

/// What evaluation reads: the input, the SoD rules, and which list is being evaluated.
pub(crate) struct Cx<'a> {
    pub(crate) input: &'a Input,
    pub(crate) sod: &'a [SodRule],
    /// In deny rules an unmet `mfa` is simply false: a deny rule cannot ask for a step-up.
    pub(crate) deny_mode: bool,
}

/// Evaluates a condition.
pub(crate) fn eval<'p>(node: &'p Node, cx: &Cx<'_>) -> Tri<'p> {
    match &node.cond {
        Cond::All(children) => {
            let mut pending: Option<Tri<'p>> = None;
            let mut cross = false;
            for c in children {
                match eval(c, cx) {
                    Tri::False => return Tri::False,
                    Tri::True { cross: x } => cross |= x,
                    t => {
                        pending.get_or_insert(t);
                    }
                }
            }
            pending.unwrap_or(Tri::True { cross })
        }
        Cond::Any(children) => {
            let mut pending: Option<Tri<'p>> = None;
            for c in children {
                match eval(c, cx) {
                    t @ Tri::True { .. } => return t,
                    Tri::False => {}
                    t => {
                        pending.get_or_insert(t);
                    }
                }
            }
            pending.unwrap_or(Tri::False)
        }
        // A negated condition never grants cross-tenant access.
        Cond::Not(inner) => match eval(inner, cx) {
            Tri::True { .. } => Tri::False,
            Tri::False => Tri::True { cross: false },
            t => t,
        },
        Cond::Named { node, .. } => eval(node, cx),
        Cond::Leaf(leaf) => leaf.eval(cx),
    }
}

/// Appends a key segment to an explanation path.
fn push_seg(path: &mut String, seg: &str) {
    if seg.is_empty() {
        return;
    }
    if !path.is_empty() && !seg.starts_with('[') && !seg.starts_with('(') {
        path.push('.');
    }
    path.push_str(seg);
}

/// The first condition that kept `node` from holding, with expected vs actual.
pub(crate) fn first_failure(node: &Node, cx: &Cx<'_>, path: &mut String) -> Option<Detail> {
    let len = path.len();
    push_seg(path, &node.seg);
    let out = match &node.cond {
        Cond::All(children) => {
            let want_false = matches!(eval(node, cx), Tri::False);
            children
                .iter()
                .find(|c| {
                    let r = eval(c, cx);
                    if want_false {
                        matches!(r, Tri::False)
                    } else {
                        !r.is_true()
                    }
                })
                .and_then(|c| first_failure(c, cx, path))
        }
        Cond::Any(children) => children
            .iter()
            .find(|c| !eval(c, cx).is_true())
            .and_then(|c| first_failure(c, cx, path)),
        Cond::Not(inner) => first_match(inner, cx, &mut String::new()).map(|d| Detail {
            path: path.clone(),
            expected: format!("not {}", d.expected),
            actual: d.actual,
            matched: false,
        }),
        Cond::Named { name, node } => {
            path.push('(');
            path.push_str(name);
            path.push(')');
            first_failure(node, cx, path)
        }
        Cond::Leaf(leaf) => Some(Detail {
            path: path.clone(),
            expected: leaf.want.to_string(),
            actual: leaf.actual(cx),
            matched: false,
        }),
    };
    path.truncate(len);
    out
}

/// The condition that made `node` hold (for deny rules: what matched).
pub(crate) fn first_match(node: &Node, cx: &Cx<'_>, path: &mut String) -> Option<Detail> {
    let len = path.len();
    push_seg(path, &node.seg);
    let out = match &node.cond {
        Cond::All(children) => children.first().and_then(|c| first_match(c, cx, path)),
        Cond::Any(children) => children
            .iter()
            .find(|c| eval(c, cx).is_true())
            .and_then(|c| first_match(c, cx, path)),
        Cond::Not(inner) => first_failure(inner, cx, &mut String::new()).map(|d| Detail {
            path: path.clone(),
            expected: format!("not {}", d.expected),
            actual: d.actual,
            matched: true,
        }),
        Cond::Named { name, node } => {
            path.push('(');
            path.push_str(name);
            path.push(')');
            first_match(node, cx, path)
        }
        Cond::Leaf(leaf) => Some(Detail {
            path: path.clone(),
            expected: leaf.want.to_string(),
            actual: leaf.actual(cx),
            matched: true,
        }),
    };
    path.truncate(len);
    out
}

/// Role requirements that every way of satisfying `node` needs: one clause per `roles:` test in
/// conjunctive position, each clause a list of alternatives. Used for the load-time SoD check.
pub(crate) fn role_clauses<'n>(node: &'n Node, out: &mut Vec<&'n [RoleReq]>) {
    match &node.cond {
        Cond::All(children) => children.iter().for_each(|c| role_clauses(c, out)),
        Cond::Any(children) if children.len() == 1 => role_clauses(&children[0], out),
        Cond::Named { node, .. } => role_clauses(node, out),
        Cond::Leaf(leaf) => {
            if let Test::Roles(reqs) = &leaf.test {
                out.push(reqs);
            }
        }
        Cond::Any(_) | Cond::Not(_) => {}
    }
}

/// Every role name a condition mentions in `roles:` tests (not under `not`), plus tenant
/// operator roles when `operators`, for least-privilege attribution of allows to roles.
pub(crate) fn mentioned_roles(node: &Node, operators: bool, out: &mut Vec<String>) {
    let mut add = |reqs: &[RoleReq]| {
        for r in reqs {
            if !out.iter().any(|o| **o == *r.name) {
                out.push(r.name.to_string());
            }
        }
    };
    match &node.cond {
        Cond::All(children) | Cond::Any(children) => children
            .iter()
            .for_each(|c| mentioned_roles(c, operators, out)),
        Cond::Named { node, .. } => mentioned_roles(node, operators, out),
        Cond::Leaf(leaf) => match &leaf.test {
            Test::Roles(reqs) => add(reqs),
            Test::Tenant { operators: ops, .. } if operators => add(ops),
            _ => {}
        },
        Cond::Not(_) => {}
    }
}
