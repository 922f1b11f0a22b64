//! Every way a request can end at the gateway instead of the upstream, and the one function
//! that turns it into a response. Bodies are short JSON and never carry internal detail.

use crate::sso::AuthError;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;
use portcullis_policy::path::PathError;
use thiserror::Error;

/// A request answered by the gateway itself.
#[derive(Debug, Error)]
pub enum GatewayError {
    /// The path could not be normalised safely.
    #[error("bad request path: {0}")]
    BadPath(#[from] PathError),
    /// No Host header or authority.
    #[error("missing or invalid Host")]
    BadHost,
    /// No route matches: default deny, nothing reaches an upstream.
    #[error("no route")]
    NoRoute,
    /// `/.portcullis/` is reserved for the gateway.
    #[error("reserved path")]
    Reserved,
    /// The route needs a signed-in user.
    #[error("authentication required")]
    Unauthenticated,
    /// The policy refused the request.
    #[error("forbidden")]
    Forbidden,
    /// Signed in, but the route needs a recent second factor.
    #[error("step-up authentication required")]
    StepUp {
        /// Factors that would satisfy the policy.
        methods: Vec<String>,
        /// How recent the factor must be, in seconds.
        max_age_secs: Option<u64>,
    },
    /// A browser must pass a second factor: redirect to the MFA page.
    #[error("step-up authentication required")]
    StepUpRedirect(String),
    /// The MFA store is unreachable or a stored secret does not open (fail closed).
    #[error("second-factor service unavailable")]
    MfaUnavailable,
    /// A second-factor ceremony (WebAuthn) did not verify; nothing was recorded.
    #[error("second factor refused")]
    MfaRefused,
    /// Too many refused second factors from this user or address: locked out for a while.
    #[error("too many attempts: try again later")]
    MfaLocked,
    /// Plain-HTTP listener configured to redirect.
    #[error("redirect to https")]
    RedirectHttps(String),
    /// No upstream could be reached or it failed mid-response.
    #[error("upstream unavailable")]
    BadGateway,
    /// The upstream did not answer in time.
    #[error("upstream timeout")]
    UpstreamTimeout,
    /// A browser must sign in: redirect to the provider (or the chooser) with cookies.
    #[error("sign-in required")]
    Login(crate::sso::Redirect),
    /// A single sign-on step failed; `clear` is a `Set-Cookie` that removes a cookie.
    #[error("{err}")]
    Auth {
        /// What failed.
        err: crate::sso::AuthError,
        /// Cookie to clear in the response.
        clear: Option<String>,
    },
    /// A forward-auth check that cannot be judged (untrusted caller, incomplete or repeated
    /// headers): refused, never answered with "is there a session".
    #[error("{0}")]
    ForwardAuth(#[from] crate::forward_auth::ForwardAuthError),
    /// The decision log cannot take another record (queue and spool full, `when_full: block`).
    #[error("service temporarily unavailable")]
    LogUnavailable,
}

impl From<crate::sso::AuthError> for GatewayError {
    fn from(err: crate::sso::AuthError) -> Self {
        GatewayError::Auth { err, clear: None }
    }
}

/// A successful answer written by the gateway itself (auth endpoints).
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Extra headers (`Location`, `Set-Cookie`, identity headers...).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Reply {
    /// A 302 that sets cookies.
    pub fn redirect(r: crate::sso::Redirect) -> Self {
        let mut headers = vec![("location".to_string(), r.location)];
        headers.extend(r.cookies.into_iter().map(|c| ("set-cookie".to_string(), c)));
        Self {
            status: 302,
            content_type: "text/plain; charset=utf-8",
            headers,
            body: Vec::new(),
        }
    }

    /// A JSON body.
    pub fn json(status: u16, body: String) -> Self {
        Self {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body: body.into_bytes(),
        }
    }

    /// An HTML page.
    pub fn html(status: u16, body: String) -> Self {
        Self {
            status,
            content_type: "text/html; charset=utf-8",
            headers: vec![(
                "content-security-policy".to_string(),
                "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' https: http:; frame-ancestors 'none'; base-uri 'none'"
                    .to_string(),
            )],
            body: body.into_bytes(),
        }
    }
}

/// The CSP of gateway answers that are not pages: nothing may load, nothing may frame them.
const NO_CONTENT_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

/// The headers every gateway-made answer carries, whatever wrote it: never cached, never
/// sniffed, never framed (clickjacking of the logout form, the provider chooser, MFA pages).
/// A page that brings its own `Content-Security-Policy` keeps it (each includes
/// `frame-ancestors 'none'`).
fn security_headers(h: &mut ResponseHeader) -> pingora::Result<()> {
    h.insert_header("cache-control", "no-store")?;
    h.insert_header("x-content-type-options", "nosniff")?;
    h.insert_header("x-frame-options", "DENY")?;
    if h.headers.get("content-security-policy").is_none() {
        h.insert_header("content-security-policy", NO_CONTENT_CSP)?;
    }
    Ok(())
}

/// Writes a gateway-made answer.
pub async fn send(session: &mut Session, reply: Reply) -> pingora::Result<()> {
    let mut h = ResponseHeader::build(reply.status, Some(6 + reply.headers.len()))?;
    h.insert_header("content-type", reply.content_type)?;
    h.insert_header("content-length", reply.body.len().to_string())?;
    for (k, v) in reply.headers {
        h.append_header(k, v)?;
    }
    security_headers(&mut h)?;
    session.write_response_header(Box::new(h), false).await?;
    session
        .write_response_body(Some(bytes::Bytes::from(reply.body)), true)
        .await?;
    Ok(())
}

impl GatewayError {
    /// HTTP status of the response.
    pub fn status(&self) -> u16 {
        match self {
            // Size limits (issue 10, H4) are 414 so clients and proxies can tell them apart.
            GatewayError::BadPath(e) if e.is_too_long() => 414,
            GatewayError::BadPath(_) | GatewayError::BadHost => 400,
            GatewayError::NoRoute | GatewayError::Reserved => 404,
            GatewayError::Unauthenticated | GatewayError::StepUp { .. } => 401,
            GatewayError::Forbidden => 403,
            GatewayError::RedirectHttps(_) => 308,
            GatewayError::BadGateway => 502,
            GatewayError::UpstreamTimeout => 504,
            GatewayError::Login(_) | GatewayError::StepUpRedirect(_) => 302,
            GatewayError::MfaUnavailable => 503,
            GatewayError::MfaRefused => 401,
            GatewayError::MfaLocked => 429,
            GatewayError::Auth { err, .. } => match err {
                AuthError::Store(_) => 503,
                AuthError::ProviderUnavailable(_) => 502,
                AuthError::Callback(_) => 401,
                AuthError::BadRequest(_) => 400,
                AuthError::Csrf => 403,
                AuthError::UnknownProvider => 404,
                AuthError::Internal(_) => 500,
                AuthError::SessionEnded => 401,
                AuthError::Refused(_) => 403,
                AuthError::Directory(_) => 503,
            },
            GatewayError::LogUnavailable => 503,
            GatewayError::ForwardAuth(e) => e.status(),
        }
    }

    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::BadPath(e) if e.is_too_long() => "uri_too_long",
            GatewayError::BadPath(_) => "bad_path",
            GatewayError::BadHost => "bad_host",
            GatewayError::NoRoute | GatewayError::Reserved => "not_found",
            GatewayError::Unauthenticated => "unauthenticated",
            GatewayError::Forbidden => "forbidden",
            GatewayError::StepUp { .. } => "step_up_required",
            GatewayError::RedirectHttps(_) => "redirect",
            GatewayError::BadGateway => "bad_gateway",
            GatewayError::UpstreamTimeout => "gateway_timeout",
            GatewayError::Login(_) => "login",
            GatewayError::StepUpRedirect(_) => "step_up_required",
            GatewayError::MfaUnavailable => "mfa_unavailable",
            GatewayError::MfaRefused => "mfa_refused",
            GatewayError::MfaLocked => "mfa_locked",
            GatewayError::Auth { err, .. } => match err {
                AuthError::Store(_) => "session_store_unavailable",
                AuthError::ProviderUnavailable(_) => "identity_provider_unavailable",
                AuthError::Callback(_) => "login_failed",
                AuthError::BadRequest(_) => "bad_request",
                AuthError::Csrf => "csrf",
                AuthError::UnknownProvider => "unknown_identity_provider",
                AuthError::Internal(_) => "internal",
                AuthError::SessionEnded => "session_ended",
                AuthError::Refused(crate::directory::signin::Refusal::NotInDirectory) => {
                    "not_in_directory"
                }
                AuthError::Refused(crate::directory::signin::Refusal::Deactivated) => {
                    "account_deactivated"
                }
                AuthError::Directory(_) => "directory_unavailable",
            },
            GatewayError::LogUnavailable => "unavailable",
            GatewayError::ForwardAuth(crate::forward_auth::ForwardAuthError::Untrusted) => {
                "untrusted_caller"
            }
            GatewayError::ForwardAuth(crate::forward_auth::ForwardAuthError::TooLong(_)) => {
                "header_too_large"
            }
            GatewayError::ForwardAuth(_) => "bad_forward_auth_request",
        }
    }

