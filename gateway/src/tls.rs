//! Server certificates: loading and checking them while the config is validated (pingora's
//! rustls listener panics inside the service on a bad file, so nothing unchecked reaches it),
//! choosing one by SNI, and generating a self-signed one when none is configured.

use arc_swap::ArcSwap;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::Arc;
use thiserror::Error;

/// Why a certificate or key could not be used.
#[derive(Debug, Error)]
pub enum CertError {
    /// The certificate file could not be read or holds no PEM certificate.
    #[error("{path:?}: {reason}")]
    Cert {
        /// File.
        path: String,
        /// Reason.
        reason: String,
    },
    /// The key file could not be read, holds no key, or the key type is unsupported.
    #[error("{path:?}: {reason}")]
    Key {
        /// File.
        path: String,
        /// Reason.
        reason: String,
    },
    /// The key does not belong to the certificate.
    #[error("{path:?} does not match the certificate's public key")]
    Mismatch {
        /// Key file.
        path: String,
    },
}

impl CertError {
    /// The config key the error belongs to (`cert` or `key`).
    pub fn field(&self) -> &'static str {
        match self {
            CertError::Cert { .. } => "cert",
            CertError::Key { .. } | CertError::Mismatch { .. } => "key",
        }
    }
}

/// A checked certificate chain with its key, and the DNS names it serves.
#[derive(Debug)]
pub struct CertBundle {
    /// What rustls serves.
    pub certified: Arc<CertifiedKey>,
    /// Lower-case DNS names from the leaf's subjectAltName (and CN when there is no SAN).
    pub names: Vec<String>,
    /// The leaf's notAfter, unix seconds (published as a metric so expiry can be alerted on).
    pub not_after: i64,
}

fn read_pem_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let data = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut data.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no PEM certificate found".to_string());
    }
    Ok(certs)
}

/// Loads a PEM chain and key and proves they belong together.
pub fn load_cert_bundle(cert_path: &str, key_path: &str) -> Result<CertBundle, CertError> {
    let chain = read_pem_certs(cert_path).map_err(|reason| CertError::Cert {
        path: cert_path.to_string(),
        reason,
    })?;
    let key_err = |reason: String| CertError::Key {
        path: key_path.to_string(),
        reason,
    };
    let key_data = std::fs::read(key_path).map_err(|e| key_err(format!("cannot read: {e}")))?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_data.as_slice())
        .map_err(|e| key_err(format!("bad PEM: {e}")))?
        .ok_or_else(|| key_err("no PEM private key found".to_string()))?;
    let (names, not_after) = leaf_facts(&chain[0]).map_err(|reason| CertError::Cert {
        path: cert_path.to_string(),
        reason,
    })?;
    let provider = rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => CertError::Mismatch {
            path: key_path.to_string(),
        },
        other => key_err(format!("unusable key: {other}")),
    })?;
    Ok(CertBundle {
        certified: Arc::new(certified),
        names,
        not_after,
    })
}

