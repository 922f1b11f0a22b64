//! The checks every state-changing API call passes before it runs, and the admin's tenant
//! scope. Security-relevant:
//! - `Content-Type: application/json`: an HTML form (the classic CSRF vehicle) can only send
//!   `application/x-www-form-urlencoded`, `multipart/form-data` or `text/plain`;
//! - `Origin`, when the browser sends one, must be this gateway's own;
//! - `X-CSRF-Token` must equal the session's CSRF token (constant-time): a custom header that
//!   another site cannot set without a CORS preflight the gateway never grants;
//! - the body must have been read whole within the API's bound.

use super::error::ApiError;
use super::Admin;
use crate::local_request::{BodyError, LocalRequest};

/// The header that carries the session's CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Refuses a state change that is not a same-origin JSON call carrying the session's token.
pub fn state_change(admin: &Admin, req: &LocalRequest) -> Result<(), ApiError> {
    let json = req
        .header(http::header::CONTENT_TYPE)
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(ApiError::ContentType);
    }
    // Several Origin headers, or one that is not ours (`null` included): refused.
    let mut origins = req.headers.get_all(http::header::ORIGIN).iter();
    if let Some(o) = origins.next() {
        if origins.next().is_some() || o.as_bytes() != req.origin.as_bytes() {
            return Err(ApiError::CrossOrigin);
        }
    }
    let mut tokens = req.headers.get_all(CSRF_HEADER).iter();
    let token = match (tokens.next(), tokens.next()) {
        (Some(t), None) => t.to_str().unwrap_or(""),
        _ => "",
    };
    if token.is_empty() || !crate::sso::same(token, &admin.csrf) {
        return Err(ApiError::Csrf);
    }
    match req.bytes() {
        Ok(_) => Ok(()),
        Err(BodyError::TooLarge) => Err(ApiError::TooLarge),
        Err(e) => Err(ApiError::BadRequest(e.message().into())),
    }
}

/// The tenant a list is scoped to: an admin bound to a tenant sees only theirs (asking for
/// another reads as not found); an admin bound to none sees the `requested` tenant, or every
/// tenant (`None`).
pub fn scope(admin: &Admin, requested: Option<&str>) -> Result<Option<String>, ApiError> {
    match (&admin.tenant, requested) {
        (Some(t), None) => Ok(Some(t.clone())),
        (Some(t), Some(r)) if r == t => Ok(Some(t.clone())),
        (Some(_), Some(_)) => Err(ApiError::NotFound),
        (None, r) => Ok(r.map(str::to_string)),
    }
}
