//! Single logout messages: the LogoutRequest we send when a SAML session signs out here, the
//! LogoutResponse we answer an IdP's LogoutRequest with, and the verification of an IdP's
//! LogoutRequest (HTTP-Redirect: the binding's query signature; HTTP-POST: an enveloped XML
//! signature over the request). A LogoutRequest ends sessions, so it is never accepted unsigned,
//! and only from the IdP's metadata keys.

use super::authn::{instant, verify_redirect};
use super::config::SamlConfig;
use super::metadata::IdpMetadata;
use super::signature::{self, TrustedKeys};
use super::xml::{self, ASSERTION, PROTOCOL};
use super::SamlError;
use crate::auth_endpoints::html_escape as esc;

/// Status Success.
const SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";

/// Our LogoutRequest for a session of `name_id` (and its `SessionIndex`).
pub fn logout_request(
    id: &str,
    destination: &str,
    issuer: &str,
    name_id: &str,
    session_index: Option<&str>,
    now: i64,
) -> String {
    let idx = session_index
        .map(|s| format!("<samlp:SessionIndex>{}</samlp:SessionIndex>", esc(s)))
        .unwrap_or_default();
    format!(
        "<samlp:LogoutRequest xmlns:samlp=\"{PROTOCOL}\" xmlns:saml=\"{ASSERTION}\" ID=\"{id}\" Version=\"2.0\" IssueInstant=\"{at}\" Destination=\"{dest}\">\
         <saml:Issuer>{iss}</saml:Issuer><saml:NameID>{nid}</saml:NameID>{idx}</samlp:LogoutRequest>",
        id = esc(id),
        at = instant(now),
        dest = esc(destination),
        iss = esc(issuer),
        nid = esc(name_id),
    )
}

/// Our LogoutResponse (Success) to the IdP's request `in_response_to`.
pub fn logout_response(
    id: &str,
    destination: &str,
    issuer: &str,
    in_response_to: &str,
    now: i64,
) -> String {
    format!(
        "<samlp:LogoutResponse xmlns:samlp=\"{PROTOCOL}\" xmlns:saml=\"{ASSERTION}\" ID=\"{id}\" Version=\"2.0\" IssueInstant=\"{at}\" Destination=\"{dest}\" InResponseTo=\"{irt}\">\
         <saml:Issuer>{iss}</saml:Issuer><samlp:Status><samlp:StatusCode Value=\"{SUCCESS}\"/></samlp:Status></samlp:LogoutResponse>",
        id = esc(id),
        at = instant(now),
        dest = esc(destination),
        irt = esc(in_response_to),
        iss = esc(issuer),
    )
}

/// How a LogoutRequest arrived.
pub enum Binding<'a> {
    /// HTTP-Redirect: the raw query string as received (its signature covers it).
    Redirect(&'a str),
    /// HTTP-POST: the XML carries an enveloped signature.
    Post,
}

/// A verified LogoutRequest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutRequest {
    /// `ID` (our LogoutResponse's `InResponseTo`).
    pub id: String,
    /// The subject whose sessions end.
    pub name_id: String,
    /// The IdP sessions that end (none: every session of the subject).
    pub session_indexes: Vec<String>,
}

/// The `Issuer` of a LogoutRequest, unverified: only to pick the provider whose keys verify it.
pub fn issuer(text: &str) -> Result<String, SamlError> {
    let doc = xml::parse(text)?;
    let root = doc
        .document_element()
        .filter(|&r| xml::is(&doc, r, PROTOCOL, "LogoutRequest"))
        .ok_or_else(|| SamlError::Malformed("not a samlp:LogoutRequest".into()))?;
    xml::text(&doc, xml::required_child(&doc, root, ASSERTION, "Issuer")?)
}

/// Verifies an IdP's LogoutRequest `text` that arrived by `binding` at `slo_url`.
pub fn verify_request(
    text: &str,
    binding: Binding<'_>,
    cfg: &SamlConfig,
    idp: &IdpMetadata,
    slo_url: &str,
    now: i64,
) -> Result<LogoutRequest, SamlError> {
    let doc = xml::parse(text)?;
    let root = doc
        .document_element()
        .filter(|&r| xml::is(&doc, r, PROTOCOL, "LogoutRequest"))
        .ok_or_else(|| SamlError::Malformed("not a samlp:LogoutRequest".into()))?;
    match binding {
        Binding::Redirect(query) => verify_redirect(query, &idp.signing_certs, cfg.allow_sha1)?,
        Binding::Post => {
            let keys = TrustedKeys {
                certs: idp.signing_certs.clone(),
                allow_sha1: cfg.allow_sha1,
            };
            signature::verify(&doc, root, &keys)?;
        }
    }
    let issuer = xml::text(&doc, xml::required_child(&doc, root, ASSERTION, "Issuer")?)?;
    if issuer != idp.entity_id {
        return Err(SamlError::Refused(format!(
            "LogoutRequest Issuer {issuer:?} is not the IdP"
        )));
    }
    if let Some(d) = xml::attr(&doc, root, "Destination") {
        if d != slo_url {
            return Err(SamlError::Refused(format!(
                "Destination {d:?} is not our SLO URL"
            )));
        }
    }
    let skew = i64::try_from(cfg.clock_skew.as_secs()).unwrap_or(300);
    if let Some(t) = xml::attr(&doc, root, "NotOnOrAfter") {
        if now >= super::response::time(t)? + skew {
            return Err(SamlError::Refused("expired LogoutRequest".into()));
        }
    }
    let id = xml::attr(&doc, root, "ID")
        .filter(|i| !i.is_empty())
        .ok_or_else(|| SamlError::Malformed("LogoutRequest without ID".into()))?
        .to_string();
    let name_id = xml::only_child(&doc, root, ASSERTION, "NameID")?
        .ok_or_else(|| SamlError::Refused("LogoutRequest without NameID".into()))?;
    let name_id = xml::text(&doc, name_id)?;
    let session_indexes = xml::children(&doc, root, PROTOCOL, "SessionIndex")
        .map(|s| xml::text(&doc, s))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(LogoutRequest {
        id,
        name_id,
        session_indexes,
    })
}

#[cfg(test)]
mod tests;
