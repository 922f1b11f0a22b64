//! Every way an admin API call ends other than with its answer, and the one function that
//! turns it into a JSON reply (`{"error": code, "message": …}`, never internal detail; the
//! gateway's writer adds `Cache-Control: no-store` and the other security headers).

use crate::directory::DirectoryError;
use crate::errors::Reply;
use thiserror::Error;

/// A refused or failed API call.
#[derive(Debug, Error)]
pub enum ApiError {
    /// No such endpoint, or no such user/group in the admin's scope (another tenant's ids read
    /// as unknown: never 403, so ids do not leak).
    #[error("not found")]
    NotFound,
    /// The endpoint exists with another method.
    #[error("method not allowed")]
    MethodNotAllowed(&'static str),
    /// A state change without `Content-Type: application/json` (a plain HTML form cannot send
    /// JSON cross-site, so this is the first CSRF barrier).
    #[error("state-changing calls take application/json")]
    ContentType,
    /// A state change from another origin.
    #[error("cross-origin request refused")]
    CrossOrigin,
    /// A state change without the session's CSRF token in `X-CSRF-Token`.
    #[error("missing or wrong X-CSRF-Token")]
    Csrf,
    /// The body is larger than the API reads.
    #[error("body too large")]
    TooLarge,
    /// A malformed request (query, cursor, body).
    #[error("{0}")]
    BadRequest(String),
    /// A password that breaks the rules.
    #[error("{0}")]
    PasswordRules(&'static str),
    /// An admin may not disable their own account (nobody could undo it from that session).
    #[error("an admin cannot disable their own account")]
    SelfDisable,
    /// The user has no local password to reset.
    #[error("not a local account")]
    NotLocal,
    /// The session's user is no longer an active directory user (a disabled admin's old
    /// session): treated like no session at all.
    #[error("authentication required")]
    Unauthenticated,
    /// The session is not an admin the API can act for (no directory user, tenant mismatch).
    #[error("forbidden")]
    Forbidden,
    /// A store could not be read or written: fail closed.
    #[error("service unavailable")]
    Unavailable(String),
}

impl From<DirectoryError> for ApiError {
    fn from(e: DirectoryError) -> Self {
        match e {
            DirectoryError::NotFound => Self::NotFound,
            DirectoryError::Invalid(m) => Self::BadRequest(m),
            other => Self::Unavailable(other.to_string()),
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Unavailable(e.to_string())
    }
}

impl From<crate::session::StoreError> for ApiError {
    fn from(e: crate::session::StoreError) -> Self {
        Self::Unavailable(e.to_string())
    }
}

impl From<crate::sso::AuthError> for ApiError {
    fn from(e: crate::sso::AuthError) -> Self {
        Self::Unavailable(e.to_string())
    }
}

impl ApiError {
    /// HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Self::NotFound => 404,
            Self::MethodNotAllowed(_) => 405,
            Self::ContentType => 415,
            Self::CrossOrigin | Self::Csrf | Self::Forbidden => 403,
            Self::TooLarge => 413,
            Self::BadRequest(_) | Self::PasswordRules(_) => 400,
            Self::SelfDisable | Self::NotLocal => 409,
            Self::Unauthenticated => 401,
            Self::Unavailable(_) => 503,
        }
    }

    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::ContentType => "unsupported_media_type",
            Self::CrossOrigin => "cross_origin",
            Self::Csrf => "csrf",
            Self::TooLarge => "body_too_large",
            Self::BadRequest(_) => "bad_request",
            Self::PasswordRules(_) => "password_rules",
            Self::SelfDisable => "self_disable",
            Self::NotLocal => "not_local_account",
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden => "forbidden",
            Self::Unavailable(_) => "unavailable",
        }
    }

    /// The audit outcome: `not_found`, `refused: <code>` or `failed: <code>`.
    pub fn outcome(&self) -> String {
        match self {
            Self::NotFound => "not_found".into(),
            Self::Unavailable(_) => format!("failed: {}", self.code()),
            _ => format!("refused: {}", self.code()),
        }
    }

    /// The JSON answer. A store failure says only that the service is unavailable (the cause
    /// goes to the log).
    pub fn reply(&self) -> Reply {
        let message = match self {
            Self::Unavailable(cause) => {
                tracing::error!(error = %cause, "console API: store unavailable");
                "service unavailable".to_string()
            }
            other => other.to_string(),
        };
        let mut r = Reply::json(
            self.status(),
            serde_json::json!({"error": self.code(), "message": message}).to_string(),
        );
        match self {
            Self::MethodNotAllowed(allow) => r.headers.push(("allow".into(), (*allow).into())),
            Self::Unauthenticated => r.headers.push((
                "www-authenticate".into(),
                "Bearer realm=\"portcullis\"".into(),
            )),
            _ => {}
        }
        r
    }
}
