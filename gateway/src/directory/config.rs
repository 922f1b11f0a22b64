//! `directory:` — schema and validated settings.
//!
//! ```yaml
//! directory:
//!   users_file: /etc/portcullis/users.yaml     # optional seed of local accounts
//!   scim:
//!     tokens:                                 # bearer tokens of provisioning clients
//!       - "${SCIM_TOKEN}"                     # default tenant ("")
//!       - { token: "${SCIM_TOKEN_ACME}", tenant: acme }
//!   sync: [ { id: entra, type: entra_id, … } ]
//!   deprovision: { revoke_sessions: true, remove_mfa: false }
//! ```
//!
//! Just-in-time creation is per provider (`identity_providers[].jit`, default off), next to
//! the provider it concerns, so that adding a provider never silently opens the directory to
//! everyone that provider knows.

use crate::config::problems::Problems;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::time::Duration;

/// Shortest SCIM bearer token accepted: a guessable token is a directory write credential.
const MIN_TOKEN_LEN: usize = 24;

/// `directory:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectorySpec {
    /// Seed of local accounts (argon2id hashes).
    #[serde(default)]
    pub users_file: Option<String>,
    /// The SCIM 2.0 service provider at `/.portcullis/scim/v2`; absent: no SCIM endpoint.
    #[serde(default)]
    pub scim: Option<ScimSpec>,
    /// Directory sync connectors.
    #[serde(default)]
    pub sync: Vec<SyncSpec>,
    /// What deprovisioning does besides deactivating the user.
    #[serde(default)]
    pub deprovision: Option<DeprovisionSpec>,
}

/// `directory.scim:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScimSpec {
    /// Bearer tokens; each grants SCIM access to one tenant.
    pub tokens: Vec<TokenSpec>,
}

/// One SCIM token: a bare string (the default tenant) or `{ token, tenant }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum TokenSpec {
    /// For the default tenant `""`.
    Bare(String),
    /// For a named tenant.
    Tenant {
        /// The secret (use `${ENV}`).
        token: String,
        /// The tenant the token provisions.
        tenant: String,
    },
}

/// `directory.sync[]`: every connector's keys, as the contract spells them; which apply
/// depends on `type`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncSpec {
    /// Unique name (the `source` of the users it writes: `sync:<id>`).
    pub id: String,
    /// `entra_id`, `google_workspace` or `aws_identity_center`.
    #[serde(rename = "type")]
    pub kind: String,
    /// How often `run` syncs (default 15m).
    #[serde(default)]
    pub interval: Option<String>,
    /// Accidental-deletion guard: a run that would deactivate more users than this applies
    /// no removal at all (default 500; 0 turns the guard off).
    #[serde(default)]
    pub deletion_threshold: Option<u32>,
    /// Tenant the synced users belong to (default `""`).
    #[serde(default)]
    pub tenant: Option<String>,
    /// Entra: directory (tenant) id.
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// Entra: application id.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Entra: client secret.
    #[serde(default)]
    pub client_secret: Option<String>,
    /// Google: customer id (`my_customer`).
    #[serde(default)]
    pub customer: Option<String>,
    /// Google: service account key file.
    #[serde(default)]
    pub credentials_file: Option<String>,
    /// Google: admin to impersonate.
    #[serde(default)]
    pub admin_email: Option<String>,
    /// AWS: identity store id.
    #[serde(default)]
    pub identity_store_id: Option<String>,
    /// AWS: region.
    #[serde(default)]
    pub region: Option<String>,
    /// Entra: Microsoft Graph base URL (default `https://graph.microsoft.com`).
    #[serde(default)]
    pub graph_url: Option<String>,
    /// Entra: Microsoft identity platform base URL (default `https://login.microsoftonline.com`).
    #[serde(default)]
    pub login_url: Option<String>,
    /// Google: Admin SDK base URL (default `https://admin.googleapis.com`).
    #[serde(default)]
    pub api_url: Option<String>,
    /// Google: token endpoint (default: the key file's `token_uri`, else
    /// `https://oauth2.googleapis.com/token`).
    #[serde(default)]
    pub token_url: Option<String>,
    /// AWS: identity store endpoint (default `https://identitystore.{region}.amazonaws.com/`).
    #[serde(default)]
    pub endpoint: Option<String>,
}

