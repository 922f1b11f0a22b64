//! Schema of the single sign-on keys: `session:`, `identity_providers:` and `assertion:`.
//! Shape only; [`super::auth_model`] validates.

use serde::Deserialize;
use std::collections::BTreeMap;

/// `session:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSpec {
    /// Base64 keys of 32 bytes; the first encrypts, all decrypt (rotation).
    #[serde(default)]
    pub keys: Vec<String>,
    /// A file with one base64 key per line, appended after `keys`.
    #[serde(default)]
    pub keys_file: Option<String>,
    /// Session ends after this long without a request (default 30m).
    #[serde(default)]
    pub idle_timeout: Option<String>,
    /// Session ends this long after login whatever happens (default 12h).
    #[serde(default)]
    pub absolute_timeout: Option<String>,
    /// `memory` (default) or `redis://host:port/db`.
    #[serde(default)]
    pub store: Option<String>,
    /// Origins (`https://host[:port]`) a return URL may point to besides the request's own.
    #[serde(default)]
    pub return_to_allow: Vec<String>,
}

/// `identity_providers[]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdpSpec {
    /// Unique name, in routes, metrics and logs.
    pub id: String,
    /// `oidc`, `local` (accounts in the directory, password form) or `ldap` (password form,
    /// checked by a bind at an LDAP directory).
    #[serde(rename = "type")]
    pub kind: String,
    /// Issuer URL, exactly as the provider's metadata spells it (oidc).
    #[serde(default)]
    pub issuer: String,
    /// Client id registered at the provider (oidc).
    #[serde(default)]
    pub client_id: String,
    /// Client secret (use `${ENV}`), or `client_secret_file`.
    #[serde(default)]
    pub client_secret: Option<String>,
    /// File holding the client secret.
    #[serde(default)]
    pub client_secret_file: Option<String>,
    /// `client_secret_basic` (default), `client_secret_post` or `private_key_jwt`.
    #[serde(default)]
    pub token_auth: Option<String>,
    /// PEM private key (RSA or P-256) for `private_key_jwt`.
    #[serde(default)]
    pub client_key_file: Option<String>,
    /// `kid` of that key as registered at the provider.
    #[serde(default)]
    pub client_key_id: Option<String>,
    /// SAML: the IdP's metadata file (signing certificates, SSO and SLO URLs).
    #[serde(default)]
    pub idp_metadata_file: Option<String>,
    /// SAML: the IdP's metadata URL, fetched at start and refreshed.
    #[serde(default)]
    pub idp_metadata_url: Option<String>,
    /// SAML: PEM certificate that must have signed the metadata from the URL.
    #[serde(default)]
    pub idp_metadata_signing_cert: Option<String>,
    /// SAML: how often the metadata URL is fetched again (default 1h).
    #[serde(default)]
    pub idp_metadata_refresh: Option<String>,
    /// SAML: this gateway's entity id (the `Audience` it accepts).
    #[serde(default)]
    pub sp_entity_id: Option<String>,
    /// SAML: PEM RSA private key (signs requests, decrypts assertions).
    #[serde(default)]
    pub sp_key_file: Option<String>,
    /// SAML: PEM certificate of that key (published in the SP metadata).
    #[serde(default)]
    pub sp_cert_file: Option<String>,
    /// SAML: sign AuthnRequests (RSA-SHA256 over the redirect query).
    #[serde(default)]
    pub sign_authn_requests: bool,
    /// SAML: `assertion` (default), `response` or `both` must be signed.
    #[serde(default)]
    pub want_signed: Option<String>,
    /// SAML: accept RSA-SHA1 signatures and SHA-1 digests (off: refused).
    #[serde(default)]
    pub allow_sha1: bool,
    /// SAML: accept unsolicited responses (no `InResponseTo`).
    #[serde(default)]
    pub allow_idp_initiated: bool,
    /// SAML: the NameID format asked for in AuthnRequests.
    #[serde(default)]
    pub name_id_format: Option<String>,
    /// SAML: absolute ACS URL; default `https://<request host>/.portcullis/saml/acs`.
    #[serde(default)]
    pub acs_url: Option<String>,
    /// SAML: sign the SP metadata with the SP key.
    #[serde(default)]
    pub sign_metadata: bool,
    /// Scopes; `openid` is always sent.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Accepted ID token signature algorithms (default `[RS256]`); never `none`.
    #[serde(default)]
    pub algorithms: Vec<String>,
    /// Allowed clock skew for `exp`/`iat`/`nbf` (default 60s).
    #[serde(default)]
    pub clock_skew: Option<String>,
    /// Claim names for the session identity.
    #[serde(default)]
    pub claims: BTreeMap<String, String>,
    /// Treat an ID token *without* an `email_verified` claim as vouching for its `email`, for
    /// `emails`/`email_domains` rules (providers such as Entra ID never send the claim but
    /// only issue addresses they manage). Off by default: absent means unverified. An
    /// explicit `email_verified: false` is always honoured.
    #[serde(default)]
    pub dangerous_trust_email_without_verified_claim: bool,
    /// Merge the UserInfo response (only when its `sub` matches).
    #[serde(default)]
    pub userinfo: bool,
    /// Absolute redirect URI; default: `https://<request host>/.portcullis/callback/<id>`.
    #[serde(default)]
    pub redirect_uri: Option<String>,
    /// Where the provider sends the browser after RP-initiated logout.
    #[serde(default)]
    pub post_logout_redirect_uri: Option<String>,
    /// Extra query parameters on the authorization request (e.g. `prompt: login`).
    #[serde(default)]
    pub auth_params: BTreeMap<String, String>,
    /// LDAP (`type: ldap`): `ldaps://host:636`, or `ldap://host:389` with `start_tls: true`
    /// (plain `ldap://` only with `allow_insecure: true`). See [`crate::ldap::config`].
    #[serde(default)]
    pub url: Option<String>,
    /// LDAP: upgrade an `ldap://` connection with StartTLS.
    #[serde(default)]
    pub start_tls: bool,
    /// LDAP: accept a plain `ldap://` URL without TLS (passwords cross the network in clear).
    #[serde(default)]
    pub allow_insecure: bool,
    /// LDAP: PEM CA certificates that sign the directory's certificate (default: system roots).
    #[serde(default)]
    pub ca_file: Option<String>,
    /// LDAP: the service account's DN (searches users and groups).
    #[serde(default)]
    pub bind_dn: Option<String>,
    /// LDAP: the service account's password (use `${ENV}`), or `bind_password_file`.
    #[serde(default)]
    pub bind_password: Option<String>,
    /// LDAP: file holding the service account's password.
    #[serde(default)]
    pub bind_password_file: Option<String>,
    /// LDAP: where users are searched (subtree).
    #[serde(default)]
    pub user_base: Option<String>,
    /// LDAP: the user search filter; `{username}` is replaced by the escaped name.
    #[serde(default)]
    pub user_filter: Option<String>,
    /// LDAP: where groups are searched (absent: the user's `memberOf` values).
    #[serde(default)]
    pub group_base: Option<String>,
    /// LDAP: the group search filter; `{dn}` is replaced by the escaped user or group DN.
    #[serde(default)]
    pub group_filter: Option<String>,
    /// LDAP: `false` (direct groups), `true`/`recursive`, or `in_chain` (Active Directory).
    #[serde(default)]
    pub nested_groups: Option<serde_yaml::Value>,
    /// LDAP: how deep a recursive group resolution goes (default 8).
    #[serde(default)]
    pub max_group_depth: Option<u32>,
    /// LDAP: TCP + TLS connect timeout (default 5s).
    #[serde(default)]
    pub connect_timeout: Option<String>,
    /// LDAP: timeout of each operation (default 10s).
    #[serde(default)]
    pub timeout: Option<String>,
    /// LDAP: service-account connections kept open (default 4).
    #[serde(default)]
    pub pool_size: Option<usize>,
    /// LDAP: follow referrals (default and only supported value: false).
    #[serde(default)]
    pub referrals: bool,
    /// With `directory:` configured: create a directory user at the first sign-in of an
    /// unknown `(provider, subject)` (just-in-time provisioning). Off by default: only users
    /// already in the directory (SCIM, sync, admin) may sign in through this provider.
    #[serde(default)]
    pub jit: bool,
    /// Entra ID: resolve a groups overage through Microsoft Graph at sign-in and refresh.
    #[serde(default)]
    pub entra: Option<EntraSpec>,
}

/// `identity_providers[].entra:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntraSpec {
    /// Microsoft Graph's base URL (default `https://graph.microsoft.com`).
    #[serde(default)]
    pub graph_url: Option<String>,
}

/// `assertion:`: the signed JWT sent to upstreams.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssertionSpec {
    /// PKCS#8 PEM P-256 keys; the first signs, all are published (rotation). Default: one key
    /// generated at start (fine for one replica; replicas should share files).
    #[serde(default)]
    pub key_files: Vec<String>,
    /// Lifetime of each assertion (default 60s).
    #[serde(default)]
    pub ttl: Option<String>,
    /// `iss` of the assertion (default `portcullis`).
    #[serde(default)]
    pub issuer: Option<String>,
}
