//! Every audit event the gateway records, typed: the one place that names an event kind, who
//! the actor is, which fields it carries and whether an anonymous client can cause it in bulk.
//!
//! A call site builds a variant and hands it to [`super::Audit::record`]; it never spells a kind
//! or a JSON field itself, so two call sites cannot record the same thing two ways, and the
//! operator's log line (target `audit`) and the hash-chain record are produced from the same
//! value — they cannot disagree.

use super::chain::Event;
use serde_json::json;

/// One security or admin event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditEvent {
    /// `auth.login`: a sign-in completed and a session was issued.
    Login {
        /// Provider id.
        idp: String,
        /// Session user.
        user: String,
        /// Provider subject.
        sub: String,
        /// Client address.
        client_ip: String,
    },
    /// `auth.login_failed`: a sign-in callback was refused (anyone can send callbacks: counted).
    LoginFailed {
        /// Provider id.
        idp: String,
        /// Why, without secrets.
        reason: String,
        /// Client address.
        client_ip: String,
    },
    /// `auth.login_unavailable`: a sign-in could not start (provider down, metadata refused).
    LoginUnavailable {
        /// Provider id.
        idp: String,
        /// The provider error.
        error: String,
        /// Client address.
        client_ip: String,
    },
    /// `auth.logout`: the user signed out.
    Logout {
        /// Provider id.
        idp: String,
        /// Session user.
        user: String,
        /// Provider subject.
        sub: String,
        /// Client address.
        client_ip: String,
    },
    /// `auth.backchannel_refused`: a provider's back-channel logout token was refused.
    BackchannelRefused {
        /// Provider id (picked by the token's unverified issuer).
        idp: String,
        /// Why.
        reason: String,
        /// Address of the sender.
        client_ip: String,
    },
    /// `session.revoked` (a security event: back-channel logout, failed refresh, deprovisioning)
    /// or `session.ended` (routine: idle or absolute timeout, logout).
    SessionEnded {
        /// Provider id.
        idp: String,
        /// Session user, when known (a back-channel logout may name only a subject).
        user: Option<String>,
        /// Provider subject, when known.
        sub: Option<String>,
        /// Provider session id (back-channel logout), when known.
        sid: Option<String>,
        /// `idle_timeout`, `absolute_timeout`, `logout`, `refresh_failed`, `backchannel_logout`…
        reason: String,
        /// Sessions ended.
        sessions: u64,
    },
    /// `mfa.<outcome>`: one second-factor event (`verified`, `enrolled`, `failure`, `replay`,
    /// `lockout`, `locked_out`, `removed`, `issued`, `clone`, …). Never carries the code.
    Mfa {
        /// Owner (`provider:subject`).
        user: String,
        /// `totp`, `webauthn`, `email`, `sms`, `recovery`.
        factor: String,
        /// What happened.
        outcome: String,
        /// Client address.
        client_ip: String,
    },
    /// `mfa.refused`: an MFA request refused before any code was checked (no CSRF token, no
    /// recent verification for a sensitive change, a WebAuthn ceremony that failed to parse).
    MfaRefused {
        /// Owner.
        user: String,
        /// Why.
        reason: String,
    },
    /// `mfa.device_remembered`.
    DeviceRemembered {
        /// Owner.
        user: String,
        /// The factor the device re-asserts.
        factor: String,
        /// How long.
        days: u32,
    },
    /// `mfa.device_revoked`.
    DeviceRevoked {
        /// Owner.
        user: String,
        /// Device id.
        device: String,
    },
    /// `directory.user_created`: a directory user was added (SCIM, JIT sign-in, sync, admin).
    DirectoryUserCreated {
        /// Who did it (`scim:<tenant>`, `jit:<provider>`, `sync:<id>`, an admin's user).
        actor: String,
        /// Tenant of the user.
        tenant: String,
        /// Directory user id.
        user_id: String,
        /// Its userName.
        user_name: String,
    },
    /// `directory.user_updated`: a directory user's attributes changed (including reactivation).
    DirectoryUserUpdated {
        /// Who did it.
        actor: String,
        /// Tenant of the user.
        tenant: String,
        /// Directory user id.
        user_id: String,
        /// Its userName.
        user_name: String,
    },
    /// `directory.user_deprovisioned`: a user was deactivated or deleted and their access ended.
    DirectoryUserDeprovisioned {
        /// Who did it.
        actor: String,
        /// Tenant of the user.
        tenant: String,
        /// Directory user id.
        user_id: String,
        /// Its userName.
        user_name: String,
    },
    /// `directory.group_<change>`: a directory group was created, renamed or deleted, or its
    /// members changed (group membership grants roles), by a directory sync.
    DirectoryGroupChanged {
        /// Who did it (`sync:<id>`).
        actor: String,
        /// Tenant of the group.
        tenant: String,
        /// Directory group id.
        group_id: String,
        /// Its display name.
        display_name: String,
        /// `created`, `renamed`, `members_added`, `members_removed` or `deleted`.
        change: &'static str,
        /// Members added or removed (0 for the other changes).
        members: usize,
    },
    /// `console.<action>`: one call of the admin API by an admin who passed the console policy
    /// (reads included), with its target and outcome.
    Console {
        /// The acting admin (session user).
        actor: String,
        /// `users_listed`, `user_viewed`, `user_disabled`, `user_enabled`, `sessions_revoked`,
        /// `user_password_reset`, `groups_listed`, `group_viewed`, `me`, `refused`.
        action: &'static str,
        /// The user or group id acted on (or the search), when there is one.
        target: Option<String>,
        /// The tenant acted in (`*`: every tenant).
        tenant: String,
        /// `ok`, `not_found`, `refused: <why>`, `failed: <why>`.
        outcome: String,
        /// Client address.
        client_ip: String,
    },
    /// `console.denied`: a call of the admin API refused by the console policy (no session, no
    /// admin role, no recent second factor) or because the session is no active admin's.
    /// Anyone can cause it in bulk: repeats per address are counted.
    ConsoleDenied {
        /// Session user, when signed in.
        user: Option<String>,
        /// The decision (`login`, `step_up`, `deny`) and the engine's reason.
        reason: String,
        /// Request method.
        method: String,
        /// Normalised path.
        path: String,
        /// Client address.
        client_ip: String,
    },
    /// `auth.password_changed`: a local account's password was replaced by its owner; every
    /// other session of theirs ended.
    PasswordChanged {
        /// Local provider id.
        idp: String,
        /// The user.
        user: String,
        /// Directory user id.
        user_id: String,
        /// Other sessions ended.
        sessions_ended: u64,
        /// Client address.
        client_ip: String,
    },
    /// `auth.password_change_failed`: a password change was refused (wrong current password,
    /// rules not met, locked out). Never carries a password.
    PasswordChangeFailed {
        /// Local provider id.
        idp: String,
        /// The user.
        user: String,
        /// Why.
        reason: String,
        /// Client address.
        client_ip: String,
    },
    /// `policy.denied`: a request to a privileged route was refused (anyone can cause it: counted).
    PolicyDenied {
        /// Route id.
        route: String,
        /// `deny:…`, `challenge:login`, …
        decision: String,
        /// Request method.
        method: String,
        /// Normalised path.
        path: String,
        /// Client address.
        client_ip: String,
        /// Status answered.
        status: u16,
    },
    /// `policy.provider_mismatch`: a session from another provider on a provider-pinned route.
    ProviderMismatch {
        /// Route id.
        route: String,
        /// Session user.
        user: String,
        /// The session's provider.
        provider: String,
        /// The route's provider.
        pinned: String,
    },
    /// `config.loaded`: at start or on a reload.
    ConfigLoaded {
        /// File (or the embedded config).
        source: String,
        /// SHA-256 of the text.
        sha256: String,
        /// Number of routes.
        routes: usize,
        /// `start` or `reload`.
        at: &'static str,
    },
    /// `config.rejected`: a reload was refused; the running config stays.
    ConfigRejected {
        /// File.
        source: String,
        /// SHA-256 of the refused text.
        sha256: String,
        /// Every problem, `path: message`.
        problems: Vec<String>,
    },
}

