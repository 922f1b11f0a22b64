//! The diff rules as cases: what a run would do for each shape of upstream answer.

use super::super::remote::RemoteGroup;
use super::*;
use crate::directory::model::Member;

fn remote(id: &str, name: &str) -> RemoteUser {
    RemoteUser {
        id: id.into(),
        user_name: Some(name.into()),
        display_name: Some(name.to_uppercase()),
        given_name: None,
        family_name: None,
        emails: Some(vec![format!("{name}@example.com")]),
        active: Some(true),
    }
}

/// The directory user a previous run made from `remote(id, name)`.
fn stored(id: &str, name: &str) -> User {
    let base = User {
        id: format!("dir-{id}"),
        tenant: String::new(),
        active: true,
        source: "sync:e".into(),
        version: 3,
        ..User::default()
    };
    merged(&base, &remote(id, name))
}

fn local(users: &[(&str, &str)]) -> Local {
    Local {
        users: users
            .iter()
            .map(|(id, n)| (id.to_string(), stored(id, n)))
            .collect(),
        ..Local::default()
    }
}

fn full(users: Vec<RemoteUser>) -> Fetched {
    Fetched {
        full: true,
        complete: true,
        users,
        ..Fetched::default()
    }
}

fn names<T>(v: &[T], f: impl Fn(&T) -> &str) -> Vec<String> {
    v.iter().map(|x| f(x).to_string()).collect()
}

#[test]
fn full_listing_creates_updates_and_deactivates_the_absent() {
    let mut renamed = remote("2", "bob");
    renamed.display_name = Some("Robert".into());
    let f = full(vec![remote("1", "alice"), renamed, remote("4", "dan")]);
    let d = diff(
        "e",
        &f,
        &local(&[("1", "alice"), ("2", "bob"), ("3", "carol")]),
    );
    assert_eq!(names(&d.create, |o| &o.user_name), ["dan"]);
    assert_eq!(d.create[0].record.source, "sync:e");
    assert!(d.create[0].record.active);
    assert_eq!(names(&d.update, |o| &o.user_name), ["bob"]);
    assert_eq!(d.update[0].changes, ["displayName"]);
    assert_eq!(
        d.update[0].record.version, 3,
        "written against the version read"
    );
    assert_eq!(names(&d.deactivate, |o| &o.user_name), ["carol"]);
    assert_eq!(d.deactivate[0].reason, "removed upstream");
    assert!(d.deactivate[0].record.is_none());
    let text = d.to_string();
    assert!(text.contains("e: create user dan (upstream 4)"), "{text}");
    assert!(text.contains("e: update user bob (displayName)"), "{text}");
    assert!(
        text.contains("e: deactivate user carol (removed upstream)"),
        "{text}"
    );
    assert!(text.ends_with("1 to create, 1 to update, 1 to deactivate, 0 group changes, 0 groups to delete, 0 skipped"), "{text}");
}

#[test]
fn an_incomplete_listing_removes_and_deactivates_nothing() {
    let mut disabled = remote("2", "bob");
    disabled.active = Some(false);
    disabled.display_name = Some("Robert".into());
    let mut f = full(vec![remote("1", "alice"), disabled, remote("4", "dan")]);
    f.complete = false;
    f.problems = vec!["users: HTTP 500".into()];
    let d = diff(
        "e",
        &f,
        &local(&[("1", "alice"), ("2", "bob"), ("3", "carol")]),
    );
    assert!(d.deactivate.is_empty(), "{d:?}");
    assert_eq!(
        names(&d.create, |o| &o.user_name),
        ["dan"],
        "upserts still apply"
    );
    assert_eq!(d.update[0].changes, ["displayName"], "bob stays active");
    assert!(d.update[0].record.active);
    assert!(d.to_string().contains("listing incomplete"));
}

