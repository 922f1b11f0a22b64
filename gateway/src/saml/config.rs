//! Validated `identity_providers[]` entries of `type: saml`. Every problem is reported with its
//! key path, all at once. Security-relevant refusals happen here, at load time, so that no
//! request ever meets them: an IdP metadata file that cannot be read or names no signing
//! certificate (which must never mean "accept unsigned"), `want_signed` other than
//! assertion/response/both (never neither), a clock skew above 5 minutes, an SP key that is not
//! the key of the SP certificate.

use super::metadata::{self, IdpMetadata};
use crate::config::auth_model::ClaimNames;
use crate::config::auth_schema::IdpSpec;
use crate::config::problems::{duration as dur, Problems};
use std::sync::Arc;
use std::time::Duration;

/// Which signature the ACS insists on (SAML lets an IdP sign either or both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WantSigned {
    /// The Assertion carries its own signature (default; what most IdPs do).
    Assertion,
    /// The Response is signed (covering the assertion inside it).
    Response,
    /// Both.
    Both,
}

/// Where the IdP's metadata comes from.
#[derive(Debug, Clone)]
pub enum MetadataSource {
    /// Read and checked at load time.
    File(IdpMetadata),
    /// Fetched at start and every `refresh` ([`super::refresh`]).
    Url {
        /// HTTPS URL (plain HTTP only on loopback, for tests).
        url: url::Url,
        /// DER certificate whose key must have signed the metadata, if given.
        signing_cert: Option<Vec<u8>>,
        /// Interval between fetches.
        refresh: Duration,
    },
}

/// The SP's RSA key: signs AuthnRequests and LogoutRequests, decrypts assertions.
pub struct SpKey {
    /// For signatures (RSA-SHA256).
    pub pair: ring::signature::RsaKeyPair,
    /// The PEM text, for XML-Enc key transport (RSA-OAEP) by bergshamra.
    pub pem: String,
}

impl std::fmt::Debug for SpKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SpKey(..)")
    }
}

/// One validated SAML provider.
#[derive(Debug, Clone)]
pub struct SamlConfig {
    /// Provider id (sessions, routes, metrics, audit).
    pub id: String,
    /// IdP metadata.
    pub metadata: MetadataSource,
    /// This SP's entity id: the one `Audience` accepted, the `Issuer` of our requests.
    pub sp_entity_id: String,
    /// SP key.
    pub sp_key: Arc<SpKey>,
    /// SP certificate, DER.
    pub sp_cert: Vec<u8>,
    /// Sign AuthnRequests and LogoutRequests.
    pub sign_authn_requests: bool,
    /// Which signature is required.
    pub want_signed: WantSigned,
    /// Accept SHA-1 signatures/digests.
    pub allow_sha1: bool,
    /// Bound on clock differences for every time check.
    pub clock_skew: Duration,
    /// Accept responses without `InResponseTo`.
    pub allow_idp_initiated: bool,
    /// NameID format to request, if any.
    pub name_id_format: Option<String>,
    /// Fixed ACS URL, if configured.
    pub acs_url: Option<String>,
    /// Sign the SP metadata.
    pub sign_metadata: bool,
    /// Attribute names read into the identity (`NameID` names the subject).
    pub claims: ClaimNames,
    /// Just-in-time directory users.
    pub jit: bool,
}

/// The pseudo-attribute naming the subject's NameID in `claims`.
pub const NAME_ID: &str = "NameID";

/// The SAML keys that are set on `s` (for refusing them on other provider types).
pub fn saml_keys_set(s: &IdpSpec) -> Vec<&'static str> {
    [
        ("idp_metadata_file", s.idp_metadata_file.is_some()),
        ("idp_metadata_url", s.idp_metadata_url.is_some()),
        (
            "idp_metadata_signing_cert",
            s.idp_metadata_signing_cert.is_some(),
        ),
        ("idp_metadata_refresh", s.idp_metadata_refresh.is_some()),
        ("sp_entity_id", s.sp_entity_id.is_some()),
        ("sp_key_file", s.sp_key_file.is_some()),
        ("sp_cert_file", s.sp_cert_file.is_some()),
        ("sign_authn_requests", s.sign_authn_requests),
        ("want_signed", s.want_signed.is_some()),
        ("allow_sha1", s.allow_sha1),
        ("allow_idp_initiated", s.allow_idp_initiated),
        ("name_id_format", s.name_id_format.is_some()),
        ("acs_url", s.acs_url.is_some()),
        ("sign_metadata", s.sign_metadata),
    ]
    .into_iter()
    .filter_map(|(k, set)| set.then_some(k))
    .collect()
}

/// Reports every SAML key set on a provider of another `kind`.
pub fn refuse_saml_keys(s: &IdpSpec, base: &str, kind: &str, p: &mut Problems) {
    for k in saml_keys_set(s) {
        p.add(
            format!("{base}.{k}"),
            format!("applies only to type: saml, not {kind}"),
        );
    }
}

