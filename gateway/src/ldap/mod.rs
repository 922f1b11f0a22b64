//! LDAP and Active Directory sign-in (`identity_providers[].type: ldap`): one backend of the
//! password sign-in ([`crate::password_signin`]), behind the same form as local accounts.
//!
//! A sign-in, in order (security-relevant throughout):
//! 1. An empty password is refused before any network traffic: a simple bind with a DN and no
//!    password is an *unauthenticated* bind that servers answer with success (RFC 4513 5.1.2).
//! 2. The service account (a pooled connection, [`conn::Pool`]) searches `user_base` for
//!    `user_filter` with the name escaped per RFC 4515 ([`filter::escape`]), so nothing typed
//!    into the form can widen the filter. Exactly one entry must match; referrals and
//!    continuation references are ignored (never followed).
//! 3. That entry's DN is bound with the password on a connection of its own, closed after. An
//!    unknown name gets a bind too (to a DN that cannot exist, with the same password), so an
//!    unknown user and a wrong password take the same round trips and get the same answer.
//! 4. Only after the user's own bind succeeded: `userAccountControl` (AD) is judged, and
//!    groups are read ([`groups`]) with the service account.
//!
//! Every failure to reach or use the directory is [`Refusal::Unavailable`]: the sign-in fails
//! closed with a "directory unavailable" page, never a session.

pub mod ad;
pub mod config;
pub mod conn;
pub mod filter;
mod groups;

use crate::password_signin::{Refusal, Verified};
use config::LdapConfig;
use conn::{Connector, DirectoryError, Pool};
use ldap3::{Scope, SearchEntry, SearchOptions};
use std::sync::Arc;

/// LDAP result codes read here (RFC 4511 appendix A).
mod rc {
    pub const SUCCESS: u32 = 0;
    pub const SIZE_LIMIT_EXCEEDED: u32 = 4;
    pub const REFERRAL: u32 = 10;
    pub const NO_SUCH_OBJECT: u32 = 32;
    pub const INVALID_CREDENTIALS: u32 = 49;
}

/// One LDAP directory.
pub struct Directory {
    cfg: LdapConfig,
    connector: Arc<Connector>,
    pool: Pool,
}

/// The values of `attr` in `entry` (attribute names are case-insensitive).
fn values<'a>(entry: &'a SearchEntry, attr: &str) -> &'a [String] {
    entry
        .attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(attr))
        .map(|(_, v)| v.as_slice())
        .unwrap_or(&[])
}

fn first(entry: &SearchEntry, attr: &str) -> Option<String> {
    values(entry, attr).first().cloned()
}

impl Directory {
    /// The directory of `cfg` (connections are opened at first use).
    pub fn new(cfg: LdapConfig) -> Result<Self, DirectoryError> {
        let connector = Arc::new(Connector::new(&cfg)?);
        let pool = Pool::new(connector.clone(), &cfg);
        Ok(Self {
            cfg,
            connector,
            pool,
        })
    }

    /// Checks `user_name` and `password` ([`crate::password_signin`] counts the attempt).
    /// `None` is a name that is nobody's (oversized): it costs the same dummy bind.
    pub async fn check(
        &self,
        user_name: Option<&str>,
        password: &str,
    ) -> Result<Verified, Refusal> {
        if password.is_empty() {
            return Err(Refusal::WrongPassword);
        }
        let unavailable = |e: DirectoryError| {
            tracing::warn!(idp = %self.cfg.id, error = %e, "ldap sign-in failed closed");
            Refusal::Unavailable(e.to_string())
        };
        let found = match user_name.filter(|n| !n.is_empty()) {
            Some(n) => self.find_user(n).await.map_err(unavailable)?,
            None => None,
        };
        let Some(entry) = found else {
            // The same work as for a real user: one bind, refused.
            let nobody = format!("cn=portcullis-no-such-user,{}", self.cfg.user_base);
            let _ = self.user_bind(&nobody, password).await;
            return Err(Refusal::UnknownUser);
        };
        match self.user_bind(&entry.dn, password).await {
            Ok(()) => {}
            Err(BindFailure::Refused(r)) => return Err(r),
            Err(BindFailure::Directory(e)) => return Err(unavailable(e)),
        }
        // Past this point the password was right: account state may be told.
        if let Some(uac) = first(&entry, ad::UAC) {
            if let Some(problem) = ad::account_control(&uac) {
                return Err(Refusal::Account(problem));
            }
        }
        let groups = self.groups_of(&entry).await.map_err(unavailable)?;
        let a = &self.cfg.attributes;
        Ok(Verified {
            user: first(&entry, &a.user)
                .unwrap_or_else(|| user_name.unwrap_or_default().to_string()),
            email: first(&entry, &a.email),
            tenant: a.tenant.as_deref().and_then(|t| first(&entry, t)),
            groups,
            sub: entry.dn,
        })
    }

