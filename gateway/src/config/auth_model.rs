//! Validated single sign-on settings: session keys and timeouts, identity providers, the
//! upstream assertion. Every problem is reported with its key path.

use super::auth_schema::{AssertionSpec, IdpSpec, SessionSpec};
use super::problems::duration as dur;
use super::problems::Problems;
use base64::Engine;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

/// Where sessions are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// This process's memory.
    Memory,
    /// A Redis URL shared by every replica.
    Redis(String),
}

/// Validated `session:`.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Raw AEAD keys; the first encrypts.
    pub keys: Vec<[u8; 32]>,
    /// Whether the keys were generated at start (none configured).
    pub generated_key: bool,
    /// Idle timeout.
    pub idle_timeout: Duration,
    /// Absolute timeout.
    pub absolute_timeout: Duration,
    /// Store.
    pub store: StoreKind,
    /// Extra origins a return URL may point to.
    pub return_to_allow: Vec<String>,
}

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenAuth {
    /// HTTP Basic with client id and secret.
    ClientSecretBasic,
    /// Id and secret in the form body.
    ClientSecretPost,
    /// A JWT signed with the client's private key ([`IdpConfig::client_key`]).
    PrivateKeyJwt,
}

/// Claim names read from the ID token (and UserInfo) into the session identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimNames {
    /// User id (default `sub`).
    pub user: String,
    /// Email (default `email`).
    pub email: String,
    /// Display name (default `name`).
    pub name: String,
    /// Groups (default `groups`).
    pub groups: String,
    /// Roles (default `roles`).
    pub roles: String,
    /// Tenant (e.g. Entra `tid`); none by default.
    pub tenant: Option<String>,
    /// Department; none by default.
    pub department: Option<String>,
    /// Phone number for SMS codes (default `phone_number`, OIDC standard claim).
    pub phone: String,
    /// `dangerous_trust_email_without_verified_claim`: an absent `email_verified` claim
    /// counts as verified (an explicit `false` never does).
    pub trust_email_without_verified_claim: bool,
}

/// Validated `identity_providers[]` entry of type `oidc`.
#[derive(Debug, Clone)]
pub struct IdpConfig {
    /// Id.
    pub id: String,
    /// Issuer URL, exact.
    pub issuer: String,
    /// Client id.
    pub client_id: String,
    /// Client secret.
    pub client_secret: Option<String>,
    /// Token endpoint authentication.
    pub token_auth: TokenAuth,
    /// The client's signing key, with `private_key_jwt`.
    pub client_key: Option<std::sync::Arc<crate::idp::client_key::ClientKey>>,
    /// Scopes, `openid` first.
    pub scopes: Vec<String>,
    /// Accepted ID token algorithms.
    pub algorithms: Vec<String>,
    /// Clock skew.
    pub clock_skew: Duration,
    /// Claim names.
    pub claims: ClaimNames,
    /// Merge UserInfo.
    pub userinfo: bool,
    /// Fixed redirect URI, if configured.
    pub redirect_uri: Option<String>,
    /// RP-initiated logout target.
    pub post_logout_redirect_uri: Option<String>,
    /// Extra authorization request parameters.
    pub auth_params: BTreeMap<String, String>,
    /// Just-in-time directory users at first sign-in (only with `directory:`).
    pub jit: bool,
    /// Entra ID groups overage resolution through Microsoft Graph.
    pub entra: Option<crate::idp::entra::EntraConfig>,
}

/// Validated `assertion:`.
#[derive(Debug, Clone)]
pub struct AssertionConfig {
    /// PKCS#8 DER keys; empty: generate one at start.
    pub keys: Vec<Vec<u8>>,
    /// Lifetime.
    pub ttl: Duration,
    /// `iss`.
    pub issuer: String,
}

const ALGS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA", "HS256",
    "HS384", "HS512",
];

fn read_secret_file(file: &str, path: &str, p: &mut Problems) -> Option<String> {
    match std::fs::read_to_string(file) {
        Ok(s) => Some(s.trim().to_string()),
        Err(e) => {
            p.add(path, format!("cannot read {file:?}: {e}"));
            None
        }
    }
}

fn decode_key(k: &str, path: &str, p: &mut Problems) -> Option<[u8; 32]> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(k.trim())
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(k.trim()));
    match raw
        .ok()
        .and_then(|r| <[u8; 32]>::try_from(r.as_slice()).ok())
    {
        Some(key) => Some(key),
        None => {
            // The value is a secret: never echo it.
            p.add(
                path,
                "is not base64 of exactly 32 bytes (generate one with `openssl rand -base64 32`)",
            );
            None
        }
    }
}