fn read(file: &str, path: &str, p: &mut Problems) -> Option<String> {
    std::fs::read_to_string(file)
        .map_err(|e| p.add(path, format!("cannot read {file:?}: {e}")))
        .ok()
}

/// The DER of the first certificate in a PEM text.
pub fn cert_der(pem: &str) -> Option<Vec<u8>> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .next()
        .and_then(Result::ok)
        .map(|c| c.to_vec())
}

/// An RSA private key from PEM (PKCS#8 or PKCS#1).
fn rsa_key(pem: &str) -> Option<ring::signature::RsaKeyPair> {
    use rustls_pemfile::Item;
    rustls_pemfile::read_all(&mut pem.as_bytes())
        .filter_map(Result::ok)
        .find_map(|item| match item {
            Item::Pkcs8Key(k) => ring::signature::RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()).ok(),
            Item::Pkcs1Key(k) => ring::signature::RsaKeyPair::from_der(k.secret_pkcs1_der()).ok(),
            _ => None,
        })
}

/// Whether the certificate `der` carries the public key of `pair`.
fn cert_matches(der: &[u8], pair: &ring::signature::RsaKeyPair) -> bool {
    use ring::signature::KeyPair;
    x509_parser::parse_x509_certificate(der).is_ok_and(|(_, c)| {
        c.tbs_certificate
            .subject_pki
            .subject_public_key
            .data
            .as_ref()
            == pair.public_key().as_ref()
    })
}

/// OIDC keys that have no meaning on a SAML provider.
fn refuse_oidc_keys(s: &IdpSpec, base: &str, p: &mut Problems) {
    let set = [
        ("issuer", !s.issuer.is_empty()),
        ("client_id", !s.client_id.is_empty()),
        ("client_secret", s.client_secret.is_some()),
        ("client_secret_file", s.client_secret_file.is_some()),
        ("token_auth", s.token_auth.is_some()),
        ("client_key_file", s.client_key_file.is_some()),
        ("scopes", !s.scopes.is_empty()),
        ("algorithms", !s.algorithms.is_empty()),
        ("userinfo", s.userinfo),
        ("redirect_uri", s.redirect_uri.is_some()),
        (
            "post_logout_redirect_uri",
            s.post_logout_redirect_uri.is_some(),
        ),
        ("auth_params", !s.auth_params.is_empty()),
        ("entra", s.entra.is_some()),
    ];
    for (key, present) in set {
        if present {
            p.add(
                format!("{base}.{key}"),
                "is an OpenID Connect setting; it does not apply to type: saml",
            );
        }
    }
}

fn claim_names(s: &IdpSpec, base: &str, p: &mut Problems) -> ClaimNames {
    let mut c = ClaimNames {
        user: NAME_ID.to_string(),
        email: "mail".to_string(),
        name: "displayName".to_string(),
        groups: "memberOf".to_string(),
        roles: "roles".to_string(),
        tenant: None,
        department: None,
        phone: "mobile".to_string(),
        trust_email_without_verified_claim: s.dangerous_trust_email_without_verified_claim,
    };
    for (k, v) in &s.claims {
        match k.as_str() {
            "user" => c.user = v.clone(),
            "email" => c.email = v.clone(),
            "name" => c.name = v.clone(),
            "groups" => c.groups = v.clone(),
            "roles" => c.roles = v.clone(),
            "tenant" => c.tenant = Some(v.clone()),
            "department" => c.department = Some(v.clone()),
            "phone" => c.phone = v.clone(),
            _ => p.add(
                format!("{base}.claims.{k}"),
                "is not one of user, email, name, groups, roles, tenant, department, phone",
            ),
        }
    }
    c
}

