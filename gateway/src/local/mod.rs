//! Local accounts (`identity_providers[].type: local`): users of the directory who sign in with
//! a password at `/.portcullis/login`, with no other software. Passwords are Argon2id hashes
//! ([`crate::password`], [`credentials`]); accounts can be seeded from `directory.users_file`
//! ([`seed`]).

pub mod credentials;
pub mod login;
pub mod seed;

use crate::clock::Clock;
use crate::directory::model::{Group, Member, MemberKind, User};
use crate::directory::store::{Attr, Filter, Op, Query, Value};
use crate::directory::DirectoryStore;
use crate::mfa::limiter::Limiter;
use std::sync::Arc;
use std::time::Duration;

/// Wrong passwords allowed per user name before a lockout.
pub const PER_USER: u32 = 5;
/// Wrong passwords allowed per client address.
pub const PER_IP: u32 = 50;
/// How long a lockout lasts.
pub const LOCKOUT: Duration = Duration::from_secs(15 * 60);

/// The attempt limiter of password sign-in: in the session store's Redis (shared by replicas,
/// over the process's one connection) when sessions are there, else in memory.
pub fn limiter(
    redis: Option<Arc<crate::session::redis_store::RedisConn>>,
    clock: &Clock,
) -> Limiter {
    Limiter::with_counters(PER_USER, PER_IP, LOCKOUT, Limiter::counters(redis, clock))
}

/// Creates (or updates the password and groups of) the accounts of `directory.users_file`:
/// a user missing from the directory is created with `source: local`; an existing one keeps
/// its record and gets the file's password. Then sets the roles of the file's `groups`.
/// Returns how many accounts were seeded.
pub async fn seed(
    store: &DirectoryStore,
    credentials: &credentials::Credentials,
    users: &[seed::SeedUser],
    groups: &[seed::SeedGroup],
    now: i64,
) -> Result<usize, String> {
    for s in users {
        let found = store
            .user_by_name(&s.tenant, &s.user_name)
            .await
            .map_err(|e| e.to_string())?;
        let user = match found {
            Some(u) => u,
            None => store
                .create_user(
                    &s.tenant,
                    &User {
                        user_name: s.user_name.clone(),
                        display_name: s.display_name.clone(),
                        emails: s
                            .email
                            .iter()
                            .map(|e| crate::directory::model::Contact {
                                value: e.clone(),
                                kind: Some("work".into()),
                                primary: Some(true),
                            })
                            .collect(),
                        active: true,
                        source: "local".into(),
                        ..User::default()
                    },
                )
                .await
                .map_err(|e| format!("users_file: {}: {e}", s.user_name))?,
        };
        credentials
            .set(&user.id, &s.password_hash, now)
            .await
            .map_err(|e| e.to_string())?;
        for g in &s.groups {
            let group = group_named(store, &s.tenant, g).await?;
            if !group.members.iter().any(|m| m.id == user.id) {
                let member = Member {
                    id: user.id.clone(),
                    kind: MemberKind::User,
                };
                store
                    .add_members(&s.tenant, &group.id, &[member], None)
                    .await
                    .map_err(|e| format!("users_file: group {g}: {e}"))?;
            }
        }
    }
    for g in groups {
        let group = group_named(store, &g.tenant, &g.name).await?;
        store
            .set_group_roles(&g.tenant, &group.id, &g.roles)
            .await
            .map_err(|e| format!("users_file: group {}: {e}", g.name))?;
    }
    Ok(users.len())
}

/// The tenant's group named `name`, created (source `local`) when missing.
async fn group_named(store: &DirectoryStore, tenant: &str, name: &str) -> Result<Group, String> {
    let by_name = Query {
        filter: Some(Filter::Cmp(
            Attr::DisplayName,
            Op::Eq,
            Value::Str(name.to_string()),
        )),
        start_index: 1,
        count: 1,
    };
    let found = store
        .list_groups(tenant, &by_name)
        .await
        .map_err(|e| e.to_string())?;
    match found.items.into_iter().next() {
        Some(g) => Ok(g),
        None => store
            .create_group(
                tenant,
                &Group {
                    display_name: name.to_string(),
                    source: "local".into(),
                    ..Group::default()
                },
            )
            .await
            .map_err(|e| format!("users_file: group {name}: {e}")),
    }
}
