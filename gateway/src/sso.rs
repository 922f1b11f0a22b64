//! Single sign-on state shared by every request: the cookie codec, the session store, the
//! identity providers and the assertion signer; and the session lifecycle (login, lookup with
//! idle/absolute timeouts and refresh, logout, back-channel revocation). Built once at start;
//! the providers are swapped on a config reload (`session` and `assertion` need a restart).

use crate::assertion::Assertions;
use crate::config::auth_model::{SessionConfig, StoreKind};
use crate::config::model::{Config, Route};
use crate::idp::http::HttpClient;
use crate::idp::oidc::{OidcError, OidcProvider};
use crate::idp::LoginResult;
use crate::metrics;
use crate::session::{
    self, cookie_name, cookie_values, CookieCodec, MemoryStore, SessionCookie, SessionRecord,
    SessionStore, StoreError,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use thiserror::Error;

/// Why an authentication step failed. Mapped to responses in `errors.rs`.
#[derive(Debug, Error)]
pub enum AuthError {
    /// The session store did not answer: fail closed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The provider could not be reached or its metadata is unacceptable.
    #[error("identity provider unavailable: {0}")]
    ProviderUnavailable(String),
    /// A login callback failed a check (audit-worthy).
    #[error("login failed: {0}")]
    Callback(String),
    /// A request to an auth endpoint was malformed.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// A state-changing request without a valid CSRF token.
    #[error("CSRF check failed")]
    Csrf,
    /// No such provider.
    #[error("unknown identity provider")]
    UnknownProvider,
    /// Random generation or encryption failed.
    #[error("internal error: {0}")]
    Internal(&'static str),
    /// The session ended (logout, revocation) while this request was using it.
    #[error("session ended")]
    SessionEnded,
}

/// The pre-auth cookie: binds `state`, `nonce` and the PKCE verifier to this browser.
#[derive(Debug, Serialize, Deserialize)]
struct PreAuth {
    idp: String,
    state: String,
    nonce: String,
    verifier: String,
    return_to: String,
    redirect_uri: String,
    exp: i64,
}

/// How long a login may take between the redirect to the provider and the callback.
const PRE_AUTH_TTL: i64 = 600;
/// `last_seen` is written back at most this often (seconds).
const TOUCH_INTERVAL: i64 = 60;

/// A response that sets cookies and redirects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// `Location`.
    pub location: String,
    /// `Set-Cookie` values.
    pub cookies: Vec<String>,
}

/// A signed-in request.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// Session id.
    pub sid: String,
    /// The session.
    pub record: SessionRecord,
    /// A `Set-Cookie` to send back (the session id changed).
    pub set_cookie: Option<String>,
}

