//! A private OpenLDAP `slapd` (Debian `slapd` + `ldap-utils`, installed by `tests/run`) on two
//! free loopback ports: `ldap://` (StartTLS offered) and `ldaps://`, with a certificate from a
//! throw-away CA. Back end `mdb`, the `memberof` overlay (groupOfNames `member` → `memberOf`),
//! and a small test schema that gives entries Active Directory's own `userAccountControl`,
//! `sAMAccountName` and `userPrincipalName` attributes (AD's OIDs and syntaxes), so the AD
//! rules are tested against a real server. Seeded with `ldapadd` as the root DN.
//!
//! slapd is a required peer: when it is missing the harness panics (with or without `CI=1`),
//! it never skips.

use crate::free_port;
use crate::oidc::Peer;
use crate::pki::TestCa;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The directory's suffix.
pub const BASE: &str = "dc=example,dc=com";
/// The root DN (seeding only; the gateway never uses it).
pub const ROOT_DN: &str = "cn=admin,dc=example,dc=com";
const ROOT_PW: &str = "root-secret";
/// The gateway's service account.
pub const SERVICE_DN: &str = "cn=portcullis,ou=svc,dc=example,dc=com";
/// Its password.
pub const SERVICE_PW: &str = "service-secret-1";
/// Where users live.
pub const PEOPLE: &str = "ou=people,dc=example,dc=com";
/// Where groups live.
pub const GROUPS: &str = "ou=groups,dc=example,dc=com";

/// Active Directory's attributes on a test schema (AD's OIDs; the auxiliary class lives in
/// OpenLDAP's experimental arc).
const AD_SCHEMA: &str = "\
attributetype ( 1.2.840.113556.1.4.8 NAME 'userAccountControl' EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.221 NAME 'sAMAccountName' EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.656 NAME 'userPrincipalName' EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.4203.666.11.77.1 NAME 'portcullisTestAdUser' AUXILIARY MAY ( userAccountControl $ sAMAccountName $ userPrincipalName ) )
";

/// A running slapd, killed on drop.
pub struct Slapd {
    /// The process.
    pub peer: Peer,
    /// `ldap://` port (StartTLS offered).
    pub port: u16,
    /// `ldaps://` port.
    pub tls_port: u16,
    /// The CA that signed the server certificate.
    pub ca: TestCa,
    /// That CA's PEM file.
    pub ca_file: String,
    dir: tempfile::TempDir,
}

fn need(tool: &str) -> PathBuf {
    for d in ["/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
        let p = Path::new(d).join(tool);
        if p.exists() {
            return p;
        }
    }
    panic!(
        "{tool} not found: the LDAP tests need Debian slapd and ldap-utils (tests/run installs them); \
         a missing peer fails, it is never skipped"
    );
}

