//! The admin JSON API under `/.portcullis/console/api/` (contract: ARCHITECTURE.md, "Contract,
//! wave 2"; the table of endpoints is in the README).
//!
//! The gateway decides `console.policy` first (the same engine and answers as a protected
//! route), then builds the acting [`Admin`] ([`Api::admin_of`]: an active directory user, with
//! the tenant they are bound to) and hands the request here. Every call — reads too, refusals
//! too — is recorded in the audit chain as `console.<action>` with the admin, the target and
//! the outcome. State changes additionally pass [`guard::state_change`] (POST, JSON, same
//! origin, the session's CSRF token). An admin bound to a tenant sees and changes only that
//! tenant's users and groups; another tenant's id reads as not found.

pub mod error;
pub mod guard;
pub mod paging;

mod groups;
#[cfg(test)]
mod tests;
mod users;

use crate::audit::{Audit, AuditEvent};
use crate::clock::Clock;
use crate::directory::{DirectoryStore, Lifecycle};
use crate::errors::Reply;
use crate::local::credentials::Credentials;
use crate::local_request::LocalRequest;
use crate::mfa::store::MfaStore;
use crate::sso::Sso;
use error::ApiError;
use std::sync::Arc;

/// Every API path starts here.
pub const PREFIX: &str = "/.portcullis/console/api/";

/// Largest body an API call reads (a password reset is the biggest).
pub const MAX_BODY: usize = 16 * 1024;

/// Whether `path` is an API path.
pub fn is_api(path: &str) -> bool {
    path.starts_with(PREFIX)
}

/// The admin a call acts for, as [`Api::admin_of`] established it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    /// Session user (the audit actor).
    pub user: String,
    /// Their directory user id (an admin cannot disable themselves).
    pub directory_id: String,
    /// The tenant they are bound to; `None`: every tenant.
    pub tenant: Option<String>,
    /// The session's CSRF token (`X-CSRF-Token` must equal it).
    pub csrf: String,
}

/// What the API works with; built once at start.
pub struct Api {
    /// The directory.
    pub directory: DirectoryStore,
    /// Audited user writes and deprovisioning.
    pub lifecycle: Lifecycle,
    /// Sessions: listing and revocation on every replica.
    pub sso: Arc<Sso>,
    /// MFA enrolments, when `mfa:` is configured (factors and devices are shown, never secrets).
    pub mfa: Option<Arc<dyn MfaStore>>,
    /// Local-account passwords.
    pub credentials: Credentials,
    /// Where `console.*` goes.
    pub audit: Audit,
    /// Stamps password changes and device expiry.
    pub clock: Clock,
}

