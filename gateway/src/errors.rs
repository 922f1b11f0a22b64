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
                "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' https: http:"
                    .to_string(),
            )],
            body: body.into_bytes(),
        }
    }
}

/// Writes a gateway-made answer.
pub async fn send(session: &mut Session, reply: Reply) -> pingora::Result<()> {
    let mut h = ResponseHeader::build(reply.status, Some(4 + reply.headers.len()))?;
    h.insert_header("content-type", reply.content_type)?;
    h.insert_header("content-length", reply.body.len().to_string())?;
    h.insert_header("cache-control", "no-store")?;
    h.insert_header("x-content-type-options", "nosniff")?;
    for (k, v) in reply.headers {
        h.append_header(k, v)?;
    }
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
            },
            GatewayError::LogUnavailable => 503,
        }
    }

    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
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
            },
            GatewayError::LogUnavailable => "unavailable",
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
            json["methods"] = serde_json::json!(methods);
            json["max_age"] = serde_json::json!(max_age_secs);
        }
        let body = json.to_string().into_bytes();
        let mut h = ResponseHeader::build(self.status(), Some(6))?;
        h.insert_header("content-type", "application/json")?;
        h.insert_header("content-length", body.len().to_string())?;
        h.insert_header("cache-control", "no-store")?;
        h.insert_header("x-content-type-options", "nosniff")?;
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

/// Writes the response for `err` to the client.
pub async fn respond(session: &mut Session, err: &GatewayError) -> pingora::Result<()> {
    let (header, body) = err.to_response()?;
    session.set_keepalive(None);
    session
        .write_response_header(Box::new(header), false)
        .await?;
    session
        .write_response_body(Some(bytes::Bytes::from(body)), true)
        .await?;
    Ok(())
}