/// Builds `session:`; `needed` says whether any provider is configured.
pub fn build_session(s: Option<SessionSpec>, p: &mut Problems) -> SessionConfig {
    let s = s.unwrap_or_default();
    let mut keys = Vec::new();
    for (i, k) in s.keys.iter().enumerate() {
        if let Some(k) = decode_key(k, &format!("session.keys[{i}]"), p) {
            keys.push(k);
        }
    }
    if let Some(f) = &s.keys_file {
        if let Some(text) = read_secret_file(f, "session.keys_file", p) {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                if let Some(k) = decode_key(line, "session.keys_file", p) {
                    keys.push(k);
                }
            }
        }
    }
    let store = match s.store.as_deref() {
        None | Some("memory") => StoreKind::Memory,
        Some(u) if u.starts_with("redis://") || u.starts_with("rediss://") => {
            if url::Url::parse(u).is_err() {
                p.add("session.store", "is not a valid redis:// URL");
            }
            StoreKind::Redis(u.to_string())
        }
        Some(other) => {
            p.add(
                "session.store",
                format!("{other:?} is not memory or a redis:// URL"),
            );
            StoreKind::Memory
        }
    };
    let generated_key = keys.is_empty();
    if generated_key {
        if matches!(store, StoreKind::Redis(_)) {
            p.add(
                "session.keys",
                "a shared store needs the same configured keys on every replica",
            );
        }
        let mut k = [0u8; 32];
        if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut k).is_err() {
            p.add("session.keys", "cannot generate a random key");
        }
        keys.push(k);
    }
    let idle_timeout = dur(
        s.idle_timeout.as_deref(),
        Duration::from_secs(30 * 60),
        "session.idle_timeout",
        p,
    );
    let absolute_timeout = dur(
        s.absolute_timeout.as_deref(),
        Duration::from_secs(12 * 3600),
        "session.absolute_timeout",
        p,
    );
    if idle_timeout.is_zero() || absolute_timeout.is_zero() {
        p.add("session", "timeouts must be greater than zero");
    }
    let mut return_to_allow = Vec::new();
    for (i, o) in s.return_to_allow.iter().enumerate() {
        match url::Url::parse(o) {
            Ok(u) if matches!(u.scheme(), "https" | "http") && u.path() == "/" => {
                return_to_allow.push(u.origin().ascii_serialization());
            }
            _ => p.add(
                format!("session.return_to_allow[{i}]"),
                format!("{o:?} is not an origin like https://app.example.com"),
            ),
        }
    }
    SessionConfig {
        keys,
        generated_key,
        idle_timeout,
        absolute_timeout,
        store,
        return_to_allow,
    }
}

/// Whether `host` is a loopback name or address (plain-HTTP issuers are allowed there only).
pub fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Validated `identity_providers[]` entry of type `local`: directory users who sign in with a
/// password at `/.portcullis/login` ([`crate::local`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalIdpConfig {
    /// Id (also the provider of the sessions and of the directory links).
    pub id: String,
    /// Position in `identity_providers` (for messages).
    pub index: usize,
}

/// Every provider, by type.
#[derive(Debug, Clone, Default)]
pub struct Idps {
    /// OpenID Connect providers.
    pub oidc: Vec<IdpConfig>,
    /// Local-account providers.
    pub local: Vec<LocalIdpConfig>,
    /// LDAP / Active Directory providers.
    pub ldap: Vec<crate::ldap::config::LdapConfig>,
    /// SAML 2.0 providers.
    pub saml: Vec<crate::saml::config::SamlConfig>,
}

/// A `local` provider takes only `id` and `type`: an OIDC key on it is a mistake to report.
fn check_local(s: &IdpSpec, base: &str, p: &mut Problems) {
    let set = [
        ("issuer", !s.issuer.is_empty()),
        ("client_id", !s.client_id.is_empty()),
        ("client_secret", s.client_secret.is_some()),
        ("scopes", !s.scopes.is_empty()),
        ("claims", !s.claims.is_empty()),
        ("jit", s.jit),
    ];
    for (key, present) in set {
        if present {
            p.add(
                format!("{base}.{key}"),
                "does not apply to a local provider (accounts live in the directory)",
            );
        }
    }
}

