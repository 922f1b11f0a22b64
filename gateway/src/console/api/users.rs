//! `users`, `users/{id}` and the actions on one user: disable, enable, revoke sessions, reset a
//! local account's password.

use super::error::ApiError;
use super::guard::scope;
use super::paging::{encode, page, search_term};
use super::{Admin, Api};
use crate::directory::model::User;
use crate::directory::store::browse::Browse;
use crate::directory::store::{Attr, Filter, Op, Value};
use crate::directory::Mode;
use crate::local_request::LocalRequest;
use serde_json::{json, Value as Json};
use sha2::{Digest, Sha256};

/// How a session is named to admins: a prefix of the SHA-256 of its id, enough to tell
/// sessions apart, useless to ride one.
pub fn session_label(sid: &str) -> String {
    hex::encode(&Sha256::digest(sid.as_bytes())[..8])
}

/// A user as lists show it.
fn summary(u: &User) -> Json {
    json!({
        "id": u.id,
        "tenant": u.tenant,
        "userName": u.user_name,
        "displayName": u.display_name,
        "emails": u.emails.iter().map(|e| e.value.as_str()).collect::<Vec<_>>(),
        "active": u.active,
        "source": u.source,
        "created": u.created,
        "modified": u.modified,
    })
}

/// `q`: userName, display name or email address starting with it (case-insensitive).
fn search(q: &str) -> Filter {
    let sw = |a| Filter::Cmp(a, Op::Sw, Value::Str(q.to_string()));
    Filter::Or(
        Box::new(sw(Attr::UserName)),
        Box::new(Filter::Or(
            Box::new(sw(Attr::DisplayName)),
            Box::new(sw(Attr::Email)),
        )),
    )
}

/// The `q` and `active` filters of a user list.
fn user_filter(req: &LocalRequest) -> Result<Option<Filter>, ApiError> {
    let mut parts = Vec::new();
    if let Some(q) = search_term(&req.params)? {
        parts.push(search(q));
    }
    match req.param("active") {
        None | Some("") => {}
        Some("true") => parts.push(Filter::Cmp(Attr::Active, Op::Eq, Value::Bool(true))),
        Some("false") => parts.push(Filter::Cmp(Attr::Active, Op::Eq, Value::Bool(false))),
        Some(_) => return Err(ApiError::BadRequest("active is true or false".into())),
    }
    Ok(parts
        .into_iter()
        .reduce(|a, b| Filter::And(Box::new(a), Box::new(b))))
}

/// The body of `POST users/{id}/password`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ResetBody {
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    generate: bool,
}

impl Api {
    /// The user `id` if it is in the admin's scope.
    pub(super) async fn user_in_scope(&self, admin: &Admin, id: &str) -> Result<User, ApiError> {
        Ok(match &admin.tenant {
            Some(t) => self.directory.get_user(t, id).await?,
            None => self.directory.get_user_any_tenant(id).await?,
        })
    }

    pub(super) async fn list_users(
        &self,
        admin: &Admin,
        req: &LocalRequest,
    ) -> Result<Json, ApiError> {
        let tenant = scope(admin, req.param("tenant"))?;
        let filter = user_filter(req)?;
        let (limit, after) = page(&req.params)?;
        let p = self
            .directory
            .browse_users(&Browse {
                tenant: tenant.as_deref(),
                filter: filter.as_ref(),
                after: after.as_ref(),
                limit,
            })
            .await?;
        Ok(json!({
            "users": p.items.iter().map(summary).collect::<Vec<_>>(),
            "next_cursor": p.next.as_ref().map(encode),
        }))
    }