/// Actor of events the gateway itself causes.
const SYSTEM: &str = "system";

impl AuditEvent {
    /// The event kind as stored.
    pub fn kind(&self) -> String {
        match self {
            Self::Login { .. } => "auth.login".into(),
            Self::LoginFailed { .. } => "auth.login_failed".into(),
            Self::LoginUnavailable { .. } => "auth.login_unavailable".into(),
            Self::Logout { .. } => "auth.logout".into(),
            Self::BackchannelRefused { .. } => "auth.backchannel_refused".into(),
            Self::SessionEnded { reason, .. } if is_routine_end(reason) => "session.ended".into(),
            Self::SessionEnded { .. } => "session.revoked".into(),
            Self::Mfa { outcome, .. } => format!("mfa.{outcome}"),
            Self::MfaRefused { .. } => "mfa.refused".into(),
            Self::DeviceRemembered { .. } => "mfa.device_remembered".into(),
            Self::DeviceRevoked { .. } => "mfa.device_revoked".into(),
            Self::PolicyDenied { .. } => "policy.denied".into(),
            Self::Console { action, .. } => format!("console.{action}"),
            Self::ConsoleDenied { .. } => "console.denied".into(),
            Self::PasswordChanged { .. } => "auth.password_changed".into(),
            Self::PasswordChangeFailed { .. } => "auth.password_change_failed".into(),
            Self::DirectoryUserCreated { .. } => "directory.user_created".into(),
            Self::DirectoryUserUpdated { .. } => "directory.user_updated".into(),
            Self::DirectoryUserDeprovisioned { .. } => "directory.user_deprovisioned".into(),
            Self::DirectoryGroupChanged { change, .. } => format!("directory.group_{change}"),
            Self::ProviderMismatch { .. } => "policy.provider_mismatch".into(),
            Self::ConfigLoaded { .. } => "config.loaded".into(),
            Self::ConfigRejected { .. } => "config.rejected".into(),
        }
    }

