//! Single sign-on state shared by every request: the cookie codec, the session store, the
//! identity providers and the assertion signer; and the session lifecycle (login, lookup with
//! idle/absolute timeouts and refresh, logout, back-channel revocation). Built once at start;
//! the providers are swapped on a config reload (`session` and `assertion` need a restart).
//!
//! By lifecycle: `providers` (built, swapped, chosen per route), `login` (authorization request
//! and callback), `sessions` (lookup, timeouts, refresh, elevation, ending), `logout` (logout
//! form and back-channel logout). This file holds the shared state and types.

use crate::assertion::Assertions;
use crate::audit::AuditEvent;
use crate::clock::Clock;
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
    /// The provider vouched for the user, but the directory refuses them.
    #[error("refused by the directory: {}", .0.reason())]
    Refused(crate::directory::signin::Refusal),
    /// The directory could not be read: fail closed.
    #[error("directory unavailable: {0}")]
    Directory(String),
}

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
    /// Where logins, logouts and session endings are recorded.
    audit: crate::audit::Audit,
    /// Every timeout and expiry here reads this clock (tests move it instead of sleeping).
    pub clock: Clock,
    /// With `directory:`: sign-ins must belong to an active directory user ([`Self::admit`]).
    directory: Option<crate::directory::DirectoryStore>,
    /// Password providers (`type: local` and `type: ldap`), fixed at start.
    local: Vec<Arc<crate::password_signin::PasswordProvider>>,
    /// SAML providers (`type: saml`), fixed at start (a reload does not change them).
    saml: Vec<Arc<crate::saml::Sp>>,
    /// With `session.store: redis://…`: the process's one Redis connection, shared with the
    /// attempt limiters ([`Self::redis`]).
    redis: Option<Arc<session::redis_store::RedisConn>>,
    /// Home-realm discovery (`login.domains`); swapped on a config reload.
    realms: arc_swap::ArcSwap<std::collections::BTreeMap<String, String>>,
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
    /// Builds the state from the validated config; the store, providers and assertion signer
    /// share `clock`, so one moved clock expires everything consistently.
    pub fn new(cfg: &Config, audit: crate::audit::Audit, clock: Clock) -> Result<Self, String> {
        let codec = CookieCodec::new(&cfg.session.keys).ok_or("invalid session keys")?;
        let mut redis = None;
        let store: Arc<dyn SessionStore> = match &cfg.session.store {
            StoreKind::Memory => Arc::new(MemoryStore::with_clock(clock.clone())),
            StoreKind::Redis(url) => {
                let conn = session::redis_store::RedisConn::new(url).map_err(|e| e.to_string())?;
                let conn = Arc::new(conn);
                redis = Some(conn.clone());
                Arc::new(session::redis_store::RedisStore::over(conn))
            }
        };
        let store: Arc<dyn SessionStore> =
            Arc::new(session::instrumented::Instrumented::new(store));
        let http = HttpClient::new().ok_or("cannot build the HTTP client for providers")?;
        let providers = build_providers(&cfg.identity_providers, &http, &clock);
        let assertions = Assertions::with_clock(&cfg.assertion, clock.clone())
            .ok_or("cannot load or generate assertion keys")?;
        if cfg.session.generated_key
            && !(cfg.identity_providers.is_empty() && cfg.saml_providers.is_empty())
        {
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
            audit,
            clock,
            directory: None,
            local: Vec::new(),
            saml: cfg
                .saml_providers
                .iter()
                .map(|c| Arc::new(crate::saml::Sp::new(c.clone())))
                .collect(),
            redis,
            realms: arc_swap::ArcSwap::from_pointee(cfg.login_domains.clone()),
        })
    }

    /// Makes every sign-in (and refresh) go through the directory.
    pub fn with_directory(mut self, directory: crate::directory::DirectoryStore) -> Self {
        self.directory = Some(directory);
        self
    }

    /// With a directory: admits `res` (a verified login or refresh at `idp`) or refuses it, and
    /// merges the directory's groups and roles into its identity
    /// ([`crate::directory::signin`]). Without one, admits everyone the provider vouches for.
    async fn admit(
        &self,
        provider: &str,
        jit: bool,
        res: &mut LoginResult,
    ) -> Result<(), AuthError> {
        let Some(dir) = &self.directory else {
            return Ok(());
        };
        let verdict = crate::directory::signin::admit(
            dir,
            &self.audit,
            provider,
            jit,
            &res.sub,
            &mut res.identity,
        )
        .await
        .map_err(|e| AuthError::Directory(e.to_string()))?;
        verdict.map_err(AuthError::Refused)
    }

    /// The provider id `login.domains` maps `email`'s domain to ([`crate::realm`]).
    pub fn realm_of(&self, email: &str) -> Option<String> {
        crate::realm::provider_for(&self.realms.load(), email).map(str::to_string)
    }

    /// Whether `login.domains` maps any domain (the chooser then asks for an address).
    pub fn has_realms(&self) -> bool {
        !self.realms.load().is_empty()
    }

    /// Replaces `login.domains` after a config reload.
    pub fn set_realms(&self, domains: &std::collections::BTreeMap<String, String>) {
        self.realms.store(Arc::new(domains.clone()));
    }

    /// Now in Unix seconds, on this state's clock.
    fn now(&self) -> i64 {
        self.clock.unix()
    }

    /// The Redis connection of the session store, for everything else the replicas share
    /// through it (MFA and password attempt counters): one client per process.
    pub fn redis(&self) -> Option<Arc<session::redis_store::RedisConn>> {
        self.redis.clone()
    }

    /// Whether any provider is configured.
    pub fn enabled(&self) -> bool {
        !self.providers.load().is_empty() || !self.local.is_empty() || !self.saml.is_empty()
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
}

/// Factors the gateway itself verifies and records in the session ([`Sso::elevate`]).
pub const GATEWAY_FACTORS: &[&str] =
    &["totp", "webauthn", "email", "sms", "recovery", "remembered"];

/// Paths under this prefix are provider callbacks.
pub const CALLBACK_PREFIX: &str = "/.portcullis/callback/";

fn secs(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4)
}

mod local;
mod login;
mod logout;
mod password;
mod providers;
mod saml;
mod sessions;

pub use local::LocalOutcome;
pub use login::callback_path;
pub use password::{PasswordPage, PASSWORD_PATH};
use providers::build_providers;
use sessions::{apply, RefreshGate};

#[cfg(test)]
mod tests;
