//! Password sign-in (local accounts and LDAP): `GET /.portcullis/login?idp=<id>` shows the
//! password form, `POST /.portcullis/login` checks it through the provider's backend
//! ([`crate::password_signin`]: local Argon2id hashes or an LDAP bind) and opens a session like
//! any other provider's sign-in, through the directory's admission (so a deactivated directory
//! user is refused and the directory's groups and roles apply). One form, one set of answers,
//! one set of audit events for both backends.
//!
//! Login CSRF: the form carries a random `state` that is also sealed in the pre-auth cookie
//! (the same cookie an OIDC login uses); a POST whose `state` does not match this browser's
//! cookie is refused before any password is checked, so another site cannot sign a victim in
//! to the attacker's account.

use super::login::{PreAuth, PRE_AUTH_TTL};
use super::*;
use crate::local::login::{form, truncate, LocalAccounts};
use crate::password_signin::{PasswordProvider, Refusal};
use crate::session::{cookie_name, cookie_values};
use std::collections::HashMap;

/// The path the form posts to.
pub const LOGIN_PATH: &str = "/.portcullis/login";

/// What a password POST became.
pub enum LocalOutcome {
    /// Signed in: go back with these cookies.
    SignedIn(Redirect),
    /// Shown again with a message (and status 401 or 429).
    Form {
        /// Status.
        status: u16,
        /// The page.
        html: String,
        /// Cookies to set (a fresh pre-auth cookie).
        cookies: Vec<String>,
    },
}

impl Sso {
    /// With the password providers (local accounts, LDAP directories), fixed at start.
    pub fn with_password(mut self, providers: Vec<Arc<PasswordProvider>>) -> Self {
        self.local = providers;
        self
    }

    /// The password provider `id` (local or LDAP), if configured.
    pub fn password_provider(&self, id: &str) -> Option<Arc<PasswordProvider>> {
        self.local.iter().find(|l| l.id == id).cloned()
    }

    /// The local-account provider `id`, if configured (password change).
    pub fn local_provider(&self, id: &str) -> Option<Arc<LocalAccounts>> {
        self.password_provider(id).and_then(|p| p.as_local())
    }

    /// Ids of the password providers.
    pub fn local_ids(&self) -> Vec<String> {
        self.local.iter().map(|l| l.id.clone()).collect()
    }

    /// The only password provider when it is the only provider at all (the form is shown at
    /// once).
    pub fn sole_local(&self) -> Option<Arc<PasswordProvider>> {
        match (
            self.local.as_slice(),
            self.providers.load().is_empty() && self.saml.is_empty(),
        ) {
            ([only], true) => Some(only.clone()),
            _ => None,
        }
    }

    /// The password form of provider `idp`, with a fresh state sealed in the pre-auth cookie.
    pub fn local_form(
        &self,
        idp: &str,
        return_to: String,
        tls: bool,
        user_name: &str,
        error: Option<&str>,
    ) -> Result<(String, Vec<String>), AuthError> {
        let state = self.new_id()?;
        let pre = PreAuth {
            idp: idp.to_string(),
            state: state.clone(),
            nonce: String::new(),
            verifier: String::new(),
            return_to,
            redirect_uri: LOGIN_PATH.to_string(),
            exp: self.now() + PRE_AUTH_TTL,
        };
        let name = cookie_name(tls, true);
        let sealed = self
            .codec
            .seal(name, &pre)
            .ok_or(AuthError::Internal("seal"))?;
        let html = form("Sign in", LOGIN_PATH, &state, user_name, error);
        Ok((
            html,
            vec![session::set_cookie(name, &sealed, tls, Some(PRE_AUTH_TTL))],
        ))
    }

    /// Handles the form POST.
    pub async fn local_login(
        &self,
        body: &str,
        headers: &http::HeaderMap,
        tls: bool,
        client_ip: &str,
    ) -> Result<LocalOutcome, AuthError> {
        let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
        let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
        let name = cookie_name(tls, true);
        let pre = cookie_values(headers, name)
            .into_iter()
            .filter_map(|v| self.codec.open::<PreAuth>(name, v))
            .find(|p| same(&p.state, field("state")) && p.redirect_uri == LOGIN_PATH);
        let Some(pre) = pre.filter(|p| p.exp >= self.now()) else {
            // No form of this browser's: a cross-site POST, or an expired form.
            return Err(AuthError::Csrf);
        };
        let acc = self
            .password_provider(&pre.idp)
            .ok_or(AuthError::UnknownProvider)?;
        let user_name = field("username").trim();
        let refuse = |why: &str, outcome: &str| {
            metrics::auth_event(&acc.id, "login", outcome);
            self.audit.record(AuditEvent::LoginFailed {
                idp: acc.id.clone(),
                reason: why.to_string(),
                client_ip: client_ip.to_string(),
            });
        };
        let again = |status: u16, msg: &str| -> Result<LocalOutcome, AuthError> {
            let (html, cookies) =
                self.local_form(&acc.id, pre.return_to.clone(), tls, user_name, Some(msg))?;
            Ok(LocalOutcome::Form {
                status,
                html,
                cookies,
            })
        };
        // The password is used for this one check and dropped; it is never logged or kept.
        let user = match acc
            .authenticate(user_name, field("password"), client_ip)
            .await
        {
            Ok(u) => u,
            Err(Refusal::Unavailable(e)) => {
                // Fail closed with a page that says why: no session, nothing guessed.
                metrics::auth_event(&acc.id, "login", "failure");
                self.audit.record(AuditEvent::LoginUnavailable {
                    idp: acc.id.clone(),
                    error: e,
                    client_ip: client_ip.to_string(),
                });
                return again(
                    503,
                    "Directory unavailable: signing in is not possible right now. Try again later.",
                );
            }
            Err(r) => {
                // The audit reason names the user, bounded: the name is the client's.
                // Refused by a lockout: its own outcome (as for second factors), which the SRE alert reads.
                let outcome = if r == Refusal::Locked {
                    "locked_out"
                } else {
                    "failure"
                };
                refuse(&format!("{r} ({:?})", truncate(user_name, 64)), outcome);
                return match r {
                    Refusal::Locked => again(429, "Too many attempts. Try again later."),
                    // Only after a correct password (see `AccountProblem`).
                    Refusal::Account(p) => again(403, p.message()),
                    _ => again(401, "Invalid username or password."),
                };
            }
        };
        let mut res = LoginResult {
            identity: portcullis_policy::input::Identity {
                user: user.user,
                provider: Some(acc.id.clone()),
                email: user.email,
                // The directory's addresses are the operator's: not verified by the user.
                email_verified: false,
                groups: user.groups,
                tenant: user.tenant,
                auth_methods: vec![portcullis_policy::input::AuthEvent {
                    method: "pwd".into(),
                    at: self.clock.utc(),
                }],
                ..Default::default()
            },
            sub: user.sub,
            idp_sid: None,
            refresh_token: None,
            refresh_at: None,
            id_token: None,
        };
        if let Err(e) = self.admit(&acc.id, acc.jit, &mut res).await {
            if let AuthError::Refused(r) = &e {
                refuse(r.reason(), "failure");
            }
            return Err(e);
        }
        let cookie = self.establish(&acc.id, res, tls, client_ip).await?;
        Ok(LocalOutcome::SignedIn(Redirect {
            location: pre.return_to,
            cookies: vec![cookie, session::clear_cookie(name, tls)],
        }))
    }
}
