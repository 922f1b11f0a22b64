//! The step-up endpoints under `/.portcullis/mfa`: a page listing what the user can use (or
//! TOTP enrolment for a first-time user), and the POST handlers that verify a code, record
//! `{method, at}` in the session under a new session id, and return to the same-origin URL.
//! Every form carries the session's CSRF token; wrong codes count towards per-user and per-IP
//! lockout; every outcome is counted and audited (codes themselves are never logged).

use super::config::MfaConfig;
use super::limiter::Limiter;
use super::pages::{code_form_with, esc, page, CSP};
use super::{otp, totp, Mfa, MfaError};
use crate::errors::{GatewayError, Reply};
use crate::session;
use crate::sso::{same, AuthError, Authenticated, Sso};
use crate::store::StoreUrl;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::IpAddr;

mod codes;

/// How long an enrolment started on the page may take to finish.
const ENROL_TTL: i64 = 600;

/// MFA at run time: settings, the store (opened on the serving runtime at first use) and the
/// attempt limiter.
pub struct Service {
    /// Validated `mfa:`.
    pub cfg: MfaConfig,
    store_url: StoreUrl,
    mfa: tokio::sync::OnceCell<Mfa>,
    /// Wrong-code limits.
    pub limiter: Limiter,
    /// Email and SMS code channels that are configured.
    channels: Vec<otp::Channel>,
    codes: otp::Codes,
}

/// The pending enrolment, sealed in a cookie with the session keys.
#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    user: String,
    secret: String,
    exp: i64,
}

fn enrol_cookie(tls: bool) -> &'static str {
    if tls {
        "__Host-portcullis-mfa"
    } else {
        "portcullis-mfa"
    }
}