/// `directory.deprovision:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeprovisionSpec {
    /// End every session of the user on every replica (default true).
    #[serde(default)]
    pub revoke_sessions: Option<bool>,
    /// Also remove their MFA factors and remembered devices (default false: a reactivated
    /// user keeps them).
    #[serde(default)]
    pub remove_mfa: Option<bool>,
}

/// Validated `directory:`.
#[derive(Debug, Clone)]
pub struct DirectoryConfig {
    /// Seed file of local accounts.
    pub users_file: Option<PathBuf>,
    /// SCIM, when enabled.
    pub scim: Option<ScimConfig>,
    /// Sync connectors.
    pub sync: Vec<SyncConfig>,
    /// Deprovisioning settings.
    pub deprovision: DeprovisionConfig,
}

/// Validated `directory.scim:`: only token digests are kept, so a dump of the running config
/// (or of memory) does not hand out provisioning credentials.
#[derive(Clone)]
pub struct ScimConfig {
    /// SHA-256 of each token, with its tenant.
    pub tokens: Vec<ScimToken>,
}

impl std::fmt::Debug for ScimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScimConfig")
            .field("tokens", &self.tokens.len())
            .finish()
    }
}

/// One SCIM token as kept.
#[derive(Clone)]
pub struct ScimToken {
    /// SHA-256 of the token.
    pub sha256: [u8; 32],
    /// The tenant it provisions.
    pub tenant: String,
}

impl ScimConfig {
    /// The tenant of a presented bearer token, comparing digests in constant time and always
    /// against every configured token, so timing says nothing about which (or whether one)
    /// matched.
    pub fn tenant_for(&self, presented: &str) -> Option<&str> {
        use subtle::ConstantTimeEq;
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for t in &self.tokens {
            if bool::from(t.sha256.ct_eq(&digest)) {
                found = Some(t.tenant.as_str());
            }
        }
        found
    }
}

/// Deactivations one sync run may apply unless `deletion_threshold` says otherwise (Entra ID's
/// provisioning service uses the same default for its accidental-deletions prevention).
pub const DEFAULT_DELETION_THRESHOLD: u32 = 500;

/// Validated `directory.sync[]` entry (connectors read the keys of their type).
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// Name.
    pub id: String,
    /// Connector type.
    pub kind: SyncKind,
    /// Schedule inside `run`.
    pub interval: Duration,
    /// Most deactivations one run applies (0: no limit).
    pub deletion_threshold: u32,
    /// Tenant of synced records.
    pub tenant: String,
    /// Entra tenant id.
    pub tenant_id: Option<String>,
    /// Entra client id.
    pub client_id: Option<String>,
    /// Entra client secret.
    pub client_secret: Option<String>,
    /// Google customer.
    pub customer: Option<String>,
    /// Google service-account key file.
    pub credentials_file: Option<PathBuf>,
    /// Google admin to impersonate.
    pub admin_email: Option<String>,
    /// AWS identity store id.
    pub identity_store_id: Option<String>,
    /// AWS region.
    pub region: Option<String>,
    /// Entra: Graph base URL.
    pub graph_url: url::Url,
    /// Entra: login base URL.
    pub login_url: url::Url,
    /// Google: Admin SDK base URL.
    pub api_url: url::Url,
    /// Google: token endpoint override (else the key file's `token_uri`).
    pub token_url: Option<url::Url>,
    /// AWS: identity store endpoint.
    pub endpoint: Option<url::Url>,
}

/// Default Microsoft Graph base URL.
pub const GRAPH_URL: &str = "https://graph.microsoft.com";
/// Default Microsoft identity platform base URL.
pub const LOGIN_URL: &str = "https://login.microsoftonline.com";
/// Default Google Admin SDK base URL.
pub const GOOGLE_API_URL: &str = "https://admin.googleapis.com";
/// Default Google token endpoint (when the key file names none).
pub const GOOGLE_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";