    /// Who did it, when known.
    pub fn actor(&self) -> Option<&str> {
        match self {
            Self::Login { user, .. }
            | Self::Logout { user, .. }
            | Self::Mfa { user, .. }
            | Self::MfaRefused { user, .. }
            | Self::DeviceRemembered { user, .. }
            | Self::DeviceRevoked { user, .. }
            | Self::ProviderMismatch { user, .. }
            | Self::PasswordChanged { user, .. }
            | Self::PasswordChangeFailed { user, .. } => Some(user),
            Self::Console { actor, .. } => Some(actor),
            Self::ConsoleDenied { user, .. } => user.as_deref(),
            Self::DirectoryUserCreated { actor, .. }
            | Self::DirectoryUserUpdated { actor, .. }
            | Self::DirectoryUserDeprovisioned { actor, .. }
            | Self::DirectoryGroupChanged { actor, .. } => Some(actor),
            Self::SessionEnded { user, sub, .. } => user.as_deref().or(sub.as_deref()),
            Self::ConfigLoaded { .. } | Self::ConfigRejected { .. } => Some(SYSTEM),
            Self::LoginFailed { .. }
            | Self::LoginUnavailable { .. }
            | Self::BackchannelRefused { .. }
            | Self::PolicyDenied { .. } => None,
        }
    }

    /// The `(scope, client IP)` under which repeats are counted instead of recorded one by
    /// one, for events an anonymous client can cause in bulk (finding M7); `None` for events
    /// that are always recorded in full.
    pub fn repeat_key(&self) -> Option<(&str, &str)> {
        match self {
            Self::LoginFailed { idp, client_ip, .. }
            | Self::LoginUnavailable { idp, client_ip, .. }
            | Self::BackchannelRefused { idp, client_ip, .. } => Some((idp, client_ip)),
            Self::PolicyDenied {
                route, client_ip, ..
            } => Some((route, client_ip)),
            // Like `policy.denied`: a non-admin's session can be made to repeat it too.
            Self::ConsoleDenied { client_ip, .. } => Some(("console", client_ip)),
            _ => None,
        }
    }

