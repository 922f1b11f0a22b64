//! The reserved endpoints under `/.portcullis/`: `login` (start or chooser), `callback`,
//! `logout` (GET shows a form, POST with CSRF token destroys the session), `jwks.json`, and
//! `backchannel-logout`. (Forward-auth, which needs the route table, is in `proxy.rs` with
//! [`crate::forward_auth`].) Each returns a [`Reply`] or a [`GatewayError`]; nothing here writes
//! to the socket except through `errors.rs`.

use crate::errors::{GatewayError, Reply};
use crate::sso::{AuthError, Sso};
use pingora::proxy::Session;
use std::collections::HashMap;

/// Largest request body read by an auth endpoint.
const MAX_BODY: usize = 64 * 1024;

/// Facts about the request an endpoint needs.
#[derive(Debug)]
pub struct Request<'a> {
    /// Decoded, normalised path.
    pub path: &'a str,
    /// `scheme://host[:port]` of this request.
    pub origin: String,
    /// Over TLS.
    pub tls: bool,
    /// The client's address (for audit events).
    pub client_ip: std::net::IpAddr,
}

/// Whether `path` is one of the endpoints served here.
pub fn is_endpoint(path: &str) -> bool {
    path.starts_with(crate::sso::CALLBACK_PREFIX)
        || matches!(
            path,
            "/.portcullis/login"
                | "/.portcullis/callback"
                | "/.portcullis/logout"
                | "/.portcullis/jwks.json"
                | "/.portcullis/backchannel-logout"
        )
}

/// Why a request body was not read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BodyError {
    /// Longer than the endpoint accepts (announced or while reading).
    TooLarge,
    /// The connection failed mid-body.
    Unreadable,
}

/// Reads a request body of at most `max` bytes; stops reading as soon as it is over (a
/// `Content-Length` above `max` is refused before reading anything).
pub(crate) async fn body_capped(session: &mut Session, max: usize) -> Result<Vec<u8>, BodyError> {
    let announced = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > max as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut buf = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                buf.extend_from_slice(&chunk);
                if buf.len() > max {
                    return Err(BodyError::TooLarge);
                }
            }
            Ok(None) => return Ok(buf),
            Err(_) => return Err(BodyError::Unreadable),
        }
    }
}

/// A form or JSON body of a sign-in or MFA endpoint (64 KiB at most, UTF-8).
pub(crate) async fn body(session: &mut Session) -> Result<String, GatewayError> {
    let buf = body_capped(session, MAX_BODY).await.map_err(|e| match e {
        BodyError::TooLarge => AuthError::BadRequest("body too large"),
        BodyError::Unreadable => AuthError::BadRequest("unreadable body"),
    })?;
    String::from_utf8(buf).map_err(|_| AuthError::BadRequest("body is not UTF-8").into())
}

pub(crate) fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Serves one reserved endpoint.
pub async fn serve(
    sso: &Sso,
    session: &mut Session,
    req: &Request<'_>,
) -> Result<Reply, GatewayError> {
    let method = session.req_header().method.clone();
    let query = session.req_header().uri.query().unwrap_or("").to_string();
    let params: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    match (req.path, method.as_str()) {
        ("/.portcullis/jwks.json", "GET" | "HEAD") => {
            Ok(Reply::json(200, sso.assertions.jwks().to_string()))
        }
        ("/.portcullis/login", "GET") => {
            if !sso.enabled() {
                return Err(GatewayError::NoRoute);
            }
            let rd = sso.return_to(params.get("rd").map(String::as_str), &req.origin);
            // A local provider (named, or the only provider there is) shows its form.
            let local = match params.get("idp") {
                Some(id) => sso.local_provider(id),
                None => sso.sole_local(),
            };
            if let Some(acc) = local {
                let (html, cookies) = sso.local_form(&acc, rd, req.tls, "", None)?;
                return Ok(with_cookies(Reply::html(200, html), cookies));
            }
            let idp = match params.get("idp") {
                Some(id) => Some(sso.provider(id).ok_or(AuthError::UnknownProvider)?),
                None => sso.provider_for(None),
            };
            match idp {
                Some(p) => Ok(Reply::redirect(
                    sso.start_login(&p, rd, &req.origin, req.tls, &req.client_ip.to_string())
                        .await?,
                )),
                None => Ok(chooser(sso, &rd)),
            }
        }
        ("/.portcullis/login", "POST") => {
            let headers = session.req_header().headers.clone();
            let form = body(session).await?;
            let ip = req.client_ip.to_string();
            match sso.local_login(&form, &headers, req.tls, &ip).await {
                Ok(crate::sso::LocalOutcome::SignedIn(r)) => Ok(Reply::redirect(r)),
                Ok(crate::sso::LocalOutcome::Form {
                    status,
                    html,
                    cookies,
                }) => Ok(with_cookies(Reply::html(status, html), cookies)),
                Err(err) => Err(GatewayError::Auth { err, clear: None }),
            }
        }
        (path, "GET")
            if path == "/.portcullis/callback" || path.starts_with(crate::sso::CALLBACK_PREFIX) =>
        {
            let headers = session.req_header().headers.clone();
            let ip = req.client_ip.to_string();
            match sso.callback(path, &query, &headers, req.tls, &ip).await {
                Ok(r) => Ok(Reply::redirect(r)),
                // The refusal was recorded (`auth.login_failed`) where it was decided.
                Err((err, clear)) => Err(GatewayError::Auth { err, clear }),
            }
        }
        ("/.portcullis/logout", "GET") => {
            let headers = session.req_header().headers.clone();
            let csrf = sso
                .identify(&headers, req.tls)
                .await?
                .map(|a| a.record.csrf)
                .unwrap_or_default();
            Ok(Reply::html(
                200,
                format!(
                    "<!doctype html><title>Sign out</title><form method=\"post\" action=\"/.portcullis/logout\">\
                     <input type=\"hidden\" name=\"csrf\" value=\"{}\"><button>Sign out</button></form>",
                    html_escape(&csrf)
                ),
            ))
        }
        ("/.portcullis/logout", "POST") => {
            let headers = session.req_header().headers.clone();
            let form = body(session).await?;
            Ok(Reply::redirect(
                sso.logout(
                    &form,
                    &headers,
                    &req.origin,
                    req.tls,
                    &req.client_ip.to_string(),
                )
                .await?,
            ))
        }
        ("/.portcullis/backchannel-logout", "POST") => {
            let form = body(session).await?;
            sso.backchannel_logout(&form, &req.client_ip.to_string())
                .await?;
            Ok(Reply::json(200, "{}".to_string()))
        }
        _ => Err(GatewayError::NoRoute),
    }
}

/// `reply` with `Set-Cookie` headers added.
fn with_cookies(mut reply: Reply, cookies: Vec<String>) -> Reply {
    reply
        .headers
        .extend(cookies.into_iter().map(|c| ("set-cookie".to_string(), c)));
    reply
}

fn chooser(sso: &Sso, rd: &str) -> Reply {
    let mut items = String::new();
    let ids = sso
        .providers()
        .iter()
        .map(|p| p.cfg.id.clone())
        .chain(sso.local_ids())
        .collect::<Vec<_>>();
    for id in &ids {
        let q: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("idp", id)
            .append_pair("rd", rd)
            .finish();
        items.push_str(&format!(
            "<li><a href=\"/.portcullis/login?{}\">{}</a></li>",
            html_escape(&q),
            html_escape(id)
        ));
    }
    Reply::html(
        200,
        format!("<!doctype html><title>Sign in</title><h1>Sign in with</h1><ul>{items}</ul>"),
    )
}