/// Which upstream directory a sync reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncKind {
    /// Microsoft Graph.
    EntraId,
    /// Google Workspace Admin SDK.
    GoogleWorkspace,
    /// AWS IAM Identity Center identity store.
    AwsIdentityCenter,
}

impl SyncKind {
    /// The endpoint keys that apply to this type (the others are mistakes to report).
    fn endpoint_keys(self) -> &'static [&'static str] {
        match self {
            Self::EntraId => &["graph_url", "login_url"],
            Self::GoogleWorkspace => &["api_url", "token_url"],
            Self::AwsIdentityCenter => &["endpoint"],
        }
    }

    /// The keys a connector of this type cannot work without.
    fn required(self) -> &'static [&'static str] {
        match self {
            Self::EntraId => &["tenant_id", "client_id", "client_secret"],
            Self::GoogleWorkspace => &["credentials_file", "admin_email"],
            Self::AwsIdentityCenter => &["identity_store_id", "region"],
        }
    }
}

/// Validated `directory.deprovision:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeprovisionConfig {
    /// End the user's sessions everywhere.
    pub revoke_sessions: bool,
    /// Remove MFA factors and remembered devices.
    pub remove_mfa: bool,
}

impl Default for DeprovisionConfig {
    fn default() -> Self {
        Self {
            revoke_sessions: true,
            remove_mfa: false,
        }
    }
}

/// Validates `directory:`.
pub fn build(spec: DirectorySpec, p: &mut Problems) -> Option<DirectoryConfig> {
    let before = p.0.len();
    let scim = spec.scim.map(|s| build_scim(s, p));
    let mut sync = Vec::new();
    let mut ids = std::collections::HashSet::new();
    for (i, s) in spec.sync.into_iter().enumerate() {
        let key = format!("directory.sync[{i}]");
        if !ids.insert(s.id.clone()) {
            p.add(format!("{key}.id"), format!("{:?} is used twice", s.id));
        }
        if let Some(c) = build_sync(s, &key, p) {
            sync.push(c);
        }
    }
    let d = spec.deprovision.unwrap_or_default();
    let defaults = DeprovisionConfig::default();
    let deprovision = DeprovisionConfig {
        revoke_sessions: d.revoke_sessions.unwrap_or(defaults.revoke_sessions),
        remove_mfa: d.remove_mfa.unwrap_or(defaults.remove_mfa),
    };
    (p.0.len() == before).then(|| DirectoryConfig {
        users_file: spec.users_file.map(PathBuf::from),
        scim,
        sync,
        deprovision,
    })
}

fn build_scim(s: ScimSpec, p: &mut Problems) -> ScimConfig {
    if s.tokens.is_empty() {
        p.add("directory.scim.tokens", "needs at least one token");
    }
    let mut tokens: Vec<ScimToken> = Vec::new();
    for (i, t) in s.tokens.into_iter().enumerate() {
        let (token, tenant) = match t {
            TokenSpec::Bare(token) => (token, String::new()),
            TokenSpec::Tenant { token, tenant } => (token, tenant),
        };
        let key = format!("directory.scim.tokens[{i}]");
        if token.chars().count() < MIN_TOKEN_LEN {
            p.add(
                key,
                format!(
                    "must be at least {MIN_TOKEN_LEN} characters (e.g. `openssl rand -hex 32`)"
                ),
            );
            continue;
        }
        let sha256: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if tokens.iter().any(|o| o.sha256 == sha256) {
            p.add(key, "is the same token as an earlier entry");
            continue;
        }
        tokens.push(ScimToken { sha256, tenant });
    }
    ScimConfig { tokens }
}

/// Parses an endpoint override: https, or plain http on a loopback address only (the tests'
/// stand-in servers). Security-relevant: the connector sends client secrets, signed
/// assertions and bearer tokens to these URLs.
pub fn endpoint_url(value: &str, path: &str, p: &mut Problems) -> Option<url::Url> {
    match url::Url::parse(value) {
        Ok(u) => {
            let host = u.host_str().unwrap_or("");
            let ok = u.scheme() == "https"
                || (u.scheme() == "http" && crate::config::auth_model::is_loopback(host));
            if !ok || host.is_empty() {
                p.add(
                    path,
                    "must be an https:// URL (plain http only on 127.0.0.1 or localhost)",
                );
                return None;
            }
            if u.query().is_some() || u.fragment().is_some() || !u.username().is_empty() {
                p.add(path, "must not have a query, fragment or credentials");
                return None;
            }
            Some(u)
        }
        Err(e) => {
            p.add(path, format!("{value:?} is not a URL ({e})"));
            None
        }
    }
}

