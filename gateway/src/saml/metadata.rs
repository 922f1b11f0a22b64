//! SAML metadata both ways: reading the IdP's (its entity id, SSO and SLO endpoints and
//! signing certificates; signature checked when a metadata signing certificate is configured)
//! and writing ours (entity id, ACS, SLO, the SP certificate).
//!
//! Security-relevant: IdP metadata that names no signing certificate is an error, never an
//! IdP whose responses need no signature (the sharp edge of some SAML libraries).

use super::signature::{self, TrustedKeys};
use super::xml::{self, DSIG, METADATA};
use super::SamlError;
use crate::auth_endpoints::html_escape as esc;
use base64::Engine;
use uppsala::{Document, NodeId};

/// HTTP-Redirect binding.
pub const REDIRECT: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";
/// HTTP-POST binding.
pub const POST: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";

/// What the SP needs to know about the IdP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdpMetadata {
    /// `entityID`: the only `Issuer` accepted.
    pub entity_id: String,
    /// SingleSignOnService location for HTTP-Redirect.
    pub sso_url: String,
    /// SingleLogoutService location for HTTP-Redirect, if any.
    pub slo_url: Option<String>,
    /// Signing certificates (DER); never empty.
    pub signing_certs: Vec<Vec<u8>>,
}

/// Parses IdP metadata. With `signed_by`, the document element must carry a valid enveloped
/// signature by that certificate (metadata fetched over the network).
pub fn parse_idp(text: &str, signed_by: Option<&[u8]>) -> Result<IdpMetadata, SamlError> {
    let doc = xml::parse(text)?;
    let root = doc
        .document_element()
        .ok_or_else(|| SamlError::Malformed("empty metadata".into()))?;
    if let Some(cert) = signed_by {
        let keys = TrustedKeys {
            certs: vec![cert.to_vec()],
            allow_sha1: false,
        };
        signature::verify(&doc, root, &keys)
            .map_err(|e| SamlError::Metadata(format!("metadata signature: {e}")))?;
    }
    let entity = if xml::is(&doc, root, METADATA, "EntityDescriptor") {
        root
    } else if xml::is(&doc, root, METADATA, "EntitiesDescriptor") {
        let mut idps = xml::children(&doc, root, METADATA, "EntityDescriptor").filter(|&e| {
            xml::children(&doc, e, METADATA, "IDPSSODescriptor")
                .next()
                .is_some()
        });
        let first = idps.next();
        if idps.next().is_some() {
            return Err(SamlError::Metadata(
                "the metadata describes several IdPs; give the file of one".into(),
            ));
        }
        first.ok_or_else(|| SamlError::Metadata("no IdP in the metadata".into()))?
    } else {
        return Err(SamlError::Metadata("not SAML metadata".into()));
    };
    let entity_id = xml::attr(&doc, entity, "entityID")
        .filter(|e| !e.is_empty())
        .ok_or_else(|| SamlError::Metadata("no entityID".into()))?
        .to_string();
    let idp = xml::only_child(&doc, entity, METADATA, "IDPSSODescriptor")?
        .ok_or_else(|| SamlError::Metadata("no IDPSSODescriptor".into()))?;
    let sso_url = endpoint(&doc, idp, "SingleSignOnService", REDIRECT).ok_or_else(|| {
        SamlError::Metadata("no SingleSignOnService with the HTTP-Redirect binding".into())
    })?;
    let slo_url = endpoint(&doc, idp, "SingleLogoutService", REDIRECT);
    let signing_certs = signing_certs(&doc, idp)?;
    if signing_certs.is_empty() {
        return Err(SamlError::Metadata(
            "the IdP metadata has no signing certificate (responses could not be verified)".into(),
        ));
    }
    Ok(IdpMetadata {
        entity_id,
        sso_url,
        slo_url,
        signing_certs,
    })
}

fn endpoint(doc: &Document<'_>, idp: NodeId, name: &str, binding: &str) -> Option<String> {
    xml::children(doc, idp, METADATA, name)
        .find(|&e| xml::attr(doc, e, "Binding") == Some(binding))
        .and_then(|e| xml::attr(doc, e, "Location"))
        .filter(|l| url::Url::parse(l).is_ok())
        .map(str::to_string)
}

