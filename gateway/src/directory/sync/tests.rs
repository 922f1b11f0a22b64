//! One sync pipeline — load what the directory holds, diff, apply — on both databases, with the
//! upstream's answers written by hand (the connectors' wire formats are tested end to end).

use super::diff::diff;
use super::remote::{Fetched, Members, RemoteGroup, RemoteMember, RemoteUser};
use super::*;
use crate::audit::Audit;
use crate::clock::Clock;
use crate::directory::config::DeprovisionConfig;
use crate::directory::model::{MemberKind, User};
use crate::directory::{DirectoryStore, SessionRevoker};
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Revoker(Mutex<Vec<(String, String)>>);

#[async_trait::async_trait]
impl SessionRevoker for Revoker {
    async fn revoke_user(&self, provider: &str, subject: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .push((provider.into(), subject.into()));
        1
    }
}

fn cfg() -> SyncConfig {
    let spec: crate::directory::config::DirectorySpec = serde_yaml::from_str(
        "sync: [ { id: e, type: entra_id, tenant_id: T, client_id: C, client_secret: S, tenant: acme } ]",
    )
    .unwrap();
    let mut p = crate::config::problems::Problems::default();
    crate::directory::config::build(spec, &mut p).unwrap().sync[0].clone()
}

fn user(id: &str, name: &str) -> RemoteUser {
    RemoteUser {
        id: id.into(),
        user_name: Some(name.into()),
        display_name: Some(name.into()),
        emails: Some(vec![format!("{name}@example.com")]),
        active: Some(true),
        ..RemoteUser::default()
    }
}

fn member(id: &str) -> RemoteMember {
    RemoteMember {
        id: id.into(),
        kind: MemberKind::User,
    }
}

async fn run(l: &Lifecycle, c: &SyncConfig, f: &Fetched) -> diff::Diff {
    let local = load_local(l, c, f).await.unwrap();
    let d = diff(&c.id, f, &local);
    let errors = apply::apply(&d, l, c, &local).await;
    assert!(errors.is_empty(), "{errors:?}");
    d
}

#[tokio::test]
async fn create_link_group_remove_and_leave_others_alone_on_both_databases() {
    let features = [&crate::directory::MIGRATIONS, &state::MIGRATIONS];
    for (db_name, db, _dir) in crate::store::test_databases("syncpipe", &features).await {
        let store = DirectoryStore::new(db, Clock::system());
        let (audit, mut rx) = Audit::capture();
        let revoker = Arc::new(Revoker::default());
        let l = Lifecycle {
            store: store.clone(),
            audit,
            revoker: Some(revoker.clone()),
            mfa: None,
            settings: DeprovisionConfig::default(),
        };
        let c = cfg();
        // A SCIM user already holds the name "carol" in the tenant.
        let scim = User {
            user_name: "carol".into(),
            active: true,
            source: "scim".into(),
            ..User::default()
        };
        let scim = store.create_user("acme", &scim).await.unwrap();
        let full = |users: Vec<RemoteUser>, members: Vec<RemoteMember>, complete: bool| Fetched {
            full: true,
            complete,
            users,
            groups: vec![RemoteGroup {
                id: "g1".into(),
                display_name: Some("eng".into()),
                members: Members::Full(members),
            }],
            ..Fetched::default()
        };

        let d = run(
            &l,
            &c,
            &full(
                vec![user("a", "alice"), user("b", "bob"), user("c", "carol")],
                vec![member("a"), member("b"), member("c")],
                true,
            ),
        )
        .await;
        assert_eq!(d.create.len(), 2, "{db_name}");
        assert_eq!(d.skipped.len(), 1, "{db_name}: carol belongs to SCIM");
        let linked = store.users_linked_from("sync:e").await.unwrap();
        let names: Vec<&str> = linked.iter().map(|(_, u)| u.user_name.as_str()).collect();
        assert_eq!(names, ["alice", "bob"], "{db_name}");
        assert!(linked
            .iter()
            .all(|(_, u)| u.tenant == "acme" && u.source == "sync:e"));
        let groups = store.groups_with_source("acme", "sync:e").await.unwrap();
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].external_id.as_deref(), Some("g1"));
        assert_eq!(groups[0].members.len(), 2, "{db_name}: carol is not synced");
        // A second identical run changes nothing.
        let again = full(
            vec![user("a", "alice"), user("b", "bob"), user("c", "carol")],
            vec![member("a"), member("b"), member("c")],
            true,
        );
        assert!(run(&l, &c, &again).await.is_empty(), "{db_name}");

        // An incomplete listing without bob: nothing removed.
        let d = run(
            &l,
            &c,
            &full(vec![user("a", "alice")], vec![member("a")], false),
        )
        .await;
        assert!(
            d.deactivate.is_empty() && d.groups.is_empty(),
            "{db_name}: {d:?}"
        );
        // Complete: bob is deprovisioned (sessions of his links ended) and leaves the group.
        let d = run(
            &l,
            &c,
            &full(vec![user("a", "alice")], vec![member("a")], true),
        )
        .await;
        assert_eq!(d.deactivate.len(), 1, "{db_name}");
        let bob = store.user_by_name("acme", "bob").await.unwrap().unwrap();
        assert!(!bob.active, "{db_name}");
        assert_eq!(
            revoker.0.lock().unwrap().as_slice(),
            [("sync:e".to_string(), "b".to_string())]
        );
        let groups = store.groups_with_source("acme", "sync:e").await.unwrap();
        assert_eq!(groups[0].members.len(), 1, "{db_name}");
        // The SCIM user was never touched.
        let carol = store.get_user("acme", &scim.id).await.unwrap();
        assert_eq!((carol.version, carol.source.as_str()), (1, "scim"));

        let mut kinds = Vec::new();
        while let Ok((ev, _)) = rx.try_recv() {
            assert_eq!(ev.actor.as_deref(), Some("sync:e"));
            kinds.push(ev.kind);
        }
        assert_eq!(
            kinds,
            [
                "directory.user_created",
                "directory.user_created",
                "directory.group_created",
                "directory.group_members_added",
                "directory.group_members_removed",
                "directory.user_deprovisioned"
            ],
            "{db_name}"
        );
    }
}
