//! The diff of one sync run: what the upstream says ([`Fetched`]) against what the directory
//! holds for this connector ([`Local`]), as create / update / deactivate of users and group
//! changes. A pure function, so `--dry-run` prints exactly what a run would apply and the
//! rules are tested as tables ([`tests`]).
//!
//! Rules:
//! 1. Only records this connector owns are compared or changed: users linked by
//!    `(sync:<id>, upstream id)`, groups with source `sync:<id>`. A user created by SCIM, a
//!    local account or another connector is never touched; an upstream user whose userName
//!    such a user already holds is skipped and reported.
//! 2. Removals — deactivating a user absent from a full listing or `@removed` in a delta,
//!    deactivating a user disabled upstream, removing members, deleting groups — happen only
//!    when the listing is complete: a failed page may hold the users that look absent.
//! 3. A delta round carries only changed attributes; absent ones keep the directory's value.
//! 4. Reactivation upstream (enabled again, or listed again after a removal) re-enables the
//!    user here.

use super::remote::{Fetched, Members, RemoteMember, RemoteUser};
use crate::directory::model::{Contact, Group, MemberKind, User};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap, HashSet};

/// What the directory holds for one connector.
#[derive(Debug, Clone, Default)]
pub struct Local {
    /// Users linked to this connector, by upstream id.
    pub users: HashMap<String, User>,
    /// Groups of this connector, by upstream id (their externalId).
    pub groups: HashMap<String, Group>,
    /// Lowercased userNames that records this connector does not own hold in the tenant,
    /// among the names the upstream wants to create.
    pub foreign_names: HashSet<String>,
}

/// A user to create or update.
#[derive(Debug, Clone, Serialize)]
pub struct UserOp {
    /// Upstream id.
    pub upstream_id: String,
    /// userName.
    pub user_name: String,
    /// The directory id (`None` for a create).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub directory_id: Option<String>,
    /// Attributes that change (SCIM names).
    pub changes: Vec<String>,
    /// The record to write.
    #[serde(skip)]
    pub record: User,
}

/// A user to deactivate (deprovision: sessions end, audited).
#[derive(Debug, Clone, Serialize)]
pub struct Deactivation {
    /// Upstream id.
    pub upstream_id: String,
    /// userName.
    pub user_name: String,
    /// Directory id.
    pub directory_id: String,
    /// `removed upstream` or `disabled upstream`.
    pub reason: &'static str,
    /// For `disabled upstream`: the record with its other changes (written by a replace that
    /// deprovisions); `None`: only the active flag changes.
    #[serde(skip)]
    pub record: Option<User>,
}

/// A member in a group change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberRef {
    /// Upstream id.
    pub upstream_id: String,
    /// `User` or `Group`.
    pub kind: MemberKind,
    /// For display: the userName or group name when known.
    pub name: String,
}

/// A group to create or change.
#[derive(Debug, Clone, Serialize)]
pub struct GroupOp {
    /// Upstream id.
    pub upstream_id: String,
    /// Display name (new name when renamed).
    pub display_name: String,
    /// Directory id (`None` for a create).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub directory_id: Option<String>,
    /// The previous name, when renamed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renamed_from: Option<String>,
    /// Members to add.
    pub add: Vec<MemberRef>,
    /// Members to remove.
    pub remove: Vec<MemberRef>,
}

/// A group to delete (removed upstream).
#[derive(Debug, Clone, Serialize)]
pub struct GroupRemoval {
    /// Upstream id.
    pub upstream_id: String,
    /// Display name.
    pub display_name: String,
    /// Directory id.
    pub directory_id: String,
}

/// Something the run leaves alone, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skip {
    /// Upstream id.
    pub upstream_id: String,
    /// Why.
    pub reason: String,
}

/// Everything one run changes.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Diff {
    /// Connector id.
    pub connector: String,
    /// Full listing (else delta).
    pub full: bool,
    /// Every page was read (else no removals).
    pub complete: bool,
    /// Users to create.
    pub create: Vec<UserOp>,
    /// Users to update (reactivation included).
    pub update: Vec<UserOp>,
    /// Users to deactivate.
    pub deactivate: Vec<Deactivation>,
    /// Groups to create or change.
    pub groups: Vec<GroupOp>,
    /// Groups to delete.
    pub delete_groups: Vec<GroupRemoval>,
    /// Left alone.
    pub skipped: Vec<Skip>,
    /// Why the listing is incomplete.
    pub problems: Vec<String>,
}

