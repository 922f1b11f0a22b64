//! The ACS's verifier: a base64 `SAMLResponse` in, the facts of one verified assertion out.
//!
//! Order of reasoning (each step refuses with its reason; nothing is read from the message
//! before step 4 except to find what to verify):
//! 1. decode (bounded), parse with no DTD ([`super::xml::parse`]);
//! 2. the document element is a `samlp:Response`; it has exactly one child `saml:Assertion`
//!    (or one `EncryptedAssertion`, decrypted with the SP key into its own document);
//! 3. signatures as `want_signed` says — the Response, the Assertion, or both — each exactly
//!    over that element ([`super::signature::verify`]); any other signature present must verify
//!    too. A signed Response covers the Assertion, which is its child: that element, and only
//!    it, is read from then on (no XSW: nothing is looked up by name across the document);
//! 4. Response: `Destination` = our ACS URL, Status Success, `Issuer` (when present) = the IdP,
//!    `InResponseTo` = the ID of this browser's request (absent only with `allow_idp_initiated`);
//! 5. Assertion: `Issuer` = the IdP; one bearer `SubjectConfirmation` whose data has
//!    `Recipient` = our ACS URL, `InResponseTo` (when present) = the request, `NotOnOrAfter` in
//!    the future; `Conditions` with `NotBefore`/`NotOnOrAfter` and an `AudienceRestriction` for
//!    our entity id; every time compared with the configured skew;
//! 6. NameID, SessionIndex, AuthnContextClassRef and attributes, read text-only.

use super::config::{SamlConfig, WantSigned};
use super::metadata::IdpMetadata;
use super::signature::{self, TrustedKeys};
use super::xml::{self, ASSERTION, PROTOCOL};
use super::SamlError;
use base64::Engine;
use std::collections::BTreeMap;
use uppsala::{Document, NodeId};

const SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
const BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";

/// What the ACS expects of this response.
pub struct Expect<'a> {
    /// The provider's settings.
    pub cfg: &'a SamlConfig,
    /// The IdP's current metadata.
    pub idp: &'a IdpMetadata,
    /// Our ACS URL, as sent in the request.
    pub acs_url: &'a str,
    /// The ID of this browser's AuthnRequest (`None`: no login in progress here).
    pub request_id: Option<&'a str>,
    /// Now, unix seconds (the injectable clock).
    pub now: i64,
}

/// The facts of a verified assertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Assertion `ID` (the replay cache key).
    pub assertion_id: String,
    /// When the assertion stops being usable (unix seconds): the replay cache keeps its ID
    /// until then.
    pub expires: i64,
    /// Subject NameID.
    pub name_id: String,
    /// NameID format, if given.
    pub name_id_format: Option<String>,
    /// `SessionIndex` of the AuthnStatement (for single logout).
    pub session_index: Option<String>,
    /// `AuthnContextClassRef`.
    pub authn_context: Option<String>,
    /// `AuthnInstant`, unix seconds.
    pub authn_instant: Option<i64>,
    /// Attributes by `Name`, values in order.
    pub attributes: BTreeMap<String, Vec<String>>,
}

/// The `InResponseTo` and `Issuer` of a response, unverified: only to find which login and
/// provider it claims to belong to, before the real verification.
pub fn peek(b64: &str) -> Result<(Option<String>, Option<String>), SamlError> {
    let text = decode(b64)?;
    let doc = xml::parse(&text)?;
    let root = response_root(&doc)?;
    let irt = xml::attr(&doc, root, "InResponseTo").map(str::to_string);
    let issuer = xml::only_child(&doc, root, ASSERTION, "Issuer")?
        .map(|i| xml::text(&doc, i))
        .transpose()?
        .or_else(|| {
            // The assertion's issuer, when the Response does not name one.
            xml::children(&doc, root, ASSERTION, "Assertion")
                .next()
                .and_then(|a| xml::children(&doc, a, ASSERTION, "Issuer").next())
                .and_then(|i| xml::text(&doc, i).ok())
        });
    Ok((irt, issuer))
}

