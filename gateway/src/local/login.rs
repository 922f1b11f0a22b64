//! Password sign-in for local accounts: the form, and the check behind it (one backend of
//! [`crate::password_signin`], which counts the attempts).
//!
//! The answer is the same for an unknown user, a wrong password and a deactivated user
//! ("invalid username or password", same status, same Argon2id cost through the dummy hash), so
//! the form does not tell an attacker which names exist. The hash is computed off the async
//! workers.

use super::credentials::Credentials;
use crate::auth_endpoints::html_escape;
use crate::directory::model::User;
use crate::directory::store::DirectoryStore;
use crate::mfa::limiter::Limiter;
use std::sync::Arc;

pub use crate::password_signin::{Refusal, MAX_USER_NAME};

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The local accounts of one provider.
pub struct LocalAccounts {
    /// Provider id (`identity_providers[].id`).
    pub provider: String,
    directory: Arc<DirectoryStore>,
    credentials: Credentials,
    limiter: Arc<Limiter>,
}

impl LocalAccounts {
    /// The accounts of `provider`.
    pub fn new(
        provider: &str,
        directory: Arc<DirectoryStore>,
        credentials: Credentials,
        limiter: Arc<Limiter>,
    ) -> Self {
        Self {
            provider: provider.to_string(),
            directory,
            credentials,
            limiter,
        }
    }

    /// The tenant's user with this name (case-insensitive), if any.
    pub async fn find(&self, tenant: &str, user_name: &str) -> Result<Option<User>, Refusal> {
        self.directory
            .user_by_name(tenant, user_name)
            .await
            .map_err(|e| Refusal::Unavailable(e.to_string()))
    }

    /// Checks a user name and password (the attempt is counted by the caller,
    /// [`crate::password_signin::PasswordProvider::authenticate`]); the directory user on
    /// success. `None` is a name that is nobody's (oversized): it is not looked up but costs
    /// the same dummy hash, like every unknown name.
    pub async fn check(
        &self,
        tenant: &str,
        user_name: Option<&str>,
        password: &str,
    ) -> Result<User, Refusal> {
        let user = match user_name {
            Some(n) => self.find(tenant, n).await?,
            None => None,
        };
        let hash = match &user {
            Some(u) => self
                .credentials
                .hash_of(&u.id)
                .await
                .map_err(|e| Refusal::Unavailable(e.to_string()))?,
            None => None,
        };
        let secret = password.to_string();
        let matched =
            tokio::task::spawn_blocking(move || crate::password::verify(&secret, hash.as_deref()))
                .await
                .unwrap_or(false);
        match user {
            Some(u) if matched && u.active => Ok(u),
            Some(_) if matched => Err(Refusal::Deactivated),
            Some(_) => Err(Refusal::WrongPassword),
            None => Err(Refusal::UnknownUser),
        }
    }
}

impl LocalAccounts {
    fn limiter_key(&self, tenant: &str, user_name: &str) -> String {
        crate::password_signin::limiter_key(&self.provider, tenant, user_name)
    }

    /// The directory user of a local session (its subject is the directory user id).
    pub async fn user(&self, id: &str) -> Result<User, Refusal> {
        self.directory
            .get_user_any_tenant(id)
            .await
            .map_err(|e| Refusal::Unavailable(e.to_string()))
    }

    /// Checks `user`'s current password for a password change, counted in the sign-in
    /// form's limiter (same key, same limits): a locked account stays locked here too.
    pub async fn check_current(
        &self,
        user: &User,
        password: &str,
        client_ip: &str,
    ) -> Result<(), Refusal> {
        let attempt = self
            .limiter
            .begin(&self.limiter_key(&user.tenant, &user.user_name), client_ip)
            .await
            .map_err(|_| Refusal::Locked)?;
        let hash = self
            .credentials
            .hash_of(&user.id)
            .await
            .map_err(|e| Refusal::Unavailable(e.to_string()))?;
        let secret = password.to_string();
        let matched =
            tokio::task::spawn_blocking(move || crate::password::verify(&secret, hash.as_deref()))
                .await
                .unwrap_or(false);
        if matched && user.active {
            attempt.succeeded().await;
            Ok(())
        } else {
            attempt.failed().await;
            Err(Refusal::WrongPassword)
        }
    }

    /// Replaces `user_id`'s password hash.
    pub async fn set_password(&self, user_id: &str, phc: &str, now: i64) -> Result<(), Refusal> {
        self.credentials
            .set(user_id, phc, now)
            .await
            .map_err(|e| Refusal::Unavailable(e.to_string()))
    }
}

