//! A signed-in session from cookie to record: lookup with idle and absolute timeouts,
//! single-flight refresh, elevation by a second factor, and ending it.

use super::*;

/// See [`Sso::refresh_once`].
pub(super) type RefreshGate = Arc<tokio::sync::Mutex<Option<String>>>;

pub(super) enum Refreshed {
    Same,
    NewId(String),
    Ended,
}

pub(super) fn apply(rec: &mut SessionRecord, res: LoginResult) {
    // A refresh replaces the identity, but second factors done at the gateway stay recorded
    // (their own max_age still applies).
    let kept: Vec<_> = rec
        .identity
        .auth_methods
        .iter()
        .filter(|e| e.at.timestamp() >= rec.created && GATEWAY_FACTORS.contains(&e.method.as_str()))
        .cloned()
        .collect();
    let previous = std::mem::take(&mut rec.identity.auth_methods);
    rec.identity = res.identity;
    rec.identity.provider = Some(rec.idp.clone());
    // A provider factor keeps the time it was first proven unless the new ID token carries a
    // newer `auth_time`: a refresh is not a new authentication (M8). (At login `previous` is
    // the same list, so this changes nothing.)
    for ev in rec.identity.auth_methods.iter_mut() {
        if let Some(old) = previous.iter().find(|o| o.method == ev.method) {
            ev.at = ev.at.max(old.at);
        }
    }
    rec.identity.auth_methods.extend(kept);
    rec.sub = res.sub;
    if res.idp_sid.is_some() {
        rec.idp_sid = res.idp_sid;
    }
    if res.refresh_token.is_some() {
        rec.refresh_token = res.refresh_token;
    }
    rec.refresh_at = res.refresh_at.filter(|_| rec.refresh_token.is_some());
    if res.id_token.is_some() {
        rec.id_token = res.id_token;
    }
}

impl Sso {
    pub(super) fn ttl(&self, rec: &SessionRecord) -> u64 {
        let abs_left = rec.created + secs(self.session.absolute_timeout) - self.now();
        let idle = secs(self.session.idle_timeout) + TOUCH_INTERVAL;
        u64::try_from(abs_left.min(idle).max(1)).unwrap_or(1)
    }

    pub(super) fn session_cookie(&self, sid: &str, tls: bool) -> Result<String, AuthError> {
        let v = self
            .codec
            .seal(
                cookie_name(tls, false),
                &SessionCookie {
                    sid: sid.to_string(),
                },
            )
            .ok_or(AuthError::Internal("seal"))?;
        Ok(session::set_cookie(
            cookie_name(tls, false),
            &v,
            tls,
            Some(secs(self.session.absolute_timeout)),
        ))
    }

    /// Reads the session of a request. `None`: not signed in (or the session ended).
    pub async fn identify(
        &self,
        headers: &http::HeaderMap,
        tls: bool,
    ) -> Result<Option<Authenticated>, AuthError> {
        let name = cookie_name(tls, false);
        let Some(cookie) = cookie_values(headers, name)
            .into_iter()
            .find_map(|v| self.codec.open::<SessionCookie>(name, v))
        else {
            return Ok(None);
        };
        let Some(mut rec) = self.store.load(&cookie.sid).await? else {
            return Ok(None);
        };
        // The record's provider is authoritative (sessions older than `Identity::provider`
        // decode without it; M1).
        rec.identity.provider = Some(rec.idp.clone());
        let t = self.now();
        if t - rec.created > secs(self.session.absolute_timeout) {
            self.end(&cookie.sid, &rec, "absolute_timeout").await?;
            return Ok(None);
        }
        if t - rec.last_seen > secs(self.session.idle_timeout) {
            self.end(&cookie.sid, &rec, "idle_timeout").await?;
            return Ok(None);
        }
        let configured = self.providers.load().iter().any(|p| p.cfg.id == rec.idp)
            || self.local.iter().any(|l| l.id == rec.idp)
            || self.saml.iter().any(|s| s.cfg.id == rec.idp);
        if !configured {
            // The provider was removed from the config: its sessions end.
            self.end(&cookie.sid, &rec, "provider_removed").await?;
            return Ok(None);
        }
        let mut sid = cookie.sid;
        let mut set_cookie = None;
        if rec.refresh_token.is_some() && rec.refresh_at.is_some_and(|at| at <= t) {
            let Some((new_sid, fresh)) = self.refresh_once(&sid, tls).await? else {
                return Ok(None);
            };
            if new_sid != sid {
                sid = new_sid;
                set_cookie = Some(self.session_cookie(&sid, tls)?);
            }
            rec = fresh;
        }
        if t - rec.last_seen >= TOUCH_INTERVAL {
            rec.last_seen = t;
            if !self.store.update(&sid, &rec, self.ttl(&rec)).await? {
                // Logged out or revoked since we loaded it (L4).
                return Ok(None);
            }
        }
        Ok(Some(Authenticated {
            sid,
            record: rec,
            set_cookie,
        }))
    }

