//! Managing one's own factors: right after a real verification (the same 5-minute window that
//! allows adding a security key), the MFA page lists the user's authenticator apps and security
//! keys with a "Remove" button; `POST /.portcullis/mfa/factors/remove` removes one. The last
//! factor cannot be removed: a user with none is "first-time" again, and anyone holding only
//! their password could then enrol a factor of their own.

use super::{first_time, html, map_err, owner, recently_verified, Service};
use crate::errors::{GatewayError, Reply};
use crate::local_request::LocalRequest;
use crate::mfa::pages::esc;
use crate::mfa::FactorInfo;
use crate::sso::Authenticated;

/// The endpoint served here.
pub(super) const REMOVE: &str = "/.portcullis/mfa/factors/remove";

/// Factors a user can see and remove (recovery codes are replaced as a set, not one by one).
fn manageable(f: &FactorInfo) -> bool {
    f.kind != "recovery"
}

fn kind_name(kind: &str) -> &str {
    match kind {
        "totp" => "authenticator app",
        "webauthn" => "security key or passkey",
        other => other,
    }
}

impl Service {
    /// The "Your factors" list, only inside the add-a-factor window and when there is more
    /// than one factor to choose from.
    pub(super) fn factors_html(&self, a: &Authenticated, factors: &[FactorInfo]) -> String {
        let mine: Vec<&FactorInfo> = factors.iter().filter(|f| manageable(f)).collect();
        if mine.len() < 2 || !recently_verified(&a.record, self.clock.utc()) {
            return String::new();
        }
        let items: String = mine
            .iter()
            .map(|f| {
                let added = chrono::DateTime::from_timestamp(f.created, 0)
                    .map(|d| d.format("%Y-%m-%d").to_string())
                    .unwrap_or_default();
                format!(
                    "<li>{} ({}, added {added})<form method=\"post\" action=\"{REMOVE}\">\
<input type=\"hidden\" name=\"csrf\" value=\"{}\"><input type=\"hidden\" name=\"factor\" value=\"{}\">\
<button type=\"submit\">Remove</button></form></li>",
                    esc(&f.label),
                    kind_name(&f.kind),
                    esc(&a.record.csrf),
                    esc(&f.id)
                )
            })
            .collect();
        format!("<h2>Your factors</h2><ul id=\"factors\">{items}</ul>")
    }

    /// `POST /.portcullis/mfa/factors/remove`: CSRF, a real verification within the window,
    /// the factor the user's own and not their last one; audited as `mfa.removed`.
    pub(super) async fn remove_factor(
        &self,
        a: &Authenticated,
        req: &LocalRequest,
    ) -> Result<Reply, GatewayError> {
        let form = req.form()?;
        self.check_csrf(a, form.get("csrf").map_or("", String::as_str))?;
        let user = &owner(a);
        let ip = req.client_ip.to_string();
        if !recently_verified(&a.record, self.clock.utc()) {
            self.refused(a, "factor removal without a recent verification");
            return Ok(html(
                403,
                &self.cfg,
                "Verify it's you first",
                "<p role=\"alert\">Verify with one of your factors, then remove another within 5 minutes.</p>",
            ));
        }
        let id = form.get("factor").map_or("", String::as_str);
        let mfa = self.mfa().await?;
        let factors = mfa.factors(user).await.map_err(map_err)?;
        let Some(target) = factors.iter().find(|f| f.id == id && manageable(f)) else {
            return Ok(html(
                404,
                &self.cfg,
                "No such factor",
                "<p role=\"alert\">That factor is not one of yours.</p>",
            ));
        };
        let rest: Vec<FactorInfo> = factors.iter().filter(|f| f.id != id).cloned().collect();
        if first_time(&rest) {
            return Ok(html(
                409,
                &self.cfg,
                "Keep one factor",
                "<p role=\"alert\">This is your last factor: add another before removing it.</p>",
            ));
        }
        if mfa.remove(user, id).await.map_err(map_err)? {
            crate::mfa::event(&self.audit, &target.kind, "removed", user, &ip);
        }
        Ok(Reply::redirect(crate::sso::Redirect {
            location: format!("{}/.portcullis/mfa", req.origin),
            cookies: Vec::new(),
        }))
    }
}