/// One API call, as routed from its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call<'a> {
    Me,
    Users,
    User(&'a str),
    Disable(&'a str),
    Enable(&'a str),
    RevokeSessions(&'a str),
    ResetPassword(&'a str),
    Groups,
    Group(&'a str),
}

impl<'a> Call<'a> {
    /// The call at `path`, if any. Segments are exact: no trailing slash, no case folding
    /// (the path was normalised once by the gateway: dot segments resolved, `%2F` refused).
    fn route(path: &'a str) -> Option<Self> {
        let rest = path.strip_prefix(PREFIX)?;
        let seg: Vec<&str> = rest.split('/').collect();
        if seg.iter().any(|s| s.is_empty()) {
            return None;
        }
        Some(match seg.as_slice() {
            ["me"] => Self::Me,
            ["users"] => Self::Users,
            ["users", id] => Self::User(id),
            ["users", id, "disable"] => Self::Disable(id),
            ["users", id, "enable"] => Self::Enable(id),
            ["users", id, "sessions", "revoke"] => Self::RevokeSessions(id),
            ["users", id, "password"] => Self::ResetPassword(id),
            ["groups"] => Self::Groups,
            ["groups", id] => Self::Group(id),
            _ => return None,
        })
    }

    fn changes_state(self) -> bool {
        matches!(
            self,
            Self::Disable(_) | Self::Enable(_) | Self::RevokeSessions(_) | Self::ResetPassword(_)
        )
    }

    /// The audit action (`console.<action>`).
    fn action(self) -> &'static str {
        match self {
            Self::Me => "me",
            Self::Users => "users_listed",
            Self::User(_) => "user_viewed",
            Self::Disable(_) => "user_disabled",
            Self::Enable(_) => "user_enabled",
            Self::RevokeSessions(_) => "sessions_revoked",
            Self::ResetPassword(_) => "user_password_reset",
            Self::Groups => "groups_listed",
            Self::Group(_) => "group_viewed",
        }
    }

    fn target(self) -> Option<&'a str> {
        match self {
            Self::User(id)
            | Self::Disable(id)
            | Self::Enable(id)
            | Self::RevokeSessions(id)
            | Self::ResetPassword(id)
            | Self::Group(id) => Some(id),
            Self::Me | Self::Users | Self::Groups => None,
        }
    }
}

/// The longest target recorded in the audit chain (ids are the client's).
const MAX_TARGET: usize = 128;

impl Api {
    /// The admin the signed-in `identity` is: an active directory user (the `directory_id`
    /// claim sign-in put in the session), bound to the tenant their identity or directory
    /// record carries. A session whose directory user is gone or disabled is no admin's, even
    /// if its sessions were not revoked (fail closed).
    pub async fn admin_of(
        &self,
        identity: &portcullis_policy::input::Identity,
        csrf: &str,
    ) -> Result<Admin, ApiError> {
        let id = identity
            .claims
            .get(crate::directory::signin::DIRECTORY_ID_CLAIM)
            .and_then(|v| v.as_str())
            .ok_or(ApiError::Forbidden)?;
        let user = match self.directory.get_user_any_tenant(id).await {
            Ok(u) => u,
            Err(crate::directory::DirectoryError::NotFound) => {
                return Err(ApiError::Unauthenticated)
            }
            Err(e) => return Err(e.into()),
        };
        if !user.active {
            return Err(ApiError::Unauthenticated);
        }
        let claimed = identity.tenant.clone().filter(|t| !t.is_empty());
        let recorded = (!user.tenant.is_empty()).then(|| user.tenant.clone());
        let tenant = match (claimed, recorded) {
            (Some(a), Some(b)) if a != b => return Err(ApiError::Forbidden),
            (a, b) => a.or(b),
        };
        Ok(Admin {
            user: identity.user.clone(),
            directory_id: user.id,
            tenant,
            csrf: csrf.to_string(),
        })
    }

    /// Serves one API call for `admin` and records it.
    pub async fn serve(&self, admin: &Admin, req: &LocalRequest) -> Reply {
        let call = Call::route(&req.path);
        let result = match call {
            None => Err(ApiError::NotFound),
            Some(c) if c.changes_state() && req.method != http::Method::POST => {
                Err(ApiError::MethodNotAllowed("POST"))
            }
            Some(c) if !c.changes_state() && req.method != http::Method::GET => {
                Err(ApiError::MethodNotAllowed("GET"))
            }
            Some(c) if c.changes_state() => match guard::state_change(admin, req) {
                Ok(()) => self.run(c, admin, req).await,
                Err(e) => Err(e),
            },
            Some(c) => self.run(c, admin, req).await,
        };
        let target = match call {
            Some(c) => c.target(),
            None => Some(req.path.as_str()),
        };
        self.audit.record(AuditEvent::Console {
            actor: admin.user.clone(),
            action: call.map_or("refused", Call::action),
            target: target.map(|t| crate::local::login::truncate(t, MAX_TARGET).to_string()),
            tenant: admin.tenant.clone().unwrap_or_else(|| "*".into()),
            outcome: match &result {
                Ok(_) => "ok".into(),
                Err(e) => e.outcome(),
            },
            client_ip: req.client_ip.to_string(),
        });
        result.unwrap_or_else(|e| e.reply())
    }

    async fn run(
        &self,
        call: Call<'_>,
        admin: &Admin,
        req: &LocalRequest,
    ) -> Result<Reply, ApiError> {
        let value = match call {
            Call::Me => serde_json::json!({
                "user": admin.user,
                "directory_id": admin.directory_id,
                "tenant": admin.tenant,
                "csrf_token": admin.csrf,
            }),
            Call::Users => self.list_users(admin, req).await?,
            Call::User(id) => self.show_user(admin, id).await?,
            Call::Disable(id) => self.disable(admin, id).await?,
            Call::Enable(id) => self.enable(admin, id).await?,
            Call::RevokeSessions(id) => self.revoke_sessions(admin, id).await?,
            Call::ResetPassword(id) => self.reset_password(admin, id, req).await?,
            Call::Groups => self.list_groups(admin, req).await?,
            Call::Group(id) => self.show_group(admin, id).await?,
        };
        Ok(Reply::json(200, value.to_string()))
    }

    /// The audit actor of directory writes made through the API.
    fn actor(admin: &Admin) -> String {
        format!("console:{}", admin.user)
    }
}
