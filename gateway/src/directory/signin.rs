//! Sign-in against the directory: after a provider's token is verified, the `(provider,
//! subject)` must belong to an active directory user, and that user's groups and roles join
//! the session identity.
//!
//! Precedence (documented in the README): the directory *adds* groups and roles to what the
//! token says and never removes any (a provider that still grants a role keeps granting it);
//! a deactivated user is refused whatever the token says. Matching, in order:
//! 1. a link `(provider, subject)` → that user;
//! 2. otherwise a user of the identity's tenant with no sign-in link whose userName is the
//!    identity's `user` (case-insensitive) — the usual case of a user provisioned by SCIM or
//!    sync before their first sign-in — which is then linked. Only users never linked to a
//!    sign-in provider match (a sync connector's `sync:<id>` link does not count),
//!    so once bob has signed in through one provider, another provider's "bob" (perhaps
//!    another person: two providers may both have a bob) cannot claim him by name; an admin
//!    links further providers explicitly ([`DirectoryStore::link`]);
//! 3. otherwise, with `identity_providers[].jit: true`, a new user (source `jit:<provider>`),
//!    linked; without it, the sign-in is refused.

use super::deprovision::{user_event, Change};
use super::model::{Contact, User};
use super::store::{DirectoryError, DirectoryStore};
use crate::audit::Audit;
use portcullis_policy::input::Identity;

/// Why the directory refused a sign-in (the reason recorded in `auth.login_failed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No directory user and no just-in-time creation for this provider.
    NotInDirectory,
    /// The directory user is deactivated.
    Deactivated,
}

impl Refusal {
    /// The audit reason.
    pub fn reason(self) -> &'static str {
        match self {
            Self::NotInDirectory => "not in directory",
            Self::Deactivated => "deactivated",
        }
    }
}

/// Provider of the links a directory sync connector writes (`sync:<id>`). Provider ids cannot
/// contain `:`, so no sign-in provider's link is mistaken for one.
pub const SYNC_LINK_PREFIX: &str = "sync:";

/// Claim under which the session identity carries its directory user id (the admin API and
/// deprovisioning find sessions by it).
pub const DIRECTORY_ID_CLAIM: &str = "directory_id";

/// Admits `identity` (verified by `provider` for `subject`) or says why not; on admission,
/// merges the directory's groups and roles into it.
pub async fn admit(
    store: &DirectoryStore,
    audit: &Audit,
    provider: &str,
    jit: bool,
    subject: &str,
    identity: &mut Identity,
) -> Result<Result<(), Refusal>, DirectoryError> {
    let user = match store.user_by_link(provider, subject).await? {
        Some(u) => u,
        None => match unlinked_by_name(store, identity).await? {
            Some(u) => {
                store.link(provider, subject, &u.id).await?;
                u
            }
            None if jit => {
                let created = store
                    .create_user(tenant_of(identity), &jit_user(provider, identity))
                    .await;
                let u = match created {
                    Ok(u) => u,
                    // The name belongs to a user already linked to another subject of this
                    // provider: not this person's account.
                    Err(DirectoryError::Conflict { .. }) => {
                        return Ok(Err(Refusal::NotInDirectory))
                    }
                    Err(e) => return Err(e),
                };
                store.link(provider, subject, &u.id).await?;
                audit.record(user_event(Change::Created, &u.source, &u));
                u
            }
            None => return Ok(Err(Refusal::NotInDirectory)),
        },
    };
    if !user.active {
        return Ok(Err(Refusal::Deactivated));
    }
    let standing = store.standing(&user.id).await?;
    merge(&mut identity.groups, standing.groups);
    merge(&mut identity.roles, standing.roles);
    identity.claims.insert(
        DIRECTORY_ID_CLAIM.to_string(),
        serde_json::Value::String(user.id),
    );
    Ok(Ok(()))
}

fn tenant_of(identity: &Identity) -> &str {
    identity.tenant.as_deref().unwrap_or("")
}

/// A user of the identity's tenant named like it that no sign-in provider is linked to yet.
async fn unlinked_by_name(
    store: &DirectoryStore,
    identity: &Identity,
) -> Result<Option<User>, DirectoryError> {
    if identity.user.is_empty() {
        return Ok(None);
    }
    let Some(u) = store
        .user_by_name(tenant_of(identity), &identity.user)
        .await?
    else {
        return Ok(None);
    };
    // Links of sync connectors record where the user came from, not a sign-in: a user synced
    // from Entra ID still signs in for the first time by name.
    let signed_in = store
        .links_of(&u.id)
        .await?
        .iter()
        .any(|(provider, _)| !provider.starts_with(SYNC_LINK_PREFIX));
    Ok((!signed_in).then_some(u))
}