    /// The decision label for metrics and logs.
    pub fn decision(&self) -> &'static str {
        match self {
            GatewayError::Unauthenticated | GatewayError::Login(_) => "login",
            GatewayError::StepUp { .. } | GatewayError::StepUpRedirect(_) => "step_up",
            GatewayError::RedirectHttps(_)
            | GatewayError::BadGateway
            | GatewayError::UpstreamTimeout => "allow",
            _ => "deny",
        }
    }

    /// Builds the response header and body.
    pub fn to_response(&self) -> pingora::Result<(ResponseHeader, Vec<u8>)> {
        // Auth failures say what kind of failure, never which check (that goes to the log).
        let message = match self {
            GatewayError::Auth { .. } => self.code().replace('_', " "),
            _ => self.to_string(),
        };
        let mut json = serde_json::json!({"error": self.code(), "message": message});
        if let GatewayError::StepUp {
            methods,
            max_age_secs,
        } = self
        {
            // What is missing, by name: a client need not know the code to act on it.
            json["required"] = serde_json::json!("mfa");
            json["methods"] = serde_json::json!(methods);
            json["max_age"] = serde_json::json!(max_age_secs);
        }
        let body = json.to_string().into_bytes();
        let mut h = ResponseHeader::build(self.status(), Some(8))?;
        h.insert_header("content-type", "application/json")?;
        h.insert_header("content-length", body.len().to_string())?;
        security_headers(&mut h)?;
        match self {
            GatewayError::Unauthenticated => {
                h.insert_header("www-authenticate", "Bearer realm=\"portcullis\"")?;
            }
            GatewayError::StepUp { methods, .. } => {
                let v = format!(
                    "Bearer realm=\"portcullis\", error=\"insufficient_user_authentication\", methods=\"{}\"",
                    methods.join(" ")
                );
                h.insert_header("www-authenticate", v)?;
            }
            GatewayError::RedirectHttps(to) | GatewayError::StepUpRedirect(to) => {
                h.insert_header("location", to.as_str())?
            }
            GatewayError::Login(r) => {
                h.insert_header("location", r.location.as_str())?;
                for c in &r.cookies {
                    h.append_header("set-cookie", c.as_str())?;
                }
            }
            GatewayError::Auth {
                clear: Some(c),
                err,
            } => {
                h.append_header("set-cookie", c.as_str())?;
                if matches!(err, AuthError::Callback(_)) {
                    h.insert_header("www-authenticate", "Bearer realm=\"portcullis\"")?;
                }
            }
            _ => {}
        }
        Ok((h, body))
    }
}

