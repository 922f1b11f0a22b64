//! The step-up endpoints under `/.portcullis/mfa`: a page listing what the user can use
//! (security keys, authenticator app, email/SMS codes, recovery codes, remembered devices), or
//! enrolment for a first-time user; and the POST handlers that verify a factor, record
//! `{method, at}` in the session under a new session id, and return to the same-origin URL.
//! Every form and ceremony carries the session's CSRF token; wrong codes and refused ceremonies
//! count towards per-user and per-IP lockout; every outcome is counted and audited (codes
//! themselves are never logged).

use super::config::MfaConfig;
use super::limiter::Limiter;
use super::pages::{code_form_with, error_p, esc, page, webauthn_form, WebauthnForm, CSP};
use super::webauthn::{RelyingParty, KIND};
use super::{otp, totp, Mfa, MfaError};
use crate::clock::Clock;
use crate::errors::{GatewayError, Reply};
use crate::local_request::LocalRequest;
use crate::session;
use crate::sso::{same, AuthError, Authenticated, Sso};
use crate::store::{Db, StoreUrl};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::IpAddr;

mod codes;
mod manage;
mod webauthn;

/// How long an enrolment started on the page may take to finish.
const ENROL_TTL: i64 = 600;

/// MFA at run time: settings, the shared database (the process's one [`Db`]), the WebAuthn
/// relying party, the email/SMS channels and the attempt limiter.
pub struct Service {
    /// Validated `mfa:`.
    pub cfg: MfaConfig,
    db: Db,
    mfa: tokio::sync::OnceCell<Mfa>,
    rp: Option<RelyingParty>,
    /// Wrong-code limits.
    pub limiter: Limiter,
    /// Email and SMS code channels that are configured.
    channels: Vec<otp::Channel>,
    codes: otp::Codes,
    /// Where MFA events are recorded.
    audit: crate::audit::Audit,
    /// Code, enrolment, ceremony and step-up times read this clock (the gateway's).
    pub clock: Clock,
}

/// The route's factors, from the `methods` hint the proxy puts in the step-up page URL
/// (`methods=totp,email`); `None` without a hint. A hint only chooses what the page offers and
/// whether a remembered device applies: the route's policy decides again on return, so a
/// tampered list grants nothing.
fn accepted(query: &HashMap<String, String>) -> Option<Vec<String>> {
    query.get("methods").map(|m| {
        m.split(',')
            .map(|x| x.trim().to_ascii_lowercase())
            .filter(|x| !x.is_empty())
            .collect()
    })
}

/// The pending enrolment, sealed in a cookie with the session keys.
#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    user: String,
    secret: String,
    exp: i64,
}

/// What the MFA page is asked to show.
struct Page<'a> {
    /// Same-origin URL to return to.
    ret: &'a str,
    /// Accepted factors (empty: any).
    methods: Vec<String>,
    /// Error from the previous attempt.
    error: Option<&'a str>,
}

impl<'a> Page<'a> {
    fn new(ret: &'a str, error: Option<&'a str>) -> Self {
        Self {
            ret,
            methods: Vec::new(),
            error,
        }
    }

    fn accepts(&self, method: &str) -> bool {
        self.methods.is_empty() || self.methods.iter().any(|m| m == method)
    }
}

/// How recent a second factor must be to add another one.
const ADD_FACTOR_WINDOW: chrono::Duration = chrono::Duration::minutes(5);

/// Whether the session passed a second factor within [`ADD_FACTOR_WINDOW`] (security-relevant:
/// a stolen password alone must not be enough to add an attacker's key). Only the enrolled
/// factors count: an email or SMS code proves a mailbox or phone, not possession of a key.
/// A factor re-asserted by a remembered device cookie does not count: whoever holds that
/// cookie must not be able to add a key of their own.
fn recently_verified(rec: &session::SessionRecord, now: chrono::DateTime<chrono::Utc>) -> bool {
    let events = &rec.identity.auth_methods;
    events.iter().any(|m| {
        matches!(m.method.as_str(), "totp" | "webauthn" | "recovery")
            && now - m.at <= ADD_FACTOR_WINDOW
            && !events
                .iter()
                .any(|r| r.method == REMEMBERED && r.at == m.at)
    })
}

