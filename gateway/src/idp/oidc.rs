//! OpenID Connect relying party on the `openidconnect` crate: discovery with exact issuer
//! equality, authorization code flow with PKCE S256, ID token verification with a per-provider
//! algorithm allow-list (never `none`, never taken from the token; `jku`/`x5u`/`jwk` headers are
//! not used — keys come only from the discovered `jwks_uri`), one rate-limited JWKS refetch on
//! an unknown `kid`, UserInfo merged only when its `sub` matches, and refresh that refuses a
//! changed `iss` or `sub`.

use super::claims;
use super::http::HttpClient;
use super::LoginResult;
use crate::clock::Clock;
use crate::config::auth_model::{IdpConfig, TokenAuth};
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet,
    CoreJwsSigningAlgorithm,
};
use openidconnect::{
    AccessToken, AuthType, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret,
    CsrfToken, EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, Scope,
    SignatureVerificationError, TokenResponse,
};
use serde_json::{Map, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::sync::RwLock;

/// Why a login, refresh or logout token was refused. Every variant is audit-worthy: the
/// message names the check that failed, never a secret.
#[derive(Debug, Error)]
pub enum OidcError {
    /// Discovery failed or the metadata is unacceptable (e.g. issuer mismatch).
    #[error("discovery failed: {0}")]
    Discovery(String),
    /// The token endpoint refused or failed.
    #[error("token request failed: {0}")]
    Token(String),
    /// No ID token in the token response.
    #[error("token response has no id_token")]
    NoIdToken,
    /// The ID token failed a check (signature, alg, iss, aud, azp, exp, iat, nonce...).
    #[error("id_token rejected: {0}")]
    IdToken(String),
    /// A refresh returned a token for another issuer or subject.
    #[error("refreshed token changed {0}")]
    SubjectChanged(&'static str),
    /// UserInfo failed or its `sub` differs from the ID token's.
    #[error("userinfo rejected: {0}")]
    UserInfo(String),
    /// The groups overage could not be resolved through Microsoft Graph.
    #[error("groups overage not resolved: {0}")]
    Groups(String),
    /// A back-channel logout token failed a check.
    #[error("logout_token rejected: {0}")]
    LogoutToken(String),
}

/// The client type `from_provider_metadata` yields: auth URL set, token and UserInfo URLs as
/// the metadata says.
type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Discovery metadata beyond the crate's: RFC 9207's flag (finding L7).
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct IssParameter {
    /// The provider sends `iss` in every authorization response.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: Option<bool>,
}

impl openidconnect::AdditionalProviderMetadata for IssParameter {}

/// `ProviderMetadataWithLogout` with [`IssParameter`].
type Metadata = openidconnect::ProviderMetadata<
    openidconnect::LogoutProviderMetadata<IssParameter>,
    openidconnect::core::CoreAuthDisplay,
    openidconnect::core::CoreClientAuthMethod,
    openidconnect::core::CoreClaimName,
    openidconnect::core::CoreClaimType,
    openidconnect::core::CoreGrantType,
    openidconnect::core::CoreJweContentEncryptionAlgorithm,
    openidconnect::core::CoreJweKeyManagementAlgorithm,
    openidconnect::core::CoreJsonWebKey,
    openidconnect::core::CoreResponseMode,
    openidconnect::core::CoreResponseType,
    openidconnect::core::CoreSubjectIdentifierType,
>;

/// What discovery found.
struct Discovered {
    metadata: Metadata,
    at: Instant,
}

/// Minimum time between two JWKS refetches triggered by unknown key ids.
const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// Back-channel logout tokens older than this (seconds) are refused; their `jti`s are
/// remembered this long to refuse replays.
pub const LOGOUT_TOKEN_MAX_AGE: i64 = 600;
/// Metadata is re-discovered after this long.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);

/// One configured OIDC provider.
pub struct OidcProvider {
    /// Its config.
    pub cfg: IdpConfig,
    http: HttpClient,
    disc: RwLock<Option<Arc<Discovered>>>,
    last_refetch: Mutex<Option<Instant>>,
    algs: Vec<CoreJwsSigningAlgorithm>,
    /// Token lifetimes, client assertions and refresh times read this clock.
    clock: Clock,
}

/// The authorization request to send the browser to, and what to remember in the pre-auth
/// cookie.
#[derive(Debug)]
pub struct AuthRequest {
    /// Provider URL.
    pub url: String,
    /// `state`.
    pub state: String,
    /// `nonce`.
    pub nonce: String,
    /// PKCE verifier.
    pub verifier: String,
}

fn parse_algs(names: &[String]) -> Vec<CoreJwsSigningAlgorithm> {
    names
        .iter()
        .filter_map(|a| serde_json::from_value(Value::String(a.clone())).ok())
        // Security-relevant: unsigned tokens are never acceptable, whatever the config says.
        .filter(|a| *a != CoreJwsSigningAlgorithm::None)
        .collect()
}

/// The payload of a compact JWS, decoded without verification. Call only on a token whose
/// signature was verified (or to read hints such as `iss` before choosing keys).
pub fn jwt_payload(token: &str) -> Option<Map<String, Value>> {
    use base64::Engine;
    let mut parts = token.split('.');
    let (_h, p, _s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(p.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&raw).ok()
}

impl OidcProvider {
    /// A provider on the real clock; nothing is fetched until first use.
    pub fn new(cfg: IdpConfig, http: HttpClient) -> Self {
        Self::with_clock(cfg, http, Clock::system())
    }

    /// A provider that judges token times by `clock` (the gateway's, so a test that moves it
    /// moves token expiry with sessions).
    pub fn with_clock(cfg: IdpConfig, http: HttpClient, clock: Clock) -> Self {
        let algs = parse_algs(&cfg.algorithms);
        // The error series exist from the start, at zero, so alerts and dashboards see them.
        for what in ["discovery", "jwks"] {
            crate::metrics::get()
                .idp_refresh_errors
                .with_label_values(&[&cfg.id, what]);
        }
        Self {
            cfg,
            http,
            disc: RwLock::new(None),
            last_refetch: Mutex::new(None),
            algs,
            clock,
        }
    }

    /// Whether the provider's metadata is (or can now be) discovered: sign-in and refresh
    /// depend on it, so readiness does too. Uses the cached metadata while it is fresh.
    pub async fn ready(&self) -> Result<(), OidcError> {
        self.discovered().await.map(|_| ())
    }

    async fn discovered(&self) -> Result<Arc<Discovered>, OidcError> {
        if let Some(d) = self.disc.read().await.as_ref() {
            if d.at.elapsed() < DISCOVERY_TTL {
                return Ok(d.clone());
            }
        }
        let mut slot = self.disc.write().await;
        if let Some(d) = slot.as_ref() {
            if d.at.elapsed() < DISCOVERY_TTL {
                return Ok(d.clone());
            }
        }
        let issuer = IssuerUrl::new(self.cfg.issuer.clone())
            .map_err(|e| OidcError::Discovery(e.to_string()))?;
        let metadata = Metadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| {
                self.refresh_failed("discovery");
                OidcError::Discovery(error_chain(&e))
            })?;
        // Security-relevant: the crate compares too; this makes the exact-string rule explicit.
        if metadata.issuer().as_str() != self.cfg.issuer {
            return Err(OidcError::Discovery(format!(
                "metadata issuer {:?} is not the configured {:?}",
                metadata.issuer().as_str(),
                self.cfg.issuer
            )));
        }
        let d = Arc::new(Discovered {
            metadata,
            at: Instant::now(),
        });
        *slot = Some(d.clone());
        self.keys_fetched();
        tracing::info!(idp = %self.cfg.id, issuer = %self.cfg.issuer, "provider metadata discovered");
        Ok(d)
    }

    /// Refetches the JWKS at most once per interval; returns whether it did.
    async fn refetch_jwks(&self) -> bool {
        {
            let Ok(mut last) = self.last_refetch.lock() else {
                return false;
            };
            if last.is_some_and(|t| t.elapsed() < JWKS_REFETCH_INTERVAL) {
                return false;
            }
            *last = Some(Instant::now());
        }
        let Ok(d) = self.discovered().await else {
            return false;
        };
        match CoreJsonWebKeySet::fetch_async(d.metadata.jwks_uri(), &self.http).await {
            Ok(jwks) => {
                let metadata = d.metadata.clone().set_jwks(jwks);
                *self.disc.write().await = Some(Arc::new(Discovered { metadata, at: d.at }));
                self.keys_fetched();
                tracing::info!(idp = %self.cfg.id, "unknown signing key id: JWKS refetched");
                true
            }
            Err(e) => {
                self.refresh_failed("jwks");
                tracing::warn!(idp = %self.cfg.id, error = %error_chain(&e), "JWKS refetch failed");
                false
            }
        }
    }

    /// Publishes when discovery and keys were fetched (`portcullis_idp_keys_fetched_*`).
    fn keys_fetched(&self) {
        crate::metrics::get()
            .idp_keys_fetched
            .with_label_values(&[&self.cfg.id])
            .set(self.clock.unix());
    }

    /// Counts a failed fetch of `what` (`discovery`, `jwks`).
    fn refresh_failed(&self, what: &str) {
        crate::metrics::get()
            .idp_refresh_errors
            .with_label_values(&[&self.cfg.id, what])
            .inc();
    }

    fn client(&self, d: &Discovered, redirect_uri: &str) -> Result<Client, OidcError> {
        let redirect = RedirectUrl::new(redirect_uri.to_string())
            .map_err(|e| OidcError::Token(e.to_string()))?;
        let (auth, secret) = match self.cfg.token_auth {
            TokenAuth::ClientSecretBasic => (AuthType::BasicAuth, self.cfg.client_secret.clone()),
            TokenAuth::ClientSecretPost => (AuthType::RequestBody, self.cfg.client_secret.clone()),
            // No secret: the crate then sends only `client_id` in the body, and
            // [`Self::client_assertion`] adds the signed assertion.
            TokenAuth::PrivateKeyJwt => (AuthType::RequestBody, None),
        };
        Ok(CoreClient::from_provider_metadata(
            d.metadata.clone(),
            ClientId::new(self.cfg.client_id.clone()),
            secret.map(ClientSecret::new),
        )
        .set_redirect_uri(redirect)
        .set_auth_type(auth))
    }

    /// The `client_assertion` form parameters for `private_key_jwt` (none for secret-based
    /// client authentication). The audience is the token endpoint, as RFC 7523 asks.
    fn client_assertion(&self, d: &Discovered) -> Result<Vec<(String, String)>, OidcError> {
        let Some(key) = &self.cfg.client_key else {
            return Ok(Vec::new());
        };
        let aud = d
            .metadata
            .token_endpoint()
            .ok_or_else(|| OidcError::Token("provider has no token endpoint".into()))?;
        let jwt = key
            .client_assertion(&self.cfg.client_id, aud.as_str(), self.clock.unix())
            .ok_or_else(|| OidcError::Token("signing the client assertion failed".into()))?;
        Ok(vec![
            (
                "client_assertion_type".into(),
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
            ),
            ("client_assertion".into(), jwt),
        ])
    }

    /// Whether the provider's metadata promises `iss` in authorization responses (RFC 9207):
    /// then a response without it is refused (L7).
    pub async fn sends_iss(&self) -> Result<bool, OidcError> {
        let d = self.discovered().await?;
        Ok(d.metadata
            .additional_metadata()
            .additional_metadata
            .authorization_response_iss_parameter_supported
            == Some(true))
    }

    /// Starts a login: discovery, fresh state, nonce and PKCE S256 verifier.
    pub async fn authorize(&self, redirect_uri: &str) -> Result<AuthRequest, OidcError> {
        let d = self.discovered().await?;
        let client = self.client(&d, redirect_uri)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut req = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for s in self.cfg.scopes.iter().filter(|s| *s != "openid") {
            req = req.add_scope(Scope::new(s.clone()));
        }
        for (k, v) in &self.cfg.auth_params {
            req = req.add_extra_param(k.clone(), v.clone());
        }
        let (url, state, nonce) = req.url();
        Ok(AuthRequest {
            url: url.to_string(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            verifier: verifier.secret().clone(),
        })
    }

    fn verifier<'a>(&self, jwks: CoreJsonWebKeySet) -> Result<CoreIdTokenVerifier<'a>, OidcError> {
        let issuer = IssuerUrl::new(self.cfg.issuer.clone())
            .map_err(|e| OidcError::Discovery(e.to_string()))?;
        let client_id = ClientId::new(self.cfg.client_id.clone());
        let skew = chrono::Duration::from_std(self.cfg.clock_skew).unwrap_or_default();
        let hmac = self.algs.iter().any(|a| {
            matches!(
                a,
                CoreJwsSigningAlgorithm::HmacSha256
                    | CoreJwsSigningAlgorithm::HmacSha384
                    | CoreJwsSigningAlgorithm::HmacSha512
            )
        });
        let v = match (&self.cfg.client_secret, hmac) {
            (Some(secret), true) => CoreIdTokenVerifier::new_confidential_client(
                client_id,
                ClientSecret::new(secret.clone()),
                issuer,
                jwks,
            ),
            _ => CoreIdTokenVerifier::new_public_client(client_id, issuer, jwks),
        };
        let (clock, iat_clock) = (self.clock.clone(), self.clock.clone());
        Ok(v.set_allowed_algs(self.algs.clone())
            .set_time_fn(move || clock.utc() - skew)
            .set_issue_time_verifier_fn(move |iat| {
                if iat > iat_clock.utc() + skew {
                    Err("iat is in the future".to_string())
                } else {
                    Ok(())
                }
            }))
    }

    /// Verifies an ID token (refetching the JWKS once on an unknown key) and returns its claims.
    async fn verify_id_token(
        &self,
        raw: &str,
        nonce: Option<&str>,
    ) -> Result<Map<String, Value>, OidcError> {
        let token: CoreIdToken = raw
            .parse()
            .map_err(|e: serde_json::Error| OidcError::IdToken(format!("malformed: {e}")))?;
        let mut retried = false;
        loop {
            let d = self.discovered().await?;
            let verifier = self.verifier(d.metadata.jwks().clone())?;
            let result = match nonce {
                Some(n) => token
                    .claims(&verifier, &Nonce::new(n.to_string()))
                    .map(|_| ()),
                None => token
                    .claims(&verifier, |_: Option<&Nonce>| Ok(()))
                    .map(|_| ()),
            };
            match result {
                Ok(()) => break,
                Err(ClaimsVerificationError::SignatureVerification(
                    SignatureVerificationError::NoMatchingKey,
                )) if !retried => {
                    retried = true;
                    if !self.refetch_jwks().await {
                        return Err(OidcError::IdToken("no matching signing key".to_string()));
                    }
                }
                Err(e) => return Err(OidcError::IdToken(e.to_string())),
            }
        }
        let claims =
            jwt_payload(raw).ok_or_else(|| OidcError::IdToken("unreadable payload".to_string()))?;
        let now = self.clock.unix();
        let skew = i64::try_from(self.cfg.clock_skew.as_secs()).unwrap_or(0);
        if let Some(nbf) = claims.get("nbf") {
            match nbf.as_i64() {
                Some(t) if t <= now + skew => {}
                _ => return Err(OidcError::IdToken("nbf is in the future".to_string())),
            }
        }
        match claims.get("sub").and_then(Value::as_str) {
            Some(s) if !s.is_empty() => {}
            _ => return Err(OidcError::IdToken("sub is missing".to_string())),
        }
        // Security-relevant (M8): `auth_time` times the provider's factors for `max_age`; a
        // future one would keep them fresh for as long as the provider says.
        if let Some(t) = claims.get("auth_time") {
            match t.as_i64() {
                Some(t) if t <= now + skew => {}
                Some(_) => return Err(OidcError::IdToken("auth_time is in the future".into())),
                None => return Err(OidcError::IdToken("auth_time is not a number".into())),
            }
        }
        Ok(claims)
    }

    /// Finishes a login: exchanges the code (with the PKCE verifier), verifies the ID token
    /// against the nonce, merges UserInfo if configured, and maps the identity.
    pub async fn finish(
        &self,
        code: &str,
        verifier: &str,
        nonce: &str,
        redirect_uri: &str,
    ) -> Result<LoginResult, OidcError> {
        let d = self.discovered().await?;
        let client = self.client(&d, redirect_uri)?;
        let mut req = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| OidcError::Token(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_string()));
        for (k, v) in self.client_assertion(&d)? {
            req = req.add_extra_param(k, v);
        }
        let tokens = req
            .request_async(&self.http)
            .await
            .map_err(|e| OidcError::Token(error_chain(&e)))?;
        let raw = tokens.id_token().ok_or(OidcError::NoIdToken)?.to_string();
        let mut claims = self.verify_id_token(&raw, Some(nonce)).await?;
        if self.cfg.userinfo {
            self.merge_userinfo(&d, tokens.access_token(), &mut claims)
                .await?;
        }
        self.resolve_overage(tokens.access_token(), &mut claims)
            .await?;
        // Without `auth_time`, the login time is the factor's time only when this request
        // made the provider authenticate the user again (M8).
        let missing = if self.forces_authentication() {
            claims::NoAuthTime::ForcedAt(self.clock.utc())
        } else {
            claims::NoAuthTime::Unknown
        };
        Ok(self.result(
            claims,
            Some(raw),
            tokens.refresh_token().map(|r| r.secret().clone()),
            tokens.expires_in(),
            missing,
        ))
    }

    /// Whether the authorization request makes the provider authenticate the user anew
    /// (`prompt=login` or `max_age` in `auth_params`).
    fn forces_authentication(&self) -> bool {
        self.cfg.auth_params.contains_key("max_age")
            || self
                .cfg
                .auth_params
                .get("prompt")
                .is_some_and(|p| p.split(' ').any(|v| v == "login"))
    }

    fn result(
        &self,
        claims: Map<String, Value>,
        id_token: Option<String>,
        refresh_token: Option<String>,
        expires_in: Option<Duration>,
        missing: claims::NoAuthTime,
    ) -> LoginResult {
        let identity = claims::identity(&self.cfg.id, &self.cfg.claims, &claims, missing);
        if identity.claims.contains_key("groups_overage") {
            tracing::warn!(idp = %self.cfg.id, user = %identity.user, "provider cut the groups claim (overage); recorded as groups_overage");
        }
        LoginResult {
            sub: claims
                .get("sub")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            idp_sid: claims
                .get("sid")
                .and_then(Value::as_str)
                .map(str::to_string),
            identity,
            refresh_at: expires_in.and_then(|e| {
                i64::try_from(e.as_secs())
                    .ok()
                    .map(|s| self.clock.unix() + s)
            }),
            refresh_token,
            id_token,
        }
    }

    async fn merge_userinfo(
        &self,
        d: &Discovered,
        token: &AccessToken,
        claims: &mut Map<String, Value>,
    ) -> Result<(), OidcError> {
        let Some(url) = d.metadata.userinfo_endpoint() else {
            return Ok(());
        };
        let resp = self
            .http
            .0
            .get(url.as_str())
            .bearer_auth(token.secret())
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| OidcError::UserInfo(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(OidcError::UserInfo(format!("status {}", resp.status())));
        }
        let bytes = super::http::read_capped(resp, super::http::MAX_BODY)
            .await
            .map_err(|e| OidcError::UserInfo(e.to_string()))?;
        let info: Map<String, Value> = serde_json::from_slice(&bytes)
            .map_err(|e| OidcError::UserInfo(format!("not a JSON object: {e}")))?;
        if info.get("sub") != claims.get("sub") {
            return Err(OidcError::UserInfo(
                "sub differs from the id_token".to_string(),
            ));
        }
        for (k, v) in info {
            // The ID token's verified claims win; UserInfo only fills gaps, and never says how
            // or when the user authenticated (that is the ID token's alone).
            if !matches!(k.as_str(), "auth_time" | "amr" | "acr") {
                claims.entry(k).or_insert(v);
            }
        }
        Ok(())
    }

    /// With `entra:` configured and the overage form in the claims, the user's groups from
    /// Microsoft Graph replace it ([`crate::idp::entra`]); any failure refuses (fail closed).
    async fn resolve_overage(
        &self,
        token: &AccessToken,
        claims: &mut Map<String, Value>,
    ) -> Result<(), OidcError> {
        let Some(entra) = &self.cfg.entra else {
            return Ok(());
        };
        let name = &self.cfg.claims.groups;
        if !claims::groups_overage(claims, name) {
            return Ok(());
        }
        let ids = crate::idp::entra::groups(&self.http, entra, token.secret())
            .await
            .map_err(|e| OidcError::Groups(e.to_string()))?;
        crate::idp::entra::apply(claims, name, ids);
        Ok(())
    }

    /// Uses a refresh token. A new ID token must keep `iss` and `sub`.
    pub async fn refresh(
        &self,
        refresh_token: &str,
        sub: &str,
        redirect_uri: &str,
    ) -> Result<Option<LoginResult>, OidcError> {
        let d = self.discovered().await?;
        let client = self.client(&d, redirect_uri)?;
        let refresh = RefreshToken::new(refresh_token.to_string());
        let mut req = client
            .exchange_refresh_token(&refresh)
            .map_err(|e| OidcError::Token(e.to_string()))?;
        for (k, v) in self.client_assertion(&d)? {
            req = req.add_extra_param(k, v);
        }
        let tokens = req
            .request_async(&self.http)
            .await
            .map_err(|e| OidcError::Token(error_chain(&e)))?;
        let new_refresh = tokens
            .refresh_token()
            .map(|r| r.secret().clone())
            .unwrap_or_else(|| refresh_token.to_string());
        let Some(id) = tokens.id_token() else {
            return Ok(None);
        };
        let raw = id.to_string();
        let mut claims = self.verify_id_token(&raw, None).await?;
        if claims.get("iss").and_then(Value::as_str) != Some(self.cfg.issuer.as_str()) {
            return Err(OidcError::SubjectChanged("iss"));
        }
        if claims.get("sub").and_then(Value::as_str) != Some(sub) {
            return Err(OidcError::SubjectChanged("sub"));
        }
        self.resolve_overage(tokens.access_token(), &mut claims)
            .await?;
        // A refresh is not an authentication: without `auth_time` the factors' age is
        // unknown here, and `sso::apply` keeps the time recorded at login (M8).
        Ok(Some(self.result(
            claims,
            Some(raw),
            Some(new_refresh),
            tokens.expires_in(),
            claims::NoAuthTime::Unknown,
        )))
    }

    /// The provider's RP-initiated logout URL, if it has one.
    pub async fn end_session_url(
        &self,
        id_token_hint: Option<&str>,
        post_logout: Option<&str>,
    ) -> Option<String> {
        let d = self.discovered().await.ok()?;
        let ep = d
            .metadata
            .additional_metadata()
            .end_session_endpoint
            .as_ref()?;
        let mut u = url::Url::parse(ep.as_str()).ok()?;
        {
            let mut q = u.query_pairs_mut();
            q.append_pair("client_id", &self.cfg.client_id);
            if let Some(h) = id_token_hint {
                q.append_pair("id_token_hint", h);
            }
            if let Some(p) = post_logout.or(self.cfg.post_logout_redirect_uri.as_deref()) {
                q.append_pair("post_logout_redirect_uri", p);
            }
        }
        Some(u.to_string())
    }

    /// Verifies an OIDC back-channel `logout_token` (OpenID Connect Back-Channel Logout 1.0,
    /// section 2.6): signature with the allow-listed algorithms and the provider's keys (one
    /// JWKS refetch on an unknown `kid`), `typ` absent, `JWT` or `logout+jwt`, `iss` exact,
    /// `aud` containing the client, `iat` present, not in the future and not older than
    /// [`LOGOUT_TOKEN_MAX_AGE`], `exp` (optional in the spec) not passed when present, the
    /// logout event, `jti`, `sub` or `sid`, and no `nonce`. Returns `(sub, sid, jti)`.
    pub async fn verify_logout_token(
        &self,
        raw: &str,
    ) -> Result<(Option<String>, Option<String>, String), OidcError> {
        let bad = |m: &str| OidcError::LogoutToken(m.to_string());
        let hmac_secret = self.cfg.client_secret.as_deref();
        let mut retried = false;
        let token = loop {
            let d = self.discovered().await?;
            match super::jws::verify(raw, &self.algs, d.metadata.jwks(), hmac_secret) {
                Ok(t) => break t,
                Err(super::jws::JwsError::NoMatchingKey) if !retried => {
                    retried = true;
                    if !self.refetch_jwks().await {
                        return Err(bad("no matching signing key"));
                    }
                }
                Err(e) => return Err(OidcError::LogoutToken(e.to_string())),
            }
        };
        let typ = token.header.get("typ").and_then(Value::as_str);
        if let Some(t) = typ {
            let t = t.to_ascii_lowercase();
            let t = t.strip_prefix("application/").unwrap_or(&t);
            if t != "jwt" && t != "logout+jwt" {
                return Err(bad("typ is not logout+jwt"));
            }
        }
        let claims = &token.claims;
        let str_claim = |k: &str| claims.get(k).and_then(Value::as_str).map(str::to_string);
        if str_claim("iss").as_deref() != Some(self.cfg.issuer.as_str()) {
            return Err(bad("iss is not the provider's"));
        }
        let aud_ok = match claims.get("aud") {
            Some(Value::String(a)) => *a == self.cfg.client_id,
            Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(&self.cfg.client_id)),
            _ => false,
        };
        if !aud_ok {
            return Err(bad("aud does not contain the client"));
        }
        let now = self.clock.unix();
        let skew = i64::try_from(self.cfg.clock_skew.as_secs()).unwrap_or(0);
        match claims.get("iat").and_then(Value::as_i64) {
            None => return Err(bad("iat is missing")),
            Some(t) if t > now + skew => return Err(bad("iat is in the future")),
            Some(t) if t < now - LOGOUT_TOKEN_MAX_AGE => return Err(bad("iat is too old")),
            Some(_) => {}
        }
        if let Some(exp) = claims.get("exp") {
            if exp.as_i64().is_none_or(|t| t + skew <= now) {
                return Err(bad("exp has passed"));
            }
        }
        if claims.contains_key("nonce") {
            return Err(bad("logout_token must not carry a nonce"));
        }
        let event = claims
            .get("events")
            .and_then(Value::as_object)
            .and_then(|e| e.get("http://schemas.openid.net/event/backchannel-logout"))
            .is_some_and(Value::is_object);
        if !event {
            return Err(bad("no back-channel logout event"));
        }
        let jti = str_claim("jti").ok_or_else(|| bad("jti is missing"))?;
        let (sub, sid) = (str_claim("sub"), str_claim("sid"));
        if sub.is_none() && sid.is_none() {
            return Err(bad("neither sub nor sid"));
        }
        Ok((sub, sid, jti))
    }
}

/// An error with its sources, for logs.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_never_enters_the_allow_list() {
        let algs = parse_algs(&["RS256".into(), "none".into(), "ES256".into(), "XX1".into()]);
        assert_eq!(
            algs,
            vec![
                CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
                CoreJwsSigningAlgorithm::EcdsaP256Sha256
            ]
        );
    }

    #[test]
    fn payload_decoding_needs_exactly_three_parts() {
        assert!(jwt_payload("a.eyJzdWIiOiJ4In0.c").is_some());
        assert!(jwt_payload("a.eyJzdWIiOiJ4In0").is_none());
        assert!(jwt_payload("a.eyJzdWIiOiJ4In0.c.d").is_none());
    }
}