impl Diff {
    /// Whether the run changes nothing.
    pub fn is_empty(&self) -> bool {
        self.create.is_empty()
            && self.update.is_empty()
            && self.deactivate.is_empty()
            && self.groups.is_empty()
            && self.delete_groups.is_empty()
    }
}

/// A user record as the upstream describes it: `base` (the stored user, or an empty one for a
/// create) with every attribute the upstream sent.
fn merged(base: &User, r: &RemoteUser) -> User {
    let mut u = base.clone();
    if let Some(v) = &r.user_name {
        u.user_name.clone_from(v);
    }
    if r.display_name.is_some() {
        u.display_name.clone_from(&r.display_name);
    }
    if r.given_name.is_some() {
        u.given_name.clone_from(&r.given_name);
    }
    if r.family_name.is_some() {
        u.family_name.clone_from(&r.family_name);
    }
    if let Some(emails) = &r.emails {
        u.emails = emails
            .iter()
            .enumerate()
            .map(|(i, e)| Contact {
                value: e.clone(),
                kind: Some("work".into()),
                primary: Some(i == 0),
            })
            .collect();
    }
    if let Some(a) = r.active {
        u.active = a;
    }
    u
}

/// SCIM names of the attributes that differ.
fn changed(a: &User, b: &User) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |name: &str, differs: bool| {
        if differs {
            out.push(name.to_string());
        }
    };
    check("userName", a.user_name != b.user_name);
    check("displayName", a.display_name != b.display_name);
    check("name.givenName", a.given_name != b.given_name);
    check("name.familyName", a.family_name != b.family_name);
    check("emails", a.emails != b.emails);
    check("active", a.active != b.active);
    out
}

/// Computes the diff of `fetched` against `local` for connector `connector` (source
/// `sync:<connector>`).
pub fn diff(connector: &str, fetched: &Fetched, local: &Local) -> Diff {
    let source = format!("sync:{connector}");
    let mut d = Diff {
        connector: connector.to_string(),
        full: fetched.full,
        complete: fetched.complete,
        problems: fetched.problems.clone(),
        ..Diff::default()
    };
    let mut seen_users = HashSet::new();
    // Names of users this run creates, to report a second upstream user with the same name.
    let mut creating = HashSet::new();
    for r in &fetched.users {
        if !seen_users.insert(r.id.as_str()) {
            continue;
        }
        match local.users.get(&r.id) {
            Some(current) => {
                let mut want = merged(current, r);
                let disabling = current.active && !want.active;
                if disabling && !fetched.complete {
                    // Rule 2: no deactivation from an incomplete run.
                    want.active = true;
                }
                let changes = changed(current, &want);
                if disabling && fetched.complete {
                    d.deactivate.push(Deactivation {
                        upstream_id: r.id.clone(),
                        user_name: want.user_name.clone(),
                        directory_id: current.id.clone(),
                        reason: "disabled upstream",
                        record: Some(want),
                    });
                } else if !changes.is_empty() {
                    d.update.push(UserOp {
                        upstream_id: r.id.clone(),
                        user_name: want.user_name.clone(),
                        directory_id: Some(current.id.clone()),
                        changes,
                        record: want,
                    });
                }
            }
            None => {
                let Some(name) = r.user_name.as_deref().filter(|n| !n.trim().is_empty()) else {
                    d.skipped.push(Skip {
                        upstream_id: r.id.clone(),
                        reason: "no userName upstream".into(),
                    });
                    continue;
                };
                let lc = name.to_lowercase();
                if local.foreign_names.contains(&lc) {
                    d.skipped.push(Skip {
                        upstream_id: r.id.clone(),
                        reason: format!(
                            "userName {name} belongs to a user this connector does not manage"
                        ),
                    });
                    continue;
                }
                if !creating.insert(lc) {
                    d.skipped.push(Skip {
                        upstream_id: r.id.clone(),
                        reason: format!("userName {name} is listed twice upstream"),
                    });
                    continue;
                }
                let base = User {
                    active: true,
                    source: source.clone(),
                    ..User::default()
                };
                let record = merged(&base, r);
                d.create.push(UserOp {
                    upstream_id: r.id.clone(),
                    user_name: record.user_name.clone(),
                    directory_id: None,
                    changes: Vec::new(),
                    record,
                });
            }
        }
    }
    if fetched.complete {
        let removed: BTreeSet<&str> = if fetched.full {
            local
                .users
                .keys()
                .map(String::as_str)
                .filter(|id| !seen_users.contains(id))
                .collect()
        } else {
            fetched
                .removed_users
                .iter()
                .map(String::as_str)
                .filter(|id| !seen_users.contains(id))
                .collect()
        };
        for id in removed {
            if let Some(u) = local.users.get(id).filter(|u| u.active) {
                d.deactivate.push(Deactivation {
                    upstream_id: id.to_string(),
                    user_name: u.user_name.clone(),
                    directory_id: u.id.clone(),
                    reason: "removed upstream",
                    record: None,
                });
            }
        }
    }
    groups(&mut d, fetched, local);
    d
}

