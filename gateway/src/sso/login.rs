//! Signing in: the authorization request with its pre-auth cookie, and the callback that
//! checks it and creates the session.

use super::*;

/// The pre-auth cookie: binds `state`, `nonce` and the PKCE verifier to this browser.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct PreAuth {
    pub(super) idp: String,
    pub(super) state: String,
    pub(super) nonce: String,
    pub(super) verifier: String,
    pub(super) return_to: String,
    pub(super) redirect_uri: String,
    pub(super) exp: i64,
}

/// How long a login may take between the redirect to the provider and the callback.
pub(super) const PRE_AUTH_TTL: i64 = 600;

/// The redirect URI path of provider `id` (register `https://<host>` + this at the provider).
pub fn callback_path(id: &str) -> String {
    format!("{CALLBACK_PREFIX}{id}")
}

impl Sso {
    /// Starts a login at `idp`: redirect to the provider with a fresh pre-auth cookie.
    pub async fn start_login(
        &self,
        idp: &OidcProvider,
        return_to: String,
        origin: &str,
        tls: bool,
        client_ip: &str,
    ) -> Result<Redirect, AuthError> {
        let redirect_uri = idp
            .cfg
            .redirect_uri
            .clone()
            .unwrap_or_else(|| format!("{origin}{}", callback_path(&idp.cfg.id)));
        let req = idp.authorize(&redirect_uri).await.map_err(|e| {
            metrics::auth_event(&idp.cfg.id, "login_start", "failure");
            self.audit.record(AuditEvent::LoginUnavailable {
                idp: idp.cfg.id.clone(),
                error: e.to_string(),
                client_ip: client_ip.to_string(),
            });
            AuthError::ProviderUnavailable(e.to_string())
        })?;
        let pre = PreAuth {
            idp: idp.cfg.id.clone(),
            state: req.state,
            nonce: req.nonce,
            verifier: req.verifier,
            return_to,
            redirect_uri,
            exp: self.now() + PRE_AUTH_TTL,
        };
        let name = cookie_name(tls, true);
        let sealed = self
            .codec
            .seal(name, &pre)
            .ok_or(AuthError::Internal("seal"))?;
        metrics::auth_event(&idp.cfg.id, "login_start", "success");
        Ok(Redirect {
            location: req.url,
            cookies: vec![session::set_cookie(name, &sealed, tls, Some(PRE_AUTH_TTL))],
        })
    }

