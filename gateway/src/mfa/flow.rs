//! The step-up endpoints under `/.portcullis/mfa`: a page listing what the user can use (or
//! TOTP enrolment for a first-time user), and the POST handlers that verify a code, record
//! `{method, at}` in the session under a new session id, and return to the same-origin URL.
//! Every form carries the session's CSRF token; wrong codes count towards per-user and per-IP
//! lockout; every outcome is counted and audited (codes themselves are never logged).

use super::config::MfaConfig;
use super::limiter::Limiter;
use super::pages::{code_form, esc, page, webauthn_form, WebauthnForm, CSP};
use super::webauthn::{RelyingParty, KIND};
use super::{totp, Mfa, MfaError};
use crate::errors::{GatewayError, Reply};
use crate::session;
use crate::sso::{same, AuthError, Authenticated, Sso};
use crate::store::StoreUrl;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// How long an enrolment started on the page may take to finish.
const ENROL_TTL: i64 = 600;

mod webauthn;

/// MFA at run time: settings, the store (opened on the serving runtime at first use), the
/// WebAuthn relying party and the attempt limiter.
pub struct Service {
    /// Validated `mfa:`.
    pub cfg: MfaConfig,
    store_url: StoreUrl,
    mfa: tokio::sync::OnceCell<Mfa>,
    rp: Option<RelyingParty>,
    /// Wrong-code limits.
    pub limiter: Limiter,
}

/// One request to an MFA endpoint, as the proxy hands it over.
#[derive(Debug)]
pub struct Request<'a> {
    /// Request headers (cookies, content type).
    pub headers: &'a http::HeaderMap,
    /// `GET` or `POST`.
    pub method: &'a str,
    /// Normalised path.
    pub path: &'a str,
    /// Decoded query.
    pub query: &'a HashMap<String, String>,
    /// Raw body (forms are URL-encoded, WebAuthn ceremonies JSON).
    pub body: &'a str,
    /// `https://host[:port]` of this request.
    pub origin: &'a str,
    /// Over TLS.
    pub tls: bool,
    /// Client address.
    pub client_ip: IpAddr,
}