/// Where the "continue on this remembered device" form posts (with the CSRF token): using a
/// device elevates the session, a state change that must never happen on a GET (a link or an
/// image could trigger it).
pub const REMEMBERED_ENDPOINT: &str = "/.portcullis/mfa/remembered";

/// Recorded next to (same time as) a factor a remembered device re-asserted.
pub(super) const REMEMBERED: &str = "remembered";

/// A user with no second factor yet (recovery codes alone do not count): the only case where
/// one may be enrolled without passing another first.
fn first_time(factors: &[super::FactorInfo]) -> bool {
    !factors.iter().any(|f| f.kind != "recovery")
}

/// The key this session's MFA state lives under — factors, remembered devices, lockouts,
/// pending enrolments and ceremonies: the identity provider and the subject it issued
/// ([`super::user_key`]), never the user name alone, which another provider may also issue
/// (M1, security-relevant).
pub(super) fn owner(a: &Authenticated) -> String {
    super::user_key(&a.record.idp, &a.record.sub)
}

fn enrol_cookie(tls: bool) -> &'static str {
    crate::session::cookies::GatewayCookie::MfaEnrol.name(tls)
}

fn html(status: u16, b: &MfaConfig, heading: &str, body: &str) -> Reply {
    Reply {
        status,
        content_type: "text/html; charset=utf-8",
        headers: vec![
            ("content-security-policy".into(), CSP.into()),
            ("x-frame-options".into(), "DENY".into()),
            ("referrer-policy".into(), "no-referrer".into()),
        ],
        body: page(&b.branding, heading, body).into_bytes(),
    }
}

impl Service {
    /// Now in Unix seconds on the service's clock (0 before the epoch).
    fn now_unix(&self) -> u64 {
        self.clock.unix_u64()
    }

    /// From the validated config and the process's database. With a Redis session store,
    /// attempt counters live in that Redis (shared by replicas). A relying party or a channel
    /// that does not build is an error (fail closed: start-up refuses the config).
    pub fn new(
        cfg: MfaConfig,
        db: Db,
        redis: Option<std::sync::Arc<crate::session::redis_store::RedisConn>>,
        audit: crate::audit::Audit,
        clock: Clock,
    ) -> Result<Self, String> {
        let limiter = codes::limiter(&cfg, redis, &clock);
        let channels = codes::channels(&cfg)?;
        let rp = cfg
            .webauthn
            .as_ref()
            .map(|w| {
                RelyingParty::new(w, &cfg.branding.title).map_err(|e| format!("mfa.webauthn: {e}"))
            })
            .transpose()?;
        Ok(Self {
            codes: otp::Codes::new(&cfg.encryption_key),
            cfg,
            db,
            mfa: tokio::sync::OnceCell::new(),
            rp,
            limiter,
            channels,
            audit,
            clock,
        })
    }

    /// Checks at start that the store is usable (the schema was migrated when the process
    /// opened `db`) and that the key is valid, then returns the service. The error says what
    /// failed (the caller names `mfa`); `store_url` is only for the log line.
    pub fn check_and_new(
        cfg: MfaConfig,
        db: Db,
        store_url: &StoreUrl,
        redis: Option<std::sync::Arc<crate::session::redis_store::RedisConn>>,
        audit: crate::audit::Audit,
        clock: Clock,
    ) -> Result<Self, String> {
        super::seal::Sealer::new(&cfg.encryption_key).map_err(|e| e.to_string())?;
        let store = super::store::over(&db);
        let legacy = Db::block_on(store.legacy_owners())
            .and_then(|r| r)
            .map_err(|e| e.to_string())?;
        if legacy > 0 {
            return Err(format!(
                "{legacy} enrolment(s) in mfa_factors are keyed by a bare user name (an older \
                 version); they would match nobody and let those users enrol again without a \
                 second factor: re-key them to provider:subject or delete them (README, MFA, \
                 Upgrading) before starting"
            ));
        }
        tracing::info!(store = %store_url.redacted(), totp = cfg.totp_issuer.is_some(), webauthn = cfg.webauthn.is_some(), email = cfg.email.is_some(), sms = cfg.sms.is_some(), remember_device_days = cfg.remember_device_days, "mfa enabled");
        let svc = Self::new(cfg, db, redis, audit, clock)?;
        if svc
            .rp
            .as_ref()
            .is_some_and(|rp| rp.verification() == super::webauthn::Verification::Discouraged)
        {
            tracing::warn!("mfa.webauthn.user_verification: discouraged — a touch of the key is enough, no PIN or biometric is checked");
        }
        Ok(svc)
    }

