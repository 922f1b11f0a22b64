//! The one way untrusted SAML XML is read: bounded in size, refused outright when it carries a
//! DTD (so no external entity, no entity expansion, no billion laughs: the check runs before
//! any parsing), parsed with a depth limit, and then read only through the helpers here, which
//! match elements by namespace and local name and read text so that a comment or processing
//! instruction can never truncate a value (CVE-2017-11427: `a@evil.com<!---->.example.com`).

use super::SamlError;
use uppsala::{Document, NodeId, NodeKind};

/// SAML 2.0 protocol namespace (`samlp:`).
pub const PROTOCOL: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
/// SAML 2.0 assertion namespace (`saml:`).
pub const ASSERTION: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
/// SAML 2.0 metadata namespace (`md:`).
pub const METADATA: &str = "urn:oasis:names:tc:SAML:2.0:metadata";
/// XML Signature namespace (`ds:`).
pub const DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";
/// XML Encryption namespace (`xenc:`).
pub const XENC: &str = "http://www.w3.org/2001/04/xmlenc#";

/// Largest XML document read (after base64 and inflate): a response with a few hundred
/// groups and two certificates stays far below; anything larger is refused unread.
pub const MAX_XML: usize = 256 * 1024;

/// Deepest element nesting accepted (SAML responses nest about ten levels).
const MAX_DEPTH: u32 = 48;

/// Parses untrusted XML. Security-relevant: the DTD refusal comes first, on the raw text, so
/// that no parser feature (entities, external subsets) is ever reached with a DTD in hand.
pub fn parse(text: &str) -> Result<Document<'_>, SamlError> {
    if text.len() > MAX_XML {
        return Err(SamlError::Malformed("XML document too large".into()));
    }
    if has_dtd(text) {
        return Err(SamlError::Malformed(
            "XML with a DOCTYPE or ENTITY declaration is refused".into(),
        ));
    }
    uppsala::Parser::new()
        .with_forbid_dtd(true)
        .with_forbid_entities(true)
        .with_max_depth(MAX_DEPTH)
        .parse(text)
        .map_err(|e| SamlError::Malformed(format!("not well-formed XML: {e}")))
}

/// Whether the text declares a DTD or an entity anywhere (case-insensitive, so no spelling
/// slips past; a legitimate SAML message never contains either string).
pub fn has_dtd(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes
        .windows(9)
        .any(|w| w.eq_ignore_ascii_case(b"<!doctype"))
        || bytes
            .windows(8)
            .any(|w| w.eq_ignore_ascii_case(b"<!entity"))
}

/// Whether `node` is the element `{ns}local`.
pub fn is(doc: &Document<'_>, node: NodeId, ns: &str, local: &str) -> bool {
    doc.element(node)
        .is_some_and(|e| e.matches_name_ns(ns, local))
}

/// The child elements of `node` named `{ns}local`, in document order.
pub fn children<'d>(
    doc: &'d Document<'_>,
    node: NodeId,
    ns: &'d str,
    local: &'d str,
) -> impl Iterator<Item = NodeId> + 'd {
    doc.children_iter(node)
        .filter(move |&c| is(doc, c, ns, local))
}

/// The only child element `{ns}local` of `node`: `Ok(None)` when absent, an error when there
/// are several (a second Issuer, Subject or Conditions is an attack, not a variant).
pub fn only_child(
    doc: &Document<'_>,
    node: NodeId,
    ns: &str,
    local: &str,
) -> Result<Option<NodeId>, SamlError> {
    let mut it = children(doc, node, ns, local);
    let first = it.next();
    if it.next().is_some() {
        return Err(SamlError::Malformed(format!("more than one <{local}>")));
    }
    Ok(first)
}

/// Like [`only_child`], but the element must be there.
pub fn required_child(
    doc: &Document<'_>,
    node: NodeId,
    ns: &str,
    local: &str,
) -> Result<NodeId, SamlError> {
    only_child(doc, node, ns, local)?.ok_or_else(|| SamlError::Malformed(format!("no <{local}>")))
}

/// An attribute without a namespace.
pub fn attr<'d>(doc: &'d Document<'_>, node: NodeId, name: &str) -> Option<&'d str> {
    doc.element(node)?
        .attributes
        .iter()
        .find(|a| a.name.namespace_uri.is_none() && *a.name.local_name == *name)
        .map(|a| &*a.value)
}

/// The text of an element whose children are text only, whitespace-trimmed. Security-relevant:
/// a comment, processing instruction or child element inside the value is refused, never
/// skipped, so `<NameID>a@evil.com<!---->.example.com</NameID>` cannot be read as `a@evil.com`
/// (CVE-2017-11427 family); CDATA is taken as text.
pub fn text(doc: &Document<'_>, node: NodeId) -> Result<String, SamlError> {
    let mut out = String::new();
    for c in doc.children_iter(node) {
        match doc.node_kind(c) {
            Some(NodeKind::Text(t)) | Some(NodeKind::CData(t)) => out.push_str(t),
            _ => {
                let name = doc
                    .element(node)
                    .map(|e| e.name.local_name.to_string())
                    .unwrap_or_default();
                return Err(SamlError::Malformed(format!(
                    "<{name}> holds a comment, processing instruction or element inside its value"
                )));
            }
        }
    }
    Ok(out.trim().to_string())
}

/// Every element of the document whose `ID`, `Id`, `id` or `AssertionID` attribute is `id`.
/// The XSW defence counts these: the element used must be the only one with its ID.
pub fn elements_with_id(doc: &Document<'_>, id: &str) -> usize {
    doc.descendants(doc.root())
        .into_iter()
        .filter(|&n| {
            doc.element(n).is_some_and(|e| {
                e.attributes.iter().any(|a| {
                    matches!(&*a.name.local_name, "ID" | "Id" | "id" | "AssertionID")
                        && *a.value == *id
                })
            })
        })
        .count()
}

#[cfg(test)]
mod tests;