/// The leaf's DNS names and its notAfter (unix seconds).
fn leaf_facts(leaf: &CertificateDer<'_>) -> Result<(Vec<String>, i64), String> {
    use x509_parser::prelude::*;
    let (_, cert) =
        X509Certificate::from_der(leaf.as_ref()).map_err(|e| format!("bad certificate: {e}"))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::DNSName(d) = n {
                names.push(d.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        for cn in cert.subject().iter_common_name() {
            if let Ok(s) = cn.as_str() {
                names.push(s.to_ascii_lowercase());
            }
        }
    }
    Ok((names, cert.validity().not_after.timestamp()))
}

/// Publishes each served name's certificate expiry (`portcullis_tls_certificate_expiry_*`);
/// the bundle that serves a name (the first that lists it) is the one reported.
pub fn publish_expiry(bundles: &[Arc<CertBundle>]) {
    let mut by_name = std::collections::BTreeMap::new();
    for b in bundles {
        for n in &b.names {
            by_name.entry(n.as_str()).or_insert(b.not_after);
        }
    }
    crate::metrics::set_certificate_expiry(by_name);
}

/// Reads a PEM CA bundle as DER certificates.
pub fn load_ca_ders(path: &str) -> Result<Vec<Vec<u8>>, CertError> {
    let certs = read_pem_certs(path).map_err(|reason| CertError::Cert {
        path: path.to_string(),
        reason,
    })?;
    Ok(certs.into_iter().map(|c| c.as_ref().to_vec()).collect())
}

/// Generates a self-signed certificate for `localhost` and the given names, for first runs.
pub fn self_signed(names: &[String]) -> Result<CertBundle, String> {
    let mut all = vec!["localhost".to_string()];
    all.extend(names.iter().filter(|n| !n.starts_with("*.")).cloned());
    all.sort();
    all.dedup();
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(all.clone()).map_err(|e| e.to_string())?;
    let key = PrivateKeyDer::try_from(key_pair.serialize_der()).map_err(|e| e.to_string())?;
    let provider = rustls::crypto::ring::default_provider();
    let (_, not_after) = leaf_facts(cert.der())?;
    let certified = CertifiedKey::from_der(vec![cert.der().clone()], key, &provider)
        .map_err(|e| e.to_string())?;
    Ok(CertBundle {
        certified: Arc::new(certified),
        names: all,
        not_after,
    })
}

/// The certificates served now, by name; swapped whole on reload.
#[derive(Debug)]
pub struct CertSet {
    default: Arc<CertifiedKey>,
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: HashMap<String, Arc<CertifiedKey>>,
}

impl CertSet {
    /// Indexes bundles by their names; the first bundle is the default. Earlier bundles win
    /// for names listed twice.
    pub fn new(bundles: &[Arc<CertBundle>]) -> Option<Self> {
        let default = bundles.first()?.certified.clone();
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for b in bundles {
            for n in &b.names {
                let target = match n.strip_prefix("*.") {
                    Some(suffix) => wildcard.entry(suffix.to_string()),
                    None => exact.entry(n.clone()),
                };
                target.or_insert_with(|| b.certified.clone());
            }
        }
        Some(Self {
            default,
            exact,
            wildcard,
        })
    }

    /// The certificate for an SNI name (exact, then one-label wildcard, then the default).
    pub fn select(&self, sni: Option<&str>) -> Arc<CertifiedKey> {
        if let Some(name) = sni.map(str::to_ascii_lowercase) {
            if let Some(c) = self.exact.get(&name) {
                return c.clone();
            }
            if let Some((_, parent)) = name.split_once('.') {
                if let Some(c) = self.wildcard.get(parent) {
                    return c.clone();
                }
            }
        }
        self.default.clone()
    }
}

/// rustls resolver over a swappable [`CertSet`], so reloads can replace certificates without
/// touching the listener.
#[derive(Debug)]
pub struct SniResolver {
    set: ArcSwap<CertSet>,
}

impl SniResolver {
    /// A resolver serving `set`.
    pub fn new(set: CertSet) -> Self {
        Self {
            set: ArcSwap::from_pointee(set),
        }
    }

    /// Replaces the served certificates.
    pub fn replace(&self, set: CertSet) {
        self.set.store(Arc::new(set));
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.set.load().select(hello.server_name()))
    }
}

/// What the handshake established about a client certificate; attached to the TLS digest and
/// read by the proxy as device facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertFacts {
    /// Name of the configured CA that issued the (verified) certificate.
    pub ca: String,
}

/// Maps a verified client chain to the name of the configured CA that verifies it.
///
/// The name must come from the trust anchor that actually verifies the chain, never from what
/// the client appended: a BYOD certificate followed by a self-made certificate named like the
/// corporate CA passes rustls (which verifies against the BYOD CA and ignores the extra
/// certificate) and, read from the chain's last certificate, looked corporate. So each named CA
/// gets its own verifier, and the chain is verified again against each until one accepts it.
#[derive(Clone, Default)]
pub struct ClientCaIndex {
    /// (CA name, a verifier trusting only that CA's certificates), in config order.
    verifiers: Vec<(String, Arc<dyn rustls::server::danger::ClientCertVerifier>)>,
}