    /// Refreshes session `sid` once however many requests ask at the same time (L5): the
    /// first does it, the others wait for it and take its result (the provider may rotate the
    /// refresh token, and a second use of the old one can revoke the whole grant). Returns the
    /// session's (possibly new) id and record, or `None` when it ended. Per process: replicas
    /// sharing Redis may each refresh once (README).
    pub(super) async fn refresh_once(
        &self,
        sid: &str,
        tls: bool,
    ) -> Result<Option<(String, SessionRecord)>, AuthError> {
        let gate = {
            let mut gates = self
                .refresh_gates
                .lock()
                .map_err(|_| AuthError::Internal("lock"))?;
            gates.entry(sid.to_string()).or_default().clone()
        };
        let result = async {
            let mut moved = gate.lock().await;
            // Another request refreshed while we waited: under a new id, or in place.
            let sid = moved.clone().unwrap_or_else(|| sid.to_string());
            let Some(mut rec) = self.store.load(&sid).await? else {
                return Ok(None);
            };
            let due = rec.refresh_at.is_some_and(|at| at <= self.now());
            let Some(rt) = rec.refresh_token.clone().filter(|_| due) else {
                return Ok(Some((sid, rec)));
            };
            Ok(match self.refresh(&sid, &mut rec, &rt, tls).await? {
                Refreshed::Same => Some((sid, rec)),
                Refreshed::NewId(new_sid) => {
                    *moved = Some(new_sid.clone());
                    Some((new_sid, rec))
                }
                Refreshed::Ended => None,
            })
        }
        .await;
        if let Ok(mut gates) = self.refresh_gates.lock() {
            // The map's copy and ours: nobody else waits, so the gate can go.
            if Arc::strong_count(&gate) <= 2 {
                gates.remove(sid);
            }
        }
        result
    }

    pub(super) async fn end(
        &self,
        sid: &str,
        rec: &SessionRecord,
        why: &'static str,
    ) -> Result<(), AuthError> {
        self.store.remove(sid).await?;
        metrics::auth_event(&rec.idp, "session_end", why);
        // Timeouts are routine (`session.ended`); an ending for any other reason is a security
        // event (`session.revoked`, L13). Both go into the chain.
        self.audit.record(AuditEvent::SessionEnded {
            idp: rec.idp.clone(),
            user: Some(rec.identity.user.clone()),
            sub: Some(rec.sub.clone()),
            sid: None,
            reason: why.into(),
            sessions: 1,
        });
        self.update_gauge().await;
        Ok(())
    }

    pub(super) async fn refresh(
        &self,
        sid: &str,
        rec: &mut SessionRecord,
        refresh_token: &str,
        tls: bool,
    ) -> Result<Refreshed, AuthError> {
        let Some(p) = self.provider(&rec.idp) else {
            self.end(sid, rec, "provider_removed").await?;
            return Ok(Refreshed::Ended);
        };
        // A refresh request carries no redirect URI; the client type just needs one set.
        let redirect = p.cfg.redirect_uri.clone().unwrap_or_default();
        let redirect = if redirect.is_empty() {
            format!(
                "{}://localhost{}",
                if tls { "https" } else { "http" },
                callback_path(&p.cfg.id)
            )
        } else {
            redirect
        };
        match p.refresh(refresh_token, &rec.sub, &redirect).await {
            Ok(Some(mut res)) => {
                // The directory is asked again: a user deactivated since sign-in loses the
                // session at its next refresh even if revocation missed it.
                match self.admit(&p.cfg.id, p.cfg.jit, &mut res).await {
                    Ok(()) => {}
                    Err(AuthError::Refused(r)) => {
                        tracing::warn!(idp = %rec.idp, user = %rec.identity.user, reason = r.reason(), "refresh refused by the directory: session ended");
                        self.end(sid, rec, "deprovisioned").await?;
                        return Ok(Refreshed::Ended);
                    }
                    Err(e) => return Err(e),
                }
                let changed = res.identity.groups != rec.identity.groups
                    || res.identity.roles != rec.identity.roles;
                apply(rec, res);
                metrics::auth_event(&rec.idp, "refresh", "success");
                if changed {
                    // Privileges changed: a new session id, the old one is gone. Only the
                    // caller that removed the old id may create the new one (L4).
                    let new_sid = self.new_id()?;
                    if !self.store.remove(sid).await? {
                        return Ok(Refreshed::Ended);
                    }
                    self.store.save(&new_sid, rec, self.ttl(rec)).await?;
                    return Ok(Refreshed::NewId(new_sid));
                }
                self.written_back(sid, rec).await
            }
            Ok(None) => {
                rec.refresh_at = None;
                self.written_back(sid, rec).await
            }
            Err(OidcError::Discovery(e)) => Err(AuthError::ProviderUnavailable(e)),
            Err(e) => {
                metrics::auth_event(&rec.idp, "refresh", "failure");
                tracing::warn!(idp = %rec.idp, user = %rec.identity.user, error = %e, "refresh refused: session ended");
                self.end(sid, rec, "refresh_failed").await?;
                Ok(Refreshed::Ended)
            }
        }
    }

    /// Records a second factor done now: appends `{method, at}` to the session's auth methods
    /// under a new session id (a privilege change; the old id stops working) and returns the
    /// `Set-Cookie` for the new id.
    pub async fn elevate(
        &self,
        sid: &str,
        rec: &SessionRecord,
        methods: &[&str],
        tls: bool,
    ) -> Result<String, AuthError> {
        let mut rec = rec.clone();
        let at = self.clock.utc();
        rec.identity.auth_methods.extend(methods.iter().map(|m| {
            portcullis_policy::input::AuthEvent {
                method: (*m).to_string(),
                at,
            }
        }));
        let new_sid = self.new_id()?;
        // Take the old id first: a session logged out meanwhile is not reborn (L4).
        if !self.store.remove(sid).await? {
            return Err(AuthError::SessionEnded);
        }
        self.store.save(&new_sid, &rec, self.ttl(&rec)).await?;
        self.session_cookie(&new_sid, tls)
    }

    /// Writes a refreshed record back under its id, unless the session ended meanwhile.
    pub(super) async fn written_back(
        &self,
        sid: &str,
        rec: &SessionRecord,
    ) -> Result<Refreshed, AuthError> {
        Ok(if self.store.update(sid, rec, self.ttl(rec)).await? {
            Refreshed::Same
        } else {
            Refreshed::Ended
        })
    }
}
