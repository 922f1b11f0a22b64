//! The directory store on SQLite always and on PostgreSQL when `PORTCULLIS_TEST_POSTGRES`
//! names a server: the same bodies for both.

use super::*;
use crate::directory::model::{Contact, Group, Member, MemberKind, User};

async fn stores() -> Vec<(&'static str, DirectoryStore, Option<tempfile::TempDir>)> {
    crate::store::test_databases("directory", &[&MIGRATIONS])
        .await
        .into_iter()
        .map(|(label, db, dir)| (label, DirectoryStore::new(db, Clock::system()), dir))
        .collect()
}

fn user(name: &str) -> User {
    User {
        user_name: name.into(),
        display_name: Some(format!("{name} Example")),
        emails: vec![Contact {
            value: format!("{name}@Example.com"),
            kind: Some("work".into()),
            primary: Some(true),
        }],
        active: true,
        enterprise: serde_json::json!({"department": "ops"}),
        source: "scim".into(),
        ..User::default()
    }
}

fn group(name: &str, members: &[(&str, MemberKind)]) -> Group {
    Group {
        display_name: name.into(),
        members: members
            .iter()
            .map(|(id, kind)| Member {
                id: (*id).into(),
                kind: *kind,
            })
            .collect(),
        source: "scim".into(),
        ..Group::default()
    }
}

fn eq(attr: Attr, v: &str) -> Query {
    Query {
        filter: Some(Filter::Cmp(attr, Op::Eq, Value::Str(v.into()))),
        ..Query::default()
    }
}

#[tokio::test]
async fn user_crud_and_versions() {
    for (db, s, _dir) in stores().await {
        let alice = s.create_user("t1", &user("alice")).await.unwrap();
        assert_eq!(alice.version, 1, "{db}");
        assert_eq!(alice.tenant, "t1");
        let got = s.get_user("t1", &alice.id).await.unwrap();
        assert_eq!(got, alice, "{db}");

        let mut changed = got.clone();
        changed.given_name = Some("Alice".into());
        changed.emails.push(Contact {
            value: "a2@example.org".into(),
            ..Contact::default()
        });
        let v2 = s.replace_user("t1", &changed, Some(1)).await.unwrap();
        assert_eq!(v2.version, 2, "{db}");
        assert_eq!(v2.created, alice.created);
        assert_eq!(s.get_user("t1", &alice.id).await.unwrap(), v2, "{db}");

        // A stale ETag is refused and changes nothing.
        let err = s.replace_user("t1", &changed, Some(1)).await.unwrap_err();
        assert!(
            matches!(err, DirectoryError::PreconditionFailed { current: 2 }),
            "{db}: {err:?}"
        );
        let off = s.set_user_active("t1", &alice.id, false).await.unwrap();
        assert!(!off.active);
        assert_eq!(off.version, 3, "{db}");

        assert!(s.delete_user("t1", &alice.id).await.unwrap(), "{db}");
        assert!(!s.delete_user("t1", &alice.id).await.unwrap(), "{db}");
        assert!(matches!(
            s.get_user("t1", &alice.id).await,
            Err(DirectoryError::NotFound)
        ));
    }
}