/// Builds `identity_providers`.
pub fn build_idps(specs: Vec<IdpSpec>, p: &mut Problems) -> Idps {
    let mut out = Vec::new();
    let mut local = Vec::new();
    let mut ldap = Vec::new();
    let mut saml = Vec::new();
    let mut ids = std::collections::HashSet::new();
    for (i, s) in specs.into_iter().enumerate() {
        let base = format!("identity_providers[{i}]");
        let before = p.0.len();
        if !ids.insert(s.id.clone()) {
            p.add(format!("{base}.id"), format!("{:?} is used twice", s.id));
        }
        if !crate::config::problems::is_id(&s.id) {
            p.add(
                format!("{base}.id"),
                "must use only letters, digits, '-', '_'",
            );
        }
        if s.kind == "ldap" {
            ldap.extend(crate::ldap::config::build(&s, i, p));
            continue;
        }
        if s.kind == "saml" {
            saml.extend(crate::saml::config::build(&s, &base, p));
            continue;
        }
        for key in crate::ldap::config::ldap_keys_set(&s) {
            p.add(format!("{base}.{key}"), "applies only to type: ldap");
        }
        crate::saml::config::refuse_saml_keys(&s, &base, &s.kind, p);
        if s.kind == "local" {
            check_local(&s, &base, p);
            local.push(LocalIdpConfig {
                id: s.id.clone(),
                index: i,
            });
            continue;
        }
        if s.kind != "oidc" {
            p.add(
                format!("{base}.type"),
                format!("{:?} is not supported (oidc, local, ldap, saml)", s.kind),
            );
        }
        match url::Url::parse(&s.issuer) {
            Ok(u) => {
                let host = u.host_str().unwrap_or("");
                let ok = u.scheme() == "https" || (u.scheme() == "http" && is_loopback(host));
                if !ok {
                    p.add(
                        format!("{base}.issuer"),
                        "must be https (plain http only on a loopback address)",
                    );
                }
                if u.query().is_some() || u.fragment().is_some() {
                    p.add(
                        format!("{base}.issuer"),
                        "must not have a query or fragment",
                    );
                }
            }
            Err(e) => p.add(format!("{base}.issuer"), format!("is not a URL ({e})")),
        }
        let token_auth = match s.token_auth.as_deref() {
            None | Some("client_secret_basic") => TokenAuth::ClientSecretBasic,
            Some("client_secret_post") => TokenAuth::ClientSecretPost,
            Some("private_key_jwt") => TokenAuth::PrivateKeyJwt,
            Some(o) => {
                p.add(
                    format!("{base}.token_auth"),
                    format!("{o:?} is not one of client_secret_basic, client_secret_post, private_key_jwt"),
                );
                TokenAuth::ClientSecretBasic
            }
        };
        let key_auth = token_auth == TokenAuth::PrivateKeyJwt;
        // With private_key_jwt a secret is optional (it only verifies HS* ID tokens).
        let client_secret = super::secret::resolve(
            s.client_secret.as_deref(),
            s.client_secret_file.as_deref(),
            &base,
            "client_secret",
            !key_auth,
            p,
        );
        let client_key = match (&s.client_key_file, key_auth) {
            (Some(f), true) => {
                let path = format!("{base}.client_key_file");
                read_secret_file(f, &path, p).and_then(|pem| {
                    crate::idp::client_key::ClientKey::from_pem(
                        pem.as_bytes(),
                        s.client_key_id.clone(),
                    )
                    .map_err(|e| p.add(path, e))
                    .ok()
                    .map(std::sync::Arc::new)
                })
            }
            (None, true) => {
                p.add(
                    format!("{base}.client_key_file"),
                    "missing: token_auth private_key_jwt signs with this key",
                );
                None
            }
            (Some(_), false) => {
                p.add(
                    format!("{base}.client_key_file"),
                    "is used only with token_auth: private_key_jwt",
                );
                None
            }
            (None, false) => None,
        };
        let mut algorithms = if s.algorithms.is_empty() {
            vec!["RS256".to_string()]
        } else {
            s.algorithms.clone()
        };
        for (j, a) in s.algorithms.iter().enumerate() {
            if !ALGS.contains(&a.as_str()) {
                // `none` lands here too: it is never accepted.
                p.add(
                    format!("{base}.algorithms[{j}]"),
                    format!("{a:?} is not one of {}", ALGS.join(", ")),
                );
            }
        }
        algorithms.dedup();
        let mut scopes = vec!["openid".to_string()];
        scopes.extend(s.scopes.iter().filter(|x| *x != "openid").cloned());
        let mut claims = ClaimNames {
            user: "sub".to_string(),
            email: "email".to_string(),
            name: "name".to_string(),
            groups: "groups".to_string(),
            roles: "roles".to_string(),
            tenant: None,
            department: None,
            phone: "phone_number".to_string(),
            trust_email_without_verified_claim: s.dangerous_trust_email_without_verified_claim,
        };
        for (k, v) in &s.claims {
            match k.as_str() {
                "user" => claims.user = v.clone(),
                "email" => claims.email = v.clone(),
                "name" => claims.name = v.clone(),
                "groups" => claims.groups = v.clone(),
                "roles" => claims.roles = v.clone(),
                "tenant" => claims.tenant = Some(v.clone()),
                "department" => claims.department = Some(v.clone()),
                "phone" => claims.phone = v.clone(),
                _ => p.add(
                    format!("{base}.claims.{k}"),
                    "is not one of user, email, name, groups, roles, tenant, department, phone",
                ),
            }
        }
        for (key, v) in [
            ("redirect_uri", &s.redirect_uri),
            ("post_logout_redirect_uri", &s.post_logout_redirect_uri),
        ] {
            if let Some(v) = v {
                if url::Url::parse(v).is_err() {
                    p.add(
                        format!("{base}.{key}"),
                        format!("{v:?} is not an absolute URL"),
                    );
                }
            }
        }
        let entra = s
            .entra
            .as_ref()
            .and_then(|e| build_entra(e, &format!("{base}.entra"), p));
        let clock_skew = dur(
            s.clock_skew.as_deref(),
            Duration::from_secs(60),
            &format!("{base}.clock_skew"),
            p,
        );
        if clock_skew > Duration::from_secs(300) {
            p.add(
                format!("{base}.clock_skew"),
                "more than 5m defeats expiry checks",
            );
        }
        if p.0.len() != before {
            continue;
        }
        out.push(IdpConfig {
            id: s.id,
            issuer: s.issuer,
            client_id: s.client_id,
            client_secret,
            token_auth,
            client_key,
            scopes,
            algorithms,
            clock_skew,
            claims,
            userinfo: s.userinfo,
            redirect_uri: s.redirect_uri,
            post_logout_redirect_uri: s.post_logout_redirect_uri,
            auth_params: s.auth_params,
            jit: s.jit,
            entra,
        });
    }
    Idps {
        oidc: out,
        local,
        ldap,
        saml,
    }
}

