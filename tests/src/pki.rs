//! A throw-away certificate authority for tests: server certificates for given names, written
//! as PEM files into a directory.

use std::path::Path;

/// A test CA.
pub struct TestCa {
    ca: rcgen::Certificate,
    key: rcgen::KeyPair,
    /// The CA certificate, PEM.
    pub pem: String,
}

/// Paths of a written certificate and key.
pub struct CertFiles {
    /// PEM chain.
    pub cert: String,
    /// PEM key.
    pub key: String,
}

impl TestCa {
    /// A new CA.
    pub fn new() -> Self {
        Self::named("Portcullis Test CA")
    }

    /// A new CA with a given common name (two CAs with different names are distinguishable).
    pub fn named(cn: &str) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().expect("key");
        let ca = params.self_signed(&key).expect("CA");
        let pem = ca.pem();
        Self { ca, key, pem }
    }

    /// Issues a server certificate for `names` and writes `<stem>.crt`/`<stem>.key` in `dir`.
    pub fn issue(&self, dir: &Path, stem: &str, names: &[&str]) -> CertFiles {
        let params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.ca, &self.key).expect("sign");
        let c = dir.join(format!("{stem}.crt"));
        let k = dir.join(format!("{stem}.key"));
        std::fs::write(&c, cert.pem()).expect("write cert");
        std::fs::write(&k, key.serialize_pem()).expect("write key");
        CertFiles {
            cert: c.display().to_string(),
            key: k.display().to_string(),
        }
    }

    /// Issues a client certificate (clientAuth usage) for `cn`; returns PEM of cert + key, the
    /// form `reqwest::Identity::from_pem` takes.
    pub fn issue_client(&self, cn: &str) -> String {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.ca, &self.key).expect("sign");
        format!("{}{}", cert.pem(), key.serialize_pem())
    }

    /// Writes the CA certificate to `dir/ca.crt`.
    pub fn write(&self, dir: &Path) -> String {
        self.write_as(dir, "ca.crt")
    }

    /// Writes the CA certificate to `dir/name`.
    pub fn write_as(&self, dir: &Path, name: &str) -> String {
        let p = dir.join(name);
        std::fs::write(&p, &self.pem).expect("write CA");
        p.display().to_string()
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}