impl Slapd {
    /// Starts slapd with the service account and the `ou=people`/`ou=groups` branches.
    pub fn start() -> Self {
        let slapd = need("slapd");
        let slaptest = need("slaptest");
        need("ldapadd");
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let ca = TestCa::named("Portcullis LDAP Test CA");
        let certs = ca.issue(d, "server", &["127.0.0.1", "localhost"]);
        let ca_file = ca.write(d);
        std::fs::create_dir_all(d.join("db")).unwrap();
        std::fs::write(d.join("ad.schema"), AD_SCHEMA).unwrap();
        let conf = format!(
            "include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include {d}/ad.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
pidfile {d}/slapd.pid
TLSCACertificateFile {ca_file}
TLSCertificateFile {cert}
TLSCertificateKeyFile {key}
database mdb
maxsize 67108864
suffix \"{BASE}\"
rootdn \"{ROOT_DN}\"
rootpw {ROOT_PW}
directory {d}/db
overlay memberof
access to attrs=userPassword by self =xw by anonymous auth by * none
access to * by users read by * none
",
            d = d.display(),
            cert = certs.cert,
            key = certs.key,
        );
        std::fs::write(d.join("slapd.conf"), conf).unwrap();
        // Checked first (-u: without opening the database, which slapd creates at start), so
        // a bad config fails here with slaptest's message. slapd then reads the file itself
        // (`slaptest -F` would not convert it before the database exists).
        let out = Command::new(&slaptest)
            .arg("-u")
            .arg("-f")
            .arg(d.join("slapd.conf"))
            .output()
            .expect("slaptest");
        assert!(
            out.status.success(),
            "slaptest: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (port, tls_port) = (free_port(), free_port());
        let peer = Peer::spawn(
            Command::new(&slapd)
                .arg("-h")
                .arg(format!(
                    "ldap://127.0.0.1:{port}/ ldaps://127.0.0.1:{tls_port}/"
                ))
                .arg("-f")
                .arg(d.join("slapd.conf"))
                // Stats logging (256): each BIND and SRCH with its DN and filter, which the tests read.
                .args(["-d", "256"]),
        );
        for p in [port, tls_port] {
            let deadline = std::time::Instant::now() + Duration::from_secs(15);
            while std::net::TcpStream::connect(("127.0.0.1", p)).is_err() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "slapd does not listen on {p}: {}",
                    peer.logs()
                );
                std::thread::sleep(Duration::from_millis(25));
            }
        }
        let s = Self {
            peer,
            port,
            tls_port,
            ca,
            ca_file,
            dir,
        };
        s.add(&format!(
            "dn: {BASE}
objectClass: dcObject
objectClass: organization
dc: example
o: Example

dn: ou=svc,{BASE}
objectClass: organizationalUnit
ou: svc

dn: {SERVICE_DN}
objectClass: person
cn: portcullis
sn: service
userPassword: {SERVICE_PW}

dn: {PEOPLE}
objectClass: organizationalUnit
ou: people

dn: {GROUPS}
objectClass: organizationalUnit
ou: groups
"
        ));
        s
    }

    /// Adds `ldif` as the root DN.
    pub fn add(&self, ldif: &str) {
        let mut child = Command::new("ldapadd")
            .args(["-x", "-H", &self.url(), "-D", ROOT_DN, "-w", ROOT_PW])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ldapadd");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(ldif.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "ldapadd: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.peer.logs()
        );
    }

    /// Adds a person under `ou=people` (uid, cn, mail, password), with AD attributes (and
    /// organisation `acme`) when `uac` is given.
    pub fn add_user(&self, uid: &str, password: &str, uac: Option<u32>) {
        let ad = match uac {
            Some(v) => format!(
                "objectClass: portcullisTestAdUser\nuserAccountControl: {v}\nsAMAccountName: {uid}\nuserPrincipalName: {uid}@corp.example.com\no: acme\n"
            ),
            None => String::new(),
        };
        self.add(&format!(
            "dn: uid={uid},{PEOPLE}\nobjectClass: inetOrgPerson\n{ad}uid: {uid}\ncn: {uid}\nsn: {uid}\nmail: {uid}@example.com\nuserPassword: {password}\n"
        ));
    }

    /// Adds a groupOfNames under `ou=groups` with these member DNs.
    pub fn add_group(&self, cn: &str, members: &[String]) {
        let members: String = members.iter().map(|m| format!("member: {m}\n")).collect();
        self.add(&format!(
            "dn: cn={cn},{GROUPS}\nobjectClass: groupOfNames\ncn: {cn}\n{members}"
        ));
    }

    /// The DN of user `uid`.
    pub fn user_dn(uid: &str) -> String {
        format!("uid={uid},{PEOPLE}")
    }

    /// The DN of group `cn`.
    pub fn group_dn(cn: &str) -> String {
        format!("cn={cn},{GROUPS}")
    }

    /// `ldap://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// `ldaps://127.0.0.1:PORT`
    pub fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.tls_port)
    }

    /// The scratch directory (for other files of a test).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