/// An upstream that suddenly lists almost nobody: over `deletion_threshold` no one is
/// deactivated (the run is held like an incomplete one and says why); at the threshold, or
/// with the guard off (`--allow-deletions`), the removals apply.
#[test]
fn the_deletion_threshold_holds_a_mass_removal() {
    let held_local = local(&[("1", "alice"), ("2", "bob"), ("3", "carol"), ("4", "dan")]);
    let f = full(vec![
        remote("1", "alice"),
        remote("2", "bob"),
        remote("5", "erin"),
    ]);
    let d = guarded("e", &f, &held_local, 2);
    assert_eq!(
        d.deactivate.len(),
        2,
        "two absent users are at the threshold: {d:?}"
    );
    assert!(d.complete);
    let f = full(vec![remote("5", "erin")]);
    let d = guarded("e", &f, &held_local, 2);
    assert!(d.deactivate.is_empty(), "{d:?}");
    assert!(!d.complete, "held: the run is not complete");
    assert_eq!(
        names(&d.create, |o| &o.user_name),
        ["erin"],
        "upserts still apply"
    );
    assert!(d.problems[0].contains("4 users to deactivate exceed deletion_threshold 2"));
    assert!(d.to_string().contains("--allow-deletions"), "{d}");
    assert_eq!(
        guarded("e", &f, &held_local, 0).deactivate.len(),
        4,
        "guard off"
    );
}

#[test]
fn disabled_upstream_deactivates_and_enabled_again_reactivates() {
    let mut off = remote("1", "alice");
    off.active = Some(false);
    let d = diff("e", &full(vec![off]), &local(&[("1", "alice")]));
    assert_eq!(d.deactivate.len(), 1);
    assert_eq!(d.deactivate[0].reason, "disabled upstream");
    assert!(!d.deactivate[0].record.as_ref().unwrap().active);

    let mut l = local(&[("1", "alice")]);
    l.users.get_mut("1").unwrap().active = false;
    let d = diff("e", &full(vec![remote("1", "alice")]), &l);
    assert!(d.deactivate.is_empty());
    assert_eq!(d.update[0].changes, ["active"]);
    assert!(d.update[0].record.active);
    // Already inactive and still absent: nothing to do again.
    let d = diff("e", &full(vec![]), &l);
    assert!(d.is_empty(), "{d:?}");
}

#[test]
fn delta_rounds_change_only_what_they_carry() {
    let partial = RemoteUser {
        id: "1".into(),
        display_name: Some("Alice A.".into()),
        ..RemoteUser::default()
    };
    let f = Fetched {
        full: false,
        complete: true,
        users: vec![partial],
        removed_users: vec!["2".into(), "unknown".into()],
        ..Fetched::default()
    };
    let d = diff(
        "e",
        &f,
        &local(&[("1", "alice"), ("2", "bob"), ("3", "carol")]),
    );
    assert_eq!(d.update.len(), 1);
    assert_eq!(d.update[0].changes, ["displayName"]);
    assert_eq!(d.update[0].record.user_name, "alice", "kept");
    assert_eq!(
        d.update[0].record.emails[0].value, "alice@example.com",
        "kept"
    );
    assert_eq!(
        names(&d.deactivate, |o| &o.user_name),
        ["bob"],
        "carol is not in the delta: she stays"
    );
    // The same round, incomplete: no removal.
    let f = Fetched {
        complete: false,
        ..f
    };
    assert!(diff("e", &f, &local(&[("2", "bob")])).deactivate.is_empty());
}

#[test]
fn users_this_connector_does_not_own_are_never_touched() {
    let mut l = local(&[]);
    l.foreign_names.insert("admin".into());
    let f = full(vec![
        remote("9", "Admin"),
        remote("8", "eve"),
        remote("7", "EVE"),
    ]);
    let d = diff("e", &f, &l);
    assert_eq!(names(&d.create, |o| &o.user_name), ["eve"]);
    assert_eq!(d.skipped.len(), 2);
    assert!(d.skipped[0].reason.contains("does not manage"));
    assert!(d.skipped[1].reason.contains("listed twice"));
    // Nothing absent from the listing is deactivated unless this connector linked it.
    assert!(d.deactivate.is_empty());
}

fn group(id: &str, name: &str, members: Members) -> RemoteGroup {
    RemoteGroup {
        id: id.into(),
        display_name: Some(name.into()),
        members,
    }
}

fn user_member(id: &str) -> RemoteMember {
    RemoteMember {
        id: id.into(),
        kind: MemberKind::User,
    }
}