    /// The event's fields as stored (a JSON object).
    pub fn data(&self) -> serde_json::Value {
        match self {
            Self::Login {
                idp,
                sub,
                client_ip,
                ..
            }
            | Self::Logout {
                idp,
                sub,
                client_ip,
                ..
            } => json!({"idp": idp, "sub": sub, "client_ip": client_ip}),
            Self::LoginFailed {
                idp,
                reason,
                client_ip,
            }
            | Self::BackchannelRefused {
                idp,
                reason,
                client_ip,
            } => json!({"idp": idp, "reason": reason, "client_ip": client_ip}),
            Self::LoginUnavailable {
                idp,
                error,
                client_ip,
            } => json!({"idp": idp, "error": error, "client_ip": client_ip}),
            Self::SessionEnded {
                idp,
                sub,
                sid,
                reason,
                sessions,
                ..
            } => {
                json!({"idp": idp, "sub": sub, "sid": sid, "reason": reason, "sessions": sessions})
            }
            Self::Mfa {
                factor, client_ip, ..
            } => json!({"factor": factor, "client_ip": client_ip}),
            Self::MfaRefused { reason, .. } => json!({"reason": reason}),
            Self::DirectoryUserCreated {
                tenant,
                user_id,
                user_name,
                ..
            }
            | Self::DirectoryUserUpdated {
                tenant,
                user_id,
                user_name,
                ..
            }
            | Self::DirectoryUserDeprovisioned {
                tenant,
                user_id,
                user_name,
                ..
            } => json!({"tenant": tenant, "user_id": user_id, "user_name": user_name}),
            Self::DirectoryGroupChanged {
                tenant,
                group_id,
                display_name,
                members,
                ..
            } => {
                json!({"tenant": tenant, "group_id": group_id, "display_name": display_name, "members": members})
            }
            Self::DeviceRemembered { factor, days, .. } => json!({"factor": factor, "days": days}),
            Self::DeviceRevoked { device, .. } => json!({"device": device}),
            Self::PolicyDenied {
                route,
                decision,
                method,
                path,
                client_ip,
                status,
            } => json!({
                "route": route, "decision": decision, "method": method, "path": path,
                "client_ip": client_ip, "status": status,
            }),
            Self::ProviderMismatch {
                route,
                provider,
                pinned,
                ..
            } => json!({"route": route, "provider": provider, "pinned": pinned}),
            Self::Console {
                target,
                tenant,
                outcome,
                client_ip,
                ..
            } => {
                json!({"target": target, "tenant": tenant, "outcome": outcome, "client_ip": client_ip})
            }
            Self::ConsoleDenied {
                reason,
                method,
                path,
                client_ip,
                ..
            } => json!({"reason": reason, "method": method, "path": path, "client_ip": client_ip}),
            Self::PasswordChanged {
                idp,
                user_id,
                sessions_ended,
                client_ip,
                ..
            } => {
                json!({"idp": idp, "user_id": user_id, "sessions_ended": sessions_ended, "client_ip": client_ip})
            }
            Self::PasswordChangeFailed {
                idp,
                reason,
                client_ip,
                ..
            } => json!({"idp": idp, "reason": reason, "client_ip": client_ip}),
            Self::ConfigLoaded {
                source,
                sha256,
                routes,
                at,
            } => json!({"source": source, "config_sha256": sha256, "routes": routes, "at": at}),
            Self::ConfigRejected {
                source,
                sha256,
                problems,
            } => json!({"source": source, "config_sha256": sha256, "problems": problems}),
        }
    }

    /// Whether the event is a refusal or failure (logged at `warn`) rather than routine
    /// (`info`).
    pub fn is_refusal(&self) -> bool {
        match self {
            Self::Mfa { outcome, .. } => matches!(
                outcome.as_str(),
                "failure"
                    | "replay"
                    | "lockout"
                    | "locked_out"
                    | "clone"
                    | "expired"
                    | "send_limited"
                    | "delivery_failed"
            ),
            Self::SessionEnded { reason, .. } => !is_routine_end(reason),
            Self::Console { outcome, .. } => outcome != "ok",
            Self::Login { .. }
            | Self::PasswordChanged { .. }
            | Self::Logout { .. }
            | Self::DeviceRemembered { .. }
            | Self::DeviceRevoked { .. }
            | Self::DirectoryUserCreated { .. }
            | Self::DirectoryUserUpdated { .. }
            | Self::DirectoryUserDeprovisioned { .. }
            | Self::DirectoryGroupChanged { .. }
            | Self::ConfigLoaded { .. } => false,
            _ => true,
        }
    }

    /// The chain form.
    pub fn to_event(&self) -> Event {
        Event {
            kind: self.kind(),
            actor: self.actor().map(str::to_string),
            data: self.data(),
        }
    }