/// Everything single sign-on needs.
pub struct Sso {
    /// Session settings.
    pub session: SessionConfig,
    /// Cookie encryption.
    pub codec: CookieCodec,
    /// Session store.
    pub store: Arc<dyn SessionStore>,
    /// Providers in config order; swapped whole on a config reload.
    providers: arc_swap::ArcSwap<Vec<Arc<OidcProvider>>>,
    /// The HTTP client providers share (kept to build them again on reload).
    http: HttpClient,
    /// Upstream assertion signer.
    pub assertions: Assertions,
    /// One refresh at a time per session id; holds the new id when a refresh moved it.
    refresh_gates: std::sync::Mutex<std::collections::HashMap<String, RefreshGate>>,
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn build_providers(
    cfgs: &[crate::config::auth_model::IdpConfig],
    http: &HttpClient,
) -> Vec<Arc<OidcProvider>> {
    cfgs.iter()
        .map(|p| Arc::new(OidcProvider::new(p.clone(), http.clone())))
        .collect()
}

/// Constant-time string equality for secrets (state, CSRF tokens).
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Sso {
    /// Builds the state from the validated config.
    pub fn new(cfg: &Config) -> Result<Self, String> {
        let codec = CookieCodec::new(&cfg.session.keys).ok_or("invalid session keys")?;
        let store: Arc<dyn SessionStore> = match &cfg.session.store {
            StoreKind::Memory => Arc::new(MemoryStore::default()),
            StoreKind::Redis(url) => {
                Arc::new(session::redis_store::RedisStore::new(url).map_err(|e| e.to_string())?)
            }
        };
        let http = HttpClient::new().ok_or("cannot build the HTTP client for providers")?;
        let providers = build_providers(&cfg.identity_providers, &http);
        let assertions =
            Assertions::new(&cfg.assertion).ok_or("cannot load or generate assertion keys")?;
        if cfg.session.generated_key && !cfg.identity_providers.is_empty() {
            tracing::warn!("session.keys is not set: using a random key; sessions end at restart");
        }
        Ok(Self {
            session: cfg.session.clone(),
            codec,
            store,
            providers: arc_swap::ArcSwap::from_pointee(providers),
            http,
            assertions,
            refresh_gates: std::sync::Mutex::default(),
        })
    }

    /// Whether any provider is configured.
    pub fn enabled(&self) -> bool {
        !self.providers.load().is_empty()
    }

    /// The configured providers, in config order.
    pub fn providers(&self) -> Arc<Vec<Arc<OidcProvider>>> {
        self.providers.load_full()
    }

    /// Replaces the providers after a config reload. Providers are built afresh (discovery
    /// and keys are fetched again at next use); sessions of a provider that is gone end at
    /// their next request.
    pub fn set_providers(&self, cfgs: &[crate::config::auth_model::IdpConfig]) {
        self.providers
            .store(Arc::new(build_providers(cfgs, &self.http)));
    }

    /// A provider by id.
    pub fn provider(&self, id: &str) -> Option<Arc<OidcProvider>> {
        self.providers
            .load()
            .iter()
            .find(|p| p.cfg.id == id)
            .cloned()
    }

    /// The provider that signs users in on `route`: the pinned one, or the only one.
    pub fn provider_for(&self, route: Option<&Route>) -> Option<Arc<OidcProvider>> {
        match route.and_then(|r| r.identity_provider.as_deref()) {
            Some(id) => self.provider(id),
            None => {
                let all = self.providers.load();
                match all.as_slice() {
                    [only] => Some(only.clone()),
                    _ => None,
                }
            }
        }
    }

    fn ttl(&self, rec: &SessionRecord) -> u64 {
        let abs_left = rec.created + secs(self.session.absolute_timeout) - now();
        let idle = secs(self.session.idle_timeout) + TOUCH_INTERVAL;
        u64::try_from(abs_left.min(idle).max(1)).unwrap_or(1)
    }

    fn session_cookie(&self, sid: &str, tls: bool) -> Result<String, AuthError> {
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
        let t = now();
        if t - rec.created > secs(self.session.absolute_timeout) {
            self.end(&cookie.sid, &rec, "absolute_timeout").await?;
            return Ok(None);
        }
        if t - rec.last_seen > secs(self.session.idle_timeout) {
            self.end(&cookie.sid, &rec, "idle_timeout").await?;
            return Ok(None);
        }
        if !self.providers.load().iter().any(|p| p.cfg.id == rec.idp) {
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
    async fn refresh_once(
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
            let due = rec.refresh_at.is_some_and(|at| at <= now());
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

    async fn end(
        &self,
        sid: &str,
        rec: &SessionRecord,
        why: &'static str,
    ) -> Result<(), AuthError> {
        self.store.remove(sid).await?;
        metrics::auth_event(&rec.idp, "session_end", why);
        tracing::info!(target: "audit", idp = %rec.idp, user = %rec.identity.user, reason = why, "session ended");
        // Timeouts are routine; an ending for any other reason is a security event (L13).
        if !matches!(why, "idle_timeout" | "absolute_timeout" | "logout") {
            crate::audit::emit(
                "session.revoked",
                Some(&rec.identity.user),
                serde_json::json!({"idp": rec.idp, "sub": rec.sub, "reason": why, "sessions": 1}),
            );
        }
        self.update_gauge().await;
        Ok(())
    }

    async fn refresh(
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
            Ok(Some(res)) => {
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
                tracing::warn!(target: "audit", idp = %rec.idp, user = %rec.identity.user, error = %e, "refresh refused: session ended");
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
        let at = chrono::Utc::now();
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
    async fn written_back(&self, sid: &str, rec: &SessionRecord) -> Result<Refreshed, AuthError> {
        Ok(if self.store.update(sid, rec, self.ttl(rec)).await? {
            Refreshed::Same
        } else {
            Refreshed::Ended
        })
    }

    /// A fresh random token (CSRF tokens, ids).
    pub fn token(&self) -> Result<String, AuthError> {
        self.new_id()
    }

    fn new_id(&self) -> Result<String, AuthError> {
        self.codec
            .random_token(16)
            .ok_or(AuthError::Internal("random"))
    }

    /// Keeps `portcullis_sessions_active` current (best effort).
    pub async fn update_gauge(&self) {
        if let Ok(n) = self.store.count().await {
            metrics::get()
                .sessions_active
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Checks a return URL: a same-origin path or an allow-listed origin; else `/`.
    pub fn return_to(&self, requested: Option<&str>, origin: &str) -> String {
        let Some(r) = requested.filter(|r| !r.is_empty()) else {
            return format!("{origin}/");
        };
        if r.starts_with('/')
            && !r.starts_with("//")
            && !r.starts_with("/\\")
            && !r.contains(['\r', '\n'])
        {
            return format!("{origin}{r}");
        }
        match url::Url::parse(r) {
            Ok(u) => {
                let o = u.origin().ascii_serialization();
                if o == origin || self.session.return_to_allow.contains(&o) {
                    u.to_string()
                } else {
                    format!("{origin}/")
                }
            }
            Err(_) => format!("{origin}/"),
        }
    }

    /// Starts a login at `idp`: redirect to the provider with a fresh pre-auth cookie.
    pub async fn start_login(
        &self,
        idp: &OidcProvider,
        return_to: String,
        origin: &str,
        tls: bool,
    ) -> Result<Redirect, AuthError> {
        let redirect_uri = idp
            .cfg
            .redirect_uri
            .clone()
            .unwrap_or_else(|| format!("{origin}{}", callback_path(&idp.cfg.id)));
        let req = idp.authorize(&redirect_uri).await.map_err(|e| {
            metrics::auth_event(&idp.cfg.id, "login_start", "failure");
            tracing::warn!(target: "audit", idp = %idp.cfg.id, error = %e, "login could not start: provider unavailable or its metadata refused");
            AuthError::ProviderUnavailable(e.to_string())
        })?;
        let pre = PreAuth {
            idp: idp.cfg.id.clone(),
            state: req.state,
            nonce: req.nonce,
            verifier: req.verifier,
            return_to,
            redirect_uri,
            exp: now() + PRE_AUTH_TTL,
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
        let fail = |idp: &str, why: String| {
            metrics::auth_event(idp, "login", "failure");
            // Anyone can send callbacks in bulk: repeats per provider and address are counted.
            crate::audit::emit_repeatable(
                "auth.login_failed",
                idp,
                client_ip,
                None,
                serde_json::json!({"idp": idp, "reason": why, "client_ip": client_ip}),
            );
            (AuthError::Callback(why), clear.clone())
        };
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
        if pre.exp < now() {
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
        let res = idp
            .finish(code, &pre.verifier, &pre.nonce, &pre.redirect_uri)
            .await
            .map_err(|e| fail(&pre.idp, e.to_string()))?;
        let sid = self.new_id().map_err(|e| (e, clear.clone()))?;
        let csrf = self.new_id().map_err(|e| (e, clear.clone()))?;
        let t = now();
        let mut rec = SessionRecord {
            identity: res.identity.clone(),
            idp: pre.idp.clone(),
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
            .map_err(|e| (AuthError::Store(e), clear.clone()))?;
        let cookie = self
            .session_cookie(&sid, tls)
            .map_err(|e| (e, clear.clone()))?;
        metrics::auth_event(&pre.idp, "login", "success");
        tracing::info!(target: "audit", idp = %pre.idp, user = %rec.identity.user, sub = %rec.sub, "login succeeded; new session");
        crate::audit::emit(
            "auth.login",
            Some(&rec.identity.user),
            serde_json::json!({"idp": pre.idp, "sub": rec.sub, "client_ip": client_ip}),
        );
        self.update_gauge().await;
        Ok(Redirect {
            location: pre.return_to,
            cookies: vec![cookie, session::clear_cookie(name, tls)],
        })
    }

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

/// See [`Sso::refresh_once`].
type RefreshGate = Arc<tokio::sync::Mutex<Option<String>>>;

enum Refreshed {
    Same,
    NewId(String),
    Ended,
}

/// Factors the gateway itself verifies and records in the session ([`Sso::elevate`]).
pub const GATEWAY_FACTORS: &[&str] =
    &["totp", "webauthn", "email", "sms", "recovery", "remembered"];

fn apply(rec: &mut SessionRecord, res: LoginResult) {
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

/// The redirect URI path of provider `id` (register `https://<host>` + this at the provider).
pub fn callback_path(id: &str) -> String {
    format!("{CALLBACK_PREFIX}{id}")
}

/// Paths under this prefix are provider callbacks.
pub const CALLBACK_PREFIX: &str = "/.portcullis/callback/";

fn secs(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4)
}

#[cfg(test)]
mod tests;
