//! The reserved endpoints under `/.portcullis/`: `login` (start or chooser), `callback`,
//! `logout` (GET shows a form, POST with CSRF token destroys the session), `auth` (forward-auth
//! for nginx `auth_request`, Traefik/Caddy `forward_auth`, Envoy ext_authz), `jwks.json`, and
//! `backchannel-logout`. Each returns a [`Reply`] or a [`GatewayError`]; nothing here writes
//! to the socket except through `errors.rs`.

use crate::assertion::identity_headers;
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
}

/// Whether `path` is one of the endpoints served here.
pub fn is_endpoint(path: &str) -> bool {
    matches!(
        path,
        "/.portcullis/login"
            | "/.portcullis/callback"
            | "/.portcullis/logout"
            | "/.portcullis/auth"
            | "/.portcullis/jwks.json"
            | "/.portcullis/backchannel-logout"
    )
}

pub(crate) async fn body(session: &mut Session) -> Result<String, GatewayError> {
    let mut buf = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                buf.extend_from_slice(&chunk);
                if buf.len() > MAX_BODY {
                    return Err(AuthError::BadRequest("body too large").into());
                }
            }
            Ok(None) => break,
            Err(_) => return Err(AuthError::BadRequest("unreadable body").into()),
        }
    }
    String::from_utf8(buf).map_err(|_| AuthError::BadRequest("body is not UTF-8").into())
}

fn html_escape(s: &str) -> String {
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
            let idp = match params.get("idp") {
                Some(id) => Some(sso.provider(id).ok_or(AuthError::UnknownProvider)?),
                None if sso.providers.len() == 1 => sso.providers.first(),
                None => None,
            };
            match idp {
                Some(p) => Ok(Reply::redirect(
                    sso.start_login(p, rd, &req.origin, req.tls).await?,
                )),
                None => Ok(chooser(sso, &rd)),
            }
        }
        ("/.portcullis/callback", "GET") => {
            let headers = session.req_header().headers.clone();
            match sso.callback(&query, &headers, req.tls).await {
                Ok(r) => Ok(Reply::redirect(r)),
                Err((err, clear)) => {
                    tracing::warn!(target: "audit", error = %err, "login callback refused");
                    Err(GatewayError::Auth { err, clear })
                }
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
                sso.logout(&form, &headers, &req.origin, req.tls).await?,
            ))
        }
        ("/.portcullis/backchannel-logout", "POST") => {
            let form = body(session).await?;
            sso.backchannel_logout(&form).await?;
            Ok(Reply::json(200, "{}".to_string()))
        }
        ("/.portcullis/auth", _) => {
            let headers = session.req_header().headers.clone();
            match sso.identify(&headers, req.tls).await? {
                Some(a) => {
                    let aud = params
                        .get("aud")
                        .cloned()
                        .unwrap_or_else(|| "forward-auth".to_string());
                    let mut reply = Reply::json(200, "{}".to_string());
                    for (k, v) in identity_headers(&a.record.identity) {
                        reply.headers.push((k.to_string(), v));
                    }
                    if let Some(t) = sso.assertions.sign(&a.record.identity, &aud) {
                        reply
                            .headers
                            .push(("x-portcullis-assertion".to_string(), t));
                    }
                    if let Some(c) = a.set_cookie {
                        reply.headers.push(("set-cookie".to_string(), c));
                    }
                    Ok(reply)
                }
                None => Err(forward_auth_challenge(sso, session, req)),
            }
        }
        _ => Err(GatewayError::NoRoute),
    }
}

/// Unauthenticated at `/.portcullis/auth`: 401 (nginx `auth_request` maps it with
/// `error_page`), or, when a Traefik/Caddy-style proxy says which page a browser wanted
/// (`X-Forwarded-Proto/Host/Uri`), a 302 to sign in and come back there. The return URL is
/// still checked against this origin and `session.return_to_allow` at login.
fn forward_auth_challenge(sso: &Sso, session: &Session, req: &Request<'_>) -> GatewayError {
    let h = &session.req_header().headers;
    let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok());
    let browser = get("accept").is_some_and(|a| a.contains("text/html"));
    match (
        get("x-forwarded-proto"),
        get("x-forwarded-host"),
        get("x-forwarded-uri"),
    ) {
        (Some(proto), Some(host), Some(uri)) if browser && sso.enabled() => {
            let rd = format!("{proto}://{host}{uri}");
            let q: String = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("rd", &rd)
                .finish();
            GatewayError::Login(crate::sso::Redirect {
                location: format!("{}/.portcullis/login?{q}", req.origin),
                cookies: Vec::new(),
            })
        }
        _ => GatewayError::Unauthenticated,
    }
}

fn chooser(sso: &Sso, rd: &str) -> Reply {
    let mut items = String::new();
    for p in &sso.providers {
        let q: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("idp", &p.cfg.id)
            .append_pair("rd", rd)
            .finish();
        items.push_str(&format!(
            "<li><a href=\"/.portcullis/login?{}\">{}</a></li>",
            html_escape(&q),
            html_escape(&p.cfg.id)
        ));
    }
    Reply::html(
        200,
        format!("<!doctype html><title>Sign in</title><h1>Sign in with</h1><ul>{items}</ul>"),
    )
}