    /// Refuses a form or ceremony without the session's CSRF token (audited).
    fn check_csrf(&self, a: &Authenticated, csrf: &str) -> Result<(), GatewayError> {
        if same(csrf, &a.record.csrf) {
            return Ok(());
        }
        self.refused(a, "no valid CSRF token");
        Err(AuthError::Csrf.into())
    }

    /// Audits a request refused before any code was checked.
    fn refused(&self, a: &Authenticated, reason: &str) {
        self.audit.record(crate::audit::AuditEvent::MfaRefused {
            user: owner(a),
            reason: reason.to_string(),
        });
    }

    async fn mfa(&self) -> Result<&Mfa, GatewayError> {
        self.mfa
            .get_or_try_init(|| async {
                Mfa::new(super::store::over(&self.db), &self.cfg.encryption_key)
                    .map_err(|_| GatewayError::MfaUnavailable)
            })
            .await
    }

    /// Whether `path` is served here.
    pub fn is_endpoint(path: &str) -> bool {
        matches!(
            path,
            "/.portcullis/mfa"
                | "/.portcullis/mfa/verify"
                | "/.portcullis/mfa/enrol"
                | "/.portcullis/mfa/recovery"
                | REMEMBERED_ENDPOINT
        ) || path == manage::REMOVE
            || codes::is_endpoint(path)
            || webauthn::is_endpoint(path)
    }

    /// Serves one MFA endpoint.
    pub async fn serve(&self, sso: &Sso, req: &LocalRequest) -> Result<Reply, GatewayError> {
        let a = sso
            .identify(&req.headers, req.tls)
            .await?
            .ok_or(GatewayError::Unauthenticated)?;
        let mut reply = match (req.path.as_str(), req.method.as_str()) {
            // GET changes nothing: a remembered device is offered as a form to POST (L11).
            ("/.portcullis/mfa", "GET") => {
                let ret = req.params.get("return").map_or("/", String::as_str);
                let methods = accepted(&req.params);
                // Only on a step-up (a `methods` hint) whose factors a remembered device of this
                // browser would re-assert; the check only reads.
                let offer = match methods.as_deref() {
                    Some(m) if req.params.get("device").is_none_or(|d| d != "0") => {
                        self.remembered_applies(&a, req, m).await?
                    }
                    _ => false,
                };
                if offer {
                    self.remembered_offer(&a, ret, req.params.get("methods"))
                } else {
                    let page = Page {
                        methods: methods.unwrap_or_default(),
                        ..Page::new(ret, None)
                    };
                    self.show(sso, &a, &page, req.tls, req.client_ip).await?
                }
            }
            (REMEMBERED_ENDPOINT, "POST") => {
                let form = req.form()?;
                self.check_csrf(&a, form.get("csrf").map_or("", String::as_str))?;
                let ret = form.get("return").map_or("/", String::as_str);
                let methods = accepted(&form);
                match self
                    .remembered(sso, &a, req, ret, methods.as_deref())
                    .await?
                {
                    Some(r) => r,
                    None => {
                        let page = Page {
                            methods: methods.unwrap_or_default(),
                            ..Page::new(ret, None)
                        };
                        self.show(sso, &a, &page, req.tls, req.client_ip).await?
                    }
                }
            }
            (manage::REMOVE, "POST") => self.remove_factor(&a, req).await?,
            (p, "POST") if codes::is_endpoint(p) => {
                let form = req.form()?;
                self.check_csrf(&a, form.get("csrf").map_or("", String::as_str))?;
                self.serve_codes(sso, &a, req, &form).await?
            }
            (
                "/.portcullis/mfa/verify" | "/.portcullis/mfa/enrol" | "/.portcullis/mfa/recovery",
                "POST",
            ) => {
                let form = req.form()?;
                self.check_csrf(&a, form.get("csrf").map_or("", String::as_str))?;
                let ret = form.get("return").map_or("/", String::as_str);
                let code = form.get("code").map_or("", String::as_str);
                let remember = form.get("remember").is_some_and(|v| v == "1");
                self.submit(sso, &a, req, ret, code, remember).await?
            }
            _ => self.webauthn(sso, &a, req).await?,
        };
        if let Some(c) = a.set_cookie {
            reply.headers.push(("set-cookie".into(), c));
        }
        Ok(reply)
    }

