//! A private rsyslog (Debian `rsyslog`, `rsyslog-gnutls` for TLS) listening on a loopback TCP
//! port and writing every message it parses, field by field, to a file.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running rsyslogd.
pub struct Rsyslog {
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

impl Rsyslog {
    /// Starts rsyslogd in the foreground with a private config (plain TCP or TLS).
    pub fn start(tls: Option<&SyslogTlsFiles>) -> Self {
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
                "rsyslog wrote {} of {n} lines",
                l.len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
