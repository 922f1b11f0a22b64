//! Audited user writes and deprovisioning: the one path by which SCIM, sync and the admin API
//! create and change users ([`Lifecycle::create_user`], [`Lifecycle::replace_user`]) and by which
//! `active: false`, DELETE, a sync removal and an admin action end a user's access, so that
//! all of them do the same things in the same order:
//! deactivate (or delete) the directory user first — from then on no replica admits a new
//! sign-in or refresh for them — then end every session of every linked `(provider, subject)`,
//! optionally remove their MFA factors and remembered devices, and record
//! `directory.user_deprovisioned`.
//!
//! Ending sessions on every replica belongs to single sign-on (its session store and pub/sub);
//! this module only calls a [`SessionRevoker`]. Wiring: `Sso::revoke_user(provider, subject)`
//! implements it (a one-line `impl SessionRevoker for Sso` once it exists).

use super::config::DeprovisionConfig;
use super::model::User;
use super::store::{DirectoryError, DirectoryStore};
use crate::audit::{Audit, AuditEvent};
use crate::mfa::store::MfaStore;
use async_trait::async_trait;
use std::sync::Arc;

/// Ends every session of one provider identity on every replica.
#[async_trait]
pub trait SessionRevoker: Send + Sync {
    /// Ends the sessions of `(provider, subject)`; returns how many were ended.
    async fn revoke_user(&self, provider: &str, subject: &str) -> usize;
}

/// Whether the user record stays (deactivated: reactivation restores sign-in) or goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `active: false`: the record and its links stay.
    Deactivate,
    /// Removed with its links and memberships (SCIM DELETE, sync removal when configured so).
    Delete,
}

/// What a deprovisioning did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The user as it was deprovisioned (inactive).
    pub user: User,
    /// Sessions ended.
    pub sessions: usize,
    /// MFA factors and remembered devices removed.
    pub mfa_removed: usize,
}

/// Everything user writes and deprovisioning touch; built once at start.
#[derive(Clone)]
pub struct Lifecycle {
    /// The directory.
    pub store: DirectoryStore,
    /// Where `directory.user_deprovisioned` goes.
    pub audit: Audit,
    /// Ends sessions; `None` when single sign-on is not configured.
    pub revoker: Option<Arc<dyn SessionRevoker>>,
    /// MFA enrolments, when `mfa:` is configured.
    pub mfa: Option<Arc<dyn MfaStore>>,
    /// `directory.deprovision`.
    pub settings: DeprovisionConfig,
}

impl Lifecycle {
    /// Adds a user ([`DirectoryStore::create_user`]) and records `directory.user_created`.
    pub async fn create_user(
        &self,
        tenant: &str,
        user: &User,
        actor: &str,
    ) -> Result<User, DirectoryError> {
        let u = self.store.create_user(tenant, user).await?;
        self.audit.record(user_event(Change::Created, actor, &u));
        Ok(u)
    }

    /// Replaces a user ([`DirectoryStore::replace_user`], SCIM PUT and PATCH). A change from
    /// active to inactive is a deprovisioning (sessions end, `directory.user_deprovisioned`,
    /// its outcome returned); any other change records `directory.user_updated`
    /// (reactivation included: it restores sign-in, not the ended sessions).
    pub async fn replace_user(
        &self,
        tenant: &str,
        user: &User,
        expected: Option<i64>,
        actor: &str,
    ) -> Result<(User, Option<Outcome>), DirectoryError> {
        let before = self.store.get_user(tenant, &user.id).await?;
        let after = self.store.replace_user(tenant, user, expected).await?;
        if before.active && !after.active {
            let out = self
                .end_access(after.clone(), actor, Mode::Deactivate)
                .await?;
            return Ok((after, Some(out)));
        }
        self.audit
            .record(user_event(Change::Updated, actor, &after));
        Ok((after, None))
    }

    /// Deprovisions user `user_id` of `tenant` on behalf of `actor` (`scim:<tenant>`,
    /// `sync:<id>`, an admin's user). Deprovisioning an already inactive user ends their
    /// sessions again (harmless, and covers a revocation that failed the first time).
    pub async fn deprovision(
        &self,
        tenant: &str,
        user_id: &str,
        actor: &str,
        mode: Mode,
    ) -> Result<Outcome, DirectoryError> {
        let user = self.store.set_user_active(tenant, user_id, false).await?;
        self.end_access(user, actor, mode).await
    }