    /// The operator's log line (target `audit`, message `audit <kind>`), from the same fields
    /// as the chain record. Every occurrence is logged, repeats included.
    pub fn trace(&self) {
        let kind = self.kind();
        let actor = self.actor().unwrap_or("-");
        let data = self.data();
        if self.is_refusal() {
            tracing::warn!(target: "audit", actor, data = %data, "audit {kind}");
        } else {
            tracing::info!(target: "audit", actor, data = %data, "audit {kind}");
        }
    }
}

/// Session endings that are routine (not a revocation).
fn is_routine_end(reason: &str) -> bool {
    matches!(reason, "idle_timeout" | "absolute_timeout" | "logout")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_actors_and_repeat_keys() {
        let ended = |reason: &str| AuditEvent::SessionEnded {
            idp: "corp".into(),
            user: None,
            sub: Some("s1".into()),
            sid: None,
            reason: reason.into(),
            sessions: 1,
        };
        assert_eq!(ended("idle_timeout").kind(), "session.ended");
        assert!(!ended("idle_timeout").is_refusal());
        assert_eq!(ended("backchannel_logout").kind(), "session.revoked");
        assert_eq!(ended("backchannel_logout").actor(), Some("s1"));
        let denied = AuditEvent::PolicyDenied {
            route: "admin".into(),
            decision: "deny".into(),
            method: "GET".into(),
            path: "/admin".into(),
            client_ip: "10.0.0.1".into(),
            status: 403,
        };
        assert_eq!(denied.repeat_key(), Some(("admin", "10.0.0.1")));
        assert_eq!(denied.actor(), None);
        let mfa = AuditEvent::Mfa {
            user: "corp:alice".into(),
            factor: "totp".into(),
            outcome: "replay".into(),
            client_ip: "10.0.0.1".into(),
        };
        assert_eq!(mfa.kind(), "mfa.replay");
        assert!(mfa.is_refusal());
        assert_eq!(
            mfa.repeat_key(),
            None,
            "an authenticated user's MFA events are all kept"
        );
        let e = mfa.to_event();
        assert_eq!(e.actor.as_deref(), Some("corp:alice"));
        assert_eq!(e.data["factor"], "totp");
        assert!(
            e.data.get("code").is_none(),
            "an MFA event never carries a code"
        );
    }

    #[test]
    fn console_and_password_events() {
        let call = |outcome: &str| AuditEvent::Console {
            actor: "root".into(),
            action: "user_disabled",
            target: Some("u1".into()),
            tenant: "*".into(),
            outcome: outcome.into(),
            client_ip: "10.0.0.1".into(),
        };
        assert_eq!(call("ok").kind(), "console.user_disabled");
        assert_eq!(call("ok").actor(), Some("root"));
        assert_eq!(
            call("ok").repeat_key(),
            None,
            "an admin's calls are all kept"
        );
        assert!(!call("ok").is_refusal());
        assert!(call("refused: csrf").is_refusal());
        assert_eq!(call("ok").data()["target"], "u1");
        let denied = AuditEvent::ConsoleDenied {
            user: Some("carol".into()),
            reason: "deny: no role".into(),
            method: "GET".into(),
            path: "/.portcullis/console/api/users".into(),
            client_ip: "10.0.0.2".into(),
        };
        assert_eq!(denied.kind(), "console.denied");
        assert_eq!(denied.actor(), Some("carol"));
        assert_eq!(denied.repeat_key(), Some(("console", "10.0.0.2")));
        assert!(denied.is_refusal());
        let changed = AuditEvent::PasswordChanged {
            idp: "staff".into(),
            user: "alice".into(),
            user_id: "u2".into(),
            sessions_ended: 2,
            client_ip: "10.0.0.3".into(),
        };
        assert_eq!(changed.kind(), "auth.password_changed");
        assert!(!changed.is_refusal());
        assert_eq!(changed.data()["sessions_ended"], 2);
        let failed = AuditEvent::PasswordChangeFailed {
            idp: "staff".into(),
            user: "alice".into(),
            reason: "wrong current password".into(),
            client_ip: "10.0.0.3".into(),
        };
        assert_eq!(failed.kind(), "auth.password_change_failed");
        assert!(failed.is_refusal());
        assert_eq!(failed.actor(), Some("alice"));
    }
}
