//! The WebAuthn endpoints: `register/{begin,finish}` and `authenticate/{begin,finish}` under
//! `/.portcullis/mfa/webauthn/`, JSON in and out, each POST carrying the session's CSRF token
//! (and a JSON content type, so a cross-site form cannot even reach the check); plus the page
//! script. `begin` seals the ceremony into a cookie; `finish` opens it, verifies, and on success
//! records `webauthn` in the session under a new id (which also retires the ceremony).

use super::{first_time, map_err, owner, Service};
use crate::errors::{GatewayError, Reply};
use crate::local_request::LocalRequest;
use crate::mfa::limiter::Attempt;
use crate::mfa::pages::{WEBAUTHN_JS, WEBAUTHN_JS_PATH};
use crate::mfa::webauthn::{Ceremony, CeremonyError, Step, KIND, MAX_CREDENTIALS};
use crate::mfa::MfaError;
use crate::session;
use crate::sso::{AuthError, Authenticated, Sso};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use webauthn_rs::prelude::{PublicKeyCredential, RegisterPublicKeyCredential};

const REGISTER_BEGIN: &str = "/.portcullis/mfa/webauthn/register/begin";
const REGISTER_FINISH: &str = "/.portcullis/mfa/webauthn/register/finish";
const AUTHENTICATE_BEGIN: &str = "/.portcullis/mfa/webauthn/authenticate/begin";
const AUTHENTICATE_FINISH: &str = "/.portcullis/mfa/webauthn/authenticate/finish";

/// Whether `path` is one of these endpoints.
pub(super) fn is_endpoint(path: &str) -> bool {
    [
        WEBAUTHN_JS_PATH,
        REGISTER_BEGIN,
        REGISTER_FINISH,
        AUTHENTICATE_BEGIN,
        AUTHENTICATE_FINISH,
    ]
    .contains(&path)
}

fn ceremony_cookie(tls: bool) -> &'static str {
    crate::session::cookies::GatewayCookie::WebauthnCeremony.name(tls)
}

/// Every ceremony body: the session's CSRF token next to the fields of `T`.
#[derive(Debug, Deserialize)]
struct Signed<T> {
    csrf: String,
    #[serde(flatten)]
    body: T,
}

/// `begin` body.
#[derive(Debug, Deserialize)]
struct Begin {
    /// Registration only: what to call the new key.
    #[serde(default)]
    label: Option<String>,
}

/// `finish` body: the browser's credential as webauthn-rs reads it.
#[derive(Debug, Deserialize)]
struct Finish<C> {
    #[serde(default, rename = "return")]
    ret: Option<String>,
    credential: C,
}

/// Parses a JSON body; only `application/json` is accepted.
fn json_body<T: DeserializeOwned>(req: &LocalRequest) -> Result<T, GatewayError> {
    let json = req
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return Err(AuthError::BadRequest("expected application/json").into());
    }
    serde_json::from_str(req.text()?).map_err(|_| AuthError::BadRequest("malformed request").into())
}

/// A label as given, trimmed to 64 characters without control characters.
fn clean_label(l: Option<&str>) -> String {
    let l: String = l
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    let l = l.trim();
    if l.is_empty() {
        "Security key".to_string()
    } else {
        l.to_string()
    }
}

fn json_reply(value: &impl serde::Serialize) -> Result<Reply, GatewayError> {
    let body = serde_json::to_string(value).map_err(|_| GatewayError::MfaUnavailable)?;
    Ok(Reply::json(200, body))
}

impl Service {
    /// Serves the WebAuthn endpoints (404 when `mfa.webauthn` is not configured).
    pub(super) async fn webauthn(
        &self,
        sso: &Sso,
        a: &Authenticated,
        req: &LocalRequest,
    ) -> Result<Reply, GatewayError> {
        if self.rp.is_none() {
            return Err(GatewayError::NoRoute);
        }
        match (req.path.as_str(), req.method.as_str()) {
            (WEBAUTHN_JS_PATH, "GET") => Ok(Reply {
                status: 200,
                content_type: "text/javascript; charset=utf-8",
                headers: Vec::new(),
                body: WEBAUTHN_JS.as_bytes().to_vec(),
            }),
            (REGISTER_BEGIN | AUTHENTICATE_BEGIN, "POST") => {
                let b: Begin = self.admit(a, req).await?;
                self.begin(sso, a, req, b.label.as_deref()).await
            }
            (REGISTER_FINISH, "POST") => {
                let f = self.admit(a, req).await?;
                let attempt = self.attempt(a, req).await?;
                let r = self.finish_registration(sso, a, req, &f).await;
                self.settle(a, req, attempt, r).await
            }
            (AUTHENTICATE_FINISH, "POST") => {
                let f = self.admit(a, req).await?;
                let attempt = self.attempt(a, req).await?;
                let r = self.finish_authentication(sso, a, req, &f).await;
                self.settle(a, req, attempt, r).await
            }
            _ => Err(GatewayError::NoRoute),
        }
    }

