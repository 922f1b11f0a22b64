//! Every way a request can end at the gateway instead of the upstream, and the one function
//! that turns it into a response. Bodies are short JSON and never carry internal detail.

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
    /// Plain-HTTP listener configured to redirect.
    #[error("redirect to https")]
    RedirectHttps(String),
    /// No upstream could be reached or it failed mid-response.
    #[error("upstream unavailable")]
    BadGateway,
    /// The upstream did not answer in time.
    #[error("upstream timeout")]
    UpstreamTimeout,
    /// The decision log cannot take another record (queue and spool full, `when_full: block`).
    #[error("service temporarily unavailable")]
    LogUnavailable,
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
            GatewayError::LogUnavailable => "unavailable",
        }
    }

    /// The decision label for metrics and logs.
    pub fn decision(&self) -> &'static str {
        match self {
            GatewayError::Unauthenticated => "login",
            GatewayError::StepUp { .. } => "step_up",
            GatewayError::RedirectHttps(_)
            | GatewayError::BadGateway
            | GatewayError::UpstreamTimeout => "allow",
            _ => "deny",
        }
    }

    /// Builds the response header and body.
    pub fn to_response(&self) -> pingora::Result<(ResponseHeader, Vec<u8>)> {
        let mut json = serde_json::json!({"error": self.code(), "message": self.to_string()});
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
            GatewayError::RedirectHttps(to) => h.insert_header("location", to.as_str())?,
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
