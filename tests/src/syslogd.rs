//! A private syslog collector listening on a loopback TCP port and writing every message it
//! parses, field by field, to a file: rsyslog (Debian `rsyslog`, `rsyslog-gnutls` for TLS) or
//! syslog-ng (Debian `syslog-ng-core`). Both write the same line format, so one check reads
//! either.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running collector.
pub struct Syslogd {
    child: Child,
    /// Listening port.
    pub port: u16,
    /// Where parsed messages go: `pri|hostname|app-name|procid|msgid|structured-data|timereported|msg`.
    pub out: PathBuf,
    _dir: tempfile::TempDir,
}

/// TLS files for the listener.
pub struct SyslogTlsFiles {
    /// CA PEM.
    pub ca: String,
    /// Server certificate PEM.
    pub cert: String,
    /// Server key PEM.
    pub key: String,
}

impl Syslogd {
    /// Starts rsyslogd in the foreground with a private config (plain TCP or TLS).
    pub fn rsyslog(tls: Option<&SyslogTlsFiles>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = crate::free_port();
        let out = dir.path().join("messages.log");
        let work = dir.path().join("work");
        std::fs::create_dir_all(&work).expect("workdir");
        let (global, module) = match tls {
            None => (String::new(), "module(load=\"imtcp\")".to_string()),
            Some(t) => (
                format!(
                    "global(DefaultNetstreamDriver=\"gtls\" DefaultNetstreamDriverCAFile=\"{}\" DefaultNetstreamDriverCertFile=\"{}\" DefaultNetstreamDriverKeyFile=\"{}\")",
                    t.ca, t.cert, t.key
                ),
                "module(load=\"imtcp\" StreamDriver.Name=\"gtls\" StreamDriver.Mode=\"1\" StreamDriver.AuthMode=\"anon\")".to_string(),
            ),
        };
        let conf = format!(
            r#"global(workDirectory="{work}")
{global}
{module}
template(name="fields" type="string" string="%pri%|%hostname%|%app-name%|%procid%|%msgid%|%structured-data%|%timereported:::date-rfc3339%|%msg%\n")
ruleset(name="in") {{ action(type="omfile" file="{out}" template="fields" flushOnTXEnd="on" asyncWriting="off") }}
input(type="imtcp" port="{port}" address="127.0.0.1" ruleset="in")
"#,
            work = work.display(),
            out = out.display(),
        );
        let conf_path = dir.path().join("rsyslog.conf");
        std::fs::write(&conf_path, conf).expect("write rsyslog.conf");
        let log = std::fs::File::create(dir.path().join("rsyslogd.log")).expect("log");
        let child = Command::new("rsyslogd")
            .args(["-n", "-f"])
            .arg(&conf_path)
            .arg("-i")
            .arg(dir.path().join("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn rsyslogd (Debian package rsyslog)");
        crate::wait_for_port(port, Duration::from_secs(10));
        Self {
            child,
            port,
            out,
            _dir: dir,
        }
    }

    /// Starts syslog-ng in the foreground with a private config: an RFC 5424 `syslog()` source
    /// (octet-counted frames) over TCP or TLS, written with the rsyslog line format.
    pub fn syslog_ng(tls: Option<&SyslogTlsFiles>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = crate::free_port();
        let out = dir.path().join("messages.log");
        let transport = match tls {
            None => r#"transport("tcp")"#.to_string(),
            Some(t) => format!(
                r#"transport("tls") tls(key-file("{}") cert-file("{}") peer-verify(optional-untrusted))"#,
                t.key, t.cert
            ),
        };
        let conf = format!(
            r#"@version: 3.38
options {{ keep-hostname(yes); flush-lines(1); stats-freq(0); }};
source s_in {{ syslog(ip(127.0.0.1) port({port}) {transport}); }};
destination d_out {{ file("{out}" template("${{PRI}}|${{HOST}}|${{PROGRAM}}|${{PID}}|${{MSGID}}|${{SDATA}}|${{ISODATE}}|${{MESSAGE}}
")); }};
log {{ source(s_in); destination(d_out); }};
"#,
            out = out.display(),
        );
        let conf_path = dir.path().join("syslog-ng.conf");
        std::fs::write(&conf_path, conf).expect("write syslog-ng.conf");
        let log = std::fs::File::create(dir.path().join("syslog-ng.log")).expect("log");
        let d = dir.path();
        let mut cmd = syslog_ng_command();
        let child = cmd
            .arg("-F")
            .arg("--no-caps")
            .arg("-f")
            .arg(&conf_path)
            .arg("-R")
            .arg(d.join("syslog-ng.persist"))
            .arg("-p")
            .arg(d.join("syslog-ng.pid"))
            .arg("-c")
            .arg(d.join("syslog-ng.ctl"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect(
                "spawn syslog-ng (tests/run unpacks Debian's syslog-ng-core into target/syslog-ng)",
            );
        crate::wait_for_port(port, Duration::from_secs(10));
        Self {
            child,
            port,
            out,
            _dir: dir,
        }
    }

    /// Lines written so far.
    pub fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Waits until at least `n` lines were written.
    pub fn wait_lines(&self, n: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let l = self.lines();
            if l.len() >= n {
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "the collector wrote {} of {n} lines",
                l.len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Syslogd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// syslog-ng from PATH, or the Debian package `tests/run` unpacked under `target/syslog-ng`
/// (it conflicts with rsyslog as an installed package).
fn syslog_ng_command() -> Command {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("syslog-ng").is_file()));
    if on_path {
        return Command::new("syslog-ng");
    }
    let root = crate::k8s::repo().join("target/syslog-ng/root");
    let mut cmd = Command::new(root.join("usr/sbin/syslog-ng"));
    cmd.env(
        "LD_LIBRARY_PATH",
        format!(
            "{}:{}",
            root.join("usr/lib/syslog-ng").display(),
            root.join("usr/lib").display()
        ),
    )
    .arg(format!(
        "--module-path={}",
        root.join("usr/lib/syslog-ng/3.38").display()
    ));
    cmd
}