/// The user just-in-time creation makes from a verified identity.
fn jit_user(provider: &str, identity: &Identity) -> User {
    let name = |k: &str| {
        identity
            .claims
            .get(k)
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    User {
        user_name: identity.user.clone(),
        display_name: name("name"),
        given_name: name("given_name"),
        family_name: name("family_name"),
        emails: identity
            .email
            .iter()
            .map(|e| Contact {
                value: e.clone(),
                kind: Some("work".into()),
                primary: Some(true),
            })
            .collect(),
        active: true,
        enterprise: serde_json::Value::Object(serde_json::Map::new()),
        source: format!("jit:{provider}"),
        ..User::default()
    }
}

/// Appends what `extra` has that `into` lacks, keeping `into`'s order.
fn merge(into: &mut Vec<String>, extra: Vec<String>) {
    for e in extra {
        if !into.contains(&e) {
            into.push(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::directory::model::{Group, Member, MemberKind};

    #[tokio::test]
    async fn link_jit_name_match_and_refusals() {
        for (db, _db, _dir) in
            crate::store::test_databases("dirsignin", &[&super::super::MIGRATIONS]).await
        {
            let s = DirectoryStore::new(_db, Clock::system());
            let (audit, mut rx) = Audit::capture();
            let ident = |user: &str| Identity {
                user: user.into(),
                email: Some(format!("{user}@example.com")),
                groups: vec!["from-token".into()],
                roles: vec!["viewer".into()],
                ..Identity::default()
            };
            // JIT off, nobody in the directory: refused.
            let mut id = ident("alice");
            assert_eq!(
                admit(&s, &audit, "corp", false, "s-alice", &mut id)
                    .await
                    .unwrap(),
                Err(Refusal::NotInDirectory),
                "{db}"
            );
            // JIT on: created, linked, audited.
            admit(&s, &audit, "corp", true, "s-alice", &mut id)
                .await
                .unwrap()
                .unwrap();
            let alice = s.user_by_link("corp", "s-alice").await.unwrap().unwrap();
            assert_eq!(alice.source, "jit:corp");
            assert_eq!(alice.emails[0].value, "alice@example.com");
            let (ev, _) = rx.recv().await.unwrap();
            assert_eq!(ev.kind, "directory.user_created");
            assert_eq!(ev.actor.as_deref(), Some("jit:corp"));

            // A provisioned user (SCIM) signing in for the first time is matched by name.
            let bob = s
                .create_user(
                    "",
                    &User {
                        user_name: "Bob".into(),
                        active: true,
                        source: "scim".into(),
                        ..User::default()
                    },
                )
                .await
                .unwrap();
            s.create_group(
                "",
                &Group {
                    display_name: "admins".into(),
                    members: vec![Member {
                        id: bob.id.clone(),
                        kind: MemberKind::User,
                    }],
                    roles: vec!["admin".into(), "viewer".into()],
                    ..Group::default()
                },
            )
            .await
            .unwrap();
            let mut id = ident("bob");
            admit(&s, &audit, "corp", false, "s-bob", &mut id)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(id.groups, vec!["from-token", "admins"], "directory adds");
            assert_eq!(
                id.roles,
                vec!["viewer", "admin"],
                "never removes or repeats"
            );
            assert_eq!(id.claims[DIRECTORY_ID_CLAIM], bob.id.as_str());
            assert_eq!(
                s.user_by_link("corp", "s-bob").await.unwrap().unwrap().id,
                bob.id
            );
            // Another subject of this provider, or of another one, cannot take bob over by
            // name once he is linked.
            for (provider, jit) in [("corp", false), ("corp", true), ("other", true)] {
                let mut id = ident("bob");
                assert_eq!(
                    admit(&s, &audit, provider, jit, "s-mallory", &mut id)
                        .await
                        .unwrap(),
                    Err(Refusal::NotInDirectory),
                    "{provider}"
                );
            }

            // Deactivated: refused, even with JIT on.
            s.set_user_active("", &bob.id, false).await.unwrap();
            let mut id = ident("bob");
            assert_eq!(
                admit(&s, &audit, "corp", true, "s-bob", &mut id)
                    .await
                    .unwrap(),
                Err(Refusal::Deactivated),
                "{db}"
            );
        }
    }
}