    /// Parses a ceremony body and lets it through only with the CSRF token and while the
    /// user and address are not locked out.
    async fn admit<T: DeserializeOwned>(
        &self,
        a: &Authenticated,
        req: &LocalRequest,
    ) -> Result<T, GatewayError> {
        let signed: Signed<T> = json_body(req)?;
        self.check_csrf(a, &signed.csrf)?;
        let (user, ip) = (&owner(a), req.client_ip.to_string());
        if self.limiter.locked(user, &ip).await.is_some() {
            crate::mfa::event(&self.audit, KIND, "locked_out", user, &ip);
            return Err(GatewayError::MfaLocked);
        }
        Ok(signed.body)
    }

    /// Counts a `finish` before anything in it is verified (H5: count first, verify second).
    async fn attempt<'s>(
        &'s self,
        a: &Authenticated,
        req: &LocalRequest,
    ) -> Result<Attempt<'s>, GatewayError> {
        let (user, ip) = (&owner(a), req.client_ip.to_string());
        self.limiter.begin(user, &ip).await.map_err(|_| {
            crate::mfa::event(&self.audit, KIND, "locked_out", user, &ip);
            GatewayError::MfaLocked
        })
    }

    /// Settles a counted `finish`: success resets the user's count; a refusal stays counted
    /// and may lock; any other error stays counted too (fail closed).
    async fn settle(
        &self,
        a: &Authenticated,
        req: &LocalRequest,
        attempt: Attempt<'_>,
        r: Result<Reply, GatewayError>,
    ) -> Result<Reply, GatewayError> {
        match &r {
            Ok(_) => attempt.succeeded().await,
            Err(GatewayError::MfaRefused) => {
                if attempt.failed().await {
                    let (user, ip) = (&owner(a), req.client_ip.to_string());
                    crate::mfa::event(&self.audit, KIND, "lockout", user, &ip);
                }
            }
            Err(_) => {}
        }
        r
    }

    /// Starts a registration or an authentication and seals its state into the cookie.
    async fn begin(
        &self,
        sso: &Sso,
        a: &Authenticated,
        req: &LocalRequest,
        label: Option<&str>,
    ) -> Result<Reply, GatewayError> {
        let rp = self.rp.as_ref().ok_or(GatewayError::NoRoute)?;
        let user = &owner(a);
        let mfa = self.mfa().await?;
        let keys: Vec<_> = mfa
            .webauthn_keys(user)
            .await
            .map_err(map_err)?
            .into_iter()
            .map(|k| k.key)
            .collect();
        let now = self.clock.unix();
        let unavailable = |e: MfaError| {
            tracing::error!(error = %e, "webauthn: could not start a ceremony");
            GatewayError::MfaUnavailable
        };
        let (options, step) = if req.path == REGISTER_BEGIN {
            self.may_register(a, mfa).await?;
            if keys.len() >= MAX_CREDENTIALS {
                return Err(
                    AuthError::BadRequest("too many security keys: remove one first").into(),
                );
            }
            let (ccr, state) = rp.start_registration(user, &keys).map_err(unavailable)?;
            let label = clean_label(label);
            (serde_json::to_value(ccr), Step::Register { label, state })
        } else {
            if keys.is_empty() {
                return Err(AuthError::BadRequest("no security key enrolled").into());
            }
            let (rcr, state) = rp.start_authentication(&keys).map_err(unavailable)?;
            (serde_json::to_value(rcr), Step::Authenticate(state))
        };
        let options = options.map_err(|_| GatewayError::MfaUnavailable)?;
        let sealed = Ceremony::new(user, &a.sid, now, step)
            .seal(&sso.codec)
            .ok_or(GatewayError::MfaUnavailable)?;
        let mut r = json_reply(&options)?;
        r.headers.push((
            "set-cookie".into(),
            session::set_cookie(
                ceremony_cookie(req.tls),
                &sealed,
                req.tls,
                Some(crate::mfa::webauthn::CEREMONY_TTL),
            ),
        ));
        Ok(r)
    }

    /// Registration needs no factor for a first-time user; otherwise a recent verification.
    async fn may_register(
        &self,
        a: &Authenticated,
        mfa: &crate::mfa::Mfa,
    ) -> Result<(), GatewayError> {
        let user = &owner(a);
        let first_time = first_time(&mfa.factors(user).await.map_err(map_err)?);
        if first_time || super::recently_verified(&a.record, self.clock.utc()) {
            return Ok(());
        }
        self.refused(
            a,
            "security key registration without a recent second factor",
        );
        Err(GatewayError::Forbidden)
    }

    /// Opens this session's ceremony; a missing, expired or foreign one is a refusal.
    async fn ceremony(
        &self,
        sso: &Sso,
        a: &Authenticated,
        req: &LocalRequest,
    ) -> Result<Ceremony, GatewayError> {
        let name = ceremony_cookie(req.tls);
        let values = session::cookie_values(&req.headers, name);
        let user = &owner(a);
        match Ceremony::open(&sso.codec, &values, user, &a.sid, self.clock.unix()) {
            Ok(c) => Ok(c),
            Err(e) => {
                tracing::warn!(user = %user, error = %e, "webauthn ceremony refused");
                let outcome = if e == CeremonyError::Unbound {
                    "replay"
                } else {
                    "failure"
                };
                Err(self.refuse(a, req, outcome).await)
            }
        }
    }

    /// Audits a refused ceremony; the attempt was counted before it ([`Self::settle`] keeps it
    /// counted).
    async fn refuse(&self, a: &Authenticated, req: &LocalRequest, outcome: &str) -> GatewayError {
        let (user, ip) = (&owner(a), req.client_ip.to_string());
        crate::mfa::event(&self.audit, KIND, outcome, user, &ip);
        GatewayError::MfaRefused
    }

    /// Maps a verification error: refusals are counted, store trouble fails closed.
    async fn refusal(&self, a: &Authenticated, req: &LocalRequest, e: MfaError) -> GatewayError {
        let outcome = match &e {
            MfaError::CounterRegressed => "clone",
            MfaError::Replayed => "replay",
            MfaError::Webauthn(_) | MfaError::WrongCode => "failure",
            _ => return map_err(e),
        };
        tracing::warn!(user = %a.record.identity.user, error = %e, outcome, "webauthn refused");
        self.refuse(a, req, outcome).await
    }

    /// Passes a verification result through; an error is counted and mapped by
    /// [`Self::refusal`] (the limiter is async, so this cannot be a `map_err` closure).
    async fn checked<T>(
        &self,
        a: &Authenticated,
        req: &LocalRequest,
        r: Result<T, MfaError>,
    ) -> Result<T, GatewayError> {
        match r {
            Ok(v) => Ok(v),
            Err(e) => Err(self.refusal(a, req, e).await),
        }
    }

    async fn finish_registration(
        &self,
        sso: &Sso,
        a: &Authenticated,
        req: &LocalRequest,
        f: &Finish<RegisterPublicKeyCredential>,
    ) -> Result<Reply, GatewayError> {
        let rp = self.rp.as_ref().ok_or(GatewayError::NoRoute)?;
        let Step::Register { label, state } = self.ceremony(sso, a, req).await?.step else {
            return Err(self.refuse(a, req, "failure").await);
        };
        let user = &owner(a);
        let mfa = self.mfa().await?;
        let first_time = first_time(&mfa.factors(user).await.map_err(map_err)?);
        let key = self
            .checked(a, req, rp.finish_registration(&f.credential, &state))
            .await?;
        let enrolled = mfa
            .enrol_webauthn(user, &label, &key, self.now_unix())
            .await;
        self.checked(a, req, enrolled).await?;
        self.verified(sso, a, req, f.ret.as_deref(), "enrolled", first_time)
            .await
    }

    async fn finish_authentication(
        &self,
        sso: &Sso,
        a: &Authenticated,
        req: &LocalRequest,
        f: &Finish<PublicKeyCredential>,
    ) -> Result<Reply, GatewayError> {
        let rp = self.rp.as_ref().ok_or(GatewayError::NoRoute)?;
        let Step::Authenticate(state) = self.ceremony(sso, a, req).await?.step else {
            return Err(self.refuse(a, req, "failure").await);
        };
        let res = self
            .checked(a, req, rp.finish_authentication(&f.credential, &state))
            .await?;
        let used = self.mfa().await?.use_webauthn(&owner(a), &res).await;
        self.checked(a, req, used).await?;
        self.verified(sso, a, req, f.ret.as_deref(), "success", false)
            .await
    }

    /// Success: count it, record `webauthn` in the session under a new id, retire the
    /// ceremony cookie, and (after a first enrolment) hand out recovery codes once.
    async fn verified(
        &self,
        sso: &Sso,
        a: &Authenticated,
        req: &LocalRequest,
        ret: Option<&str>,
        outcome: &str,
        first_time: bool,
    ) -> Result<Reply, GatewayError> {
        let (user, ip) = (&owner(a), req.client_ip.to_string());
        crate::mfa::event(&self.audit, KIND, outcome, user, &ip);
        let cookie = sso.elevate(&a.sid, &a.record, &[KIND], req.tls).await?;
        let mut codes = Vec::new();
        if first_time && self.cfg.recovery_codes > 0 {
            codes = self
                .mfa()
                .await?
                .issue_recovery_codes(user, self.cfg.recovery_codes, self.now_unix())
                .await
                .map_err(map_err)?;
            crate::mfa::event(&self.audit, "recovery", "issued", user, &ip);
        }
        let mut r = json_reply(&serde_json::json!({
            "redirect": sso.return_to(ret, &req.origin),
            "recovery_codes": codes,
        }))?;
        r.headers.push(("set-cookie".into(), cookie));
        r.headers.push((
            "set-cookie".into(),
            session::clear_cookie(ceremony_cookie(req.tls), req.tls),
        ));
        Ok(r)
    }
}