/// Writes the response for `err` to the client, with `set_cookie` (a session id rotated while
/// this request was identified: dropping it would sign the user out).
pub async fn respond(
    session: &mut Session,
    err: &GatewayError,
    set_cookie: Option<String>,
) -> pingora::Result<()> {
    let (mut header, body) = err.to_response()?;
    if let Some(c) = set_cookie {
        header.append_header("set-cookie", c)?;
    }
    session.set_keepalive(None);
    session
        .write_response_header(Box::new(header), false)
        .await?;
    session
        .write_response_body(Some(bytes::Bytes::from(body)), true)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward_auth::ForwardAuthError;

    /// Every way a request can end at the gateway, with the status, code and decision label
    /// operators and tests rely on, and the one header set every answer carries.
    #[test]
    fn every_error_has_its_status_code_decision_and_the_security_headers() {
        let redirect = crate::sso::Redirect {
            location: "https://idp/authorize".into(),
            cookies: vec!["__Host-portcullis-auth=x".into()],
        };
        let auth = |err| GatewayError::Auth { err, clear: None };
        let table: Vec<(GatewayError, u16, &str, &str)> = vec![
            (PathError::AboveRoot.into(), 400, "bad_path", "deny"),
            (GatewayError::BadHost, 400, "bad_host", "deny"),
            (GatewayError::NoRoute, 404, "not_found", "deny"),
            (GatewayError::Reserved, 404, "not_found", "deny"),
            (
                GatewayError::Unauthenticated,
                401,
                "unauthenticated",
                "login",
            ),
            (GatewayError::Forbidden, 403, "forbidden", "deny"),
            (
                GatewayError::StepUp {
                    methods: vec!["totp".into()],
                    max_age_secs: Some(300),
                },
                401,
                "step_up_required",
                "step_up",
            ),
            (
                GatewayError::StepUpRedirect("/.portcullis/mfa".into()),
                302,
                "step_up_required",
                "step_up",
            ),
            (GatewayError::MfaUnavailable, 503, "mfa_unavailable", "deny"),
            (GatewayError::MfaRefused, 401, "mfa_refused", "deny"),
            (GatewayError::MfaLocked, 429, "mfa_locked", "deny"),
            (
                GatewayError::RedirectHttps("https://x/".into()),
                308,
                "redirect",
                "allow",
            ),
            (GatewayError::BadGateway, 502, "bad_gateway", "allow"),
            (
                GatewayError::UpstreamTimeout,
                504,
                "gateway_timeout",
                "allow",
            ),
            (GatewayError::Login(redirect), 302, "login", "login"),
            (
                auth(AuthError::ProviderUnavailable("down".into())),
                502,
                "identity_provider_unavailable",
                "deny",
            ),
            (
                auth(AuthError::Callback("x".into())),
                401,
                "login_failed",
                "deny",
            ),
            (auth(AuthError::BadRequest("x")), 400, "bad_request", "deny"),
            (auth(AuthError::Csrf), 403, "csrf", "deny"),
            (
                auth(AuthError::UnknownProvider),
                404,
                "unknown_identity_provider",
                "deny",
            ),
            (auth(AuthError::Internal("x")), 500, "internal", "deny"),
            (GatewayError::LogUnavailable, 503, "unavailable", "deny"),
            (
                ForwardAuthError::Untrusted.into(),
                403,
                "untrusted_caller",
                "deny",
            ),
            (
                ForwardAuthError::TooLong("x-original-uri").into(),
                431,
                "header_too_large",
                "deny",
            ),
            (
                ForwardAuthError::Missing("x-original-method").into(),
                400,
                "bad_forward_auth_request",
                "deny",
            ),
        ];
        for (err, status, code, decision) in table {
            assert_eq!(err.status(), status, "{err:?}");
            assert_eq!(err.code(), code, "{err:?}");
            assert_eq!(err.decision(), decision, "{err:?}");
            let (h, body) = err.to_response().unwrap();
            assert_eq!(h.status.as_u16(), status);
            let get = |n: &str| h.headers.get(n).and_then(|v| v.to_str().ok());
            assert_eq!(get("x-frame-options"), Some("DENY"), "{err:?}");
            assert_eq!(get("cache-control"), Some("no-store"), "{err:?}");
            assert_eq!(get("x-content-type-options"), Some("nosniff"), "{err:?}");
            assert!(
                get("content-security-policy")
                    .is_some_and(|c| c.contains("frame-ancestors 'none'")),
                "{err:?}"
            );
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(json["error"], code);
            if matches!(err, GatewayError::StepUp { .. }) {
                assert_eq!(json["required"], "mfa", "a step-up names what is missing");
            }
            if matches!(err, GatewayError::Auth { .. }) {
                assert_eq!(
                    json["message"],
                    code.replace('_', " "),
                    "auth failures never say which check"
                );
            }
        }
    }
}
