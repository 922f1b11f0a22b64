//! A real SMTP server for the email-code tests: PyPI/Debian `aiosmtpd` with its Maildir
//! handler (one file per message in `DIR/new/`), installed by `tests/run`.

use crate::oidc::Peer;
use crate::{free_port, wait_for_port};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// A running `aiosmtpd` on a free loopback port.
pub struct Smtp {
    /// The process.
    pub peer: Peer,
    /// Its port.
    pub port: u16,
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

/// The `aiosmtpd` command: `PORTCULLIS_AIOSMTPD`, the venv `tests/run` may create under
/// `target/`, or the one on `PATH` (Debian `python3-aiosmtpd`).
fn command() -> PathBuf {
    if let Ok(p) = std::env::var("PORTCULLIS_AIOSMTPD") {
        return PathBuf::from(p);
    }
    let venv =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/aiosmtpd-venv/bin/aiosmtpd");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("aiosmtpd")
}

impl Smtp {
    /// Starts the server (no TLS: the gateway's opportunistic STARTTLS sends in clear).
    pub fn start() -> Self {
        let port = free_port();
        let tmp = tempfile::tempdir().expect("tempdir");
        // The Maildir must not exist yet: the handler creates it with its subdirectories.
        let dir = tmp.path().join("mail");
        let peer = Peer::spawn(Command::new(command()).args([
            "-n",
            "-l",
            &format!("127.0.0.1:{port}"),
            "-c",
            "aiosmtpd.handlers.Mailbox",
            &dir.display().to_string(),
        ]));
        wait_for_port(port, Duration::from_secs(20));
        Self {
            peer,
            port,
            dir,
            _tmp: tmp,
        }
    }

    /// `smtp://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far, oldest first (raw RFC 5322 text).
    pub fn messages(&self) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(self.dir.join("new")) else {
            return Vec::new();
        };
        let mut files: Vec<_> = rd
            .filter_map(Result::ok)
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        files.sort();
        files
            .into_iter()
            .filter_map(|(_, p)| std::fs::read_to_string(p).ok())
            .collect()
    }

    /// Waits for message number `n` (0-based) and returns it.
    pub async fn wait_for(&self, n: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(m) = self.messages().into_iter().nth(n) {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "no message #{n}; smtp log:\n{}",
                self.peer.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The first standalone 6-digit number in `text` after its headers.
pub fn code_in(text: &str) -> String {
    let body = text
        .split_once("\n\n")
        .or_else(|| text.split_once("\r\n\r\n"))
        .map_or(text, |(_, b)| b);
    regex_lite::Regex::new(r"\b(\d{6})\b")
        .unwrap()
        .captures(body)
        .unwrap_or_else(|| panic!("no code in {text}"))[1]
        .to_string()
}