    /// The page for this user: locked notice; the factors they can verify with here (security
    /// keys, authenticator app and recovery codes; email/SMS code offers; adding a security key
    /// right after a verification; remembered devices); or, for a first-time user, enrolment of
    /// what the route accepts next to any code offers. What is offered follows the route's
    /// `methods` hint, so a page never shows only forms that could not satisfy the route.
    async fn show(
        &self,
        sso: &Sso,
        a: &Authenticated,
        page: &Page<'_>,
        tls: bool,
        ip: IpAddr,
    ) -> Result<Reply, GatewayError> {
        let user = &owner(a);
        if self.limiter.locked(user, &ip.to_string()).await.is_some() {
            return Ok(html(
                429,
                &self.cfg,
                "Too many attempts",
                "<p role=\"alert\">Too many wrong codes. Try again later.</p>",
            ));
        }
        let factors = self.mfa().await?.factors(user).await.map_err(map_err)?;
        let has = |kind: &str| factors.iter().any(|f| f.kind == kind);
        let (csrf, ret, error) = (&a.record.csrf, page.ret, page.error);
        let status = if error.is_some() { 401 } else { 200 };
        let webauthn_on = self.rp.is_some();
        let codes = self.offers(a, ret, &page.methods);
        let devices = self.devices_html(a).await?;
        // The error goes into the code form when there is one, else on top of the page.
        let mut error_shown = false;
        let mut verify = String::new();
        if webauthn_on && has(KIND) && page.accepts(KIND) {
            verify += "<p>This page needs a second factor. Use your security key or passkey.</p>";
            verify += &webauthn_form(WebauthnForm::Authenticate, csrf, ret);
            let keys: String = factors
                .iter()
                .filter(|f| f.kind == KIND)
                .map(|f| format!("<li>{}</li>", esc(&f.label)))
                .collect();
            verify += &format!("<p>Your keys:</p><ul id=\"webauthn-keys\">{keys}</ul>");
        }
        // TOTP where the route takes it (or its recovery codes); on a route that takes neither,
        // only when no code is on offer either (it then leads to adding a key, below).
        if has("totp") && (page.accepts("totp") || page.accepts("recovery") || codes.is_empty()) {
            verify += &format!(
                "<p>This page needs a second factor. Enter the 6-digit code from your authenticator app.</p>{}",
                code_form_with("/.portcullis/mfa/verify", csrf, ret, "Authentication code", error, &self.remember_box())
            );
            error_shown = true;
        }
        if !verify.is_empty() {
            verify += &format!(
                "<details><summary>Lost your device? Use a recovery code</summary>\
<form method=\"post\" action=\"/.portcullis/mfa/recovery\" id=\"recovery-form\">\
<input type=\"hidden\" name=\"csrf\" value=\"{}\"><input type=\"hidden\" name=\"return\" value=\"{}\">\
<p><label for=\"recovery\">Recovery code</label><br><input id=\"recovery\" name=\"code\" autocomplete=\"off\" required></p>\
<p><button type=\"submit\">Use recovery code</button></p></form></details>",
                esc(csrf),
                esc(ret)
            );
            verify += &codes;
            if webauthn_on && recently_verified(&a.record, self.clock.utc()) {
                verify += "<h2>Add a security key or passkey</h2>";
                verify += &webauthn_form(WebauthnForm::Register, csrf, ret);
            }
            verify += &self.factors_html(a, &factors);
            let body = top_error(error, error_shown) + &verify + &devices;
            return Ok(html(status, &self.cfg, "Verify it's you", &body));
        }
        // Enrolment without a second factor only for a user who has none: adding one next to
        // an existing factor needs a recent verification with it (above).
        let first_time = first_time(&factors);
        let offer_webauthn = first_time && webauthn_on && page.accepts(KIND);
        let offer_totp = first_time
            && self.cfg.totp_issuer.is_some()
            && (page.accepts("totp") || (!offer_webauthn && codes.is_empty()));
        if !offer_webauthn && !offer_totp {
            if codes.is_empty() {
                return Ok(html(
                    403,
                    &self.cfg,
                    "Second factor needed",
                    "<p>This page needs a second factor, and you have none enrolled that it accepts. Ask your administrator.</p>",
                ));
            }
            let body = top_error(error, false)
                + "<p>This page needs a second factor.</p>"
                + &codes
                + &devices;
            return Ok(html(status, &self.cfg, "Verify it's you", &body));
        }
        let mut body = String::new();
        if offer_webauthn {
            body += "<p>Set up a security key or passkey: it will be asked for on pages that need a second factor.</p>";
            body += &webauthn_form(WebauthnForm::Register, csrf, ret);
        }
        let mut cookie = None;
        if let (true, Some(issuer)) = (offer_totp, &self.cfg.totp_issuer) {
            let secret = totp::generate_secret().map_err(|_| GatewayError::MfaUnavailable)?;
            let pending = Pending {
                user: user.clone(),
                secret: totp::base32(&secret),
                exp: self.clock.unix() + ENROL_TTL,
            };
            let name = enrol_cookie(tls);
            let sealed = sso
                .codec
                .seal(name, &pending)
                .ok_or(GatewayError::MfaUnavailable)?;
            // The app shows the user's name; the factor is stored under `owner`.
            let uri = totp::otpauth_uri(
                &totp::Params::default(),
                issuer,
                &a.record.identity.user,
                &secret,
            );
            let qr = totp::qr_svg(&uri).unwrap_or_default();
            if offer_webauthn {
                body += "<h2>Or use an authenticator app</h2>";
            }
            body += &format!(
                "<p>Set up an authenticator app: scan this code, or add an account with the key below, then enter the code it shows.</p>\
<p>{qr}</p><p>Key: <code id=\"totp-secret\">{}</code></p><p>Or open: <code id=\"otpauth-uri\">{}</code></p>{}",
                esc(&pending.secret),
                esc(&uri),
                code_form_with("/.portcullis/mfa/enrol", csrf, ret, "Code from the app", error, &self.remember_box())
            );
            error_shown = true;
            cookie = Some(session::set_cookie(name, &sealed, tls, Some(ENROL_TTL)));
        }
        let body = top_error(error, error_shown) + &body + &codes + &devices;
        let mut r = html(status, &self.cfg, "Set up two-step verification", &body);
        r.headers
            .extend(cookie.map(|c| ("set-cookie".to_string(), c)));
        Ok(r)
    }

