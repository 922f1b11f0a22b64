//! SAML 2.0 service provider (`identity_providers[].type: saml`).
//!
//! A sign-in goes: a route (or the chooser) sends the browser to the IdP with an AuthnRequest
//! over HTTP-Redirect ([`authn`]), whose ID is sealed in this browser's SAML pre-auth cookie;
//! the IdP posts a Response to `/.portcullis/saml/acs`; [`response`] verifies it strictly and
//! returns the facts of the one assertion the signature covers; single sign-on
//! ([`crate::sso`]) turns them into the same identity an OIDC login gives, through the
//! directory's admission, and opens the session.
//!
//! The rules, each enforced in one place (SECURITY.md lists the test of each):
//! - XML: no DTD (refused on the raw text before parsing), bounded size and depth, values read
//!   so that comments cannot truncate them ([`xml`]);
//! - signatures: enveloped, exactly over the element used, only the IdP's metadata keys,
//!   SHA-256 or better unless `allow_sha1`, signed Response and/or Assertion as configured and
//!   never neither ([`signature`], [`response`]);
//! - protocol: Status Success, Issuer, Audience, Destination and Recipient, `InResponseTo`
//!   bound to this browser's request (unsolicited responses only with `allow_idp_initiated`,
//!   and even then a present `InResponseTo` must match), NotBefore/NotOnOrAfter with bounded
//!   skew on the injectable clock ([`response`]);
//! - replay: each assertion ID is accepted once until it expires, in the session store shared
//!   by the replicas ([`crate::sso`]).
//!
//! The cryptography (XML-DSig, exclusive c14n, XML-Enc) is bergshamra's, in pure Rust.

pub mod authn;
pub mod config;
pub mod decrypt;
pub mod endpoints;
pub mod metadata;
pub mod refresh;
pub mod response;
pub mod signature;
pub mod slo;
pub mod xml;

#[cfg(test)]
pub(crate) mod testkit;

use std::sync::Arc;
use thiserror::Error;

/// The ACS path (HTTP-POST binding).
pub const ACS_PATH: &str = "/.portcullis/saml/acs";
/// The SP metadata path.
pub const METADATA_PATH: &str = "/.portcullis/saml/metadata";
/// The single logout path (HTTP-Redirect and HTTP-POST).
pub const SLO_PATH: &str = "/.portcullis/saml/slo";

/// Whether `path` is a SAML endpoint.
pub fn is_endpoint(path: &str) -> bool {
    matches!(path, ACS_PATH | METADATA_PATH | SLO_PATH)
}

/// Largest body the SAML endpoints read: a base64 response of [`xml::MAX_XML`] bytes of XML.
pub const MAX_BODY: usize = xml::MAX_XML / 3 * 4 + 4096;

/// Why a SAML message was refused. Each message is the reason recorded in
/// `auth.login_failed`; none echoes attacker-chosen text beyond short quoted values.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SamlError {
    /// Not a well-formed, acceptable XML message (also: DTD, too large, comment in a value).
    #[error("malformed SAML message: {0}")]
    Malformed(String),
    /// No signature where one is required.
    #[error("not signed where a signature is required")]
    Unsigned,
    /// A signature that does not verify, or does not cover exactly the element used.
    #[error("signature refused: {0}")]
    Signature(String),
    /// The IdP metadata is unusable.
    #[error("IdP metadata: {0}")]
    Metadata(String),
    /// A protocol check failed (status, issuer, audience, destination, times...).
    #[error("{0}")]
    Refused(String),
    /// The IdP metadata is not (yet) available (URL source).
    #[error("IdP metadata unavailable: {0}")]
    Unavailable(String),
    /// Our own configuration cannot do what is needed.
    #[error("SAML configuration: {0}")]
    Config(String),
}

/// One configured SAML provider at run time: its settings and its IdP's current metadata
/// (fixed for a file, replaced by each successful refresh for a URL).
#[derive(Debug)]
pub struct Sp {
    /// Settings.
    pub cfg: config::SamlConfig,
    metadata: arc_swap::ArcSwapOption<metadata::IdpMetadata>,
}

impl Sp {
    /// A provider; with a metadata file its metadata is there at once.
    pub fn new(cfg: config::SamlConfig) -> Self {
        let initial = match &cfg.metadata {
            config::MetadataSource::File(m) => Some(Arc::new(m.clone())),
            config::MetadataSource::Url { .. } => None,
        };
        Self {
            cfg,
            metadata: arc_swap::ArcSwapOption::new(initial),
        }
    }

    /// The IdP's metadata, or why there is none yet.
    pub fn idp(&self) -> Result<Arc<metadata::IdpMetadata>, SamlError> {
        self.metadata
            .load_full()
            .ok_or_else(|| SamlError::Unavailable("not fetched yet".into()))
    }

    /// Replaces the metadata (after a verified refresh).
    pub fn set_idp(&self, m: metadata::IdpMetadata) {
        self.metadata.store(Some(Arc::new(m)));
    }

    /// The ACS URL for a request to `origin` (`scheme://host[:port]`), or the configured one.
    pub fn acs_url(&self, origin: &str) -> String {
        self.cfg
            .acs_url
            .clone()
            .unwrap_or_else(|| format!("{origin}{ACS_PATH}"))
    }

    /// The SLO URL next to the ACS URL.
    pub fn slo_url(&self, origin: &str) -> String {
        let acs = self.acs_url(origin);
        format!("{}{SLO_PATH}", acs.trim_end_matches(ACS_PATH))
    }
}