    pub(super) async fn show_user(&self, admin: &Admin, id: &str) -> Result<Json, ApiError> {
        let u = self.user_in_scope(admin, id).await?;
        let standing = self.directory.standing(&u.id).await?;
        let links = self.directory.links_of(&u.id).await?;
        let now = self.clock.unix();
        let (mut sessions, mut factors, mut devices) = (Vec::new(), Vec::new(), Vec::new());
        for (provider, subject) in &links {
            for (sid, rec) in self.sso.store.sessions_of(provider, subject).await? {
                sessions.push(json!({
                    "id": session_label(&sid),
                    "provider": provider,
                    "created": rec.created,
                    "last_seen": rec.last_seen,
                    "client_ip": Json::Null,
                    "auth_methods": rec.identity.auth_methods.iter().map(|a| a.method.as_str()).collect::<Vec<_>>(),
                }));
            }
            let Some(mfa) = &self.mfa else { continue };
            let owner = crate::mfa::user_key(provider, subject);
            for f in mfa.list(&owner).await? {
                factors.push(json!({
                    "id": f.id, "provider": provider, "kind": f.kind, "label": f.label, "created": f.created,
                }));
            }
            for d in mfa.devices(&owner, now).await? {
                devices.push(json!({
                    "id": d.id, "provider": provider, "method": d.method, "label": d.label,
                    "created": d.created, "expires": d.expires, "last_used": d.last_used,
                }));
            }
        }
        let mut v = summary(&u);
        v["givenName"] = json!(u.given_name);
        v["familyName"] = json!(u.family_name);
        v["externalId"] = json!(u.external_id);
        v["groups"] = json!(standing.groups);
        v["roles"] = json!(standing.roles);
        v["links"] = links
            .iter()
            .map(|(p, s)| json!({"provider": p, "subject": s}))
            .collect();
        v["local_password"] = json!(self.credentials.hash_of(&u.id).await?.is_some());
        v["sessions"] = json!(sessions);
        v["mfa_factors"] = json!(factors);
        v["remembered_devices"] = json!(devices);
        Ok(v)
    }

    pub(super) async fn disable(&self, admin: &Admin, id: &str) -> Result<Json, ApiError> {
        let u = self.user_in_scope(admin, id).await?;
        if u.id == admin.directory_id {
            return Err(ApiError::SelfDisable);
        }
        let out = self
            .lifecycle
            .deprovision(&u.tenant, &u.id, &Self::actor(admin), Mode::Deactivate)
            .await?;
        Ok(json!({
            "user": summary(&out.user),
            "sessions_ended": out.sessions,
            "mfa_removed": out.mfa_removed,
        }))
    }

    pub(super) async fn enable(&self, admin: &Admin, id: &str) -> Result<Json, ApiError> {
        let u = self.user_in_scope(admin, id).await?;
        let u = self
            .lifecycle
            .reactivate(&u.tenant, &u.id, &Self::actor(admin))
            .await?;
        Ok(json!({ "user": summary(&u) }))
    }

    /// Ends every session of every identity linked to the user, on every replica.
    async fn end_sessions(&self, u: &User, reason: &str) -> Result<usize, ApiError> {
        let mut n = 0;
        for (provider, subject) in self.directory.links_of(&u.id).await? {
            n += self.sso.revoke_user(&provider, &subject, reason).await?;
        }
        Ok(n)
    }

    pub(super) async fn revoke_sessions(&self, admin: &Admin, id: &str) -> Result<Json, ApiError> {
        let u = self.user_in_scope(admin, id).await?;
        let n = self.end_sessions(&u, "console_revoked").await?;
        Ok(json!({ "sessions_ended": n }))
    }

    /// Replaces a local account's password (`{"password": …}`, or `{"generate": true}`, whose
    /// password is in this answer and nowhere else) and ends every session of the user.
    pub(super) async fn reset_password(
        &self,
        admin: &Admin,
        id: &str,
        req: &LocalRequest,
    ) -> Result<Json, ApiError> {
        let body: ResetBody = serde_json::from_slice(req.bytes().map_err(|_| ApiError::TooLarge)?)
            .map_err(|e| ApiError::BadRequest(format!("body: {e}")))?;
        let u = self.user_in_scope(admin, id).await?;
        if self.credentials.hash_of(&u.id).await?.is_none() {
            return Err(ApiError::NotLocal);
        }
        let (password, generated) = match (body.password, body.generate) {
            (Some(p), false) => (p, false),
            (None, true) => (
                crate::password::generate()
                    .ok_or_else(|| ApiError::Unavailable("no system randomness".into()))?,
                true,
            ),
            _ => {
                return Err(ApiError::BadRequest(
                    "give either password or generate: true".into(),
                ))
            }
        };
        crate::password::acceptable(&password, &u.user_name).map_err(ApiError::PasswordRules)?;
        let phc = crate::password::hash_blocking(password.clone())
            .await
            .ok_or_else(|| ApiError::Unavailable("cannot hash the password".into()))?;
        self.credentials.set(&u.id, &phc, self.clock.unix()).await?;
        let n = self.end_sessions(&u, "password_reset").await?;
        let mut v = json!({ "sessions_ended": n });
        if generated {
            v["password"] = json!(password);
        }
        Ok(v)
    }
}
