//! The email/SMS code and remembered-device endpoints of the step-up flow:
//! `POST /.portcullis/mfa/{email,sms}/send` sends a code (rate-limited) and shows the code
//! form; `POST /.portcullis/mfa/{email,sms}/verify` checks it (wrong codes count towards the
//! shared lockout; the code's nonce is claimed in the store so it works once on any replica);
//! `POST /.portcullis/mfa/devices/revoke` forgets a remembered device. A step-up page reached
//! with a valid remembered device for the route's factors elevates the session at once.

use super::{html, map_err, owner, Page, Service};
use crate::errors::{GatewayError, Reply};
use crate::local_request::LocalRequest;
use crate::mfa::config::MfaConfig;
use crate::mfa::limiter::{Attempt, Limiter, RESEND_INTERVAL};
use crate::mfa::otp::{self, Channel, Check, Pending};
use crate::mfa::pages::{code_form_with, error_p, esc};
use crate::mfa::{email, remember, sms};
use crate::session;
use crate::sso::{Authenticated, Sso};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// The limiter: in Redis when sessions are (so replicas share lockouts), else in memory.
pub(super) fn limiter(
    cfg: &MfaConfig,
    redis: Option<Arc<crate::session::redis_store::RedisConn>>,
    clock: &crate::clock::Clock,
) -> Limiter {
    Limiter::with_counters(
        cfg.per_user,
        cfg.per_ip,
        cfg.lockout,
        Limiter::counters(redis, clock),
    )
}

/// The configured channels, senders built (a bad SMTP URL or sender fails the start).
pub(super) fn channels(cfg: &MfaConfig) -> Result<Vec<Channel>, String> {
    let mut v = Vec::new();
    if let Some(e) = &cfg.email {
        v.push(Channel {
            name: "email",
            ttl: e.code_ttl,
            require_verified: e.require_verified,
            sender: Box::new(email::Mailer::new(e).map_err(|e| e.to_string())?),
        });
    }
    if let Some(s) = &cfg.sms {
        let http =
            crate::idp::http::HttpClient::new().ok_or("cannot build the HTTP client for SMS")?;
        v.push(Channel {
            name: "sms",
            ttl: s.code_ttl,
            require_verified: s.require_verified,
            sender: Box::new(sms::Texter::new(s, http.0)),
        });
    }
    Ok(v)
}

/// Whether `path` is one of these endpoints.
pub(super) fn is_endpoint(path: &str) -> bool {
    matches!(
        path,
        "/.portcullis/mfa/email/send"
            | "/.portcullis/mfa/email/verify"
            | "/.portcullis/mfa/sms/send"
            | "/.portcullis/mfa/sms/verify"
            | "/.portcullis/mfa/devices/revoke"
    )
}

fn pending_cookie(tls: bool) -> &'static str {
    crate::session::cookies::GatewayCookie::OtpPending.name(tls)
}

fn hidden(csrf: &str, ret: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\"><input type=\"hidden\" name=\"return\" value=\"{}\">",
        esc(csrf),
        esc(ret)
    )
}

fn channel_text(name: &str) -> &'static str {
    if name == "email" {
        "by email"
    } else {
        "by text message"
    }
}

impl Service {
    fn channel(&self, name: &str) -> Option<&Channel> {
        self.channels.iter().find(|c| c.name == name)
    }

    /// "Send a code" buttons for each channel the route accepts and the user has a verified
    /// destination for.
    pub(super) fn offers(&self, a: &Authenticated, ret: &str, methods: &[String]) -> String {
        self.channels
            .iter()
            .filter(|c| methods.is_empty() || methods.iter().any(|m| m == c.name))
            .filter_map(|c| {
                let to = otp::destination(c.name, &a.record.identity, c.require_verified)?;
                Some(format!(
                    "<form method=\"post\" action=\"/.portcullis/mfa/{n}/send\" id=\"{n}-send\">{h}\
<p><button type=\"submit\">Send a code {how} to {to}</button></p></form>",
                    n = c.name,
                    h = hidden(&a.record.csrf, ret),
                    how = channel_text(c.name),
                    to = esc(&otp::mask(&to)),
                ))
            })
            .collect()
    }