#[tokio::test]
async fn uniqueness_is_per_tenant_and_case_insensitive() {
    for (db, s, _dir) in stores().await {
        let mut a = user("Alice");
        a.external_id = Some("ext-1".into());
        s.create_user("t1", &a).await.unwrap();
        let err = s.create_user("t1", &user("aLICE")).await.unwrap_err();
        assert!(
            matches!(
                err,
                DirectoryError::Conflict {
                    attribute: "userName"
                }
            ),
            "{db}: {err:?}"
        );
        let mut b = user("bob");
        b.external_id = Some("ext-1".into());
        let err = s.create_user("t1", &b).await.unwrap_err();
        assert!(
            matches!(
                err,
                DirectoryError::Conflict {
                    attribute: "externalId"
                }
            ),
            "{db}: {err:?}"
        );
        // Another tenant may reuse both.
        let mut a2 = user("alice");
        a2.external_id = Some("ext-1".into());
        s.create_user("t2", &a2).await.unwrap();
        // Renaming onto a taken name is a conflict too.
        let bob = s.create_user("t1", &user("bob")).await.unwrap();
        let mut renamed = bob.clone();
        renamed.user_name = "ALICE".into();
        assert!(matches!(
            s.replace_user("t1", &renamed, None).await,
            Err(DirectoryError::Conflict {
                attribute: "userName"
            })
        ));
        s.create_group("t1", &group("Ops", &[])).await.unwrap();
        assert!(matches!(
            s.create_group("t1", &group("OPS", &[])).await,
            Err(DirectoryError::Conflict {
                attribute: "displayName"
            })
        ));
        s.create_group("t2", &group("ops", &[])).await.unwrap();
    }
}

#[tokio::test]
async fn tenants_are_isolated() {
    for (db, s, _dir) in stores().await {
        let b_user = s.create_user("B", &user("bob")).await.unwrap();
        let b_group = s.create_group("B", &group("b-team", &[])).await.unwrap();
        assert!(matches!(
            s.get_user("A", &b_user.id).await,
            Err(DirectoryError::NotFound)
        ));
        assert!(matches!(
            s.replace_user("A", &b_user, None).await,
            Err(DirectoryError::NotFound)
        ));
        assert!(!s.delete_user("A", &b_user.id).await.unwrap(), "{db}");
        assert!(!s.delete_group("A", &b_group.id).await.unwrap(), "{db}");
        assert_eq!(
            s.list_users("A", &Query::default()).await.unwrap().total,
            0,
            "{db}"
        );
        assert_eq!(
            s.list_users("A", &eq(Attr::Id, &b_user.id))
                .await
                .unwrap()
                .total,
            0
        );
        // A group of A cannot take B's user as a member, nor can A touch B's group.
        let a_group = s.create_group("A", &group("a-team", &[])).await.unwrap();
        let m = [Member {
            id: b_user.id.clone(),
            kind: MemberKind::User,
        }];
        assert!(matches!(
            s.add_members("A", &a_group.id, &m, None).await,
            Err(DirectoryError::Invalid(_))
        ));
        assert!(matches!(
            s.create_group("A", &group("x", &[(&b_user.id, MemberKind::User)]))
                .await,
            Err(DirectoryError::Invalid(_))
        ));
        assert!(matches!(
            s.add_members("A", &b_group.id, &[], None).await,
            Err(DirectoryError::NotFound)
        ));
        assert!(matches!(
            s.set_group_roles("A", &b_group.id, &["admin".into()]).await,
            Err(DirectoryError::NotFound)
        ));
        // B itself is untouched.
        assert_eq!(s.get_user("B", &b_user.id).await.unwrap(), b_user, "{db}");
        assert!(s
            .get_group("B", &b_group.id)
            .await
            .unwrap()
            .members
            .is_empty());
    }
}