#[test]
fn group_membership_changes() {
    let mut l = local(&[("1", "alice"), ("2", "bob")]);
    l.groups.insert(
        "g1".into(),
        Group {
            id: "dir-g1".into(),
            display_name: "eng".into(),
            external_id: Some("g1".into()),
            members: vec![
                Member {
                    id: "dir-2".into(),
                    kind: MemberKind::User,
                },
                // Added by an admin, not managed by this connector: kept.
                Member {
                    id: "scim-user".into(),
                    kind: MemberKind::User,
                },
            ],
            ..Group::default()
        },
    );
    l.groups.insert(
        "g2".into(),
        Group {
            id: "dir-g2".into(),
            display_name: "old".into(),
            ..Group::default()
        },
    );
    let mut f = full(vec![
        remote("1", "alice"),
        remote("2", "bob"),
        remote("3", "carol"),
    ]);
    f.groups = vec![
        group(
            "g1",
            "engineering",
            Members::Full(vec![
                user_member("1"),
                user_member("3"),
                user_member("ghost"),
            ]),
        ),
        group("g3", "ops", Members::Full(vec![user_member("2")])),
    ];
    let d = diff("e", &f, &l);
    let g1 = d.groups.iter().find(|g| g.upstream_id == "g1").unwrap();
    assert_eq!(g1.renamed_from.as_deref(), Some("eng"));
    assert_eq!(
        names(&g1.add, |m| &m.name),
        ["alice", "carol"],
        "unknown ids ignored"
    );
    assert_eq!(names(&g1.remove, |m| &m.name), ["bob"]);
    let g3 = d.groups.iter().find(|g| g.upstream_id == "g3").unwrap();
    assert!(g3.directory_id.is_none());
    assert_eq!(names(&g3.add, |m| &m.name), ["bob"]);
    assert_eq!(names(&d.delete_groups, |g| &g.display_name), ["old"]);
    let text = d.to_string();
    assert!(
        text.contains("e: rename group eng to engineering"),
        "{text}"
    );
    assert!(
        text.contains("e: remove bob from group engineering"),
        "{text}"
    );
    assert!(text.contains("e: create group ops"), "{text}");
    assert!(
        text.contains("e: delete group old (removed upstream)"),
        "{text}"
    );

    // Incomplete: additions only.
    f.complete = false;
    let d = diff("e", &f, &l);
    assert!(d.delete_groups.is_empty());
    assert!(d.groups.iter().all(|g| g.remove.is_empty()));

    // Delta: explicit removals.
    let f = Fetched {
        full: false,
        complete: true,
        groups: vec![RemoteGroup {
            id: "g1".into(),
            display_name: None,
            members: Members::Delta {
                added: vec![user_member("1")],
                removed: vec!["2".into(), "1".into()],
            },
        }],
        removed_groups: vec!["g2".into()],
        ..Fetched::default()
    };
    let d = diff("e", &f, &l);
    assert_eq!(d.groups.len(), 1);
    assert_eq!(d.groups[0].display_name, "eng", "name kept");
    assert_eq!(names(&d.groups[0].add, |m| &m.name), ["alice"]);
    assert_eq!(names(&d.groups[0].remove, |m| &m.name), ["bob"]);
    assert_eq!(names(&d.delete_groups, |g| &g.display_name), ["old"]);
}

#[test]
fn json_names_the_changes() {
    let d = diff(
        "e",
        &full(vec![remote("4", "dan")]),
        &local(&[("3", "carol")]),
    );
    let v = serde_json::to_value(&d).unwrap();
    assert_eq!(v["create"][0]["user_name"], "dan");
    assert_eq!(v["deactivate"][0]["user_name"], "carol");
    assert_eq!(v["deactivate"][0]["reason"], "removed upstream");
    assert_eq!(v["complete"], true);
}

#[test]
fn a_rename_upstream_renames_the_linked_user() {
    let d = diff(
        "e",
        &full(vec![remote("1", "alice2")]),
        &local(&[("1", "alice")]),
    );
    assert!(d.create.is_empty() && d.deactivate.is_empty(), "{d:?}");
    assert_eq!(d.update[0].changes, ["userName", "displayName", "emails"]);
    assert_eq!(d.update[0].record.id, "dir-1");
}
