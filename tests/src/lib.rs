#![forbid(unsafe_code)]
//! Harness for end-to-end tests: starts the real `portcullis` binary and real peers on free
//! loopback ports, and stops them when dropped.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod collector;
pub mod front_proxy;
pub mod geo;
pub mod hostile;
pub mod k8s;
pub mod ldap;
pub mod oidc;
pub mod pki;
pub mod saml;
pub mod smtp;
pub mod syslogd;
pub mod totp;
pub mod vendors;

/// A port that was free a moment ago, never handed out before by this test process, and below
/// Linux's ephemeral range (32768–60999): a port the kernel picked with `bind(:0)` is also a
/// candidate for the next outgoing connection's local port, so a peer started a moment later
/// could find it taken.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    // Start at a per-process offset so concurrent test binaries rarely probe the same ports.
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(
        0,
        10_000 + (std::process::id() % 2000) as u16 * 10,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        let p = NEXT.fetch_add(1, Ordering::SeqCst);
        let p = 10_000 + (p - 10_000) % 22_000;
        if TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

/// The `portcullis` binary under test (`PORTCULLIS_BIN`, or the one next to this test's target
/// directory, built by `tests/run`).
pub fn bin() -> PathBuf {
    if let Ok(p) = std::env::var("PORTCULLIS_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let p = dir.join("portcullis");
    assert!(
        p.exists(),
        "{} not found: run `cargo build -p portcullis` first (tests/run does)",
        p.display()
    );
    p
}

/// The identity headers the gateway vouches for (and forward-auth answers always carry).
pub const IDENTITY_HEADERS: [&str; 6] = [
    "x-portcullis-user",
    "x-portcullis-email",
    "x-portcullis-groups",
    "x-portcullis-roles",
    "x-portcullis-tenant",
    "x-portcullis-assertion",
];

/// Waits until something accepts TCP connections on `port`.
pub fn wait_for_port(port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("nothing listens on port {port} after {timeout:?}");
}

/// An Argon2id PHC string for `password`, from `portcullis hash-password` (password on stdin).
pub fn hash_password(password: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(bin())
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn portcullis hash-password");
    writeln!(child.stdin.take().expect("stdin"), "{password}").expect("write password");
    let out = child.wait_with_output().expect("hash-password output");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .expect("UTF-8")
        .trim()
        .to_string()
}

/// A child process killed on drop, with its stderr kept in a file.
pub struct Proc {
    child: Child,
    /// Captured stderr (logs).
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Proc {
    fn spawn(args: &[&str], dir: tempfile::TempDir) -> Self {
        Self::spawn_env(args, dir, &[])
    }

    fn spawn_env(args: &[&str], dir: tempfile::TempDir, env: &[(&str, &Path)]) -> Self {
        let log = dir.path().join("stderr.log");
        let err = std::fs::File::create(&log).expect("log file");
        let child = Command::new(bin())
            .args(args)
            .stdout(Stdio::null())
            .stderr(err)
            .env("NO_COLOR", "1")
            .envs(env.iter().map(|(k, v)| (*k, *v)))
            .spawn()
            .expect("spawn portcullis");
        Self {
            child,
            log,
            _dir: dir,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`TERM`, `HUP`, `INT`).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Waits for exit, returning the exit code (None on timeout).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Everything logged so far.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `portcullis whoami` on a free port.
pub struct Whoami {
    /// The process.
    pub proc: Proc,
    /// Its port.
    pub port: u16,
}

impl Whoami {
    /// Starts a plain-HTTP whoami answering with `name`.
    pub fn start(name: &str) -> Self {
        Self::start_with(name, &[])
    }

    /// Starts whoami with extra arguments (e.g. `--tls-cert`).
    pub fn start_with(name: &str, extra: &[&str]) -> Self {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut args = vec!["whoami", "--listen", &listen, "--name", name];
        args.extend_from_slice(extra);
        let proc = Proc::spawn(&args, tempfile::tempdir().expect("tempdir"));
        wait_for_port(port, Duration::from_secs(10));
        Self { proc, port }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// Ports of one gateway instance.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// HTTPS listener.
    pub https: u16,
    /// Plain listener.
    pub http: u16,
    /// Admin listener.
    pub admin: u16,
}

impl Ports {
    /// Fresh free ports.
    pub fn fresh() -> Self {
        Self {
            https: free_port(),
            http: free_port(),
            admin: free_port(),
        }
    }

    /// Replaces `{https}`, `{http}`, `{admin}` in a config template.
    pub fn fill(&self, template: &str) -> String {
        template
            .replace("{https}", &self.https.to_string())
            .replace("{http}", &self.http.to_string())
            .replace("{admin}", &self.admin.to_string())
    }
}

/// A running gateway.
pub struct Gateway {
    /// The process.
    pub proc: Proc,
    /// Its ports.
    pub ports: Ports,
    /// The config file (rewrite it and SIGHUP to reload).
    pub config: PathBuf,
    /// The gateway's clock, when started with [`Gateway::start_with_clock`].
    pub clock: Option<TestClock>,
}

/// The clock of a gateway started with [`Gateway::start_with_clock`]: real time plus an offset
/// the test moves, shared with the gateway through `PORTCULLIS_TEST_CLOCK_FILE` (honoured by
/// debug builds only). Tests compute TOTP codes and deadlines from [`TestClock::now`] so they
/// agree with the gateway, and expire things with [`TestClock::advance`] instead of sleeping.
#[derive(Debug)]
pub struct TestClock {
    path: PathBuf,
    offset: std::sync::atomic::AtomicI64,
}

impl TestClock {
    fn create(path: PathBuf) -> Self {
        let c = Self {
            path,
            offset: std::sync::atomic::AtomicI64::new(0),
        };
        c.write(0);
        c
    }

    fn write(&self, offset: i64) {
        // Whole-file replace: the gateway never reads a half-written offset.
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, offset.to_string()).expect("write clock offset");
        std::fs::rename(&tmp, &self.path).expect("replace clock offset");
    }

    /// Seconds the gateway's clock is ahead of the real one.
    pub fn offset(&self) -> i64 {
        self.offset.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The gateway's time, in seconds since the Unix epoch.
    pub fn now(&self) -> u64 {
        crate::totp::now().saturating_add_signed(self.offset())
    }

    /// Moves the gateway's clock forward by `secs` (it sees the change on its next reading).
    pub fn advance(&self, secs: u64) {
        let o = self.offset() + i64::try_from(secs).expect("seconds");
        self.offset.store(o, std::sync::atomic::Ordering::SeqCst);
        self.write(o);
    }

    /// Moves the clock to the start of the next 30 s TOTP step unless at least `margin`
    /// seconds are left in this one (the clock-moving [`crate::totp::fresh_step`]).
    pub fn fresh_step(&self, margin: u64) {
        let left = 30 - self.now() % 30;
        if left < margin {
            self.advance(left);
        }
    }
}

/// The `server:` block most tests use: HTTPS with a self-signed cert, a plain listener without
/// redirect, the admin listener, fast shutdown.
pub const SERVER: &str = "server:
  https: { listen: \"127.0.0.1:{https}\" }
  http: { listen: \"127.0.0.1:{http}\" }
  admin: { listen: \"127.0.0.1:{admin}\" }
  threads: 2
  grace_period: 2s
  shutdown_timeout: 1s
  watch_interval: 200ms
";

impl Gateway {
    /// Writes `template` (with `{https}`/`{http}`/`{admin}` placeholders) and starts the gateway,
    /// waiting until the admin listener and the proxy listeners answer.
    pub fn start(template: &str) -> Self {
        Self::start_on(Ports::fresh(), template)
    }

    /// Like [`Gateway::start`] on ports chosen beforehand (a peer must know them first).
    pub fn start_on(ports: Ports, template: &str) -> Self {
        Self::start_inner(ports, template, false, &[])
    }

    /// Like [`Gateway::start`] with extra environment variables (credentials read from the
    /// environment, such as AWS's).
    pub fn start_env(template: &str, env: &[(&str, &str)]) -> Self {
        Self::start_inner(Ports::fresh(), template, false, env)
    }

    /// Like [`Gateway::start_on`] with a clock the test moves ([`Gateway::clock`]). Needs a
    /// debug build of the gateway: a release build ignores the clock file, which this checks.
    pub fn start_with_clock(ports: Ports, template: &str) -> Self {
        let gw = Self::start_inner(ports, template, true, &[]);
        assert!(
            gw.proc.logs().contains("test clock in use"),
            "the gateway ignored PORTCULLIS_TEST_CLOCK_FILE (a release build?); logs:\n{}",
            gw.proc.logs()
        );
        gw
    }

    /// The test clock (panics unless started with [`Gateway::start_with_clock`]).
    pub fn clock(&self) -> &TestClock {
        self.clock.as_ref().expect("started with start_with_clock")
    }

    fn start_inner(ports: Ports, template: &str, with_clock: bool, extra: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("portcullis.yaml");
        std::fs::write(&config, ports.fill(template)).expect("write config");
        let cfg = config.display().to_string();
        let clock = with_clock.then(|| TestClock::create(dir.path().join("clock-offset")));
        let env: Vec<(&str, &Path)> = clock
            .iter()
            .map(|c| ("PORTCULLIS_TEST_CLOCK_FILE", c.path.as_path()))
            .chain(extra.iter().map(|(k, v)| (*k, Path::new(*v))))
            .collect();
        let proc = Proc::spawn_env(&["run", "--config", &cfg], dir, &env);
        let gw = Self {
            proc,
            ports,
            config,
            clock,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok((200, _, _)) = raw_request(ports.admin, "GET /healthz HTTP/1.1", &[]) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "gateway did not become healthy; logs:\n{}",
                gw.proc.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let text = std::fs::read_to_string(&gw.config).unwrap_or_default();
        if text.contains("{https}") || text.contains(&format!(":{}\"", ports.https)) {
            wait_for_port(ports.https, Duration::from_secs(5));
        }
        if text.contains(&format!(":{}\"", ports.http)) {
            wait_for_port(ports.http, Duration::from_secs(5));
        }
        gw
    }

    /// Starts a second process on the same config with `--upgrade`: it waits on
    /// `server.upgrade_sock` for this one's listening sockets (sent on SIGQUIT).
    pub fn start_upgrade(&self) -> Proc {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = self.config.display().to_string();
        Proc::spawn(&["run", "--config", &cfg, "--upgrade"], dir)
    }

    /// Rewrites the config file (placeholders filled).
    pub fn write_config(&self, template: &str) {
        let tmp = self.config.with_extension("tmp");
        std::fs::write(&tmp, self.ports.fill(template)).expect("write config");
        std::fs::rename(&tmp, &self.config).expect("replace config");
    }

    /// `https://127.0.0.1:PORT`
    pub fn https(&self) -> String {
        format!("https://127.0.0.1:{}", self.ports.https)
    }

    /// `http://127.0.0.1:PORT`
    pub fn http(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.http)
    }

    /// The admin `/metrics` text.
    pub fn metrics(&self) -> String {
        raw_request(self.ports.admin, "GET /metrics HTTP/1.1", &[])
            .map(|(_, _, b)| b)
            .unwrap_or_default()
    }

    /// The value of one metric sample line (exact series text before the value).
    pub fn metric(&self, series: &str) -> Option<f64> {
        self.metrics().lines().find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.trim().parse().ok())
        })
    }
}

/// Sends `request_line` `n` times, one connection each, from another thread (an attacker
/// running while the test makes normal requests); the handle yields the statuses, 0 for a
/// request that failed or timed out.
pub fn raw_requests_in_background(
    port: u16,
    request_line: String,
    n: usize,
) -> std::thread::JoinHandle<Vec<u16>> {
    std::thread::spawn(move || {
        (0..n)
            .map(|_| raw_request(port, &request_line, &[]).map_or(0, |r| r.0))
            .collect()
    })
}

/// A parsed raw HTTP/1.1 response: status, lower-case headers, body.
pub type RawResponse = (u16, Vec<(String, String)>, String);

/// Sends `request_line` (e.g. `GET /%2e%2e/admin HTTP/1.1`) byte-for-byte to a plain listener,
/// so no client library normalises the target first.
pub fn raw_request(
    port: u16,
    request_line: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<RawResponse> {
    raw_request_on(
        TcpStream::connect(("127.0.0.1", port))?,
        request_line,
        headers,
    )
}

/// [`raw_request`] from a chosen loopback source address (e.g. 127.0.0.3: a client that is
/// neither the test's default address nor a trusted proxy).
pub fn raw_request_from(
    port: u16,
    from: std::net::IpAddr,
    request_line: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<RawResponse> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    sock.bind(&std::net::SocketAddr::new(from, 0).into())?;
    sock.connect(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into())?;
    raw_request_on(sock.into(), request_line, headers)
}

fn raw_request_on(
    mut s: TcpStream,
    request_line: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<RawResponse> {
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut req = format!("{request_line}\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str("Host: localhost\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("Connection: close\r\n\r\n");
    s.write_all(req.as_bytes())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    parse_response(&buf)
}

fn parse_response(buf: &[u8]) -> std::io::Result<RawResponse> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let text = String::from_utf8_lossy(buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| bad("no header end"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, headers, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The header value from a raw response.
pub fn header<'a>(resp: &'a RawResponse, name: &str) -> Option<&'a str> {
    resp.1
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// An HTTPS client that trusts `ca_pem` (or accepts anything when `None`), with redirects off.
pub fn client(ca_pem: Option<&str>) -> reqwest::Client {
    client_from(ca_pem, None)
}

/// [`client`] connecting from the loopback address `local` (e.g. 127.0.0.2 to play a trusted
/// proxy, while 127.0.0.1 is an untrusted client).
pub fn client_from(ca_pem: Option<&str>, local: Option<std::net::IpAddr>) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .tls_info(true)
        .local_address(local)
        .timeout(Duration::from_secs(15));
    b = match ca_pem {
        Some(pem) => {
            b.tls_certs_only([reqwest::Certificate::from_pem(pem.as_bytes()).expect("CA PEM")])
        }
        None => b.tls_danger_accept_invalid_certs(true),
    };
    b.build().expect("client")
}

/// Resolves `name` to the gateway's HTTPS port for a client (SNI tests).
pub fn client_resolving(ca_pem: &str, names: &[&str], port: u16) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .tls_info(true)
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA PEM")]);
    for n in names {
        b = b.resolve(n, SocketAddr::from(([127, 0, 0, 1], port)));
    }
    b.build().expect("client")
}

/// The JSON body whoami answered with.
pub fn whoami_json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not whoami JSON ({e}): {body}"))
}

/// The directory id of the user named `user_name`, looked up through the gateway's SCIM API
/// with `token` (panics when there is none).
pub async fn scim_user_id(gw: &Gateway, token: &str, user_name: &str) -> String {
    let found: serde_json::Value = client(None)
        .get(format!(
            "{}/.portcullis/scim/v2/Users?filter=userName%20eq%20%22{user_name}%22",
            gw.https()
        ))
        .bearer_auth(token)
        .send()
        .await
        .expect("SCIM request")
        .json()
        .await
        .expect("SCIM JSON");
    found["Resources"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{user_name} in the directory: {found}"))
        .to_string()
}