    /// The "remember this device" box, when enabled.
    pub(super) fn remember_box(&self) -> String {
        match self.cfg.remember_device_days {
            0 => String::new(),
            d => format!(
                "<p><label><input type=\"checkbox\" name=\"remember\" value=\"1\"> Remember this device for {d} days</label></p>"
            ),
        }
    }

    /// A `Set-Cookie` for a newly remembered device, when `method` may be remembered.
    pub(super) async fn device_cookie(
        &self,
        user: &str,
        method: &str,
        headers: &http::HeaderMap,
        tls: bool,
    ) -> Result<Option<String>, GatewayError> {
        let days = self.cfg.remember_device_days;
        if days == 0 || !remember::rememberable(method) {
            return Ok(None);
        }
        let ua = headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok());
        let now = i64::try_from(self.now_unix()).unwrap_or(i64::MAX);
        let token = self
            .mfa()
            .await?
            .remember_device(user, method, &remember::label(ua), days, now)
            .await
            .map_err(map_err)?;
        self.audit
            .record(crate::audit::AuditEvent::DeviceRemembered {
                user: user.to_string(),
                factor: method.to_string(),
                days,
            });
        Ok(Some(session::set_cookie(
            remember::cookie_name(tls),
            &token,
            tls,
            Some(i64::from(days) * 86_400),
        )))
    }

    /// On a step-up (`methods` known): a remembered device of this user for one of the route's
    /// factors elevates the session and returns at once.
    pub(super) async fn remembered(
        &self,
        sso: &Sso,
        a: &Authenticated,
        req: &LocalRequest,
        ret: &str,
        methods: Option<&[String]>,
    ) -> Result<Option<Reply>, GatewayError> {
        let (headers, origin, tls, ip) =
            (&req.headers, req.origin.as_str(), req.tls, req.client_ip);
        let (Some(methods), true) = (methods, self.cfg.remember_device_days > 0) else {
            return Ok(None);
        };
        let user = &owner(a);
        let tokens = session::cookie_values(headers, remember::cookie_name(tls));
        if tokens.is_empty() || self.limiter.locked(user, &ip.to_string()).await.is_some() {
            return Ok(None);
        }
        let mfa = self.mfa().await?;
        let now = i64::try_from(self.now_unix()).unwrap_or(i64::MAX);
        for t in tokens {
            let accepts = |m: &str| methods.iter().any(|x| x == m);
            if let Some(method) = mfa
                .remembered(user, t, now, accepts)
                .await
                .map_err(map_err)?
            {
                super::super::event(&self.audit, &method, "remembered", user, &ip.to_string());
                let cookie = sso
                    .elevate(&a.sid, &a.record, &[&method, super::REMEMBERED], tls)
                    .await?;
                return Ok(Some(Reply::redirect(crate::sso::Redirect {
                    location: sso.return_to(Some(ret), origin),
                    cookies: vec![cookie],
                })));
            }
        }
        Ok(None)
    }

    /// Whether one of this browser's remembered-device cookies would re-assert a factor the
    /// route accepts (read-only: decides whether the GET offers the device).
    pub(super) async fn remembered_applies(
        &self,
        a: &Authenticated,
        req: &LocalRequest,
        methods: &[String],
    ) -> Result<bool, GatewayError> {
        if self.cfg.remember_device_days == 0 {
            return Ok(false);
        }
        let tokens = session::cookie_values(&req.headers, remember::cookie_name(req.tls));
        if tokens.is_empty() {
            return Ok(false);
        }
        let user = &owner(a);
        let mfa = self.mfa().await?;
        let now = i64::try_from(self.now_unix()).unwrap_or(i64::MAX);
        for t in tokens {
            let accepts = |m: &str| methods.iter().any(|x| x == m);
            if mfa
                .applicable_device(user, t, now, accepts)
                .await
                .map_err(map_err)?
                .is_some()
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The page a browser holding a remembered-device cookie gets on GET: one button that
    /// POSTs (with the CSRF token) to use the device, and a link to the other factors. Nothing
    /// is checked or changed until the POST.
    pub(super) fn remembered_offer(
        &self,
        a: &Authenticated,
        ret: &str,
        methods: Option<&String>,
    ) -> Reply {
        let methods = methods.map(String::as_str).unwrap_or("");
        let other: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("return", ret)
            .append_pair("methods", methods)
            .append_pair("device", "0")
            .finish();
        let body = format!(
            "<p>This browser is a remembered device.</p>\
             <form method=\"post\" action=\"{action}\">{hidden}\
             <input type=\"hidden\" name=\"methods\" value=\"{methods}\">\
             <button>Continue on this device</button></form>\
             <p><a href=\"/.portcullis/mfa?{other}\">Use another factor</a></p>",
            action = super::REMEMBERED_ENDPOINT,
            hidden = hidden(&a.record.csrf, ret),
            methods = esc(methods),
            other = esc(&other),
        );
        html(200, &self.cfg, "Continue", &body)
    }

    /// The user's remembered devices with a revoke button each.
    pub(super) async fn devices_html(&self, a: &Authenticated) -> Result<String, GatewayError> {
        if self.cfg.remember_device_days == 0 {
            return Ok(String::new());
        }
        let now = i64::try_from(self.now_unix()).unwrap_or(i64::MAX);
        let user = &owner(a);
        let devices = self
            .mfa()
            .await?
            .devices(user, now)
            .await
            .map_err(map_err)?;
        if devices.is_empty() {
            return Ok(String::new());
        }
        let day = |t: i64| {
            chrono::DateTime::from_timestamp(t, 0)
                .map(|d| d.format("%Y-%m-%d").to_string())
                .unwrap_or_default()
        };
        let items: String = devices
            .iter()
            .map(|d| {
                format!(
                    "<li>{} ({}; remembered {}, last used {}, until {})\
<form method=\"post\" action=\"/.portcullis/mfa/devices/revoke\">{}<input type=\"hidden\" name=\"device\" value=\"{}\">\
<button type=\"submit\">Forget</button></form></li>",
                    esc(&d.label),
                    esc(&d.method),
                    day(d.created),
                    day(d.last_used),
                    day(d.expires),
                    hidden(&a.record.csrf, "/.portcullis/mfa"),
                    esc(&d.id)
                )
            })
            .collect();
        Ok(format!(
            "<h2>Remembered devices</h2><ul id=\"devices\">{items}</ul>"
        ))
    }

    /// Serves the POST endpoints of this module (CSRF already checked).
    pub(super) async fn serve_codes(
        &self,
        sso: &Sso,
        a: &Authenticated,
        req: &LocalRequest,
        form: &HashMap<String, String>,
    ) -> Result<Reply, GatewayError> {
        let (path, headers, origin, tls, ip) = (
            req.path.as_str(),
            &req.headers,
            req.origin.as_str(),
            req.tls,
            req.client_ip,
        );
        let ret = form.get("return").map_or("/", String::as_str);
        if path == "/.portcullis/mfa/devices/revoke" {
            let user = &owner(a);
            let id = form.get("device").map_or("", String::as_str);
            if self
                .mfa()
                .await?
                .forget_device(user, id)
                .await
                .map_err(map_err)?
            {
                self.audit.record(crate::audit::AuditEvent::DeviceRevoked {
                    user: user.to_string(),
                    device: id.to_string(),
                });
                crate::metrics::mfa_event("device", "revoked");
            }
            return Ok(Reply::redirect(crate::sso::Redirect {
                location: format!("{origin}/.portcullis/mfa"),
                cookies: Vec::new(),
            }));
        }
        let name = path
            .trim_start_matches("/.portcullis/mfa/")
            .split('/')
            .next()
            .unwrap_or("");
        let Some(ch) = self.channel(name) else {
            return Err(GatewayError::NoRoute);
        };
        let cx = Cx {
            sso,
            a,
            headers,
            ret,
            origin,
            tls,
            ip,
        };
        let user = &owner(a);
        if path.ends_with("/send") {
            if self.limiter.locked(user, &ip.to_string()).await.is_some() {
                self.event(&cx, ch, "locked_out");
                return self.again(&cx, None).await;
            }
            self.send_code(&cx, ch).await
        } else {
            // Counted before the code is checked (H5): a refused attempt is never evaluated.
            let Ok(attempt) = self.limiter.begin(user, &ip.to_string()).await else {
                self.event(&cx, ch, "locked_out");
                return self.again(&cx, None).await;
            };
            let code = form.get("code").map_or("", String::as_str);
            let remember = form.get("remember").is_some_and(|v| v == "1");
            self.verify_code(&cx, ch, code, remember, attempt).await
        }
    }

    /// The step-up page again (or the lockout notice), with `error`.
    async fn again(&self, cx: &Cx<'_>, error: Option<&str>) -> Result<Reply, GatewayError> {
        self.show(cx.sso, cx.a, &Page::new(cx.ret, error), cx.tls, cx.ip)
            .await
    }

    /// The page asking for the code just sent.
    fn code_page(&self, a: &Authenticated, ch: &Channel, ret: &str, error: Option<&str>) -> Reply {
        let to = otp::destination(ch.name, &a.record.identity, ch.require_verified)
            .map(|t| otp::mask(&t))
            .unwrap_or_default();
        let body = format!(
            "<p>We sent a {}-digit code {} to {}. It expires in {} minutes.</p>{}{}",
            otp::DIGITS,
            channel_text(ch.name),
            esc(&to),
            ch.minutes(),
            code_form_with(
                &format!("/.portcullis/mfa/{}/verify", ch.name),
                &a.record.csrf,
                ret,
                "Code",
                error,
                &self.remember_box()
            ),
            format_args!(
                "<form method=\"post\" action=\"/.portcullis/mfa/{}/send\" id=\"resend\">{}<p><button type=\"submit\">Send a new code</button></p></form>",
                ch.name,
                hidden(&a.record.csrf, ret)
            )
        );
        html(
            if error.is_some() { 401 } else { 200 },
            &self.cfg,
            "Enter your code",
            &body,
        )
    }

    /// A plain notice page (rate limit, delivery failure, no destination).
    fn notice(&self, status: u16, heading: &str, text: &str, ret: &str) -> Reply {
        let back = format!(
            "{}<p><a href=\"/.portcullis/mfa?return={}\">Back</a></p>",
            error_p(text),
            esc(&url::form_urlencoded::byte_serialize(ret.as_bytes()).collect::<String>())
        );
        html(status, &self.cfg, heading, &back)
    }

    async fn send_code(&self, cx: &Cx<'_>, ch: &Channel) -> Result<Reply, GatewayError> {
        let (a, ret, tls) = (cx.a, cx.ret, cx.tls);
        let user = &owner(a);
        let Some(to) = otp::destination(ch.name, &a.record.identity, ch.require_verified) else {
            return Ok(self.notice(
                403,
                "No destination",
                "There is no verified address or number to send a code to.",
                ret,
            ));
        };
        let interval = RESEND_INTERVAL.min(ch.ttl);
        if !self.limiter.may_send(user, ch.name, interval).await {
            self.event(cx, ch, "send_limited");
            return Ok(self.notice(
                429,
                "Please wait",
                "A code was sent a moment ago. Wait a little before asking for another.",
                ret,
            ));
        }
        let now = i64::try_from(self.now_unix()).unwrap_or(i64::MAX);
        let (code, pending) = self
            .codes
            .issue(user, ch.name, ch.ttl, now)
            .ok_or(GatewayError::MfaUnavailable)?;
        let name = pending_cookie(tls);
        let sealed = cx
            .sso
            .codec
            .seal(name, &pending)
            .ok_or(GatewayError::MfaUnavailable)?;
        if let Err(e) = ch.sender.deliver(&to, &code, ch.minutes()).await {
            // Fail closed: no cookie, no code; the error never contains the code.
            tracing::error!(user = %user, factor = ch.name, error = %e, "one-time code not delivered");
            self.event(cx, ch, "delivery_failed");
            return Ok(self.notice(
                502,
                "Code not sent",
                "The code could not be sent. Try again later or use another method.",
                ret,
            ));
        }
        self.event(cx, ch, "sent");
        let mut r = self.code_page(a, ch, ret, None);
        let ttl = i64::try_from(ch.ttl.as_secs()).unwrap_or(600);
        r.headers.push((
            "set-cookie".into(),
            session::set_cookie(name, &sealed, tls, Some(ttl)),
        ));
        Ok(r)
    }

    async fn verify_code(
        &self,
        cx: &Cx<'_>,
        ch: &Channel,
        code: &str,
        remember: bool,
        attempt: Attempt<'_>,
    ) -> Result<Reply, GatewayError> {
        const EXPIRED: &str = "That code has expired. Send a new one.";
        let (a, tls) = (cx.a, cx.tls);
        let user = &owner(a);
        let name = pending_cookie(tls);
        let pending = session::cookie_values(cx.headers, name)
            .into_iter()
            .filter_map(|v| cx.sso.codec.open::<Pending>(name, v))
            .find(|p| &p.user == user && p.channel == ch.name);
        let now = i64::try_from(self.now_unix()).unwrap_or(i64::MAX);
        let check = pending.as_ref().map_or(Check::Expired, |p| {
            self.codes.check(p, user, ch.name, code, now)
        });
        let (outcome, msg) = match (check, pending) {
            (Check::Right, Some(p)) => {
                let fresh = self
                    .mfa()
                    .await?
                    .claim_code(&p.nonce, p.exp, now)
                    .await
                    .map_err(map_err)?;
                if fresh {
                    attempt.succeeded().await;
                    return self.code_accepted(cx, ch, remember).await;
                }
                ("replay", "That code was already used. Send a new one.")
            }
            (Check::Wrong, _) => ("failure", "That code is not right. Try again."),
            _ => {
                // Expired (or no code pending): not a guess, so not counted as a failure.
                attempt.refund().await;
                self.event(cx, ch, "expired");
                let mut r = self.again(cx, Some(EXPIRED)).await?;
                r.headers
                    .push(("set-cookie".into(), session::clear_cookie(name, tls)));
                return Ok(r);
            }
        };
        self.event(cx, ch, outcome);
        if attempt.failed().await {
            self.event(cx, ch, "lockout");
            return self.again(cx, None).await;
        }
        Ok(self.code_page(a, ch, cx.ret, Some(msg)))
    }

    async fn code_accepted(
        &self,
        cx: &Cx<'_>,
        ch: &Channel,
        remember: bool,
    ) -> Result<Reply, GatewayError> {
        let (sso, a, tls) = (cx.sso, cx.a, cx.tls);
        let user = &owner(a);
        self.event(cx, ch, "success");
        let mut cookies = vec![
            sso.elevate(&a.sid, &a.record, &[ch.name], tls).await?,
            session::clear_cookie(pending_cookie(tls), tls),
        ];
        if remember {
            cookies.extend(self.device_cookie(user, ch.name, cx.headers, tls).await?);
        }
        Ok(Reply::redirect(crate::sso::Redirect {
            location: sso.return_to(Some(cx.ret), cx.origin),
            cookies,
        }))
    }
}

/// What the code handlers need from the request.
struct Cx<'a> {
    sso: &'a Sso,
    a: &'a Authenticated,
    headers: &'a http::HeaderMap,
    ret: &'a str,
    origin: &'a str,
    tls: bool,
    ip: IpAddr,
}

impl Service {
    /// Counts and audits one event of `ch` for this user and client.
    fn event(&self, cx: &Cx<'_>, ch: &Channel, outcome: &str) {
        crate::mfa::event(
            &self.audit,
            ch.name,
            outcome,
            &owner(cx.a),
            &cx.ip.to_string(),
        );
    }
}