#[tokio::test]
async fn filters_and_pagination() {
    for (db, s, _dir) in stores().await {
        for i in 0..7 {
            let mut u = user(&format!("user{i}"));
            u.external_id = Some(format!("x{i}"));
            u.active = i % 2 == 0;
            s.create_user("t", &u).await.unwrap();
        }
        s.create_user("other", &user("user0")).await.unwrap();
        let all = s.list_users("t", &Query::default()).await.unwrap();
        assert_eq!(all.total, 7, "{db}");
        let page = s
            .list_users(
                "t",
                &Query {
                    start_index: 3,
                    count: 2,
                    ..Query::default()
                },
            )
            .await
            .unwrap();
        assert_eq!((page.total, page.items.len()), (7, 2), "{db}");
        assert_eq!(page.items[0].user_name, "user2");
        let beyond = Query {
            start_index: 50,
            ..Query::default()
        };
        assert!(s.list_users("t", &beyond).await.unwrap().items.is_empty());

        let count = |q: Query| {
            let s = s.clone();
            async move { s.list_users("t", &q).await.unwrap().total }
        };
        assert_eq!(count(eq(Attr::UserName, "USER3")).await, 1, "{db}");
        assert_eq!(count(eq(Attr::ExternalId, "x3")).await, 1);
        assert_eq!(
            count(eq(Attr::ExternalId, "X3")).await,
            0,
            "externalId is caseExact"
        );
        assert_eq!(count(eq(Attr::Email, "USER4@example.COM")).await, 1);
        let active = Query {
            filter: Some(Filter::Cmp(Attr::Active, Op::Eq, Value::Bool(true))),
            ..Query::default()
        };
        assert_eq!(count(active).await, 4, "{db}");
        let entra = Query {
            filter: Some(Filter::Cmp(
                Attr::Active,
                Op::Eq,
                Value::Str("False".into()),
            )),
            ..Query::default()
        };
        assert_eq!(count(entra).await, 3, "{db}");
        let sw = Query {
            filter: Some(Filter::Cmp(
                Attr::DisplayName,
                Op::Sw,
                Value::Str("USER".into()),
            )),
            ..Query::default()
        };
        assert_eq!(count(sw).await, 7);
        let co = Query {
            filter: Some(Filter::And(
                Box::new(Filter::Cmp(
                    Attr::UserName,
                    Op::Co,
                    Value::Str("ser1".into()),
                )),
                Box::new(Filter::Present(Attr::ExternalId)),
            )),
            ..Query::default()
        };
        assert_eq!(count(co).await, 1);
        // LIKE wildcards in a value are literal.
        let wild = Query {
            filter: Some(Filter::Cmp(Attr::UserName, Op::Co, Value::Str("%".into()))),
            ..Query::default()
        };
        assert_eq!(count(wild).await, 0, "{db}");
        let or = Query {
            filter: Some(Filter::Or(
                Box::new(Filter::Cmp(Attr::Id, Op::Eq, Value::Str("nope".into()))),
                Box::new(Filter::Not(Box::new(Filter::Cmp(
                    Attr::UserName,
                    Op::Eq,
                    Value::Str("user0".into()),
                )))),
            )),
            ..Query::default()
        };
        assert_eq!(count(or).await, 6);
        let bad = Query {
            filter: Some(Filter::Present(Attr::Member)),
            ..Query::default()
        };
        assert!(matches!(
            s.list_users("t", &bad).await,
            Err(DirectoryError::Invalid(_))
        ));
    }
}

#[tokio::test]
async fn nested_groups_with_a_cycle_resolve_once() {
    for (db, s, _dir) in stores().await {
        let u = s.create_user("t", &user("carol")).await.unwrap();
        let inner = s
            .create_group("t", &group("inner", &[(&u.id, MemberKind::User)]))
            .await
            .unwrap();
        let mid = s
            .create_group("t", &group("mid", &[(&inner.id, MemberKind::Group)]))
            .await
            .unwrap();
        let outer = s
            .create_group("t", &group("outer", &[(&mid.id, MemberKind::Group)]))
            .await
            .unwrap();
        // Close the cycle: inner ⊂ mid ⊂ outer ⊂ inner.
        let inner = s
            .add_members(
                "t",
                &inner.id,
                &[Member {
                    id: outer.id.clone(),
                    kind: MemberKind::Group,
                }],
                Some(inner.version),
            )
            .await
            .unwrap();
        assert_eq!(inner.version, 2, "{db}");
        assert_eq!(inner.members.len(), 2);
        s.set_group_roles("t", &outer.id, &["admin".into(), "dev".into()])
            .await
            .unwrap();
        s.set_group_roles("t", &inner.id, &["dev".into()])
            .await
            .unwrap();
        s.create_group("t", &group("unrelated", &[])).await.unwrap();
        let st = s.standing(&u.id).await.unwrap();
        assert!(st.active);
        assert_eq!(st.groups, vec!["inner", "mid", "outer"], "{db}");
        assert_eq!(st.roles, vec!["admin", "dev"], "{db}");

        // PATCH remove and a stale version.
        assert!(matches!(
            s.remove_members("t", &inner.id, std::slice::from_ref(&outer.id), Some(1))
                .await,
            Err(DirectoryError::PreconditionFailed { .. })
        ));
        let inner = s
            .remove_members("t", &inner.id, std::slice::from_ref(&outer.id), None)
            .await
            .unwrap();
        assert_eq!(inner.members.len(), 1);
        let groups = s.list_groups("t", &eq(Attr::Member, &u.id)).await.unwrap();
        assert_eq!(groups.total, 1, "{db}");
        assert_eq!(groups.items[0].roles, vec!["dev"]);
        assert_eq!(
            s.list_groups("t", &eq(Attr::DisplayName, "MID"))
                .await
                .unwrap()
                .total,
            1
        );
        // Deleting a group removes it from its parents.
        assert!(s.delete_group("t", &mid.id).await.unwrap());
        assert!(s
            .get_group("t", &outer.id)
            .await
            .unwrap()
            .members
            .is_empty());
    }
}

