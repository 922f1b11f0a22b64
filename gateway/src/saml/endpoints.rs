//! The SAML endpoints under `/.portcullis/saml/`: `metadata` (GET, our SP metadata), `acs`
//! (POST, the HTTP-POST binding) and `slo` (single logout, HTTP-Redirect and HTTP-POST). Each
//! takes the dispatcher's [`LocalRequest`] (body bounded by [`super::MAX_BODY`]) and returns a
//! [`Reply`] or a [`GatewayError`].

use crate::errors::{GatewayError, Reply};
use crate::local_request::LocalRequest;
use crate::sso::Sso;

/// Serves one SAML endpoint.
pub async fn serve(sso: &Sso, req: &LocalRequest) -> Result<Reply, GatewayError> {
    if sso.saml_providers().is_empty() {
        return Err(GatewayError::NoRoute);
    }
    let ip = req.client_ip.to_string();
    match (req.path.as_str(), req.method.as_str()) {
        (super::METADATA_PATH, "GET" | "HEAD") => {
            let xml = sso.saml_metadata(req.params.get("idp").map(String::as_str), &req.origin)?;
            Ok(Reply {
                status: 200,
                content_type: "application/samlmetadata+xml",
                headers: Vec::new(),
                body: xml.into_bytes(),
            })
        }
        (super::ACS_PATH, "POST") => {
            match sso
                .saml_acs(req.text()?, &req.headers, &req.origin, req.tls, &ip)
                .await
            {
                Ok(r) => Ok(Reply::redirect(r)),
                // The refusal was recorded (`auth.login_failed`) where it was decided.
                Err((err, clear)) => Err(GatewayError::Auth { err, clear }),
            }
        }
        (super::SLO_PATH, "GET" | "POST") => {
            let form = match req.method.as_str() {
                "POST" => Some(req.text()?),
                _ => None,
            };
            Ok(Reply::redirect(
                sso.saml_slo(&req.query, form, &req.origin, req.tls, &ip)
                    .await?,
            ))
        }
        _ => Err(GatewayError::NoRoute),
    }
}