fn build_sync(s: SyncSpec, key: &str, p: &mut Problems) -> Option<SyncConfig> {
    if !crate::config::problems::is_id(&s.id) {
        p.add(
            format!("{key}.id"),
            "must use only letters, digits, '-', '_'",
        );
        return None;
    }
    let kind = match s.kind.as_str() {
        "entra_id" => SyncKind::EntraId,
        "google_workspace" => SyncKind::GoogleWorkspace,
        "aws_identity_center" => SyncKind::AwsIdentityCenter,
        other => {
            p.add(
                format!("{key}.type"),
                format!("{other:?} is not entra_id, google_workspace or aws_identity_center"),
            );
            return None;
        }
    };
    let interval = match s.interval.as_deref() {
        None => Duration::from_secs(15 * 60),
        Some(v) => match humantime::parse_duration(v) {
            Ok(d) if d >= Duration::from_secs(60) => d,
            Ok(_) => {
                p.add(format!("{key}.interval"), "must be at least 1m");
                return None;
            }
            Err(e) => {
                p.add(
                    format!("{key}.interval"),
                    format!("{v:?} is not a duration like 15m ({e})"),
                );
                return None;
            }
        },
    };
    let present = |k: &str| match k {
        "tenant_id" => s.tenant_id.is_some(),
        "client_id" => s.client_id.is_some(),
        "client_secret" => s.client_secret.is_some(),
        "credentials_file" => s.credentials_file.is_some(),
        "admin_email" => s.admin_email.is_some(),
        "identity_store_id" => s.identity_store_id.is_some(),
        "region" => s.region.is_some(),
        _ => true,
    };
    let missing: Vec<&str> = kind
        .required()
        .iter()
        .copied()
        .filter(|k| !present(k))
        .collect();
    for k in &missing {
        p.add(
            format!("{key}.{k}"),
            format!("is required for type {}", s.kind),
        );
    }
    if !missing.is_empty() {
        return None;
    }
    let before = p.0.len();
    let set = [
        ("graph_url", s.graph_url.as_deref()),
        ("login_url", s.login_url.as_deref()),
        ("api_url", s.api_url.as_deref()),
        ("token_url", s.token_url.as_deref()),
        ("endpoint", s.endpoint.as_deref()),
    ];
    let mut urls = std::collections::HashMap::new();
    for (k, v) in set {
        let Some(v) = v else { continue };
        if !kind.endpoint_keys().contains(&k) {
            p.add(
                format!("{key}.{k}"),
                format!("does not apply to type {}", s.kind),
            );
            continue;
        }
        if let Some(u) = endpoint_url(v, &format!("{key}.{k}"), p) {
            urls.insert(k, u);
        }
    }
    if p.0.len() != before {
        return None;
    }
    let default = |k: &str, d: &str| urls.get(k).cloned().or_else(|| url::Url::parse(d).ok());
    Some(SyncConfig {
        id: s.id,
        kind,
        interval,
        deletion_threshold: s.deletion_threshold.unwrap_or(DEFAULT_DELETION_THRESHOLD),
        tenant: s.tenant.unwrap_or_default(),
        tenant_id: s.tenant_id,
        client_id: s.client_id,
        client_secret: s.client_secret,
        customer: s.customer,
        credentials_file: s.credentials_file.map(PathBuf::from),
        admin_email: s.admin_email,
        identity_store_id: s.identity_store_id,
        region: s.region,
        graph_url: default("graph_url", GRAPH_URL)?,
        login_url: default("login_url", LOGIN_URL)?,
        api_url: default("api_url", GOOGLE_API_URL)?,
        token_url: urls.get("token_url").cloned(),
        endpoint: urls.get("endpoint").cloned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> (Option<DirectoryConfig>, Problems) {
        let spec: DirectorySpec = serde_yaml::from_str(yaml).unwrap();
        let mut p = Problems::default();
        (build(spec, &mut p), p)
    }

    #[test]
    fn defaults_and_tokens() {
        let (c, p) = parse(
            "scim: { tokens: [\"0123456789abcdef0123456789\", { token: \"ffffffffffffffffffffffffffff\", tenant: acme }] }\n\
             deprovision: { remove_mfa: true }",
        );
        assert!(p.0.is_empty(), "{:?}", p.0);
        let c = c.unwrap();
        assert_eq!(
            c.deprovision,
            DeprovisionConfig {
                revoke_sessions: true,
                remove_mfa: true
            }
        );
        let scim = c.scim.unwrap();
        assert_eq!(scim.tenant_for("0123456789abcdef0123456789"), Some(""));
        assert_eq!(
            scim.tenant_for("ffffffffffffffffffffffffffff"),
            Some("acme")
        );
        assert_eq!(scim.tenant_for("0123456789abcdef012345678"), None);
        assert!(!format!("{scim:?}").contains("0123"));
        let (c, _) = parse("{}");
        assert_eq!(c.unwrap().deprovision, DeprovisionConfig::default());
    }

    #[test]
    fn problems_name_their_keys() {
        let (c, p) = parse(
            "scim: { tokens: [short] }\n\
             sync:\n\
             - { id: e, type: entra_id, tenant_id: T, interval: 10s }\n\
             - { id: e, type: ldap }\n\
             - { id: g, type: google_workspace, admin_email: a@x }",
        );
        assert!(c.is_none());
        let paths: Vec<&str> = p.0.iter().map(|x| x.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "directory.scim.tokens[0]",
                "directory.sync[0].interval",
                "directory.sync[1].id",
                "directory.sync[1].type",
                "directory.sync[2].credentials_file",
            ]
        );
    }

    #[test]
    fn endpoints_default_to_the_vendors_and_must_be_https_off_loopback() {
        let (c, p) = parse(
            "sync:\n\
             - { id: e, type: entra_id, tenant_id: T, client_id: C, client_secret: S }\n\
             - { id: g, type: google_workspace, credentials_file: sa.json, admin_email: a@x, api_url: \"http://127.0.0.1:9/\" }\n\
             - { id: a, type: aws_identity_center, identity_store_id: d-1, region: eu-west-1, endpoint: \"http://localhost:8/\" }",
        );
        assert!(p.0.is_empty(), "{:?}", p.0);
        let c = c.unwrap();
        assert_eq!(c.sync[0].graph_url.as_str(), "https://graph.microsoft.com/");
        assert_eq!(
            c.sync[0].login_url.as_str(),
            "https://login.microsoftonline.com/"
        );
        assert_eq!(c.sync[1].api_url.as_str(), "http://127.0.0.1:9/");
        assert_eq!(c.sync[1].token_url, None);
        assert_eq!(
            c.sync[2].endpoint.as_ref().unwrap().as_str(),
            "http://localhost:8/"
        );
        let (c, p) = parse(
            "sync:\n\
             - { id: e, type: entra_id, tenant_id: T, client_id: C, client_secret: S, graph_url: \"http://graph.example.com\", login_url: \"https://u:p@login.example.com\" }\n\
             - { id: g, type: google_workspace, credentials_file: f, admin_email: a, token_url: \"ftp://x\", endpoint: \"https://x\" }\n\
             - { id: \"a b\", type: aws_identity_center, identity_store_id: d, region: r }",
        );
        assert!(c.is_none());
        let paths: Vec<&str> = p.0.iter().map(|x| x.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "directory.sync[0].graph_url",
                "directory.sync[0].login_url",
                "directory.sync[1].token_url",
                "directory.sync[1].endpoint",
                "directory.sync[2].id",
            ]
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(serde_yaml::from_str::<DirectorySpec>("deprovision: { revoke: true }").is_err());
        assert!(serde_yaml::from_str::<DirectorySpec>("scim_tokens: []").is_err());
    }
}