    /// Reactivates user `user_id` of `tenant` (an admin's action): sign-in works again, the
    /// sessions ended at deprovisioning stay ended. Only the active flag is written, so a
    /// concurrent change to other attributes is kept; records `directory.user_updated`.
    pub async fn reactivate(
        &self,
        tenant: &str,
        user_id: &str,
        actor: &str,
    ) -> Result<User, DirectoryError> {
        let u = self.store.set_user_active(tenant, user_id, true).await?;
        self.audit.record(user_event(Change::Updated, actor, &u));
        Ok(u)
    }

    /// After the user is inactive: ends sessions, removes MFA (as configured), deletes the
    /// record in [`Mode::Delete`], and records the deprovisioning.
    async fn end_access(
        &self,
        user: User,
        actor: &str,
        mode: Mode,
    ) -> Result<Outcome, DirectoryError> {
        // Read the links before a delete removes them.
        let links = self.store.links_of(&user.id).await?;
        let mut sessions = 0;
        if self.settings.revoke_sessions {
            if let Some(r) = &self.revoker {
                for (provider, subject) in &links {
                    sessions += r.revoke_user(provider, subject).await;
                }
            }
        }
        let mut mfa_removed = 0;
        if self.settings.remove_mfa {
            if let Some(m) = &self.mfa {
                for (provider, subject) in &links {
                    mfa_removed += remove_mfa(m.as_ref(), &format!("{provider}:{subject}")).await?;
                }
            }
        }
        if mode == Mode::Delete {
            self.store.delete_user(&user.tenant, &user.id).await?;
        }
        self.audit
            .record(user_event(Change::Deprovisioned, actor, &user));
        Ok(Outcome {
            user,
            sessions,
            mfa_removed,
        })
    }
}

/// Which `directory.user_*` event.
#[derive(Debug, Clone, Copy)]
pub(super) enum Change {
    Created,
    Updated,
    Deprovisioned,
}

/// The audit event of a change to `u` by `actor` (one place builds all three).
pub(super) fn user_event(change: Change, actor: &str, u: &User) -> AuditEvent {
    let (actor, tenant, user_id, user_name) = (
        actor.to_string(),
        u.tenant.clone(),
        u.id.clone(),
        u.user_name.clone(),
    );
    match change {
        Change::Created => AuditEvent::DirectoryUserCreated {
            actor,
            tenant,
            user_id,
            user_name,
        },
        Change::Updated => AuditEvent::DirectoryUserUpdated {
            actor,
            tenant,
            user_id,
            user_name,
        },
        Change::Deprovisioned => AuditEvent::DirectoryUserDeprovisioned {
            actor,
            tenant,
            user_id,
            user_name,
        },
    }
}

