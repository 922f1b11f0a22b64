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
        crate::audit::emit(
            "auth.logout",
            Some(&a.record.identity.user),
            serde_json::json!({"idp": a.record.idp, "sub": a.record.sub, "client_ip": client_ip}),
        );
        let location = match self.provider(&a.record.idp) {
            Some(p) => p
                .end_session_url(a.record.id_token.as_deref(), None)
                .await
                .unwrap_or_else(|| format!("{origin}/")),
            None => format!("{origin}/"),
        };
        Ok(Redirect {
            location,
            cookies: vec![clear],
        })
    }

    /// Handles an OIDC back-channel logout request body; returns how many sessions ended.
    pub async fn backchannel_logout(&self, form: &str) -> Result<usize, AuthError> {
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
            tracing::warn!(target: "audit", idp = %p.cfg.id, error = %e, "back-channel logout refused");
            AuthError::BadRequest("invalid logout_token")
        })?;
        // The `jti` is recorded in the session store (shared by replicas when it is Redis) and
        // only after the revocation succeeded: a store error makes the provider retry, and the
        // retry must revoke, not be refused as a replay (L6). Revoking twice is harmless.
        let once = format!("bcl:{}:{jti}", p.cfg.id);
        if self.store.seen_once(&once).await? {
            metrics::auth_event(&p.cfg.id, "backchannel_logout", "failure");
            tracing::warn!(target: "audit", idp = %p.cfg.id, jti = %jti, "back-channel logout refused: logout_token replayed");
            return Err(AuthError::BadRequest("logout_token replayed"));
        }
        let n = self
            .store
            .revoke(&p.cfg.id, sub.as_deref(), sid.as_deref())
            .await?;
        let skew = secs(p.cfg.clock_skew);
        let ttl = u64::try_from(crate::idp::oidc::LOGOUT_TOKEN_MAX_AGE + skew).unwrap_or(600);
        self.store.record_once(&once, ttl).await?;
        metrics::auth_event(&p.cfg.id, "backchannel_logout", "success");
        tracing::info!(target: "audit", idp = %p.cfg.id, sub = ?sub, sid = ?sid, sessions = n, "back-channel logout: sessions revoked");
        crate::audit::emit(
            "session.revoked",
            sub.as_deref(),
            serde_json::json!({"idp": p.cfg.id, "sub": sub, "sid": sid, "reason": "backchannel_logout", "sessions": n}),
        );
        self.update_gauge().await;
        Ok(n)
    }
}