/// Certificates of `KeyDescriptor`s for signing (`use="signing"` or no `use`).
fn signing_certs(doc: &Document<'_>, idp: NodeId) -> Result<Vec<Vec<u8>>, SamlError> {
    let mut out = Vec::new();
    for kd in xml::children(doc, idp, METADATA, "KeyDescriptor") {
        if !matches!(xml::attr(doc, kd, "use"), None | Some("signing")) {
            continue;
        }
        for ki in xml::children(doc, kd, DSIG, "KeyInfo") {
            for data in xml::children(doc, ki, DSIG, "X509Data") {
                for c in xml::children(doc, data, DSIG, "X509Certificate") {
                    let b64: String = xml::text(doc, c)?
                        .chars()
                        .filter(|c| !c.is_ascii_whitespace())
                        .collect();
                    let der = base64::engine::general_purpose::STANDARD
                        .decode(b64)
                        .map_err(|_| SamlError::Metadata("a certificate is not base64".into()))?;
                    if x509_parser::parse_x509_certificate(&der).is_err() {
                        return Err(SamlError::Metadata("a certificate is not X.509".into()));
                    }
                    out.push(der);
                }
            }
        }
    }
    Ok(out)
}

/// What our metadata says.
pub struct SpDescription<'a> {
    /// Entity id.
    pub entity_id: &'a str,
    /// ACS URL (HTTP-POST).
    pub acs_url: &'a str,
    /// SLO URL (HTTP-Redirect and HTTP-POST).
    pub slo_url: &'a str,
    /// SP certificate (DER), for signing and encryption.
    pub cert: &'a [u8],
    /// Whether AuthnRequests are signed.
    pub requests_signed: bool,
    /// NameID format asked for.
    pub name_id_format: Option<&'a str>,
}

/// Our `EntityDescriptor` (unsigned; [`sign_sp_metadata`] signs it when configured).
pub fn sp_metadata(d: &SpDescription<'_>, id: &str) -> String {
    let cert = base64::engine::general_purpose::STANDARD.encode(d.cert);
    let key = |usage: &str| {
        format!(
            "<md:KeyDescriptor use=\"{usage}\"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"
        )
    };
    let nif = d
        .name_id_format
        .map(|f| format!("<md:NameIDFormat>{}</md:NameIDFormat>", esc(f)))
        .unwrap_or_default();
    format!(
        "<md:EntityDescriptor xmlns:md=\"{METADATA}\" xmlns:ds=\"{DSIG}\" ID=\"{id}\" entityID=\"{eid}\">\
         <md:SPSSODescriptor AuthnRequestsSigned=\"{signed}\" WantAssertionsSigned=\"true\" protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\">\
         {ks}{ke}\
         <md:SingleLogoutService Binding=\"{REDIRECT}\" Location=\"{slo}\"/>\
         <md:SingleLogoutService Binding=\"{POST}\" Location=\"{slo}\"/>\
         {nif}\
         <md:AssertionConsumerService Binding=\"{POST}\" Location=\"{acs}\" index=\"0\" isDefault=\"true\"/>\
         </md:SPSSODescriptor></md:EntityDescriptor>",
        eid = esc(d.entity_id),
        signed = d.requests_signed,
        ks = key("signing"),
        ke = key("encryption"),
        slo = esc(d.slo_url),
        acs = esc(d.acs_url),
    )
}

/// Signs our metadata (`sp_metadata`'s output, document `id`) with the SP key: an enveloped
/// RSA-SHA256 signature as the first child of the `EntityDescriptor`, as the schema wants.
pub fn sign_sp_metadata(
    xml: &str,
    id: &str,
    key: &super::config::SpKey,
) -> Result<String, SamlError> {
    let open_end = xml
        .find('>')
        .ok_or_else(|| SamlError::Config("metadata template".into()))?;
    let template = format!(
        "{}<ds:Signature><ds:SignedInfo>\
         <ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/>\
         <ds:SignatureMethod Algorithm=\"{}\"/><ds:Reference URI=\"#{id}\"><ds:Transforms>\
         <ds:Transform Algorithm=\"http://www.w3.org/2000/09/xmldsig#enveloped-signature\"/>\
         <ds:Transform Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/></ds:Transforms>\
         <ds:DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#sha256\"/><ds:DigestValue></ds:DigestValue>\
         </ds:Reference></ds:SignedInfo><ds:SignatureValue></ds:SignatureValue></ds:Signature>{}",
        &xml[..=open_end],
        super::authn::RSA_SHA256,
        &xml[open_end + 1..],
    );
    let mut keys = bergshamra::keys::KeysManager::new();
    let k = bergshamra::keys::loader::load_rsa_private_pem(key.pem.as_bytes())
        .map_err(|e| SamlError::Config(format!("SP key unusable for signing: {e}")))?;
    keys.add_key(k);
    let ctx = bergshamra::dsig::DsigContext::new(keys);
    bergshamra::dsig::sign::sign(&ctx, &template)
        .map_err(|e| SamlError::Config(format!("signing the metadata: {e}")))
}

#[cfg(test)]
mod tests;