/// Validates `entra:`: Graph is reached with users' tokens, so only over HTTPS (plain HTTP
/// only to this machine, for tests).
fn build_entra(
    s: &super::auth_schema::EntraSpec,
    key: &str,
    p: &mut Problems,
) -> Option<crate::idp::entra::EntraConfig> {
    let raw = s
        .graph_url
        .as_deref()
        .unwrap_or("https://graph.microsoft.com");
    let Ok(url) = url::Url::parse(raw) else {
        p.add(
            format!("{key}.graph_url"),
            format!("{raw:?} is not an absolute URL"),
        );
        return None;
    };
    let local = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    if url.scheme() != "https" && !(url.scheme() == "http" && local) {
        p.add(
            format!("{key}.graph_url"),
            "must be https:// (users' access tokens are sent to it)",
        );
        return None;
    }
    Some(crate::idp::entra::EntraConfig { graph_url: url })
}

/// Builds `assertion:`.
pub fn build_assertion(s: Option<AssertionSpec>, p: &mut Problems) -> AssertionConfig {
    let s = s.unwrap_or_default();
    let mut keys = Vec::new();
    for (i, f) in s.key_files.iter().enumerate() {
        let path = format!("assertion.key_files[{i}]");
        let Some(pem) = read_secret_file(f, &path, p) else {
            continue;
        };
        let der = rustls_pemfile::pkcs8_private_keys(&mut pem.as_bytes())
            .next()
            .and_then(Result::ok)
            .map(|k| k.secret_pkcs8_der().to_vec());
        match der {
            Some(d) if crate::assertion::check_key(&d) => keys.push(d),
            _ => p.add(path, "is not a PKCS#8 PEM P-256 private key"),
        }
    }
    let ttl = dur(
        s.ttl.as_deref(),
        Duration::from_secs(60),
        "assertion.ttl",
        p,
    );
    if ttl.is_zero() || ttl > Duration::from_secs(3600) {
        p.add("assertion.ttl", "must be between 1s and 1h");
    }
    AssertionConfig {
        keys,
        ttl,
        issuer: s.issuer.unwrap_or_else(|| "portcullis".to_string()),
    }
}
