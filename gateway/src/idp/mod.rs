//! OpenID Connect providers (SAML is in `crate::saml`, LDAP in `crate::ldap`, local accounts in
//! `crate::local`): start a login, finish it, and return a verified [`LoginResult`].

pub mod claims;
pub mod client_key;
pub mod entra;
pub mod http;
pub mod jws;
pub mod oidc;

use portcullis_policy::input::Identity;

/// A verified login (or refresh) at a provider.
#[derive(Debug, Clone)]
pub struct LoginResult {
    /// Identity for the session.
    pub identity: Identity,
    /// Subject at the provider.
    pub sub: String,
    /// Provider session id (`sid` claim).
    pub idp_sid: Option<String>,
    /// Refresh token.
    pub refresh_token: Option<String>,
    /// When to refresh (access token expiry), unix seconds.
    pub refresh_at: Option<i64>,
    /// Raw ID token (for `id_token_hint`).
    pub id_token: Option<String>,
}