/// Base64 (whitespace tolerated) to UTF-8 text, bounded.
pub fn decode(b64: &str) -> Result<String, SamlError> {
    if b64.len() > super::MAX_BODY {
        return Err(SamlError::Malformed("message too large".into()));
    }
    let clean: String = b64.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(clean)
        .map_err(|_| SamlError::Malformed("SAMLResponse is not base64".into()))?;
    String::from_utf8(raw).map_err(|_| SamlError::Malformed("SAMLResponse is not UTF-8".into()))
}

fn response_root(doc: &Document<'_>) -> Result<NodeId, SamlError> {
    let root = doc
        .document_element()
        .ok_or_else(|| SamlError::Malformed("empty document".into()))?;
    if !xml::is(doc, root, PROTOCOL, "Response") {
        return Err(SamlError::Malformed("not a samlp:Response".into()));
    }
    Ok(root)
}

/// Parses an xs:dateTime (UTC) into unix seconds.
pub fn time(s: &str) -> Result<i64, SamlError> {
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.timestamp())
        .map_err(|_| SamlError::Malformed(format!("{s:?} is not an xs:dateTime")))
}

fn refused(m: impl Into<String>) -> SamlError {
    SamlError::Refused(m.into())
}

/// Verifies a base64 `SAMLResponse` (see the module doc for the order of checks).
pub fn verify(b64: &str, ex: &Expect<'_>) -> Result<Verified, SamlError> {
    let text = decode(b64)?;
    let doc = xml::parse(&text)?;
    let root = response_root(&doc)?;
    if xml::attr(&doc, root, "Version") != Some("2.0") {
        return Err(SamlError::Malformed("not SAML 2.0".into()));
    }
    let keys = TrustedKeys {
        certs: ex.idp.signing_certs.clone(),
        allow_sha1: ex.cfg.allow_sha1,
    };
    let encrypted = xml::children(&doc, root, ASSERTION, "EncryptedAssertion").count();
    let plain: Vec<NodeId> = xml::children(&doc, root, ASSERTION, "Assertion").collect();
    // Signatures on the Response first: its own (when wanted or present).
    let response_signed = matches!(ex.cfg.want_signed, WantSigned::Response | WantSigned::Both);
    if response_signed || signature::has_signature(&doc, root) {
        signature::verify(&doc, root, &keys)?;
    }
    check_response(&doc, root, ex)?;
    match (plain.as_slice(), encrypted) {
        ([a], 0) => {
            let assertion_signed =
                matches!(ex.cfg.want_signed, WantSigned::Assertion | WantSigned::Both);
            if assertion_signed || signature::has_signature(&doc, *a) {
                signature::verify(&doc, *a, &keys)?;
            }
            assertion(&doc, *a, xml::attr(&doc, root, "InResponseTo"), ex)
        }
        ([], 1) => {
            // Decrypted into a copy of the whole response, so the assertion keeps its place
            // (and its namespaces); it is then found as the one child of the one
            // EncryptedAssertion of the root, never by name elsewhere.
            let clear = super::decrypt::response(&text, &ex.cfg.sp_key)?;
            let cdoc = xml::parse(&clear)?;
            let croot = response_root(&cdoc)?;
            let enc = xml::required_child(&cdoc, croot, ASSERTION, "EncryptedAssertion")?;
            let a = xml::required_child(&cdoc, enc, ASSERTION, "Assertion")?;
            if xml::children(&cdoc, croot, ASSERTION, "Assertion")
                .next()
                .is_some()
            {
                return Err(SamlError::Malformed(
                    "an Assertion next to the EncryptedAssertion".into(),
                ));
            }
            // Its own signature is required unless the Response's covered the ciphertext.
            if matches!(ex.cfg.want_signed, WantSigned::Assertion | WantSigned::Both)
                || signature::has_signature(&cdoc, a)
            {
                signature::verify(&cdoc, a, &keys)?;
            }
            assertion(&cdoc, a, xml::attr(&doc, root, "InResponseTo"), ex)
        }
        _ => Err(SamlError::Malformed(
            "the Response must hold exactly one Assertion".into(),
        )),
    }
}

