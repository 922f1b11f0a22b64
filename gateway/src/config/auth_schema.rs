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
    /// `oidc` or `local` (accounts in the directory, password form).
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
