//! Password sign-in, one flow for every provider that checks a user name and password itself:
//! `type: local` (Argon2id hashes of directory users, [`crate::local`]) and `type: ldap` (a bind
//! at an LDAP directory or Active Directory, [`crate::ldap`]). The form, its login-CSRF state,
//! the answers and the audit events live in [`crate::sso`]; this module holds what both
//! backends share below the form:
//!
//! - the attempt limiter ([`crate::mfa::limiter`], per user name and per client address, in
//!   Redis when sessions are): an attempt is counted *before* the backend checks anything, so
//!   concurrent guesses cannot race past the limit; an attempt whose backend could not answer
//!   stays counted (fail closed);
//! - the refusals ([`Refusal`]): every "this name/password is not right" reads the same to the
//!   client ("invalid username or password"), and each backend spends the same effort on an
//!   unknown name as on a known one (a dummy hash, a dummy bind), so neither the answer nor its
//!   timing tells an attacker which names exist. Only problems found *after* a correct
//!   password ([`AccountProblem`]: expired, must change, disabled) are told apart;
//! - oversized names: a name longer than [`MAX_USER_NAME`] is nobody's; it is not looked up,
//!   only its first bytes reach the counter key, and it still costs the dummy check.

use crate::local::login::{truncate, LocalAccounts};
use crate::mfa::limiter::Limiter;
use std::sync::Arc;

/// Longest user name looked up (bytes).
pub const MAX_USER_NAME: usize = 256;

/// Why a sign-in was refused. [`Refusal::Locked`], [`Refusal::Unavailable`] and
/// [`Refusal::Account`] are shown differently; the others all read "invalid username or
/// password".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No such user (audit reason only).
    #[error("unknown user")]
    UnknownUser,
    /// The password did not match, the user has none, or it was empty.
    #[error("wrong password")]
    WrongPassword,
    /// The user is deactivated (local accounts: told apart only in the audit log).
    #[error("deactivated")]
    Deactivated,
    /// Too many failures for this user name or address.
    #[error("too many attempts")]
    Locked,
    /// The directory or the limiter could not be reached (fail closed).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The password was right, but the account may not sign in (shown to the user).
    #[error("{}", .0.reason())]
    Account(AccountProblem),
}

/// What is wrong with an account whose password was right; each has a message for the page.
/// Only ever reported after the directory accepted the password, so it reveals nothing to
/// someone who does not know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountProblem {
    /// The password has expired (AD bind data 532).
    PasswordExpired,
    /// The password must be changed before the first sign-in (AD data 773).
    MustChangePassword,
    /// The account is disabled (AD data 533, `userAccountControl` ACCOUNTDISABLE).
    Disabled,
    /// The account is locked out (`userAccountControl` LOCKOUT).
    LockedOut,
    /// The account has expired (AD data 701).
    AccountExpired,
    /// Sign-in is not allowed at this time or from here (AD data 530, 531).
    Restricted,
}

impl AccountProblem {
    /// The audit reason.
    pub fn reason(self) -> &'static str {
        match self {
            Self::PasswordExpired => "password expired",
            Self::MustChangePassword => "password must be changed",
            Self::Disabled => "account disabled",
            Self::LockedOut => "account locked in the directory",
            Self::AccountExpired => "account expired",
            Self::Restricted => "sign-in restricted by the directory",
        }
    }

    /// The message on the sign-in page.
    pub fn message(self) -> &'static str {
        match self {
            Self::PasswordExpired => {
                "Your password has expired. Change it with your organisation's password tool, then sign in again."
            }
            Self::MustChangePassword => {
                "You must change your password before you can sign in. Change it with your organisation's password tool, then sign in again."
            }
            Self::Disabled => "Your account is disabled. Contact your administrator.",
            Self::LockedOut => "Your account is locked. Contact your administrator or try again later.",
            Self::AccountExpired => "Your account has expired. Contact your administrator.",
            Self::Restricted => "Your account may not sign in at this time or from this place.",
        }
    }
}

/// A user whose password a backend accepted, with the facts for the session identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verified {
    /// Stable subject at the provider (directory user id, LDAP entry DN).
    pub sub: String,
    /// User name.
    pub user: String,
    /// Email address, if known (managed by the directory's operators: not user-verified).
    pub email: Option<String>,
    /// Groups the backend knows (LDAP groups; local accounts get theirs at admission).
    pub groups: Vec<String>,
    /// Tenant, if the backend maps one.
    pub tenant: Option<String>,
}

/// The backend that checks a password.
pub enum Backend {
    /// Local accounts (`type: local`).
    Local(Arc<LocalAccounts>),
    /// An LDAP directory (`type: ldap`).
    Ldap(Arc<crate::ldap::Directory>),
}

/// One password provider: its id, its backend and the shared attempt limiter.
pub struct PasswordProvider {
    /// Provider id (`identity_providers[].id`).
    pub id: String,
    /// Just-in-time directory users at first sign-in (LDAP with `directory:`).
    pub jit: bool,
    backend: Backend,
    limiter: Arc<Limiter>,
}

/// The attempt-counter key of a user name at `provider`: the sign-in form and the local
/// password change count under the same key, so neither can guess past the other's lockout.
/// Only the first [`MAX_USER_NAME`] bytes of a client's name reach the key.
pub fn limiter_key(provider: &str, tenant: &str, user_name: &str) -> String {
    let keyed = truncate(user_name, MAX_USER_NAME);
    format!("password:{provider}:{tenant}:{}", keyed.to_lowercase())
}

impl PasswordProvider {
    /// A provider over `backend`, counting attempts in `limiter`.
    pub fn new(id: &str, jit: bool, backend: Backend, limiter: Arc<Limiter>) -> Self {
        Self {
            id: id.to_string(),
            jit,
            backend,
            limiter,
        }
    }

    /// The local accounts behind this provider, if it is a local one (password change).
    pub fn as_local(&self) -> Option<Arc<LocalAccounts>> {
        match &self.backend {
            Backend::Local(acc) => Some(acc.clone()),
            Backend::Ldap(_) => None,
        }
    }

    /// Checks a user name and password from `client_ip`; the verified user on success.
    /// Local users sign in to the default tenant; tenants sign in through their own provider.
    pub async fn authenticate(
        &self,
        user_name: &str,
        password: &str,
        client_ip: &str,
    ) -> Result<Verified, Refusal> {
        let attempt = self
            .limiter
            .begin(&limiter_key(&self.id, "", user_name), client_ip)
            .await
            .map_err(|_| Refusal::Locked)?;
        let name = (user_name.len() <= MAX_USER_NAME).then_some(user_name);
        let checked = match &self.backend {
            Backend::Local(acc) => acc.check("", name, password).await.map(|u| Verified {
                sub: u.id.clone(),
                email: u
                    .emails
                    .iter()
                    .find(|e| e.primary == Some(true))
                    .or_else(|| u.emails.first())
                    .map(|e| e.value.clone()),
                tenant: (!u.tenant.is_empty()).then(|| u.tenant.clone()),
                user: u.user_name,
                groups: Vec::new(),
            }),
            Backend::Ldap(dir) => dir.check(name, password).await,
        };
        match checked {
            Ok(v) => {
                attempt.succeeded().await;
                Ok(v)
            }
            // Nothing was learnt, but the attempt stays counted: a backend that fails only for
            // some inputs must not become a free oracle (fail closed).
            Err(Refusal::Unavailable(e)) => Err(Refusal::Unavailable(e)),
            Err(r) => {
                attempt.failed().await;
                Err(r)
            }
        }
    }
}
