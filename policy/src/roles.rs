//! The role hierarchy: `roles: { payroll-admin: { inherits: [payroll-viewer] } }`.
//!
//! Holding a role counts as holding every role it inherits, transitively. The graph is resolved
//! once at load so that a request only does a binary search per granted role.

use std::collections::{BTreeMap, BTreeSet};

use crate::problem::{join, Problem};
use crate::spec::RoleSpec;

/// The resolved role hierarchy.
#[derive(Debug, Clone, Default)]
pub struct RoleGraph {
    /// Role → every role it counts as (itself included), sorted.
    closure: BTreeMap<String, Vec<String>>,
    /// Role → every role that counts as it (itself included), sorted for binary search.
    implied_by: BTreeMap<String, Vec<Box<str>>>,
}

impl RoleGraph {
    /// Resolves `roles:`; `extra` are names declared elsewhere (e.g. in `sod:`). Cycles are
    /// reported as problems because a cycle makes "who is an admin" ill-defined.
    pub(crate) fn build<'a>(
        spec: &BTreeMap<String, RoleSpec>,
        extra: impl IntoIterator<Item = &'a str>,
        problems: &mut Vec<Problem>,
    ) -> Self {
        let mut names: BTreeSet<String> = spec.keys().cloned().collect();
        for r in spec.values() {
            names.extend(r.inherits.iter().cloned());
        }
        names.extend(extra.into_iter().map(str::to_owned));

        for (name, r) in spec {
            if r.inherits.iter().any(|i| i == name) {
                problems.push(Problem::new(
                    join(&join("roles", name), "inherits"),
                    format!("role hierarchy cycle: {name} -> {name}"),
                ));
            }
        }
        find_cycles(spec, problems);

        let mut closure = BTreeMap::new();
        for name in &names {
            let mut seen = BTreeSet::new();
            let mut stack = vec![name.clone()];
            while let Some(r) = stack.pop() {
                if seen.insert(r.clone()) {
                    if let Some(s) = spec.get(&r) {
                        stack.extend(s.inherits.iter().cloned());
                    }
                }
            }
            closure.insert(name.clone(), seen.into_iter().collect::<Vec<_>>());
        }
        let mut implied_by: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (holder, effective) in &closure {
            for r in effective {
                implied_by
                    .entry(r.clone())
                    .or_default()
                    .insert(holder.clone());
            }
        }
        let implied_by = implied_by
            .into_iter()
            .map(|(k, v)| (k, v.into_iter().map(String::into_boxed_str).collect()))
            .collect();
        RoleGraph {
            closure,
            implied_by,
        }
    }

    /// Whether the config declares this role (as a key, an inherited role, or in `sod:`).
    pub fn is_known(&self, role: &str) -> bool {
        self.closure.contains_key(role)
    }

    /// Every role that counts as `role` (itself included), sorted. Unknown roles imply only
    /// themselves, so an IdP-only role still matches itself.
    pub fn implied_by(&self, role: &str) -> Vec<Box<str>> {
        self.implied_by
            .get(role)
            .cloned()
            .unwrap_or_else(|| vec![role.into()])
    }

    /// The roles `role` counts as (itself included).
    pub fn closure_of(&self, role: &str) -> Vec<String> {
        self.closure
            .get(role)
            .cloned()
            .unwrap_or_else(|| vec![role.to_owned()])
    }

    /// The effective roles of someone granted `granted`: the union of their closures.
    pub fn effective_roles<S: AsRef<str>>(&self, granted: &[S]) -> BTreeSet<String> {
        granted
            .iter()
            .flat_map(|g| self.closure_of(g.as_ref()))
            .collect()
    }
}

/// Depth-first search reporting each back edge (a cycle) once, with the cycle spelled out.
fn find_cycles(spec: &BTreeMap<String, RoleSpec>, problems: &mut Vec<Problem>) {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit(
        node: &str,
        spec: &BTreeMap<String, RoleSpec>,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
        problems: &mut Vec<Problem>,
    ) {
        marks.insert(node.to_owned(), Mark::Visiting);
        stack.push(node.to_owned());
        if let Some(r) = spec.get(node) {
            for next in &r.inherits {
                if next == node {
                    continue; // reported as a self-cycle
                }
                match marks.get(next.as_str()) {
                    Some(Mark::Visiting) => {
                        let start = stack.iter().position(|s| s == next).unwrap_or(0);
                        let mut cycle = stack[start..].to_vec();
                        cycle.push(next.clone());
                        problems.push(Problem::new(
                            join(&join("roles", node), "inherits"),
                            format!("role hierarchy cycle: {}", cycle.join(" -> ")),
                        ));
                    }
                    Some(Mark::Done) => {}
                    None => visit(next, spec, marks, stack, problems),
                }
            }
        }
        stack.pop();
        marks.insert(node.to_owned(), Mark::Done);
    }
    let mut marks = BTreeMap::new();
    let mut stack = Vec::new();
    for name in spec.keys() {
        if !marks.contains_key(name) {
            visit(name, spec, &mut marks, &mut stack, problems);
        }
    }
}