    /// Finishes a login at `path`: `/.portcullis/callback/<provider id>` (or the legacy
    /// `/.portcullis/callback` when a provider's `redirect_uri` names it).
    pub async fn callback(
        &self,
        path: &str,
        query: &str,
        headers: &http::HeaderMap,
        tls: bool,
        client_ip: &str,
    ) -> Result<Redirect, (AuthError, Option<String>)> {
        let name = cookie_name(tls, true);
        let clear = Some(session::clear_cookie(name, tls));
        let refuse = |idp: &str, why: String, err: AuthError| {
            self.login_refused(idp, why, client_ip);
            (err, clear.clone())
        };
        let fail = |idp: &str, why: String| refuse(idp, why.clone(), AuthError::Callback(why));
        let params: std::collections::HashMap<String, String> =
            url::form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect();
        let state = params.get("state").map(String::as_str).unwrap_or("");
        // The pre-auth cookie of THIS browser whose state matches: a callback replayed in
        // another browser, or with an altered state, finds none.
        let pres: Vec<PreAuth> = cookie_values(headers, name)
            .into_iter()
            .filter_map(|v| self.codec.open::<PreAuth>(name, v))
            .collect();
        if pres.is_empty() {
            return Err(fail(
                "_unknown_",
                "no login in progress in this browser (missing or invalid pre-auth cookie)".into(),
            ));
        }
        let first_idp = pres.first().map(|p| p.idp.clone()).unwrap_or_default();
        let Some(pre) = pres.into_iter().find(|p| same(&p.state, state)) else {
            return Err(fail(
                &first_idp,
                "state does not match this browser's login".into(),
            ));
        };
        let Some(idp) = self.provider(&pre.idp) else {
            return Err(fail("_unknown_", "provider no longer configured".into()));
        };
        // Each provider has its own redirect URI (L7): the response must come back to the one
        // this login was started with, so one provider's response cannot be passed off at
        // another's callback (mix-up, RFC 9207 section 2's alternative defence).
        let started_at = url::Url::parse(&pre.redirect_uri)
            .map(|u| u.path().to_string())
            .unwrap_or_default();
        if started_at != path {
            return Err(fail(
                &pre.idp,
                format!("callback at {path:?}, but this login was started for {started_at:?}"),
            ));
        }
        if pre.exp < self.now() {
            return Err(fail(
                &pre.idp,
                "login took too long (pre-auth cookie expired)".into(),
            ));
        }
        if let Some(err) = params.get("error") {
            let err: String = err
                .chars()
                .filter(|c| c.is_ascii_graphic())
                .take(64)
                .collect();
            return Err(fail(&pre.idp, format!("provider returned error {err:?}")));
        }
        // Mix-up defence (RFC 9207): when the provider names itself, it must be this one; a
        // provider whose metadata promises `iss` must send it (L7).
        match params.get("iss") {
            Some(iss) if iss != &idp.cfg.issuer => {
                return Err(fail(&pre.idp, format!("authorization response iss {iss:?} is not the provider this login started at")));
            }
            Some(_) => {}
            None => {
                match idp.sends_iss().await {
                    Ok(false) => {}
                    Ok(true) => return Err(fail(
                        &pre.idp,
                        "authorization response has no iss, which the provider's metadata promises"
                            .into(),
                    )),
                    Err(e) => return Err(fail(&pre.idp, e.to_string())),
                }
            }
        }
        let Some(code) = params.get("code") else {
            return Err(fail(&pre.idp, "no authorization code".into()));
        };
        let mut res = idp
            .finish(code, &pre.verifier, &pre.nonce, &pre.redirect_uri)
            .await
            .map_err(|e| fail(&pre.idp, e.to_string()))?;
        match self.admit(&idp.cfg.id, idp.cfg.jit, &mut res).await {
            Ok(()) => {}
            Err(AuthError::Refused(r)) => {
                return Err(refuse(&pre.idp, r.reason().into(), AuthError::Refused(r)))
            }
            Err(e) => return Err(refuse(&pre.idp, e.to_string(), e)),
        }
        let cookie = self
            .establish(&pre.idp, res, tls, client_ip)
            .await
            .map_err(|e| (e, clear.clone()))?;
        Ok(Redirect {
            location: pre.return_to,
            cookies: vec![cookie, session::clear_cookie(name, tls)],
        })
    }

    /// Counts and audits a refused sign-in at `idp` (`auth.login_failed` with `why`). Anyone
    /// can send callbacks in bulk: repeats per provider and address are counted.
    pub(super) fn login_refused(&self, idp: &str, why: String, client_ip: &str) {
        metrics::auth_event(idp, "login", "failure");
        self.audit.record(AuditEvent::LoginFailed {
            idp: idp.to_string(),
            reason: why,
            client_ip: client_ip.to_string(),
        });
    }

    /// Opens a session for a verified sign-in at provider `idp` (OIDC callback, local
    /// password): stores the record under a fresh id, counts and audits the login, and returns
    /// the session cookie to set.
    pub(super) async fn establish(
        &self,
        idp: &str,
        res: LoginResult,
        tls: bool,
        client_ip: &str,
    ) -> Result<String, AuthError> {
        let sid = self.new_id()?;
        let csrf = self.new_id()?;
        let t = self.now();
        let mut rec = SessionRecord {
            identity: res.identity.clone(),
            idp: idp.to_string(),
            sub: res.sub.clone(),
            idp_sid: None,
            created: t,
            last_seen: t,
            refresh_token: None,
            refresh_at: None,
            id_token: None,
            csrf,
        };
        apply(&mut rec, res);
        self.store
            .save(&sid, &rec, self.ttl(&rec))
            .await
            .map_err(AuthError::Store)?;
        let cookie = self.session_cookie(&sid, tls)?;
        metrics::auth_event(idp, "login", "success");
        self.audit.record(AuditEvent::Login {
            idp: idp.to_string(),
            user: rec.identity.user.clone(),
            sub: rec.sub.clone(),
            client_ip: client_ip.to_string(),
        });
        self.update_gauge().await;
        Ok(cookie)
    }
}
