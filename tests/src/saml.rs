//! SAML peers: a real IdP on PyPI pysaml2 (`tests/saml/idp.py`, in the venv `tests/run`
//! creates under `target/saml-venv`, signing with Debian's `xmlsec1`), and a forger that builds
//! hostile responses and signs them with the `xmlsec1` command line (another XML-DSig
//! implementation than the gateway's verifier, so a shared canonicalisation bug cannot hide).

use crate::oidc::Peer;
use crate::{free_port, wait_for_port};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The venv's Python with pysaml2, and `xmlsec1`; `None` (skip) when missing outside CI. Under
/// `CI` a missing peer fails the test: it must never pass by not running.
pub fn python() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/saml-venv/bin/python");
    let ok = p.exists()
        && Command::new(&p)
            .args(["-c", "import saml2"])
            .status()
            .is_ok_and(|s| s.success())
        && Command::new("xmlsec1")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if ok {
        return Some(p);
    }
    assert!(
        std::env::var("CI").is_err(),
        "CI must run the SAML suite: tests/run installs xmlsec1 and target/saml-venv (pysaml2)"
    );
    eprintln!("pysaml2 venv or xmlsec1 missing: skipping the SAML suite (run ./tests/run)");
    None
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("saml/idp.py")
}

/// A running pysaml2 IdP with its key material in a temporary directory.
pub struct SamlIdp {
    /// The process.
    pub peer: Peer,
    /// Its port.
    pub port: u16,
    /// Keys, its metadata (`idp.xml`) and the SP metadata it trusts (`sp.xml`).
    pub dir: tempfile::TempDir,
}

impl SamlIdp {
    /// Generates the IdP and SP keys and starts the IdP; waits for its metadata.
    pub fn start(python: &Path) -> Self {
        Self::start_on(python, free_port())
    }