    /// A TOTP code, a TOTP enrolment or a recovery code; `remember` asks for a remembered
    /// device on success (TOTP only: recovery codes are never remembered).
    async fn submit(
        &self,
        sso: &Sso,
        a: &Authenticated,
        req: &LocalRequest,
        ret: &str,
        code: &str,
        remember: bool,
    ) -> Result<Reply, GatewayError> {
        let (path, headers, origin, tls, ip) = (
            req.path.as_str(),
            &req.headers,
            req.origin.as_str(),
            req.tls,
            req.client_ip,
        );
        let user = &owner(a);
        let ip_s = ip.to_string();
        let factor = if path == "/.portcullis/mfa/recovery" {
            "recovery"
        } else {
            "totp"
        };
        // Counted before the code is checked (H5): a refused attempt is never evaluated.
        let Ok(attempt) = self.limiter.begin(user, &ip_s).await else {
            super::event(&self.audit, factor, "locked_out", user, &ip_s);
            return self.show(sso, a, &Page::new(ret, None), tls, ip).await;
        };
        let mfa = self.mfa().await?;
        let now = self.now_unix();
        let enrolling = path == "/.portcullis/mfa/enrol";
        let result = if enrolling {
            let name = enrol_cookie(tls);
            let pending = session::cookie_values(headers, name)
                .into_iter()
                .find_map(|v| sso.codec.open::<Pending>(name, v))
                .filter(|p| &p.user == user && p.exp > self.clock.unix());
            let Some(secret) = pending.and_then(|p| totp::from_base32(&p.secret)) else {
                attempt.refund().await;
                return Err(AuthError::BadRequest("enrolment expired: start again").into());
            };
            mfa.enrol_totp(user, "Authenticator app", &secret, code, now)
                .await
        } else if factor == "recovery" {
            mfa.use_recovery_code(user, code).await
        } else {
            mfa.verify_totp(user, code, now).await
        };
        match result {
            Ok(_) => {
                attempt.succeeded().await;
                super::event(
                    &self.audit,
                    factor,
                    if enrolling { "enrolled" } else { "success" },
                    user,
                    &ip_s,
                );
                let cookie = sso.elevate(&a.sid, &a.record, &[factor], tls).await?;
                let mut cookies = vec![cookie];
                if remember {
                    cookies.extend(self.device_cookie(user, factor, headers, tls).await?);
                }
                if enrolling {
                    cookies.push(session::clear_cookie(enrol_cookie(tls), tls));
                    if self.cfg.recovery_codes > 0 {
                        let codes = mfa
                            .issue_recovery_codes(user, self.cfg.recovery_codes, now)
                            .await
                            .map_err(map_err)?;
                        super::event(&self.audit, "recovery", "issued", user, &ip_s);
                        let items: String = codes
                            .iter()
                            .map(|c| format!("<li><code>{}</code></li>", esc(c)))
                            .collect();
                        let body = format!(
                            "<p>Your authenticator app is set up. Save these recovery codes somewhere safe: \
each works once if you lose your device. They are shown only now.</p>\
<ul id=\"recovery-codes\">{items}</ul><p><a href=\"{}\">Continue</a></p>",
                            esc(&sso.return_to(Some(ret), origin))
                        );
                        let mut r = html(200, &self.cfg, "Save your recovery codes", &body);
                        r.headers
                            .extend(cookies.into_iter().map(|c| ("set-cookie".to_string(), c)));
                        return Ok(r);
                    }
                }
                Ok(Reply::redirect(crate::sso::Redirect {
                    location: sso.return_to(Some(ret), origin),
                    cookies,
                }))
            }
            Err(e @ (MfaError::WrongCode | MfaError::Replayed)) => {
                let outcome = if matches!(e, MfaError::Replayed) {
                    "replay"
                } else {
                    "failure"
                };
                super::event(&self.audit, factor, outcome, user, &ip_s);
                if attempt.failed().await {
                    super::event(&self.audit, factor, "lockout", user, &ip_s);
                }
                let msg = if matches!(e, MfaError::Replayed) {
                    "That code was already used. Wait for the next one."
                } else {
                    "That code is not right. Try again."
                };
                // An enrolment page issues a new key with the error (never weaker).
                self.show(sso, a, &Page::new(ret, Some(msg)), tls, ip).await
            }
            Err(e) => Err(map_err(e)),
        }
    }
}

