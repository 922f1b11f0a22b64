//! Deprovisioning: the one path by which SCIM (`active: false`, DELETE), a sync removal and an
//! admin action end a user's access, so that all of them do the same things in the same order:
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

/// Everything deprovisioning touches; built once at start.
#[derive(Clone)]
pub struct Deprovisioner {
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

impl Deprovisioner {
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
        // Read the links before a delete removes them.
        let links = self.store.links_of(user_id).await?;
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
            self.store.delete_user(tenant, user_id).await?;
        }
        self.audit.record(AuditEvent::DirectoryUserDeprovisioned {
            actor: actor.to_string(),
            tenant: user.tenant.clone(),
            user_id: user.id.clone(),
            user_name: user.user_name.clone(),
        });
        Ok(Outcome {
            user,
            sessions,
            mfa_removed,
        })
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
            let d = Deprovisioner {
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
            let d = Deprovisioner {
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
}