/// The group part of the diff.
fn groups(d: &mut Diff, fetched: &Fetched, local: &Local) {
    // Upstream ids → names, for display and to know which members this connector manages.
    let mut names: HashMap<&str, &str> = HashMap::new();
    for (id, u) in &local.users {
        names.insert(id, &u.user_name);
    }
    for op in &d.create {
        names.insert(&op.upstream_id, &op.user_name);
    }
    for (id, g) in &local.groups {
        names.insert(id, &g.display_name);
    }
    for g in &fetched.groups {
        if let Some(n) = &g.display_name {
            names.insert(&g.id, n);
        }
    }
    // Directory member id → upstream id, for the members this connector manages.
    let mut upstream_of: HashMap<&str, &str> = HashMap::new();
    for (id, u) in &local.users {
        upstream_of.insert(&u.id, id);
    }
    for (id, g) in &local.groups {
        upstream_of.insert(&g.id, id);
    }
    let known = |m: &RemoteMember| names.contains_key(m.id.as_str());
    let member_ref = |id: &str, kind: MemberKind| MemberRef {
        upstream_id: id.to_string(),
        kind,
        name: names
            .get(id)
            .map_or_else(|| id.to_string(), |n| n.to_string()),
    };
    let mut seen = HashSet::new();
    for g in &fetched.groups {
        if !seen.insert(g.id.as_str()) {
            continue;
        }
        let current = local.groups.get(&g.id);
        let display_name = match (&g.display_name, current) {
            (Some(n), _) => n.clone(),
            (None, Some(c)) => c.display_name.clone(),
            (None, None) => {
                d.skipped.push(Skip {
                    upstream_id: g.id.clone(),
                    reason: "group without a name upstream".into(),
                });
                continue;
            }
        };
        // Current managed members, by upstream id.
        let present: BTreeSet<(&str, MemberKind)> = current
            .map(|c| {
                c.members
                    .iter()
                    .filter_map(|m| upstream_of.get(m.id.as_str()).map(|u| (*u, m.kind)))
                    .collect()
            })
            .unwrap_or_default();
        let has = |id: &str| present.iter().any(|(p, _)| *p == id);
        let (mut add, mut remove) = (Vec::new(), Vec::new());
        match &g.members {
            Members::Full(all) => {
                let want: BTreeSet<&RemoteMember> = all.iter().filter(|m| known(m)).collect();
                for m in &want {
                    if !has(&m.id) {
                        add.push(member_ref(&m.id, m.kind));
                    }
                }
                if fetched.complete {
                    for (id, kind) in &present {
                        if !want.iter().any(|m| m.id == *id) {
                            remove.push(member_ref(id, *kind));
                        }
                    }
                }
            }
            Members::Delta { added, removed } => {
                let added: BTreeSet<&RemoteMember> = added.iter().filter(|m| known(m)).collect();
                for m in added {
                    if !has(&m.id) {
                        add.push(member_ref(&m.id, m.kind));
                    }
                }
                if fetched.complete {
                    let removed: BTreeSet<&String> = removed.iter().collect();
                    for id in removed {
                        if let Some((_, kind)) = present.iter().find(|(p, _)| *p == id.as_str()) {
                            remove.push(member_ref(id, *kind));
                        }
                    }
                }
            }
        }
        let renamed_from = current
            .filter(|c| c.display_name != display_name)
            .map(|c| c.display_name.clone());
        if current.is_none() || renamed_from.is_some() || !add.is_empty() || !remove.is_empty() {
            d.groups.push(GroupOp {
                upstream_id: g.id.clone(),
                display_name,
                directory_id: current.map(|c| c.id.clone()),
                renamed_from,
                add,
                remove,
            });
        }
    }
    if fetched.complete {
        let removed: BTreeSet<&str> = if fetched.full {
            local
                .groups
                .keys()
                .map(String::as_str)
                .filter(|id| !seen.contains(id))
                .collect()
        } else {
            fetched
                .removed_groups
                .iter()
                .map(String::as_str)
                .filter(|id| !seen.contains(id))
                .collect()
        };
        for id in removed {
            if let Some(g) = local.groups.get(id) {
                d.delete_groups.push(GroupRemoval {
                    upstream_id: id.to_string(),
                    display_name: g.display_name.clone(),
                    directory_id: g.id.clone(),
                });
            }
        }
    }
}