/// Second factors a route accepts, from the `methods` hint the proxy puts in the page URL
/// (empty: any). A hint only decides what the page offers: the policy decides on return.
fn accepted(query: &HashMap<String, String>) -> Vec<String> {
    query
        .get("methods")
        .map(|m| {
            m.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
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
/// a stolen password alone must not be enough to add an attacker's key).
fn recently_verified(rec: &session::SessionRecord, now: chrono::DateTime<chrono::Utc>) -> bool {
    rec.identity.auth_methods.iter().any(|m| {
        matches!(m.method.as_str(), "totp" | "webauthn" | "recovery")
            && now - m.at <= ADD_FACTOR_WINDOW
    })
}

/// A user with no second factor yet (recovery codes alone do not count): the only case where
/// one may be enrolled without passing another first.
fn first_time(factors: &[super::FactorInfo]) -> bool {
    !factors.iter().any(|f| f.kind != "recovery")
}

/// Refuses a form or ceremony without the session's CSRF token.
fn check_csrf(a: &Authenticated, csrf: &str) -> Result<(), GatewayError> {
    if same(csrf, &a.record.csrf) {
        return Ok(());
    }
    tracing::warn!(target: "audit", user = %a.record.identity.user, "mfa request without a valid CSRF token");
    Err(AuthError::Csrf.into())
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
    /// From the validated config; the store is opened on first use.
    pub fn new(cfg: MfaConfig, store_url: StoreUrl) -> Self {
        let limiter = Limiter::new(cfg.per_user, cfg.per_ip, cfg.lockout);
        // A relying party that does not build leaves WebAuthn off (fail closed); start-up
        // (`check_and_new`) refuses such a config, so this only logs for completeness.
        let rp = cfg.webauthn.as_ref().and_then(|w| {
            RelyingParty::new(w, &cfg.branding.title)
                .map_err(|e| tracing::error!(error = %e, "mfa.webauthn: relying party refused"))
                .ok()
        });
        Self {
            cfg,
            store_url,
            mfa: tokio::sync::OnceCell::new(),
            rp,
            limiter,
        }
    }

    /// Opens the store once at start (creating its table, proving it is reachable and that
    /// the key is valid) on a short-lived runtime, then returns the service; requests open their
    /// own pool on the serving runtime.
    pub fn check_and_new(
        cfg: MfaConfig,
        store_url: StoreUrl,
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
        if let Some(w) = &cfg.webauthn {
            let rp = RelyingParty::new(w, &cfg.branding.title)
                .map_err(|e| StartError::Mfa(format!("mfa.webauthn: {e}")))?;
            if rp.verification() == super::webauthn::Verification::Discouraged {
                tracing::warn!("mfa.webauthn.user_verification: discouraged — a touch of the key is enough, no PIN or biometric is checked");
            }
        }
        for (on, key) in [
            (cfg.email.is_some(), "mfa.email"),
            (cfg.sms.is_some(), "mfa.sms"),
            (cfg.remember_device_days > 0, "mfa.remember_device_days"),
        ] {
            if on {
                tracing::warn!(key, "configured but not served by this build yet: users cannot use it (fail closed)");
            }
        }
        tracing::info!(store = %store_url.redacted(), totp = cfg.totp_issuer.is_some(), webauthn = cfg.webauthn.is_some(), "mfa enabled");
        Ok(Self::new(cfg, store_url))
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
        ) || webauthn::is_endpoint(path)
    }

    /// Serves one MFA endpoint.
    pub async fn serve(&self, sso: &Sso, req: &Request<'_>) -> Result<Reply, GatewayError> {
        let a = sso
            .identify(req.headers, req.tls)
            .await?
            .ok_or(GatewayError::Unauthenticated)?;
        let mut reply = match (req.path, req.method) {
            ("/.portcullis/mfa", "GET") => {
                let ret = req.query.get("return").map_or("/", String::as_str);
                let page = Page {
                    methods: accepted(req.query),
                    ..Page::new(ret, None)
                };
                self.show(sso, &a, &page, req.tls, req.client_ip).await?
            }
            (
                "/.portcullis/mfa/verify" | "/.portcullis/mfa/enrol" | "/.portcullis/mfa/recovery",
                "POST",
            ) => {
                let form: HashMap<String, String> =
                    url::form_urlencoded::parse(req.body.as_bytes())
                        .into_owned()
                        .collect();
                check_csrf(&a, form.get("csrf").map_or("", String::as_str))?;
                let ret = form.get("return").map_or("/", String::as_str);
                let code = form.get("code").map_or("", String::as_str);
                self.submit(sso, &a, req, ret, code).await?
            }
            _ => self.webauthn(sso, &a, req).await?,
        };
        if let Some(c) = a.set_cookie {
            reply.headers.push(("set-cookie".into(), c));
        }
        Ok(reply)
    }

    /// The page for this user: locked notice; the factors they can verify with here (plus
    /// adding a security key right after a verification); or, for a first-time user,
    /// enrolment of what the route accepts.
    async fn show(
        &self,
        sso: &Sso,
        a: &Authenticated,
        page: &Page<'_>,
        tls: bool,
        ip: IpAddr,
    ) -> Result<Reply, GatewayError> {
        let user = &a.record.identity.user;
        if self
            .limiter
            .locked(user, &ip.to_string(), Instant::now())
            .is_some()
        {
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
        let mut body = String::new();
        if webauthn_on && has(KIND) && page.accepts(KIND) {
            body += "<p>This page needs a second factor. Use your security key or passkey.</p>";
            body += &webauthn_form(WebauthnForm::Authenticate, csrf, ret);
            let keys: String = factors
                .iter()
                .filter(|f| f.kind == KIND)
                .map(|f| format!("<li>{}</li>", esc(&f.label)))
                .collect();
            body += &format!("<p>Your keys:</p><ul id=\"webauthn-keys\">{keys}</ul>");
        }
        if has("totp") {
            body += &format!(
                "<p>This page needs a second factor. Enter the 6-digit code from your authenticator app.</p>{}",
                code_form("/.portcullis/mfa/verify", csrf, ret, "Authentication code", error)
            );
        }
        if !body.is_empty() {
            body += &format!(
                "<details><summary>Lost your device? Use a recovery code</summary>\
<form method=\"post\" action=\"/.portcullis/mfa/recovery\" id=\"recovery-form\">\
<input type=\"hidden\" name=\"csrf\" value=\"{}\"><input type=\"hidden\" name=\"return\" value=\"{}\">\
<p><label for=\"recovery\">Recovery code</label><br><input id=\"recovery\" name=\"code\" autocomplete=\"off\" required></p>\
<p><button type=\"submit\">Use recovery code</button></p></form></details>",
                esc(csrf),
                esc(ret)
            );
            if webauthn_on && recently_verified(&a.record, chrono::Utc::now()) {
                body += "<h2>Add a security key or passkey</h2>";
                body += &webauthn_form(WebauthnForm::Register, csrf, ret);
            }
            return Ok(html(status, &self.cfg, "Verify it's you", &body));
        }
        // Enrolment without a second factor only for a user who has none: adding one next to
        // an existing factor needs a recent verification with it (above).
        let first_time = first_time(&factors);
        let offer_webauthn = first_time && webauthn_on && page.accepts(KIND);
        let offer_totp = first_time
            && self.cfg.totp_issuer.is_some()
            && (page.accepts("totp") || !offer_webauthn);
        if !offer_webauthn && !offer_totp {
            return Ok(html(
                403,
                &self.cfg,
                "Second factor needed",
                "<p>This page needs a second factor, and you have none enrolled that it accepts. Ask your administrator.</p>",
            ));
        }
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
                exp: chrono::Utc::now().timestamp() + ENROL_TTL,
            };
            let name = enrol_cookie(tls);
            let sealed = sso
                .codec
                .seal(name, &pending)
                .ok_or(GatewayError::MfaUnavailable)?;
            let uri = totp::otpauth_uri(&totp::Params::default(), issuer, user, &secret);
            let qr = totp::qr_svg(&uri).unwrap_or_default();
            if offer_webauthn {
                body += "<h2>Or use an authenticator app</h2>";
            }
            body += &format!(
                "<p>Set up an authenticator app: scan this code, or add an account with the key below, then enter the code it shows.</p>\
<p>{qr}</p><p>Key: <code id=\"totp-secret\">{}</code></p><p>Or open: <code id=\"otpauth-uri\">{}</code></p>{}",
                esc(&pending.secret),
                esc(&uri),
                code_form("/.portcullis/mfa/enrol", csrf, ret, "Code from the app", error)
            );
            cookie = Some(session::set_cookie(name, &sealed, tls, Some(ENROL_TTL)));
        }
        let mut r = html(status, &self.cfg, "Set up two-step verification", &body);
        r.headers
            .extend(cookie.map(|c| ("set-cookie".to_string(), c)));
        Ok(r)
    }

    async fn submit(
        &self,
        sso: &Sso,
        a: &Authenticated,
        req: &Request<'_>,
        ret: &str,
        code: &str,
    ) -> Result<Reply, GatewayError> {
        let (path, headers, origin, tls, ip) =
            (req.path, req.headers, req.origin, req.tls, req.client_ip);
        let user = &a.record.identity.user;
        let ip_s = ip.to_string();
        let factor = if path == "/.portcullis/mfa/recovery" {
            "recovery"
        } else {
            "totp"
        };
        if self.limiter.locked(user, &ip_s, Instant::now()).is_some() {
            super::event(factor, "locked_out", user, &ip_s);
            return self.show(sso, a, &Page::new(ret, None), tls, ip).await;
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
                self.limiter.success(user);
                super::event(
                    factor,
                    if enrolling { "enrolled" } else { "success" },
                    user,
                    &ip_s,
                );
                let cookie = sso.elevate(&a.sid, &a.record, factor, tls).await?;
                let mut cookies = vec![cookie];
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
                if self.limiter.fail(user, &ip_s, Instant::now()) {
                    super::event(factor, "lockout", user, &ip_s);
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