    /// The one entry `user_filter` finds for `name`; none when there is none or more than one.
    async fn find_user(&self, name: &str) -> Result<Option<SearchEntry>, DirectoryError> {
        let filter = filter::fill(&self.cfg.user_filter, "{username}", name);
        let a = &self.cfg.attributes;
        let mut attrs = vec![a.user.as_str(), a.email.as_str(), ad::UAC];
        if let Some(t) = &a.tenant {
            attrs.push(t);
        }
        if self.cfg.group_base.is_none() {
            attrs.push("memberOf");
        }
        let entries = self
            .search(&self.cfg.user_base, Scope::Subtree, &filter, &attrs, 2)
            .await?;
        match <[SearchEntry; 1]>::try_from(entries) {
            Ok([one]) => Ok(Some(one)),
            Err(many) if many.len() > 1 => {
                tracing::warn!(idp = %self.cfg.id, "ldap user_filter matched more than one entry: refused");
                Ok(None)
            }
            Err(_) => Ok(None),
        }
    }

    /// A search with the service account: the entries (references skipped), at most `limit`
    /// (0: no limit). A search that hits its size limit returns what it got.
    async fn search(
        &self,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
        limit: i32,
    ) -> Result<Vec<SearchEntry>, DirectoryError> {
        let mut conn = self.pool.get().await?;
        let timeout = self.connector.timeout;
        let res = conn
            .ldap
            .with_timeout(timeout)
            .with_search_options(SearchOptions::new().sizelimit(limit))
            .search(base, scope, filter, attrs.to_vec())
            .await?;
        let ldap3::SearchResult(entries, result) = res;
        let entries = match result.rc {
            rc::SUCCESS | rc::SIZE_LIMIT_EXCEEDED => entries
                .into_iter()
                .filter(|e| !e.is_ref() && !e.is_intermediate())
                .map(SearchEntry::construct)
                .collect(),
            // Referrals are not followed; a base that does not exist holds nobody.
            rc::REFERRAL | rc::NO_SUCH_OBJECT => Vec::new(),
            other => {
                return Err(DirectoryError::Search(format!(
                    "result {other} {}",
                    result.text
                )))
            }
        };
        conn.release();
        Ok(entries)
    }

    /// Binds `dn` with `password` on a connection of its own, closed after.
    async fn user_bind(&self, dn: &str, password: &str) -> Result<(), BindFailure> {
        let mut ldap = self
            .connector
            .open()
            .await
            .map_err(BindFailure::Directory)?;
        let res = ldap
            .with_timeout(self.connector.timeout)
            .simple_bind(dn, password)
            .await
            .map_err(|e| BindFailure::Directory(e.into()))?;
        let _ = ldap.unbind().await;
        match res.rc {
            rc::SUCCESS => Ok(()),
            rc::INVALID_CREDENTIALS => Err(BindFailure::Refused(ad::bind_refusal(&res.text))),
            other => Err(BindFailure::Directory(DirectoryError::Unreachable(
                format!("bind result {other} {}", res.text),
            ))),
        }
    }
}

/// Why a user's bind did not succeed.
enum BindFailure {
    /// The directory said no (wrong password, or an AD account state).
    Refused(Refusal),
    /// The directory could not be asked.
    Directory(DirectoryError),
}