fn source(s: &IdpSpec, base: &str, p: &mut Problems) -> Option<MetadataSource> {
    match (&s.idp_metadata_file, &s.idp_metadata_url) {
        (Some(_), Some(_)) => {
            p.add(
                format!("{base}.idp_metadata_url"),
                "give idp_metadata_file or idp_metadata_url, not both",
            );
            None
        }
        (None, None) => {
            p.add(
                format!("{base}.idp_metadata_file"),
                "missing: the IdP's metadata (idp_metadata_file or idp_metadata_url)",
            );
            None
        }
        (Some(f), None) => {
            let path = format!("{base}.idp_metadata_file");
            for k in ["idp_metadata_signing_cert", "idp_metadata_refresh"] {
                let set = match k {
                    "idp_metadata_signing_cert" => s.idp_metadata_signing_cert.is_some(),
                    _ => s.idp_metadata_refresh.is_some(),
                };
                if set {
                    p.add(format!("{base}.{k}"), "applies only to idp_metadata_url");
                }
            }
            let text = read(f, &path, p)?;
            metadata::parse_idp(&text, None)
                .map(MetadataSource::File)
                .map_err(|e| p.add(path, e.to_string()))
                .ok()
        }
        (None, Some(u)) => {
            let path = format!("{base}.idp_metadata_url");
            let url = match url::Url::parse(u) {
                Ok(url) => url,
                Err(e) => {
                    p.add(path, format!("is not a URL ({e})"));
                    return None;
                }
            };
            let local = crate::config::auth_model::is_loopback(url.host_str().unwrap_or(""));
            if url.scheme() != "https" && !(url.scheme() == "http" && local) {
                p.add(
                    path,
                    "must be https (plain http only on a loopback address)",
                );
                return None;
            }
            let signing_cert = match &s.idp_metadata_signing_cert {
                None => None,
                Some(f) => {
                    let cpath = format!("{base}.idp_metadata_signing_cert");
                    let pem = read(f, &cpath, p)?;
                    match cert_der(&pem) {
                        Some(d) => Some(d),
                        None => {
                            p.add(cpath, "is not a PEM certificate");
                            return None;
                        }
                    }
                }
            };
            let refresh = dur(
                s.idp_metadata_refresh.as_deref(),
                Duration::from_secs(3600),
                &format!("{base}.idp_metadata_refresh"),
                p,
            );
            if refresh < Duration::from_secs(1) {
                p.add(
                    format!("{base}.idp_metadata_refresh"),
                    "must be at least 1s",
                );
            }
            Some(MetadataSource::Url {
                url,
                signing_cert,
                refresh,
            })
        }
    }
}

/// Builds one `type: saml` entry at `base` (`identity_providers[i]`); `None` when it has
/// problems (all of them are in `p`).
pub fn build(s: &IdpSpec, base: &str, p: &mut Problems) -> Option<SamlConfig> {
    let before = p.0.len();
    refuse_oidc_keys(s, base, p);
    let metadata = source(s, base, p);
    let sp_entity_id = match s.sp_entity_id.as_deref() {
        Some(e) if !e.trim().is_empty() => e.to_string(),
        _ => {
            p.add(
                format!("{base}.sp_entity_id"),
                "missing: this gateway's SAML entity id (the audience the IdP names)",
            );
            String::new()
        }
    };
    let key_path = format!("{base}.sp_key_file");
    let sp_key = match &s.sp_key_file {
        None => {
            p.add(&key_path, "missing: the SP's PEM RSA private key");
            None
        }
        Some(f) => read(f, &key_path, p).and_then(|pem| match rsa_key(&pem) {
            Some(pair) => Some(SpKey { pair, pem }),
            None => {
                p.add(&key_path, "is not a PEM RSA private key (PKCS#8 or PKCS#1)");
                None
            }
        }),
    };
    let cert_path = format!("{base}.sp_cert_file");
    let sp_cert = match &s.sp_cert_file {
        None => {
            p.add(&cert_path, "missing: the SP's PEM certificate");
            None
        }
        Some(f) => read(f, &cert_path, p).and_then(|pem| {
            cert_der(&pem).or_else(|| {
                p.add(&cert_path, "is not a PEM certificate");
                None
            })
        }),
    };
    if let (Some(k), Some(c)) = (&sp_key, &sp_cert) {
        if !cert_matches(c, &k.pair) {
            p.add(&cert_path, "is not the certificate of sp_key_file");
        }
    }
    let want_signed = match s.want_signed.as_deref() {
        None | Some("assertion") => WantSigned::Assertion,
        Some("response") => WantSigned::Response,
        Some("both") => WantSigned::Both,
        Some(o) => {
            p.add(
                format!("{base}.want_signed"),
                format!(
                    "{o:?} is not one of assertion, response, both (something is always signed)"
                ),
            );
            WantSigned::Assertion
        }
    };
    let clock_skew = dur(
        s.clock_skew.as_deref(),
        Duration::from_secs(120),
        &format!("{base}.clock_skew"),
        p,
    );
    if clock_skew > Duration::from_secs(300) {
        p.add(
            format!("{base}.clock_skew"),
            "more than 5m defeats expiry checks",
        );
    }
    if let Some(a) = &s.acs_url {
        if !url::Url::parse(a).is_ok_and(|u| u.path() == super::ACS_PATH) {
            p.add(
                format!("{base}.acs_url"),
                format!("must be an absolute URL ending in {}", super::ACS_PATH),
            );
        }
    }
    let claims = claim_names(s, base, p);
    if p.0.len() != before {
        return None;
    }
    Some(SamlConfig {
        id: s.id.clone(),
        metadata: metadata?,
        sp_entity_id,
        sp_key: Arc::new(sp_key?),
        sp_cert: sp_cert?,
        sign_authn_requests: s.sign_authn_requests,
        want_signed,
        allow_sha1: s.allow_sha1,
        clock_skew,
        allow_idp_initiated: s.allow_idp_initiated,
        name_id_format: s.name_id_format.clone(),
        acs_url: s.acs_url.clone(),
        sign_metadata: s.sign_metadata,
        claims,
        jit: s.jit,
    })
}

#[cfg(test)]
mod tests;
