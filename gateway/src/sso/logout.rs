//! Signing out: the CSRF-protected logout and the provider's back-channel logout.

use super::*;

impl Sso {
    /// Destroys the session after a CSRF check; returns where to send the browser.
    pub async fn logout(
        &self,
        form: &str,
        headers: &http::HeaderMap,
        origin: &str,
        tls: bool,
        client_ip: &str,
    ) -> Result<Redirect, AuthError> {
        // Defence in depth: a browser always sends Origin on a cross-site POST.
        if let Some(o) = headers
            .get(http::header::ORIGIN)
            .and_then(|v| v.to_str().ok())
        {
            if o != origin && o != "null" {
                return Err(AuthError::Csrf);
            }
        }
        let params: std::collections::HashMap<String, String> =
            url::form_urlencoded::parse(form.as_bytes())
                .into_owned()
                .collect();
        let clear = session::clear_cookie(cookie_name(tls, false), tls);
        let Some(a) = self.identify(headers, tls).await? else {
            return Ok(Redirect {
                location: format!("{origin}/"),
                cookies: vec![clear],
            });
        };
        let token = params.get("csrf").map(String::as_str).unwrap_or("");
        if !same(token, &a.record.csrf) {
            return Err(AuthError::Csrf);
        }
        self.end(&a.sid, &a.record, "logout").await?;
        metrics::auth_event(&a.record.idp, "logout", "success");
        self.audit.record(AuditEvent::Logout {
            idp: a.record.idp.clone(),
            user: a.record.identity.user.clone(),
            sub: a.record.sub.clone(),
            client_ip: client_ip.to_string(),
        });
        let location = match self.provider(&a.record.idp) {
            Some(p) => p
                .end_session_url(a.record.id_token.as_deref(), None)
                .await
                .unwrap_or_else(|| format!("{origin}/")),
            // A SAML session: on to the IdP's single logout (SAML has no id_token_hint).
            None => self
                .saml_logout_location(&a.record)
                .unwrap_or_else(|| format!("{origin}/")),
        };
        Ok(Redirect {
            location,
            cookies: vec![clear],
        })
    }

    /// Handles an OIDC back-channel logout request body; returns how many sessions ended.
    pub async fn backchannel_logout(
        &self,
        form: &str,
        client_ip: &str,
    ) -> Result<usize, AuthError> {
        let token = url::form_urlencoded::parse(form.as_bytes())
            .find(|(k, _)| k == "logout_token")
            .map(|(_, v)| v.into_owned())
            .ok_or(AuthError::BadRequest("logout_token missing"))?;
        // The unverified `iss` only picks which provider's keys verify the token.
        let iss = crate::idp::oidc::jwt_payload(&token)
            .and_then(|c| c.get("iss").and_then(|i| i.as_str()).map(str::to_string))
            .ok_or(AuthError::BadRequest("logout_token unreadable"))?;
        let p = self
            .providers()
            .iter()
            .find(|p| p.cfg.issuer == iss)
            .cloned()
            .ok_or(AuthError::UnknownProvider)?;
        let (sub, sid, jti) = p.verify_logout_token(&token).await.map_err(|e| {
            metrics::auth_event(&p.cfg.id, "backchannel_logout", "failure");
            self.audit.record(AuditEvent::BackchannelRefused {
                idp: p.cfg.id.clone(),
                reason: e.to_string(),
                client_ip: client_ip.to_string(),
            });
            AuthError::BadRequest("invalid logout_token")
        })?;
        // The `jti` is recorded in the session store (shared by replicas when it is Redis) and
        // only after the revocation succeeded: a store error makes the provider retry, and the
        // retry must revoke, not be refused as a replay (L6). Revoking twice is harmless.
        let once = format!("bcl:{}:{jti}", p.cfg.id);
        if self.store.seen_once(&once).await? {
            metrics::auth_event(&p.cfg.id, "backchannel_logout", "failure");
            self.audit.record(AuditEvent::BackchannelRefused {
                idp: p.cfg.id.clone(),
                reason: format!("logout_token replayed (jti {jti})"),
                client_ip: client_ip.to_string(),
            });
            return Err(AuthError::BadRequest("logout_token replayed"));
        }
        // A token that names only the subject ends all of that user's sessions, exactly as
        // deprovisioning does; with a provider session id, only the matching ones.
        let n = match (sub.as_deref(), sid.as_deref()) {
            (Some(u), None) => self.revoke_user(&p.cfg.id, u, "backchannel_logout").await?,
            (u, s) => {
                self.revoke_matching(&p.cfg.id, u, s, "backchannel_logout")
                    .await?
            }
        };
        let skew = secs(p.cfg.clock_skew);
        let ttl = u64::try_from(crate::idp::oidc::LOGOUT_TOKEN_MAX_AGE + skew).unwrap_or(600);
        self.store.record_once(&once, ttl).await?;
        metrics::auth_event(&p.cfg.id, "backchannel_logout", "success");
        Ok(n)
    }

    /// Ends every session of user `subject` at `provider`, on every replica: the sessions are
    /// deleted from the shared store (each request reads it, there is no per-process cache)
    /// and their ids announced on [`crate::session::SessionStore::ended`], so open tunnels
    /// close at once. The same subject at another provider is another user and keeps its
    /// sessions. `reason` goes into the audit event (`deprovisioned`, `backchannel_logout`,
    /// an admin action). Returns how many sessions ended.
    pub async fn revoke_user(
        &self,
        provider: &str,
        subject: &str,
        reason: &str,
    ) -> Result<usize, AuthError> {
        self.revoke_matching(provider, Some(subject), None, reason)
            .await
    }

    /// Ends the sessions [`crate::session::store::revocation_matches`] picks and records one
    /// audit event for them (even when none matched: the request itself is the fact).
    pub(super) async fn revoke_matching(
        &self,
        provider: &str,
        sub: Option<&str>,
        sid: Option<&str>,
        reason: &str,
    ) -> Result<usize, AuthError> {
        let n = self.store.revoke(provider, sub, sid).await?;
        self.audit.record(AuditEvent::SessionEnded {
            idp: provider.to_string(),
            user: None,
            sub: sub.map(str::to_string),
            sid: sid.map(str::to_string),
            reason: reason.to_string(),
            sessions: u64::try_from(n).unwrap_or(u64::MAX),
        });
        self.update_gauge().await;
        Ok(n)
    }
}

/// Deprovisioning ends sessions through single sign-on: every session of the identity on every
/// replica ([`Sso::revoke_user`], reason `deprovisioned`). A store error is logged and counts
/// as none ended; the directory user is already inactive, so no refresh or new sign-in admits
/// them (the directory is checked at both).
#[async_trait::async_trait]
impl crate::directory::SessionRevoker for Sso {
    async fn revoke_user(&self, provider: &str, subject: &str) -> usize {
        match Sso::revoke_user(self, provider, subject, "deprovisioned").await {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(provider, error = %e, "deprovisioning could not end the sessions");
                0
            }
        }
    }
}