impl std::fmt::Display for Diff {
    /// One line per change, then a summary line: what `--dry-run` prints.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.connector;
        for op in &self.create {
            writeln!(
                f,
                "{c}: create user {} (upstream {})",
                op.user_name, op.upstream_id
            )?;
        }
        for op in &self.update {
            writeln!(
                f,
                "{c}: update user {} ({})",
                op.user_name,
                op.changes.join(", ")
            )?;
        }
        for x in &self.deactivate {
            writeln!(f, "{c}: deactivate user {} ({})", x.user_name, x.reason)?;
        }
        for g in &self.groups {
            match (&g.directory_id, &g.renamed_from) {
                (None, _) => writeln!(f, "{c}: create group {}", g.display_name)?,
                (Some(_), Some(old)) => {
                    writeln!(f, "{c}: rename group {old} to {}", g.display_name)?;
                }
                _ => {}
            }
            for m in &g.add {
                writeln!(f, "{c}: add {} to group {}", m.name, g.display_name)?;
            }
            for m in &g.remove {
                writeln!(f, "{c}: remove {} from group {}", m.name, g.display_name)?;
            }
        }
        for g in &self.delete_groups {
            writeln!(f, "{c}: delete group {} (removed upstream)", g.display_name)?;
        }
        for s in &self.skipped {
            writeln!(f, "{c}: skip {}: {}", s.upstream_id, s.reason)?;
        }
        if !self.complete {
            writeln!(
                f,
                "{c}: listing incomplete, no user deactivated and nothing removed: {}",
                self.problems.join("; ")
            )?;
        }
        write!(
            f,
            "{c}: {} to create, {} to update, {} to deactivate, {} group changes, {} groups to delete, {} skipped",
            self.create.len(),
            self.update.len(),
            self.deactivate.len(),
            self.groups.len(),
            self.delete_groups.len(),
            self.skipped.len()
        )
    }
}

/// The accidental-deletion guard: why `d` must not be applied as it is, when it deactivates
/// more users than `threshold` (0: no limit). A directory that suddenly lists nobody — an
/// emptied scope, a wrong filter upstream, a mis-set tenant — looks like everyone left.
pub fn over_threshold(d: &Diff, threshold: u32) -> Option<String> {
    let n = d.deactivate.len();
    (threshold > 0 && n > threshold as usize).then(|| {
        format!(
            "{n} users to deactivate exceed deletion_threshold {threshold}: no removal applied \
             (check the upstream, then run `portcullis directory sync --connector {} --allow-deletions`)",
            d.connector
        )
    })
}

/// [`diff`] under the accidental-deletion guard: over `threshold`, the run is held like an
/// incomplete listing (upserts apply, no removal, the cursor is not advanced) and says why.
pub fn guarded(connector: &str, fetched: &Fetched, local: &Local, threshold: u32) -> Diff {
    let d = diff(connector, fetched, local);
    let Some(why) = over_threshold(&d, threshold) else {
        return d;
    };
    tracing::warn!(connector, "directory sync: {why}");
    let mut held = fetched.clone();
    held.fail("deletion threshold", &why);
    diff(connector, &held, local)
}

#[cfg(test)]
#[path = "diff_tests.rs"]
mod tests;