/// The previous attempt's error as a paragraph on top of the page, unless a code form on the
/// page already shows it.
fn top_error(error: Option<&str>, shown: bool) -> String {
    match error {
        Some(e) if !shown => error_p(e),
        _ => String::new(),
    }
}

fn map_err(e: MfaError) -> GatewayError {
    match e {
        MfaError::Store(e) => {
            tracing::error!(error = %e, "mfa store unavailable");
            GatewayError::MfaUnavailable
        }
        MfaError::Seal(e) => {
            tracing::error!(error = %e, "mfa: a stored factor secret does not open (wrong mfa.encryption_key?)");
            GatewayError::MfaUnavailable
        }
        MfaError::Hash => {
            tracing::error!("mfa: recovery code hashing failed");
            GatewayError::MfaUnavailable
        }
        MfaError::Encoding => {
            tracing::error!("mfa: a stored webauthn credential record is malformed");
            GatewayError::MfaUnavailable
        }
        MfaError::WrongCode
        | MfaError::Replayed
        | MfaError::Webauthn(_)
        | MfaError::CounterRegressed => GatewayError::MfaRefused,
    }
}

#[cfg(test)]
mod window_tests {
    use super::*;
    use portcullis_policy::input::AuthEvent;

    fn rec(events: &[(&str, i64)], now: chrono::DateTime<chrono::Utc>) -> session::SessionRecord {
        let mut r = crate::session::store::tests::record("corp", "alice", None);
        r.identity.auth_methods = events
            .iter()
            .map(|(m, ago)| AuthEvent {
                method: (*m).to_string(),
                at: now - chrono::Duration::seconds(*ago),
            })
            .collect();
        r
    }