#[tokio::test]
async fn links() {
    for (db, s, _dir) in stores().await {
        let u = s.create_user("t", &user("dave")).await.unwrap();
        let other = s.create_user("t", &user("erin")).await.unwrap();
        assert!(s.user_by_link("corp", "sub-1").await.unwrap().is_none());
        s.link("corp", "sub-1", &u.id).await.unwrap();
        s.link("corp", "sub-1", &u.id).await.unwrap();
        assert!(matches!(
            s.link("corp", "sub-1", &other.id).await,
            Err(DirectoryError::Conflict { attribute: "link" })
        ));
        assert!(matches!(
            s.link("corp", "sub-2", "no-such-user").await,
            Err(DirectoryError::NotFound)
        ));
        let found = s.user_by_link("corp", "sub-1").await.unwrap().unwrap();
        assert_eq!(found.id, u.id, "{db}");
        assert_eq!(
            s.links_of(&u.id).await.unwrap(),
            vec![("corp".to_string(), "sub-1".to_string())]
        );
        s.delete_user("t", &u.id).await.unwrap();
        assert!(s.user_by_link("corp", "sub-1").await.unwrap().is_none());
    }
}

#[tokio::test]
async fn nesting_is_followed_to_a_bounded_depth() {
    for (db, s, _dir) in stores().await {
        let u = s.create_user("t", &user("deep")).await.unwrap();
        let mut below = (u.id.clone(), MemberKind::User);
        for i in 0..(MAX_GROUP_DEPTH + 8) {
            let g = s
                .create_group("t", &group(&format!("g{i:02}"), &[(&below.0, below.1)]))
                .await
                .unwrap();
            below = (g.id, MemberKind::Group);
        }
        let st = s.standing(&u.id).await.unwrap();
        assert_eq!(st.groups.len(), MAX_GROUP_DEPTH, "{db}");
        assert_eq!(st.groups.first().map(String::as_str), Some("g00"));
    }
}

#[tokio::test]
async fn injection_looking_values_are_data() {
    for (db, s, _dir) in stores().await {
        let odd = "x' OR '1'='1; DROP TABLE directory_users; --";
        s.create_user("t", &user(odd)).await.unwrap();
        s.create_user("t", &user("plain")).await.unwrap();
        for op in [Op::Eq, Op::Co, Op::Sw] {
            let q = Query {
                filter: Some(Filter::Cmp(Attr::UserName, op, Value::Str(odd.into()))),
                ..Query::default()
            };
            assert_eq!(s.list_users("t", &q).await.unwrap().total, 1, "{db} {op:?}");
        }
        assert_eq!(s.list_users("t", &Query::default()).await.unwrap().total, 2);
    }
}