/// Response-level checks (step 4).
fn check_response(doc: &Document<'_>, root: NodeId, ex: &Expect<'_>) -> Result<(), SamlError> {
    match xml::attr(doc, root, "Destination") {
        Some(d) if d == ex.acs_url => {}
        Some(d) => return Err(refused(format!("Destination {d:?} is not our ACS URL"))),
        None => return Err(refused("the Response has no Destination")),
    }
    let status = xml::required_child(doc, root, PROTOCOL, "Status")?;
    let code = xml::required_child(doc, status, PROTOCOL, "StatusCode")?;
    match xml::attr(doc, code, "Value") {
        Some(SUCCESS) => {}
        other => {
            return Err(refused(format!(
                "the IdP answered status {:?}",
                other.unwrap_or("")
            )))
        }
    }
    if let Some(i) = xml::only_child(doc, root, ASSERTION, "Issuer")? {
        let issuer = xml::text(doc, i)?;
        if issuer != ex.idp.entity_id {
            return Err(refused(format!(
                "Response Issuer {issuer:?} is not the IdP"
            )));
        }
    }
    in_response_to(xml::attr(doc, root, "InResponseTo"), ex)
}

/// `InResponseTo` must be this browser's request; absent only when unsolicited responses are
/// allowed. Security-relevant: allowing IdP-initiated sign-in never skips the check of an
/// `InResponseTo` that is present (some libraries do).
fn in_response_to(irt: Option<&str>, ex: &Expect<'_>) -> Result<(), SamlError> {
    match (irt, ex.request_id) {
        (Some(got), Some(want)) if crate::sso::same(got, want) => Ok(()),
        (Some(_), _) => Err(refused("InResponseTo is not the request this browser sent")),
        (None, _) if ex.cfg.allow_idp_initiated => Ok(()),
        (None, _) => Err(refused(
            "unsolicited response (no InResponseTo) and allow_idp_initiated is off",
        )),
    }
}

