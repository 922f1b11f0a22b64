//! `/.portcullis/password`: a signed-in local-account user changes their password.
//!
//! GET shows the form; POST carries the session's CSRF token, the current password and the new
//! one twice. Rules: [`crate::password::acceptable`] (12 to 1024 bytes, not the user name) and
//! not the current one. A wrong current password is counted in the sign-in form's limiter
//! (same key) and always gets the same answer. On success the Argon2id hash is replaced, every
//! OTHER session of the user ends on every replica (one that was opened with the old password
//! must not outlive it), this one continues, and `auth.password_changed` is recorded.

use super::*;
use crate::auth_endpoints::html_escape;
use crate::local::login::Refusal;
use std::collections::HashMap;

/// The endpoint.
pub const PASSWORD_PATH: &str = "/.portcullis/password";

/// A page of the password change and its status.
pub struct PasswordPage {
    /// Status.
    pub status: u16,
    /// The page.
    pub html: String,
}

fn page(status: u16, body: &str) -> PasswordPage {
    PasswordPage {
        status,
        html: format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>Change password</title></head>\
<body style=\"font-family:sans-serif;max-width:24rem;margin:4rem auto\"><h1>Change password</h1>{body}</body></html>"
        ),
    }
}

/// The form, with `error` above it.
fn form(status: u16, csrf: &str, error: Option<&str>) -> PasswordPage {
    let error = crate::local::login::alert(error);
    page(
        status,
        &format!(
            "{error}<form method=\"post\" action=\"{PASSWORD_PATH}\"><input type=\"hidden\" name=\"csrf\" value=\"{c}\">\
<p><label for=\"current\">Current password</label><br><input id=\"current\" name=\"current\" type=\"password\" autocomplete=\"current-password\" required></p>\
<p><label for=\"new\">New password</label><br><input id=\"new\" name=\"new\" type=\"password\" autocomplete=\"new-password\" minlength=\"12\" maxlength=\"1024\" required></p>\
<p><label for=\"confirm\">New password, again</label><br><input id=\"confirm\" name=\"confirm\" type=\"password\" autocomplete=\"new-password\" minlength=\"12\" maxlength=\"1024\" required></p>\
<p><button type=\"submit\">Change password</button></p></form>",
            c = html_escape(csrf)
        ),
    )
}

fn not_local() -> PasswordPage {
    page(
        403,
        "<p>Your password is managed by your identity provider, not here.</p>",
    )
}

impl Sso {
    /// The signed-in local account of a request: its session, its provider and its directory
    /// user; `Ok(None)` for a session of another provider.
    async fn local_account(
        &self,
        headers: &http::HeaderMap,
        tls: bool,
    ) -> Result<Option<(Authenticated, Arc<crate::local::login::LocalAccounts>)>, AuthError> {
        let a = self
            .identify(headers, tls)
            .await?
            .ok_or(AuthError::SessionEnded)?;
        Ok(self.local_provider(&a.record.idp).map(|acc| (a, acc)))
    }

    /// GET: the form, for a signed-in local-account user.
    pub async fn password_form(
        &self,
        headers: &http::HeaderMap,
        tls: bool,
    ) -> Result<PasswordPage, AuthError> {
        Ok(match self.local_account(headers, tls).await? {
            Some((a, _)) => form(200, &a.record.csrf, None),
            None => not_local(),
        })
    }

    /// POST: checks and applies a password change.
    pub async fn change_password(
        &self,
        body: &str,
        headers: &http::HeaderMap,
        origin: &str,
        tls: bool,
        client_ip: &str,
    ) -> Result<PasswordPage, AuthError> {
        // A browser always sends Origin on a cross-site POST.
        if let Some(o) = headers.get(http::header::ORIGIN) {
            if o.as_bytes() != origin.as_bytes() {
                return Err(AuthError::Csrf);
            }
        }
        let Some((a, acc)) = self.local_account(headers, tls).await? else {
            return Ok(not_local());
        };
        let f: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
        let field = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
        if !same(field("csrf"), &a.record.csrf) {
            return Err(AuthError::Csrf);
        }
        let csrf = &a.record.csrf;
        let user = acc.user(&a.record.sub).await.map_err(unavailable)?;
        let refuse = |reason: &str| {
            self.audit.record(AuditEvent::PasswordChangeFailed {
                idp: acc.provider.clone(),
                user: a.record.identity.user.clone(),
                reason: reason.to_string(),
                client_ip: client_ip.to_string(),
            });
        };
        let (current, new) = (field("current"), field("new"));
        if new != field("confirm") {
            refuse("confirmation differs");
            return Ok(form(400, csrf, Some("The new passwords do not match.")));
        }
        if let Err(why) = crate::password::acceptable(new, &user.user_name) {
            refuse(why);
            return Ok(form(400, csrf, Some(why)));
        }
        if new == current {
            refuse("same as the current password");
            return Ok(form(
                400,
                csrf,
                Some("The new password must differ from the current one."),
            ));
        }
        match acc.check_current(&user, current, client_ip).await {
            Ok(()) => {}
            Err(Refusal::Locked) => {
                refuse("too many attempts");
                return Ok(form(429, csrf, Some("Too many attempts. Try again later.")));
            }
            Err(Refusal::Unavailable(e)) => return Err(AuthError::Directory(e)),
            Err(_) => {
                refuse("wrong current password");
                return Ok(form(401, csrf, Some("The current password is not right.")));
            }
        }
        let phc = crate::password::hash_blocking(new.to_string())
            .await
            .ok_or(AuthError::Internal("hash"))?;
        acc.set_password(&user.id, &phc, self.now())
            .await
            .map_err(unavailable)?;
        let ended = self
            .end_other_sessions(&a.record.idp, &a.record.sub, &a.sid, "password_changed")
            .await?;
        self.audit.record(AuditEvent::PasswordChanged {
            idp: acc.provider.clone(),
            user: a.record.identity.user.clone(),
            user_id: user.id.clone(),
            sessions_ended: u64::try_from(ended).unwrap_or(u64::MAX),
            client_ip: client_ip.to_string(),
        });
        Ok(page(
            200,
            "<p role=\"status\">Your password was changed. Your other sessions were signed out.</p>",
        ))
    }

    /// Ends every session of `(idp, sub)` except `keep`, on every replica; one audit event
    /// for them (`reason`). Returns how many ended.
    pub async fn end_other_sessions(
        &self,
        idp: &str,
        sub: &str,
        keep: &str,
        reason: &str,
    ) -> Result<usize, AuthError> {
        let mut n = 0;
        for (sid, _) in self.store.sessions_of(idp, sub).await? {
            if sid != keep && self.store.remove(&sid).await? {
                n += 1;
            }
        }
        self.audit.record(AuditEvent::SessionEnded {
            idp: idp.to_string(),
            user: None,
            sub: Some(sub.to_string()),
            sid: None,
            reason: reason.to_string(),
            sessions: u64::try_from(n).unwrap_or(u64::MAX),
        });
        self.update_gauge().await;
        Ok(n)
    }
}

fn unavailable(r: Refusal) -> AuthError {
    AuthError::Directory(r.to_string())
}
