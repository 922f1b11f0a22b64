//! The reserved endpoints under `/.portcullis/`: `login` (start or chooser), `callback`,
//! `logout` (GET shows a form, POST with CSRF token destroys the session), `password` (a local
//! account's password change), `jwks.json`, and `backchannel-logout`. (Forward-auth, which needs the route table, is in `request/forward_auth.rs`
//! with [`crate::forward_auth`].) Each takes the dispatcher's [`LocalRequest`] and returns a
//! [`Reply`] or a [`GatewayError`]; nothing here reads or writes the socket.

use crate::errors::{GatewayError, Reply};
use crate::local_request::LocalRequest;
use crate::sso::{AuthError, Sso};

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
                | crate::sso::PASSWORD_PATH
        )
}

pub(crate) fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Serves one reserved endpoint.
pub async fn serve(sso: &Sso, req: &LocalRequest) -> Result<Reply, GatewayError> {
    let params = &req.params;
    match (req.path.as_str(), req.method.as_str()) {
        ("/.portcullis/jwks.json", "GET" | "HEAD") => {
            Ok(Reply::json(200, sso.assertions.jwks().to_string()))
        }
        ("/.portcullis/login", "GET") => {
            if !sso.enabled() {
                return Err(GatewayError::NoRoute);
            }
            let rd = sso.return_to(params.get("rd").map(String::as_str), &req.origin);
            // Home-realm discovery: an email address typed on the chooser picks the provider
            // of its domain (and is the name the password form starts with).
            let email = params
                .get("email")
                .map(|e| crate::local::login::truncate(e.trim(), 256));
            let (named, prefill) = match (params.get("idp"), email) {
                (Some(id), _) => (Some(id.clone()), ""),
                (None, Some(e)) => match sso.realm_of(e) {
                    Some(id) => (Some(id), e),
                    None => return Ok(chooser(sso, &rd, Some(e))),
                },
                (None, None) => (None, ""),
            };
            let named = named.as_deref();
            // A password provider (named, or the only provider there is) shows its form.
            let local = match named {
                Some(id) => sso.password_provider(id),
                None => sso.sole_local(),
            };
            if let Some(acc) = local {
                let (html, cookies) = sso.local_form(&acc.id, rd, req.tls, prefill, None)?;
                return Ok(with_cookies(Reply::html(200, html), cookies));
            }
            let saml = match named {
                Some(id) => sso.saml_provider(id),
                None => sso.saml_for(None),
            };
            if let Some(sp) = saml {
                let ip = req.client_ip.to_string();
                return Ok(Reply::redirect(
                    sso.start_saml(&sp, rd, &req.origin, req.tls, &ip).await?,
                ));
            }
            let idp = match named {
                Some(id) => Some(sso.provider(id).ok_or(AuthError::UnknownProvider)?),
                None => sso.provider_for(None),
            };
            match idp {
                Some(p) => Ok(Reply::redirect(
                    sso.start_login(&p, rd, &req.origin, req.tls, &req.client_ip.to_string())
                        .await?,
                )),
                None => Ok(chooser(sso, &rd, None)),
            }
        }
        ("/.portcullis/login", "POST") => {
            let ip = req.client_ip.to_string();
            match sso
                .local_login(req.text()?, &req.headers, req.tls, &ip)
                .await
            {
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
            let ip = req.client_ip.to_string();
            match sso
                .callback(path, &req.query, &req.headers, req.tls, &ip)
                .await
            {
                Ok(r) => Ok(Reply::redirect(r)),
                // The refusal was recorded (`auth.login_failed`) where it was decided.
                Err((err, clear)) => Err(GatewayError::Auth { err, clear }),
            }
        }
        ("/.portcullis/logout", "GET") => {
            let csrf = sso
                .identify(&req.headers, req.tls)
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
        ("/.portcullis/logout", "POST") => Ok(Reply::redirect(
            sso.logout(
                req.text()?,
                &req.headers,
                &req.origin,
                req.tls,
                &req.client_ip.to_string(),
            )
            .await?,
        )),
        (crate::sso::PASSWORD_PATH, "GET") => {
            let p = match sso.password_form(&req.headers, req.tls).await {
                // Not signed in: sign in first, then come back here.
                Err(AuthError::SessionEnded) => {
                    return Err(crate::request::decide::login_page(
                        &req.origin,
                        crate::sso::PASSWORD_PATH,
                    ))
                }
                other => other?,
            };
            Ok(Reply::html(p.status, p.html))
        }
        (crate::sso::PASSWORD_PATH, "POST") => {
            let p = sso
                .change_password(
                    req.text()?,
                    &req.headers,
                    &req.origin,
                    req.tls,
                    &req.client_ip.to_string(),
                )
                .await?;
            Ok(Reply::html(p.status, p.html))
        }
        ("/.portcullis/backchannel-logout", "POST") => {
            sso.backchannel_logout(req.text()?, &req.client_ip.to_string())
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

/// The sign-in page when several providers exist: with `login.domains`, an email field first
/// (home-realm discovery), then the list. `unknown`: an address whose domain is not mapped.
fn chooser(sso: &Sso, rd: &str, unknown: Option<&str>) -> Reply {
    let mut ask = String::new();
    if let Some(e) = unknown {
        ask.push_str(&format!(
            "<p role=\"alert\">No sign-in is set up for {}: choose one below.</p>",
            html_escape(e)
        ));
    }
    if sso.has_realms() {
        ask.push_str(&format!(
            "<form method=\"get\" action=\"/.portcullis/login\"><input type=\"hidden\" name=\"rd\" value=\"{}\">\
<p><label for=\"email\">Email address</label><br><input id=\"email\" name=\"email\" type=\"email\" autocomplete=\"username\" required></p>\
<p><button type=\"submit\">Continue</button></p></form><p>Or sign in with:</p>",
            html_escape(rd)
        ));
    }
    let mut items = String::new();
    let ids = sso
        .providers()
        .iter()
        .map(|p| p.cfg.id.clone())
        .chain(sso.local_ids())
        .chain(sso.saml_providers().iter().map(|s| s.cfg.id.clone()))
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
        format!("<!doctype html><title>Sign in</title><h1>Sign in</h1>{ask}<ul>{items}</ul>"),
    )
}