/// Assertion-level checks and reading (steps 5 and 6). `resp` tells the Response's
/// `InResponseTo` (already checked against the request).
fn assertion(
    doc: &Document<'_>,
    a: NodeId,
    resp_irt: Option<&str>,
    ex: &Expect<'_>,
) -> Result<Verified, SamlError> {
    let skew = i64::try_from(ex.cfg.clock_skew.as_secs()).unwrap_or(300);
    let now = ex.now;
    if xml::attr(doc, a, "Version") != Some("2.0") {
        return Err(SamlError::Malformed("assertion is not SAML 2.0".into()));
    }
    let assertion_id = xml::attr(doc, a, "ID")
        .filter(|i| !i.is_empty())
        .ok_or_else(|| SamlError::Malformed("assertion without ID".into()))?
        .to_string();
    let issuer = xml::text(doc, xml::required_child(doc, a, ASSERTION, "Issuer")?)?;
    if issuer != ex.idp.entity_id {
        return Err(refused(format!(
            "Assertion Issuer {issuer:?} is not the IdP"
        )));
    }
    // Subject.
    let subject = xml::required_child(doc, a, ASSERTION, "Subject")?;
    let nid = xml::only_child(doc, subject, ASSERTION, "NameID")?
        .ok_or_else(|| refused("the assertion has no NameID (an EncryptedID is not supported)"))?;
    let name_id = xml::text(doc, nid)?;
    if name_id.is_empty() {
        return Err(refused("empty NameID"));
    }
    let name_id_format = xml::attr(doc, nid, "Format").map(str::to_string);
    let sc = xml::required_child(doc, subject, ASSERTION, "SubjectConfirmation")?;
    if xml::attr(doc, sc, "Method") != Some(BEARER) {
        return Err(refused("the SubjectConfirmation is not bearer"));
    }
    let scd = xml::required_child(doc, sc, ASSERTION, "SubjectConfirmationData")?;
    match xml::attr(doc, scd, "Recipient") {
        Some(r) if r == ex.acs_url => {}
        Some(r) => return Err(refused(format!("Recipient {r:?} is not our ACS URL"))),
        None => return Err(refused("the SubjectConfirmationData has no Recipient")),
    }
    let scd_irt = xml::attr(doc, scd, "InResponseTo");
    if scd_irt.is_some() || resp_irt.is_some() {
        // Both levels must name this browser's request when either does.
        in_response_to(scd_irt, ex)?;
        if resp_irt != scd_irt {
            return Err(refused(
                "the assertion's InResponseTo differs from the Response's",
            ));
        }
    }
    let scd_end = time(
        xml::attr(doc, scd, "NotOnOrAfter")
            .ok_or_else(|| refused("the SubjectConfirmationData has no NotOnOrAfter"))?,
    )?;
    if now >= scd_end + skew {
        return Err(refused("expired (SubjectConfirmationData NotOnOrAfter)"));
    }
    if let Some(nb) = xml::attr(doc, scd, "NotBefore") {
        if time(nb)? > now + skew {
            return Err(refused("not yet valid (SubjectConfirmationData NotBefore)"));
        }
    }
    // Conditions.
    let cond = xml::required_child(doc, a, ASSERTION, "Conditions")?;
    let mut expires = scd_end;
    if let Some(nb) = xml::attr(doc, cond, "NotBefore") {
        if time(nb)? > now + skew {
            return Err(refused("not yet valid (Conditions NotBefore)"));
        }
    }
    if let Some(na) = xml::attr(doc, cond, "NotOnOrAfter") {
        let end = time(na)?;
        if now >= end + skew {
            return Err(refused("expired (Conditions NotOnOrAfter)"));
        }
        expires = expires.min(end);
    }
    let restrictions: Vec<NodeId> =
        xml::children(doc, cond, ASSERTION, "AudienceRestriction").collect();
    if restrictions.is_empty() {
        return Err(refused("the assertion has no AudienceRestriction"));
    }
    for r in restrictions {
        let mut ours = false;
        for aud in xml::children(doc, r, ASSERTION, "Audience") {
            ours |= xml::text(doc, aud)? == ex.cfg.sp_entity_id;
        }
        if !ours {
            return Err(refused("the assertion's Audience is not this SP"));
        }
    }
    // AuthnStatement.
    let stmt = xml::required_child(doc, a, ASSERTION, "AuthnStatement")?;
    if let Some(end) = xml::attr(doc, stmt, "SessionNotOnOrAfter") {
        if now >= time(end)? + skew {
            return Err(refused("the IdP session has ended (SessionNotOnOrAfter)"));
        }
    }
    let authn_instant = xml::attr(doc, stmt, "AuthnInstant")
        .map(time)
        .transpose()?
        .filter(|t| *t <= now + skew);
    let session_index = xml::attr(doc, stmt, "SessionIndex").map(str::to_string);
    let authn_context = match xml::only_child(doc, stmt, ASSERTION, "AuthnContext")? {
        Some(ctx) => xml::only_child(doc, ctx, ASSERTION, "AuthnContextClassRef")?
            .map(|c| xml::text(doc, c))
            .transpose()?,
        None => None,
    };
    let mut attributes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for st in xml::children(doc, a, ASSERTION, "AttributeStatement") {
        for at in xml::children(doc, st, ASSERTION, "Attribute") {
            let Some(name) = xml::attr(doc, at, "Name") else {
                continue;
            };
            let vals = attributes.entry(name.to_string()).or_default();
            for v in xml::children(doc, at, ASSERTION, "AttributeValue") {
                vals.push(xml::text(doc, v)?);
            }
            if let Some(friendly) = xml::attr(doc, at, "FriendlyName") {
                if friendly != name {
                    let copy = attributes.get(name).cloned().unwrap_or_default();
                    attributes.entry(friendly.to_string()).or_insert(copy);
                }
            }
        }
    }
    Ok(Verified {
        assertion_id,
        expires,
        name_id,
        name_id_format,
        session_index,
        authn_context,
        authn_instant,
        attributes,
    })
}

#[cfg(test)]
mod tests;
