//! Applies a [`Diff`] through the directory [`Lifecycle`]: users first (creates are linked by
//! `(sync:<id>, upstream id)`), then groups and their members (which may name the users just
//! created), then deactivations and group deletions. Each change stands alone: one that fails
//! (a concurrent edit, a name taken meanwhile) is reported and retried by the next run, the
//! others still apply. Writes carry the version read, so a concurrent SCIM or admin change is
//! not overwritten.

use super::diff::{Diff, Local, MemberRef};
use crate::directory::config::SyncConfig;
use crate::directory::model::{Group, Member, MemberKind};
use crate::directory::{Lifecycle, Mode};
use std::collections::HashMap;

/// Applies `d` (computed against `local`) for connector `c`; returns the changes that failed.
pub async fn apply(d: &Diff, l: &Lifecycle, c: &SyncConfig, local: &Local) -> Vec<String> {
    let actor = format!("{}{}", crate::directory::signin::SYNC_LINK_PREFIX, c.id);
    let mut errors = Vec::new();
    let mut user_ids: HashMap<String, String> = local
        .users
        .iter()
        .map(|(up, u)| (up.clone(), u.id.clone()))
        .collect();
    for op in &d.create {
        match l.create_user(&c.tenant, &op.record, &actor).await {
            Ok(u) => {
                if let Err(e) = l.store.link(&actor, &op.upstream_id, &u.id).await {
                    // Unlinked, the record would block the name forever: take it back.
                    let _ = l.store.delete_user(&c.tenant, &u.id).await;
                    errors.push(format!("link {}: {e}", op.user_name));
                    continue;
                }
                user_ids.insert(op.upstream_id.clone(), u.id);
            }
            Err(e) => errors.push(format!("create {}: {e}", op.user_name)),
        }
    }
    for op in &d.update {
        let r = &op.record;
        if let Err(e) = l.replace_user(&r.tenant, r, Some(r.version), &actor).await {
            errors.push(format!("update {}: {e}", op.user_name));
        }
    }
    let mut group_ids: HashMap<String, String> = local
        .groups
        .iter()
        .map(|(up, g)| (up.clone(), g.id.clone()))
        .collect();
    for op in &d.groups {
        match (&op.directory_id, &op.renamed_from) {
            (None, _) => {
                let g = Group {
                    display_name: op.display_name.clone(),
                    external_id: Some(op.upstream_id.clone()),
                    source: actor.clone(),
                    ..Group::default()
                };
                match l.store.create_group(&c.tenant, &g).await {
                    Ok(g) => {
                        l.audit.record(group_event(
                            &actor,
                            &c.tenant,
                            &g.id,
                            &g.display_name,
                            "created",
                            0,
                        ));
                        group_ids.insert(op.upstream_id.clone(), g.id);
                    }
                    Err(e) => errors.push(format!("create group {}: {e}", op.display_name)),
                }
            }
            (Some(id), Some(_)) => {
                let renamed = match l.store.get_group(&c.tenant, id).await {
                    Ok(mut g) => {
                        g.display_name.clone_from(&op.display_name);
                        l.store.replace_group(&c.tenant, &g, Some(g.version)).await
                    }
                    Err(e) => Err(e),
                };
                match renamed {
                    Ok(_) => l.audit.record(group_event(
                        &actor,
                        &c.tenant,
                        id,
                        &op.display_name,
                        "renamed",
                        0,
                    )),
                    Err(e) => errors.push(format!("rename group {}: {e}", op.display_name)),
                }
            }
            (Some(_), None) => {}
        }
    }
    let resolve = |m: &MemberRef| -> Option<Member> {
        let map = match m.kind {
            MemberKind::User => &user_ids,
            MemberKind::Group => &group_ids,
        };
        map.get(&m.upstream_id).map(|id| Member {
            id: id.clone(),
            kind: m.kind,
        })
    };
    for op in &d.groups {
        let Some(gid) = group_ids.get(&op.upstream_id) else {
            continue;
        };
        let add: Vec<Member> = op.add.iter().filter_map(resolve).collect();
        if !add.is_empty() {
            match l.store.add_members(&c.tenant, gid, &add, None).await {
                Ok(_) => l.audit.record(group_event(
                    &actor,
                    &c.tenant,
                    gid,
                    &op.display_name,
                    "members_added",
                    add.len(),
                )),
                Err(e) => errors.push(format!("add members to {}: {e}", op.display_name)),
            }
        }
        let remove: Vec<String> = op.remove.iter().filter_map(resolve).map(|m| m.id).collect();
        if !remove.is_empty() {
            match l.store.remove_members(&c.tenant, gid, &remove, None).await {
                Ok(_) => l.audit.record(group_event(
                    &actor,
                    &c.tenant,
                    gid,
                    &op.display_name,
                    "members_removed",
                    remove.len(),
                )),
                Err(e) => errors.push(format!("remove members from {}: {e}", op.display_name)),
            }
        }
    }
    for x in &d.deactivate {
        let done = match &x.record {
            Some(r) => l
                .replace_user(&r.tenant, r, Some(r.version), &actor)
                .await
                .map(|_| ()),
            None => {
                let tenant = local
                    .users
                    .get(&x.upstream_id)
                    .map_or(c.tenant.as_str(), |u| u.tenant.as_str());
                l.deprovision(tenant, &x.directory_id, &actor, Mode::Deactivate)
                    .await
                    .map(|_| ())
            }
        };
        if let Err(e) = done {
            errors.push(format!("deactivate {}: {e}", x.user_name));
        }
    }
    for g in &d.delete_groups {
        match l.store.delete_group(&c.tenant, &g.directory_id).await {
            Ok(_) => l.audit.record(group_event(
                &actor,
                &c.tenant,
                &g.directory_id,
                &g.display_name,
                "deleted",
                0,
            )),
            Err(e) => errors.push(format!("delete group {}: {e}", g.display_name)),
        }
    }
    errors
}

/// The audit event of one group change made by this sync.
fn group_event(
    actor: &str,
    tenant: &str,
    group_id: &str,
    display_name: &str,
    change: &'static str,
    members: usize,
) -> crate::audit::event::AuditEvent {
    crate::audit::event::AuditEvent::DirectoryGroupChanged {
        actor: actor.to_string(),
        tenant: tenant.to_string(),
        group_id: group_id.to_string(),
        display_name: display_name.to_string(),
        change,
        members,
    }
}