    /// Like [`SamlIdp::start`] on a port chosen beforehand.
    pub fn start_on(python: &Path, port: u16) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        // The keys exist before the IdP starts (it reads its own at start for its metadata).
        for name in ["idp", "sp", "attacker"] {
            keygen(python, dir.path(), name);
        }
        let idp = Self {
            peer: Peer::spawn(Command::new(python).arg(script()).args([
                "serve",
                "--port",
                &port.to_string(),
                "--dir",
                &dir.path().display().to_string(),
            ])),
            port,
            dir,
        };
        wait_for_port(port, Duration::from_secs(30));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !idp.path("idp.xml").exists() {
            assert!(
                Instant::now() < deadline,
                "no IdP metadata: {}",
                idp.peer.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        idp
    }

    /// A file in the IdP's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The IdP's entity id.
    pub fn entity_id(&self) -> String {
        format!("{}/metadata", self.url())
    }

    /// Makes the IdP trust the SP metadata `xml`.
    pub fn trust_sp(&self, xml: &str) {
        std::fs::write(self.path("sp.xml"), xml).expect("write sp.xml");
    }

    /// The SP messages the IdP received (JSON list).
    pub async fn requests(&self) -> serde_json::Value {
        reqwest::get(format!("{}/requests", self.url()))
            .await
            .expect("requests")
            .json()
            .await
            .expect("json")
    }
}

/// Writes `dir/name.key` and `dir/name.crt` (RSA 2048, self-signed) with the IdP script.
fn keygen(python: &Path, dir: &Path, name: &str) {
    let st = Command::new(python)
        .arg(script())
        .args(["keygen", &dir.display().to_string(), name])
        .status()
        .expect("keygen");
    assert!(st.success());
}

/// The ID of the AuthnRequest in an HTTP-Redirect URL.
pub fn request_id(redirect_url: &str) -> String {
    let u = url::Url::parse(redirect_url).expect("URL");
    let msg = u
        .query_pairs()
        .find(|(k, _)| k == "SAMLRequest")
        .expect("SAMLRequest")
        .1
        .into_owned();
    let raw = B64.decode(msg).expect("base64");
    let mut xml = String::new();
    flate2::read::DeflateDecoder::new(raw.as_slice())
        .read_to_string(&mut xml)
        .expect("inflate");
    let re = regex_lite::Regex::new(r#" ID="([^"]+)""#).unwrap();
    re.captures(&xml).expect("ID")[1].to_string()
}

/// The RelayState of an HTTP-Redirect URL.
pub fn relay_state(redirect_url: &str) -> String {
    url::Url::parse(redirect_url)
        .expect("URL")
        .query_pairs()
        .find(|(k, _)| k == "RelayState")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Signs the first signature template of `xml` with `key`/`cert` (PEM files) by `xmlsec1`.
pub fn xmlsec_sign(xml: &str, key: &Path, cert: &Path) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.xml");
    let output = dir.path().join("out.xml");
    std::fs::write(&input, xml).expect("write template");
    let out = Command::new("xmlsec1")
        .args([
            "--sign",
            "--privkey-pem",
            &format!("{},{}", key.display(), cert.display()),
            "--id-attr:ID",
            "urn:oasis:names:tc:SAML:2.0:assertion:Assertion",
            "--id-attr:ID",
            "urn:oasis:names:tc:SAML:2.0:protocol:Response",
            "--output",
            &output.display().to_string(),
            &input.display().to_string(),
        ])
        .output()
        .expect("xmlsec1 (Debian xmlsec1)");
    assert!(out.status.success(), "xmlsec1: {out:?}\n{xml}");
    let signed = std::fs::read_to_string(&output).expect("signed");
    // Without the XML declaration, so a signed element can be embedded elsewhere.
    match signed.strip_prefix("<?xml") {
        Some(rest) => rest[rest.find("?>").map_or(0, |i| i + 2)..]
            .trim()
            .to_string(),
        None => signed.trim().to_string(),
    }
}

/// RSA-SHA256 signature method.
pub const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
/// SHA-256 digest method.
pub const SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";
/// RSA-SHA1 signature method.
pub const RSA_SHA1: &str = "http://www.w3.org/2000/09/xmldsig#rsa-sha1";
/// SHA-1 digest method.
pub const SHA1: &str = "http://www.w3.org/2000/09/xmldsig#sha1";

fn sig_template(id: &str, sig_alg: &str, digest_alg: &str) -> String {
    format!(
        "<ds:Signature xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"><ds:SignedInfo>\
         <ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/>\
         <ds:SignatureMethod Algorithm=\"{sig_alg}\"/><ds:Reference URI=\"#{id}\"><ds:Transforms>\
         <ds:Transform Algorithm=\"http://www.w3.org/2000/09/xmldsig#enveloped-signature\"/>\
         <ds:Transform Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/></ds:Transforms>\
         <ds:DigestMethod Algorithm=\"{digest_alg}\"/><ds:DigestValue></ds:DigestValue></ds:Reference>\
         </ds:SignedInfo><ds:SignatureValue></ds:SignatureValue></ds:Signature>"
    )
}

fn at(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .expect("time")
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Every field of a forged response; [`Forged::new`] is a valid one for a request.
#[derive(Clone, Debug)]
pub struct Forged {
    /// Response ID.
    pub response_id: String,
    /// Assertion ID.
    pub assertion_id: String,
    /// InResponseTo (Response and SubjectConfirmationData).
    pub irt: Option<String>,
    /// Destination.
    pub destination: String,
    /// Recipient.
    pub recipient: String,
    /// Audience.
    pub audience: String,
    /// Issuer.
    pub issuer: String,
    /// Status code.
    pub status: String,
    /// NameID text.
    pub name_id: String,
    /// NotBefore.
    pub not_before: i64,
    /// NotOnOrAfter.
    pub not_on_or_after: i64,
    /// Sign the assertion.
    pub sign_assertion: bool,
    /// Signature algorithm.
    pub sig_alg: String,
    /// Digest algorithm.
    pub digest_alg: String,
}

impl Forged {
    /// A valid response of `idp` for request `irt` at the gateway `origin` with SP `sp`.
    pub fn new(idp: &SamlIdp, origin: &str, sp: &str, irt: &str, now: i64) -> Self {
        Self {
            response_id: "_fresp1".into(),
            assertion_id: format!("_fa{}", crate::free_port()),
            irt: Some(irt.into()),
            destination: format!("{origin}/.portcullis/saml/acs"),
            recipient: format!("{origin}/.portcullis/saml/acs"),
            audience: sp.into(),
            issuer: idp.entity_id(),
            status: "urn:oasis:names:tc:SAML:2.0:status:Success".into(),
            name_id: "mallory@example.com".into(),
            not_before: now - 60,
            not_on_or_after: now + 300,
            sign_assertion: true,
            sig_alg: RSA_SHA256.into(),
            digest_alg: SHA256.into(),
        }
    }

    /// The assertion element (template).
    pub fn assertion(&self) -> String {
        let irt = self
            .irt
            .as_ref()
            .map(|i| format!(" InResponseTo=\"{i}\""))
            .unwrap_or_default();
        let sig = if self.sign_assertion {
            sig_template(&self.assertion_id, &self.sig_alg, &self.digest_alg)
        } else {
            String::new()
        };
        format!(
            "<saml:Assertion xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"{aid}\" Version=\"2.0\" IssueInstant=\"{nb}\">\
             <saml:Issuer>{iss}</saml:Issuer>{sig}\
             <saml:Subject><saml:NameID Format=\"urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress\">{nid}</saml:NameID>\
             <saml:SubjectConfirmation Method=\"urn:oasis:names:tc:SAML:2.0:cm:bearer\">\
             <saml:SubjectConfirmationData NotOnOrAfter=\"{noa}\" Recipient=\"{rcpt}\"{irt}/></saml:SubjectConfirmation></saml:Subject>\
             <saml:Conditions NotBefore=\"{nb}\" NotOnOrAfter=\"{noa}\"><saml:AudienceRestriction><saml:Audience>{aud}</saml:Audience></saml:AudienceRestriction></saml:Conditions>\
             <saml:AuthnStatement AuthnInstant=\"{nb}\" SessionIndex=\"_fs1\"><saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>\
             <saml:AttributeStatement><saml:Attribute Name=\"memberOf\"><saml:AttributeValue>admins</saml:AttributeValue></saml:Attribute></saml:AttributeStatement></saml:Assertion>",
            aid = self.assertion_id,
            iss = self.issuer,
            nid = self.name_id,
            noa = at(self.not_on_or_after),
            nb = at(self.not_before),
            rcpt = self.recipient,
            aud = self.audience,
        )
    }

    /// The response around `assertion` (unsigned Response).
    pub fn wrap(&self, assertion: &str) -> String {
        let irt = self
            .irt
            .as_ref()
            .map(|i| format!(" InResponseTo=\"{i}\""))
            .unwrap_or_default();
        format!(
            "<samlp:Response xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"{rid}\" Version=\"2.0\" IssueInstant=\"{now}\" Destination=\"{dest}\"{irt}>\
             <saml:Issuer>{iss}</saml:Issuer><samlp:Status><samlp:StatusCode Value=\"{status}\"/></samlp:Status>{assertion}</samlp:Response>",
            rid = self.response_id,
            now = at(self.not_before),
            dest = self.destination,
            iss = self.issuer,
            status = self.status,
        )
    }

    /// The assertion signed by `key` (a file name in the IdP's directory: `idp`, `attacker`).
    pub fn signed_assertion(&self, idp: &SamlIdp, key: &str) -> String {
        if !self.sign_assertion {
            return self.assertion();
        }
        xmlsec_sign(
            &self.assertion(),
            &idp.path(&format!("{key}.key")),
            &idp.path(&format!("{key}.crt")),
        )
    }

    /// The whole response, the assertion signed by `key`.
    pub fn xml(&self, idp: &SamlIdp, key: &str) -> String {
        self.wrap(&self.signed_assertion(idp, key))
    }
}

/// Base64 of `xml`, as posted.
pub fn b64(xml: &str) -> String {
    B64.encode(xml)
}
