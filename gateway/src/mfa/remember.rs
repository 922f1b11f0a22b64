//! "Remember this device": after a successful TOTP, email or SMS verification with the box
//! ticked, the browser gets a random 256-bit token in a cookie (`__Host-` on TLS, Secure,
//! HttpOnly, SameSite=Lax) and the store keeps its SHA-256 with the user, the factor proven,
//! the expiry and a User-Agent label. On a later step-up for the *same user* whose route
//! accepts *that factor*, the device re-asserts it (recorded as that method, audited as
//! `remembered`). Tokens of another user, expired or revoked rows are ignored. Recovery codes
//! never remember a device: they are for when the usual factor is lost.

use super::otp_store::DeviceRow;
use super::{Mfa, MfaError};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};

/// The device cookie's name.
pub fn cookie_name(tls: bool) -> &'static str {
    crate::session::cookies::GatewayCookie::RememberedDevice.name(tls)
}

/// Factors a device may be remembered for.
pub fn rememberable(method: &str) -> bool {
    matches!(method, "totp" | "email" | "sms")
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A short, printable label from a User-Agent (shown in the device list, escaped there).
pub fn label(user_agent: Option<&str>) -> String {
    let ua = user_agent.unwrap_or("").trim();
    let browser = ["Edg/", "Firefox/", "Chrome/", "Safari/"]
        .iter()
        .find(|b| ua.contains(*b))
        .map(|b| b.trim_end_matches('/').replace("Edg", "Edge"));
    let os = ["Windows", "Android", "iPhone", "Mac OS", "Linux"]
        .iter()
        .find(|o| ua.contains(*o));
    match (browser, os) {
        (Some(b), Some(o)) => format!("{b} on {o}"),
        (Some(b), None) => b,
        _ if ua.is_empty() => "Unknown browser".into(),
        _ => ua.chars().filter(|c| !c.is_control()).take(60).collect(),
    }
}

impl Mfa {
    /// Remembers this device for `user` and `method` until `now + days`; returns the cookie
    /// token (the only copy).
    pub async fn remember_device(
        &self,
        user: &str,
        method: &str,
        label: &str,
        days: u32,
        now: i64,
    ) -> Result<String, MfaError> {
        let mut b = [0u8; 32];
        SystemRandom::new()
            .fill(&mut b)
            .map_err(|_| MfaError::Hash)?;
        let token = B64.encode(b);
        self.store
            .add_device(&DeviceRow {
                id: super::new_id(),
                user: user.to_string(),
                token_hash: hash(&token),
                method: method.to_string(),
                label: label.to_string(),
                created: now,
                expires: now + i64::from(days) * 86_400,
                last_used: now,
            })
            .await?;
        Ok(token)
    }

    /// The factor a remembered device re-asserts for `user` now, if the token is valid for
    /// this user, not expired, not revoked, and `accepts` that factor. Records the use.
    pub async fn remembered(
        &self,
        user: &str,
        token: &str,
        now: i64,
        accepts: impl Fn(&str) -> bool,
    ) -> Result<Option<String>, MfaError> {
        let Some(d) = self.applicable_device(user, token, now, accepts).await? else {
            return Ok(None);
        };
        self.store.touch_device(&d.id, now).await?;
        Ok(Some(d.method))
    }

    /// The device `token` names, if it would re-assert a factor `accepts` for `user` now.
    /// Reads only: safe to ask on a GET.
    pub async fn applicable_device(
        &self,
        user: &str,
        token: &str,
        now: i64,
        accepts: impl Fn(&str) -> bool,
    ) -> Result<Option<DeviceRow>, MfaError> {
        let Some(d) = self.store.device(&hash(token)).await? else {
            return Ok(None);
        };
        Ok((d.user == user && d.expires > now && accepts(&d.method)).then_some(d))
    }

    /// The user's remembered devices.
    pub async fn devices(&self, user: &str, now: i64) -> Result<Vec<DeviceRow>, MfaError> {
        Ok(self.store.devices(user, now).await?)
    }

    /// Revokes one of the user's devices.
    pub async fn forget_device(&self, user: &str, id: &str) -> Result<bool, MfaError> {
        Ok(self.store.remove_device(user, id).await?)
    }

    /// Records a one-time code's nonce as used until `expires`; false if it was used already.
    pub async fn claim_code(&self, nonce: &str, expires: i64, now: i64) -> Result<bool, MfaError> {
        Ok(self.store.claim_code(nonce, expires, now).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_short_and_readable() {
        assert_eq!(
            label(Some("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36")),
            "Chrome on Linux"
        );
        assert_eq!(label(None), "Unknown browser");
        assert_eq!(label(Some("curl/8\u{7}")), "curl/8");
    }

    #[tokio::test]
    async fn device_works_for_its_user_and_factor_until_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let url = crate::store::StoreUrl::Sqlite(dir.path().join("p.db"));
        let db = crate::store::Db::open(&url, &[&crate::mfa::store::MIGRATIONS])
            .await
            .unwrap();
        let mfa = Mfa::new(crate::mfa::store::over(&db), &[9; 32]).unwrap();
        let now = 1_800_000_000;
        let t = mfa
            .remember_device("ann", "email", "Firefox", 30, now)
            .await
            .unwrap();
        let any = |_: &str| true;
        assert_eq!(
            mfa.remembered("ann", &t, now + 10, any)
                .await
                .unwrap()
                .as_deref(),
            Some("email")
        );
        assert_eq!(
            mfa.remembered("bob", &t, now, any).await.unwrap(),
            None,
            "other user"
        );
        assert_eq!(
            mfa.remembered("ann", &t, now, |m| m == "totp")
                .await
                .unwrap(),
            None,
            "route does not accept the remembered factor"
        );
        assert_eq!(
            mfa.remembered("ann", "forged", now, any).await.unwrap(),
            None
        );
        assert_eq!(
            mfa.remembered("ann", &t, now + 30 * 86_400, any)
                .await
                .unwrap(),
            None,
            "expired"
        );
        let d = mfa.devices("ann", now).await.unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].last_used, now + 10);
        assert_ne!(d[0].token_hash, t, "only the hash is stored");
        assert!(mfa.forget_device("ann", &d[0].id).await.unwrap());
        assert_eq!(
            mfa.remembered("ann", &t, now, any).await.unwrap(),
            None,
            "revoked"
        );
    }
}