fn now_unix() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0)
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
    /// From the validated config; the store is opened on first use. With a Redis session
    /// store, attempt counters live in that Redis (shared by replicas).
    pub fn new(
        cfg: MfaConfig,
        store_url: StoreUrl,
        sessions: &crate::config::auth_model::StoreKind,
    ) -> Result<Self, String> {
        let limiter = codes::limiter(&cfg, sessions)?;
        let channels = codes::channels(&cfg)?;
        Ok(Self {
            codes: otp::Codes::new(&cfg.encryption_key),
            cfg,
            store_url,
            mfa: tokio::sync::OnceCell::new(),
            limiter,
            channels,
        })
    }

    /// Opens the store once at start (creating its table, proving it is reachable and that
    /// the key is valid) on a short-lived runtime, then returns the service; requests open their
    /// own pool on the serving runtime.
    pub fn check_and_new(
        cfg: MfaConfig,
        store_url: StoreUrl,
        sessions: &crate::config::auth_model::StoreKind,
    ) -> Result<Self, crate::server::StartError> {
        use crate::server::StartError;
        super::seal::Sealer::new(&cfg.encryption_key)
            .map_err(|e| StartError::Mfa(e.to_string()))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StartError::Mfa(e.to_string()))?;
        rt.block_on(super::store::open(&store_url))
            .map_err(|e| StartError::Mfa(e.to_string()))?;
        if cfg.webauthn.is_some() {
            tracing::warn!(
                key = "mfa.webauthn",
                "configured but not served by this build yet: users cannot use it (fail closed)"
            );
        }
        tracing::info!(store = %store_url.redacted(), totp = cfg.totp_issuer.is_some(), email = cfg.email.is_some(), sms = cfg.sms.is_some(), remember_device_days = cfg.remember_device_days, "mfa enabled");
        Self::new(cfg, store_url, sessions).map_err(StartError::Mfa)
    }

    async fn mfa(&self) -> Result<&Mfa, GatewayError> {
        self.mfa
            .get_or_try_init(|| async {
                let store = super::store::open(&self.store_url).await.map_err(|e| {
                    tracing::error!(error = %e, "mfa store unavailable");
                    GatewayError::MfaUnavailable
                })?;
                Mfa::new(store, &self.cfg.encryption_key).map_err(|_| GatewayError::MfaUnavailable)
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
        ) || codes::is_endpoint(path)
    }

    /// Serves one MFA endpoint. `form` is the decoded POST body (empty for GET).
    #[allow(clippy::too_many_arguments)]
    pub async fn serve(
        &self,
        sso: &Sso,
        headers: &http::HeaderMap,
        method: &str,
        path: &str,
        query: &HashMap<String, String>,
        form: &HashMap<String, String>,
        origin: &str,
        tls: bool,
        client_ip: IpAddr,
    ) -> Result<Reply, GatewayError> {
        let a = sso
            .identify(headers, tls)
            .await?
            .ok_or(GatewayError::Unauthenticated)?;
        let mut reply = match (path, method) {
            ("/.portcullis/mfa", "GET") => {
                let ret = query.get("return").map_or("/", String::as_str);
                let methods = codes::methods(query);
                let remembered = self
                    .remembered(
                        sso,
                        &a,
                        headers,
                        ret,
                        methods.as_deref(),
                        origin,
                        tls,
                        client_ip,
                    )
                    .await?;
                match remembered {
                    Some(r) => r,
                    None => {
                        let methods = methods.unwrap_or_default();
                        self.show(sso, &a, ret, &methods, tls, client_ip, None)
                            .await?
                    }
                }
            }
            (p, "POST") if codes::is_endpoint(p) => {
                csrf_ok(form, &a)?;
                self.serve_codes(sso, &a, p, headers, form, origin, tls, client_ip)
                    .await?
            }
            (
                "/.portcullis/mfa/verify" | "/.portcullis/mfa/enrol" | "/.portcullis/mfa/recovery",
                "POST",
            ) => {
                csrf_ok(form, &a)?;
                let ret = form.get("return").map_or("/", String::as_str);
                let code = form.get("code").map_or("", String::as_str);
                let remember = form.get("remember").is_some_and(|v| v == "1");
                self.submit(
                    sso, &a, path, headers, ret, code, remember, origin, tls, client_ip,
                )
                .await?
            }
            _ => return Err(GatewayError::NoRoute),
        };
        if let Some(c) = a.set_cookie {
            reply.headers.push(("set-cookie".into(), c));
        }
        Ok(reply)
    }

    /// The page for this user: locked notice, verification form, or TOTP enrolment, with the
    /// email/SMS code offers the route accepts (`methods`; empty: any) and remembered devices.
    #[allow(clippy::too_many_arguments)]
    async fn show(
        &self,
        sso: &Sso,
        a: &Authenticated,
        ret: &str,
        methods: &[String],
        tls: bool,
        ip: IpAddr,
        error: Option<&str>,
    ) -> Result<Reply, GatewayError> {
        let user = &a.record.identity.user;
        if self.limiter.locked(user, &ip.to_string()).await.is_some() {
            return Ok(html(
                429,
                &self.cfg,
                "Too many attempts",
                "<p role=\"alert\">Too many wrong codes. Try again later.</p>",
            ));
        }
        let factors = self.mfa().await?.factors(user).await.map_err(map_err)?;
        let csrf = &a.record.csrf;
        let codes = self.offers(a, ret, methods);
        let offers = codes.clone() + &self.devices_html(a).await?;
        // TOTP (and its recovery codes) only where the route takes them, if codes are on offer.
        let totp_wanted =
            methods.is_empty() || methods.iter().any(|m| m == "totp" || m == "recovery");
        let has_totp = factors.iter().any(|f| f.kind == "totp");
        if !codes.is_empty() && (!totp_wanted || (!has_totp && self.cfg.totp_issuer.is_none())) {
            let body = error.map(codes::error_p).unwrap_or_default()
                + "<p>This page needs a second factor.</p>"
                + &offers;
            return Ok(html(
                if error.is_some() { 401 } else { 200 },
                &self.cfg,
                "Verify it's you",
                &body,
            ));
        }
        if has_totp {
            let body = format!(
                "<p>This page needs a second factor. Enter the 6-digit code from your authenticator app.</p>{}",
                code_form_with("/.portcullis/mfa/verify", csrf, ret, "Authentication code", error, &self.remember_box())
            ) + &format!(
                "<details><summary>Lost your device? Use a recovery code</summary>\
<form method=\"post\" action=\"/.portcullis/mfa/recovery\" id=\"recovery-form\">\
<input type=\"hidden\" name=\"csrf\" value=\"{}\"><input type=\"hidden\" name=\"return\" value=\"{}\">\
<p><label for=\"recovery\">Recovery code</label><br><input id=\"recovery\" name=\"code\" autocomplete=\"off\" required></p>\
<p><button type=\"submit\">Use recovery code</button></p></form></details>",
                esc(csrf),
                esc(ret)
            ) + &offers;
            return Ok(html(
                if error.is_some() { 401 } else { 200 },
                &self.cfg,
                "Verify it's you",
                &body,
            ));
        }
        let Some(issuer) = &self.cfg.totp_issuer else {
            return Ok(html(
                403,
                &self.cfg,
                "Second factor needed",
                "<p>This page needs a second factor, and you have none enrolled that it accepts. Ask your administrator.</p>",
            ));
        };
        let secret = totp::generate_secret().map_err(|_| GatewayError::MfaUnavailable)?;
        let pending = Pending {
            user: user.clone(),
            secret: totp::base32(&secret),
            exp: chrono::Utc::now().timestamp() + ENROL_TTL,
        };
        let name = enrol_cookie(tls);
        let sealed = sso
            .codec
            .seal(name, &pending)
            .ok_or(GatewayError::MfaUnavailable)?;
        let uri = totp::otpauth_uri(&totp::Params::default(), issuer, user, &secret);
        let qr = totp::qr_svg(&uri).unwrap_or_default();
        let body = format!(
            "<p>Set up an authenticator app: scan this code, or add an account with the key below, then enter the code it shows.</p>\
<p>{qr}</p><p>Key: <code id=\"totp-secret\">{}</code></p><p>Or open: <code id=\"otpauth-uri\">{}</code></p>{}",
            esc(&pending.secret),
            esc(&uri),
            code_form_with("/.portcullis/mfa/enrol", csrf, ret, "Code from the app", error, &self.remember_box())
        ) + &offers;
        let mut r = html(
            if error.is_some() { 401 } else { 200 },
            &self.cfg,
            "Set up two-step verification",
            &body,
        );
        r.headers.push((
            "set-cookie".into(),
            session::set_cookie(name, &sealed, tls, Some(ENROL_TTL)),
        ));
        Ok(r)
    }

    #[allow(clippy::too_many_arguments)]
    async fn submit(
        &self,
        sso: &Sso,
        a: &Authenticated,
        path: &str,
        headers: &http::HeaderMap,
        ret: &str,
        code: &str,
        remember: bool,
        origin: &str,
        tls: bool,
        ip: IpAddr,
    ) -> Result<Reply, GatewayError> {
        let user = &a.record.identity.user;
        let ip_s = ip.to_string();
        let factor = if path == "/.portcullis/mfa/recovery" {
            "recovery"
        } else {
            "totp"
        };
        if self.limiter.locked(user, &ip_s).await.is_some() {
            super::event(factor, "locked_out", user, &ip_s);
            return self.show(sso, a, ret, &[], tls, ip, None).await;
        }
        let mfa = self.mfa().await?;
        let now = now_unix();
        let enrolling = path == "/.portcullis/mfa/enrol";
        let result = if enrolling {
            let name = enrol_cookie(tls);
            let pending = session::cookie_values(headers, name)
                .into_iter()
                .find_map(|v| sso.codec.open::<Pending>(name, v))
                .filter(|p| &p.user == user && p.exp > chrono::Utc::now().timestamp());
            let Some(secret) = pending.and_then(|p| totp::from_base32(&p.secret)) else {
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
                self.limiter.success(user).await;
                super::event(
                    factor,
                    if enrolling { "enrolled" } else { "success" },
                    user,
                    &ip_s,
                );
                let cookie = sso.elevate(&a.sid, &a.record, factor, tls).await?;
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
                        super::event("recovery", "issued", user, &ip_s);
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
                super::event(factor, outcome, user, &ip_s);
                if self.limiter.fail(user, &ip_s).await {
                    super::event(factor, "lockout", user, &ip_s);
                }
                let msg = if matches!(e, MfaError::Replayed) {
                    "That code was already used. Wait for the next one."
                } else {
                    "That code is not right. Try again."
                };
                // An enrolment page issues a new key with the error (never weaker).
                self.show(sso, a, ret, &[], tls, ip, Some(msg)).await
            }
            Err(e) => Err(map_err(e)),
        }
    }
}

/// Refuses a form without the session's CSRF token (audited).
fn csrf_ok(form: &HashMap<String, String>, a: &Authenticated) -> Result<(), GatewayError> {
    let csrf = form.get("csrf").map_or("", String::as_str);
    if same(csrf, &a.record.csrf) {
        return Ok(());
    }
    tracing::warn!(target: "audit", user = %a.record.identity.user, "mfa form without a valid CSRF token");
    Err(AuthError::Csrf.into())
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
        MfaError::WrongCode | MfaError::Replayed => GatewayError::Forbidden,
    }
}