impl std::fmt::Debug for ClientCaIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.verifiers.iter().map(|(n, _)| n))
            .finish()
    }
}

impl ClientCaIndex {
    /// One verifier per named CA (DER certificates).
    pub fn new<'a>(
        cas: impl IntoIterator<Item = (&'a str, &'a [Vec<u8>])>,
    ) -> Result<Self, String> {
        let mut verifiers = Vec::new();
        for (name, ders) in cas {
            let v = Self::verifier(&[(name.to_string(), ders.to_vec())], true)?;
            verifiers.push((name.to_string(), v));
        }
        Ok(Self { verifiers })
    }

    /// The first configured CA (in config order) under which the presented chain verifies
    /// for client authentication now; `None` when none does.
    pub fn issuer_of(&self, chain: &[CertificateDer<'_>]) -> Option<String> {
        let (leaf, intermediates) = chain.split_first()?;
        let now = rustls::pki_types::UnixTime::now();
        self.verifiers
            .iter()
            .find(|(_, v)| v.verify_client_cert(leaf, intermediates, now).is_ok())
            .map(|(n, _)| n.clone())
    }

    /// A rustls verifier over all CAs; `required` refuses handshakes without a certificate.
    pub fn verifier(
        cas: &[(String, Vec<Vec<u8>>)],
        required: bool,
    ) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, String> {
        let mut roots = rustls::RootCertStore::empty();
        for (name, ders) in cas {
            for der in ders {
                roots
                    .add(CertificateDer::from(der.clone()))
                    .map_err(|e| format!("client CA {name:?}: {e}"))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
        let builder = if required {
            builder
        } else {
            builder.allow_unauthenticated()
        };
        builder.build().map_err(|e| e.to_string())
    }
}

/// pingora handshake callback that records which configured CA issued the client certificate.
pub struct ClientCertCallback {
    /// The CAs.
    pub index: ClientCaIndex,
}

#[async_trait::async_trait]
impl pingora::listeners::TlsAccept for ClientCertCallback {
    async fn handshake_complete_callback(
        &self,
        tls: &pingora::protocols::tls::TlsRef,
    ) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        let chain = tls.peer_cert_chain_der()?;
        let ca = self.index.issuer_of(chain)?;
        Some(Arc::new(ClientCertFacts { ca }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_cert(dir: &std::path::Path, name: &str, sans: &[&str]) -> (String, String) {
        let c = rcgen::generate_simple_self_signed(
            sans.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        let cp = dir.join(format!("{name}.crt"));
        let kp = dir.join(format!("{name}.key"));
        std::fs::write(&cp, c.cert.pem()).unwrap();
        std::fs::write(&kp, c.key_pair.serialize_pem()).unwrap();
        (cp.display().to_string(), kp.display().to_string())
    }

    #[test]
    fn sni_selects_by_name_and_falls_back_to_default() {
        let dir = std::env::temp_dir().join(format!("pc-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (c1, k1) = write_cert(&dir, "a", &["a.test"]);
        let (c2, k2) = write_cert(&dir, "b", &["*.b.test"]);
        let a = Arc::new(load_cert_bundle(&c1, &k1).unwrap());
        let b = Arc::new(load_cert_bundle(&c2, &k2).unwrap());
        let set = CertSet::new(&[a.clone(), b.clone()]).unwrap();
        assert!(Arc::ptr_eq(&set.select(Some("x.b.test")), &b.certified));
        assert!(Arc::ptr_eq(&set.select(Some("A.TEST")), &a.certified));
        assert!(Arc::ptr_eq(&set.select(Some("other")), &a.certified));
        assert!(Arc::ptr_eq(&set.select(None), &a.certified));
        assert!(matches!(
            load_cert_bundle(&c1, &k2),
            Err(CertError::Mismatch { .. })
        ));
        assert!(matches!(
            load_cert_bundle(&k1, &k1),
            Err(CertError::Cert { .. })
        ));
        std::fs::remove_dir_all(dir).ok();
    }
}