/// The message shown above a local-account form (sign-in, password change), escaped; empty
/// without one.
pub fn alert(error: Option<&str>) -> String {
    error
        .map(|e| {
            format!(
                "<p role=\"alert\" style=\"color:#a00\">{}</p>",
                html_escape(e)
            )
        })
        .unwrap_or_default()
}

/// The sign-in form. `state` is the login's CSRF token (also sealed in the pre-auth cookie);
/// `error` a message shown above the form.
pub fn form(
    title: &str,
    action: &str,
    state: &str,
    user_name: &str,
    error: Option<&str>,
) -> String {
    let error = alert(error);
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>{t}</title></head>\
<body style=\"font-family:sans-serif;max-width:24rem;margin:4rem auto\"><h1>{t}</h1>{error}\
<form method=\"post\" action=\"{a}\"><input type=\"hidden\" name=\"state\" value=\"{s}\">\
<p><label for=\"username\">Username</label><br><input id=\"username\" name=\"username\" autocomplete=\"username\" required value=\"{u}\"></p>\
<p><label for=\"password\">Password</label><br><input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required></p>\
<p><button type=\"submit\">Sign in</button></p></form></body></html>",
        t = html_escape(title),
        a = html_escape(action),
        s = html_escape(state),
        u = html_escape(user_name),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::model::User;

    use crate::password_signin::{Backend, PasswordProvider};

    /// The password provider over `acc`'s accounts and limiter (the sign-in form's path).
    fn provider(acc: &Arc<LocalAccounts>) -> PasswordProvider {
        PasswordProvider::new(
            &acc.provider,
            false,
            Backend::Local(acc.clone()),
            acc.limiter.clone(),
        )
    }

    async fn accounts(db: crate::store::Db) -> (Arc<LocalAccounts>, Arc<DirectoryStore>) {
        let dir = Arc::new(DirectoryStore::new(
            db.clone(),
            crate::clock::Clock::system(),
        ));
        let limiter = Arc::new(Limiter::new(3, 100, std::time::Duration::from_secs(600)));
        (
            Arc::new(LocalAccounts::new(
                "staff",
                dir.clone(),
                Credentials::new(db),
                limiter,
            )),
            dir,
        )
    }

    #[tokio::test]
    async fn same_answer_for_unknown_wrong_and_deactivated_and_a_shared_lockout() {
        let features = [
            &crate::directory::MIGRATIONS,
            &super::super::credentials::MIGRATIONS,
        ];
        for (_, db, _dir) in crate::store::test_databases("locallogin", &features).await {
            let (acc, dir) = accounts(db).await;
            let p = provider(&acc);
            let u = dir
                .create_user(
                    "",
                    &User {
                        user_name: "Alice".into(),
                        active: true,
                        source: "local".into(),
                        ..User::default()
                    },
                )
                .await
                .unwrap();
            let h = crate::password::hash("correct horse battery").unwrap();
            acc.credentials.set(&u.id, &h, 0).await.unwrap();
            let ok = p
                .authenticate("alice", "correct horse battery", "10.0.0.1")
                .await;
            assert_eq!(
                ok.map(|u| u.user),
                Ok("Alice".into()),
                "names are case-insensitive"
            );
            assert_eq!(
                p.authenticate("nobody", "x", "10.0.0.2").await,
                Err(Refusal::UnknownUser)
            );
            let huge = "é".repeat(40_000);
            assert_eq!(
                p.authenticate(&huge, "x", "10.0.0.2").await,
                Err(Refusal::UnknownUser),
                "an oversized name is nobody's"
            );
            assert_eq!(truncate(&huge, 5), "éé", "cut on a character boundary");
            assert_eq!(
                acc.check("other", Some("alice"), "correct horse battery")
                    .await
                    .map(|u| u.user_name),
                Err(Refusal::UnknownUser),
                "another tenant"
            );
            // Three wrong passwords lock the user, even from other addresses and with the right one.
            for ip in ["10.0.0.3", "10.0.0.4", "10.0.0.5"] {
                assert_eq!(
                    p.authenticate("alice", "guess", ip).await,
                    Err(Refusal::WrongPassword)
                );
            }
            assert_eq!(
                p.authenticate("alice", "correct horse battery", "10.0.0.6")
                    .await,
                Err(Refusal::Locked)
            );
            // A deactivated user with the right password is refused (after the lock, on a fresh limiter).
            let limiter = Arc::new(Limiter::new(3, 100, std::time::Duration::from_secs(600)));
            let acc2 = Arc::new(LocalAccounts::new(
                "staff",
                dir.clone(),
                acc.credentials.clone(),
                limiter,
            ));
            dir.set_user_active("", &u.id, false).await.unwrap();
            assert_eq!(
                provider(&acc2)
                    .authenticate("alice", "correct horse battery", "10.0.0.7")
                    .await,
                Err(Refusal::Deactivated)
            );
        }
    }

    /// The README's limits, on the limiter `run` builds: five wrong passwords per user name or
    /// fifty per client address lock for 15 minutes, and concurrent guesses are counted before
    /// any is checked, so twenty at once get at most five evaluations.
    #[tokio::test]
    async fn the_documented_lockout_holds_for_names_addresses_time_and_races() {
        let features = [
            &crate::directory::MIGRATIONS,
            &super::super::credentials::MIGRATIONS,
        ];
        let mut dbs = crate::store::test_databases("locallimits", &features).await;
        let (_, db, _dir) = dbs.remove(0);
        let manual = crate::clock::ManualClock::at_now();
        let limiter = Arc::new(super::super::limiter(None, &manual.clock()));
        let dir = Arc::new(DirectoryStore::new(db.clone(), manual.clock()));
        let acc = Arc::new(LocalAccounts::new(
            "staff",
            dir.clone(),
            Credentials::new(db),
            limiter,
        ));
        let p = provider(&acc);
        let h = crate::password::hash("correct horse battery").unwrap();
        for name in ["alice", "bob", "carol"] {
            let u = User {
                user_name: name.into(),
                active: true,
                source: "local".into(),
                ..User::default()
            };
            let u = dir.create_user("", &u).await.unwrap();
            acc.credentials.set(&u.id, &h, 0).await.unwrap();
        }
        let right = "correct horse battery";

        // Per user name: five wrong (from five addresses), then even the right one is refused
        // until 15 minutes have passed.
        for i in 0..5 {
            let ip = format!("10.1.0.{i}");
            assert_eq!(
                p.authenticate("alice", "guess", &ip).await,
                Err(Refusal::WrongPassword)
            );
        }
        assert_eq!(
            p.authenticate("alice", right, "10.1.1.1").await,
            Err(Refusal::Locked)
        );
        manual.advance(std::time::Duration::from_secs(15 * 60 - 1));
        assert_eq!(
            p.authenticate("alice", right, "10.1.1.1").await,
            Err(Refusal::Locked),
            "still locked one second before the 15 minutes end"
        );
        manual.advance(std::time::Duration::from_secs(2));
        assert!(p.authenticate("alice", right, "10.1.1.1").await.is_ok());

        // Per address: fifty wrong guesses over fifty names lock the address, not the users.
        for i in 0..50 {
            assert_eq!(
                p.authenticate(&format!("nobody{i}"), "guess", "10.2.0.1")
                    .await,
                Err(Refusal::UnknownUser)
            );
        }
        assert_eq!(
            p.authenticate("bob", right, "10.2.0.1").await,
            Err(Refusal::Locked)
        );
        assert!(p.authenticate("bob", right, "10.2.0.2").await.is_ok());

        // A race: twenty guesses at once for carol are counted before any is checked.
        let guesses = (0..20).map(|i| {
            let p = &p;
            async move {
                p.authenticate("carol", &format!("guess{i}"), &format!("10.3.0.{i}"))
                    .await
            }
        });
        let results = futures_util::future::join_all(guesses).await;
        let evaluated = results
            .iter()
            .filter(|r| **r == Err(Refusal::WrongPassword))
            .count();
        let locked = results
            .iter()
            .filter(|r| **r == Err(Refusal::Locked))
            .count();
        assert!(
            evaluated <= 5,
            "{evaluated} guesses were checked: {results:?}"
        );
        assert_eq!(evaluated + locked, 20, "{results:?}");
        assert_eq!(
            p.authenticate("carol", right, "10.3.1.1").await,
            Err(Refusal::Locked)
        );
    }

    #[test]
    fn the_form_escapes_what_it_echoes() {
        let f = form(
            "Sign in",
            "/.portcullis/login",
            "st\"ate",
            "<script>",
            Some("bad & worse"),
        );
        assert!(f.contains("&lt;script&gt;") && !f.contains("<script>"));
        assert!(f.contains("st&quot;ate"));
        assert!(f.contains("bad &amp; worse"));
        assert!(f.contains("autocomplete=\"current-password\""));
    }
}