    #[test]
    fn only_a_fresh_own_factor_opens_the_add_a_key_window() {
        let now = chrono::Utc::now();
        assert!(recently_verified(&rec(&[("totp", 10)], now), now));
        assert!(
            !recently_verified(&rec(&[("totp", 600)], now), now),
            "too old"
        );
        assert!(
            !recently_verified(&rec(&[("email", 10)], now), now),
            "a mailbox is not a key"
        );
        assert!(
            !recently_verified(&rec(&[("totp", 10), (REMEMBERED, 10)], now), now),
            "a remembered device cookie re-asserted it"
        );
        assert!(
            recently_verified(
                &rec(&[("totp", 400), (REMEMBERED, 400), ("webauthn", 5)], now),
                now
            ),
            "a real verification after a remembered one counts"
        );
    }
}

#[cfg(test)]
mod clock_tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::time::Duration;

    /// The service, its limiter and its code times all read the one clock it is built with:
    /// a lockout ends when that clock passes it, without sleeping.
    #[tokio::test]
    async fn the_service_and_its_limiter_share_the_injected_clock() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = format!(
            "store: \"sqlite://{}/p.db\"\nmfa:\n  encryption_key: CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=\n  totp: {{ issuer: Acme }}\n  attempts: {{ per_user: 2, per_ip: 100, lockout: 10m }}\nroutes:\n  - {{ id: a, path: /, upstream: \"http://127.0.0.1:9\", policy: public }}\n",
            dir.path().display()
        );
        let cfg =
            crate::config::load_str(&yaml, "t", &HashMap::<String, String>::new()).expect("config");
        let m = ManualClock::at_unix(1_800_000_000);
        let db = crate::store::Db::open(&cfg.store, &[&crate::mfa::store::MIGRATIONS])
            .await
            .expect("db");
        let svc = Service::new(
            cfg.mfa.clone().expect("mfa"),
            db,
            None,
            crate::audit::Audit::disabled(),
            m.clock(),
        )
        .expect("service");
        assert_eq!(svc.now_unix(), 1_800_000_000);
        for _ in 0..2 {
            if let Ok(a) = svc.limiter.begin("corp:ann", "1.1.1.1").await {
                a.failed().await;
            }
        }
        assert!(svc.limiter.locked("corp:ann", "1.1.1.1").await.is_some());
        m.advance(Duration::from_secs(9 * 60));
        assert!(svc.limiter.locked("corp:ann", "1.1.1.1").await.is_some());
        m.advance(Duration::from_secs(61));
        assert_eq!(svc.limiter.locked("corp:ann", "1.1.1.1").await, None);
        assert_eq!(svc.now_unix(), 1_800_000_000 + 601);
    }
}