/// Removes every factor and remembered device of one MFA owner (`provider:subject`).
async fn remove_mfa(m: &dyn MfaStore, owner: &str) -> Result<usize, DirectoryError> {
    let mut n = 0;
    for f in m.list(owner).await? {
        n += usize::from(m.remove(owner, &f.id).await?);
    }
    // `now = i64::MIN`: every device, expired or not.
    for d in m.devices(owner, i64::MIN).await? {
        n += usize::from(m.remove_device(owner, &d.id).await?);
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::mfa::store::FactorRow;
    use std::sync::Mutex;

    /// Records what it was asked to revoke; each identity has 2 sessions.
    #[derive(Default)]
    struct FakeRevoker(Mutex<Vec<(String, String)>>);

    #[async_trait]
    impl SessionRevoker for FakeRevoker {
        async fn revoke_user(&self, provider: &str, subject: &str) -> usize {
            if let Ok(mut v) = self.0.lock() {
                v.push((provider.into(), subject.into()));
            }
            2
        }
    }

    #[tokio::test]
    async fn deactivates_revokes_removes_mfa_and_audits() {
        let features = [&super::super::MIGRATIONS, &crate::mfa::store::MIGRATIONS];
        for (db_name, db, _dir) in crate::store::test_databases("deprov", &features).await {
            let store = DirectoryStore::new(db.clone(), Clock::system());
            let (audit, mut rx) = Audit::capture();
            let revoker = Arc::new(FakeRevoker::default());
            let mfa = crate::mfa::store::over(&db);
            let u = store
                .create_user(
                    "t",
                    &User {
                        user_name: "frank".into(),
                        active: true,
                        source: "scim".into(),
                        ..User::default()
                    },
                )
                .await
                .unwrap();
            store.link("corp", "s1", &u.id).await.unwrap();
            store.link("gh", "s2", &u.id).await.unwrap();
            mfa.add(&FactorRow {
                id: "f1".into(),
                user: "corp:s1".into(),
                kind: "totp".into(),
                label: "app".into(),
                secret: vec![1, 2, 3],
                created: 1,
                last_step: None,
            })
            .await
            .unwrap();
            let d = Lifecycle {
                store: store.clone(),
                audit,
                revoker: Some(revoker.clone()),
                mfa: Some(mfa.clone()),
                settings: DeprovisionConfig {
                    revoke_sessions: true,
                    remove_mfa: true,
                },
            };
            // Another tenant's admin cannot deprovision this user.
            assert!(matches!(
                d.deprovision("other", &u.id, "scim:other", Mode::Deactivate)
                    .await,
                Err(DirectoryError::NotFound)
            ));
            let out = d
                .deprovision("t", &u.id, "scim:t", Mode::Deactivate)
                .await
                .unwrap();
            assert!(!out.user.active, "{db_name}");
            assert_eq!(out.sessions, 4);
            assert_eq!(out.mfa_removed, 1);
            assert!(mfa.list("corp:s1").await.unwrap().is_empty());
            assert_eq!(
                *revoker.0.lock().unwrap(),
                vec![
                    ("corp".to_string(), "s1".to_string()),
                    ("gh".to_string(), "s2".to_string())
                ]
            );
            assert!(!store.get_user("t", &u.id).await.unwrap().active);
            let (ev, _) = rx.recv().await.unwrap();
            assert_eq!(ev.kind, "directory.user_deprovisioned");
            assert_eq!(ev.actor.as_deref(), Some("scim:t"));
            assert_eq!(ev.data["user_name"], "frank");

            // Delete mode removes the record and its links; sessions off: no revocation.
            let d = Lifecycle {
                revoker: Some(revoker.clone()),
                settings: DeprovisionConfig {
                    revoke_sessions: false,
                    remove_mfa: false,
                },
                ..d
            };
            let out = d
                .deprovision("t", &u.id, "admin", Mode::Delete)
                .await
                .unwrap();
            assert_eq!(out.sessions, 0);
            assert!(store.user_by_link("corp", "s1").await.unwrap().is_none());
            assert!(matches!(
                store.get_user("t", &u.id).await,
                Err(DirectoryError::NotFound)
            ));
        }
    }

    #[tokio::test]
    async fn writes_are_audited_and_deactivation_by_replace_deprovisions() {
        for (db_name, db, _dir) in
            crate::store::test_databases("lifecycle", &[&super::super::MIGRATIONS]).await
        {
            let (audit, mut rx) = Audit::capture();
            let revoker = Arc::new(FakeRevoker::default());
            let l = Lifecycle {
                store: DirectoryStore::new(db, Clock::system()),
                audit,
                revoker: Some(revoker.clone()),
                mfa: None,
                settings: DeprovisionConfig::default(),
            };
            let new = User {
                user_name: "gina".into(),
                active: true,
                source: "scim".into(),
                ..User::default()
            };
            let u = l.create_user("t", &new, "scim:t").await.unwrap();
            l.store.link("corp", "g1", &u.id).await.unwrap();
            let mut renamed = u.clone();
            renamed.display_name = Some("Gina".into());
            let (u, out) = l
                .replace_user("t", &renamed, Some(1), "scim:t")
                .await
                .unwrap();
            assert!(out.is_none(), "{db_name}");
            let mut off = u.clone();
            off.active = false;
            let (_, out) = l
                .replace_user("t", &off, Some(u.version), "scim:t")
                .await
                .unwrap();
            assert_eq!(out.map(|o| o.sessions), Some(2), "{db_name}");
            // Staying inactive is an update, not a second deprovisioning.
            l.replace_user("t", &off, None, "scim:t").await.unwrap();
            let mut kinds = Vec::new();
            while let Ok((ev, _)) = rx.try_recv() {
                assert_eq!(ev.actor.as_deref(), Some("scim:t"));
                kinds.push(ev.kind);
            }
            assert_eq!(
                kinds,
                vec![
                    "directory.user_created",
                    "directory.user_updated",
                    "directory.user_deprovisioned",
                    "directory.user_updated"
                ],
                "{db_name}"
            );
            assert_eq!(revoker.0.lock().unwrap().len(), 1);
        }
    }
}
