//! Single sign-on peers and a browser-like client: a real OpenID Provider (npm
//! `oidc-provider`, installed into `tests/oidc` by `tests/run`), a Redis server, and a
//! cookie-jar HTTP client that follows redirects one at a time so tests can assert each hop.

use crate::{free_port, wait_for_port};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process (not the gateway) killed on drop, stderr kept in a file.
pub struct Peer {
    child: Child,
    /// stderr.
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Peer {
    /// Spawns `cmd` with stdout discarded and stderr kept.
    pub fn spawn(cmd: &mut Command) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("stderr.log");
        let err = std::fs::File::create(&log).expect("log file");
        let child = cmd
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e} (tests/run installs the peers)"));
        Self {
            child,
            log,
            _dir: dir,
        }
    }

    /// Everything logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `sig` (`STOP`, `CONT`...) to the process, e.g. to make a store hang.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{sig}");
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `tests/oidc` directory.
pub fn oidc_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("oidc")
}

/// A running `oidc-provider` on a free loopback port.
pub struct OpenIdProvider {
    /// The node process.
    pub peer: Peer,
    /// Issuer URL (`http://127.0.0.1:PORT`).
    pub issuer: String,
    /// Holds `accounts.json`, see [`OpenIdProvider::set_accounts`].
    accounts: tempfile::TempDir,
}

/// Client id and secret the tests register.
pub const CLIENT_ID: &str = "portcullis";
/// See [`CLIENT_ID`].
pub const CLIENT_SECRET: &str = "test-client-secret";

impl OpenIdProvider {
    /// Starts the provider with one client whose redirect URIs point at the given gateway
    /// HTTPS ports and back-channel logout at `backchannel` (a full URL), with access tokens
    /// living `at_ttl` seconds.
    pub fn start(https_ports: &[u16], backchannel: Option<&str>, at_ttl: u64) -> Self {
        Self::start_with(https_ports, backchannel, at_ttl, |_| {})
    }

    /// Like [`OpenIdProvider::start`], with the client's metadata changed by `edit` first
    /// (e.g. `token_endpoint_auth_method: private_key_jwt` and its `jwks`).
    pub fn start_with(
        https_ports: &[u16],
        backchannel: Option<&str>,
        at_ttl: u64,
        edit: impl FnOnce(&mut serde_json::Value),
    ) -> Self {
        let port = free_port();
        // `localhost` too: WebAuthn needs a domain name (tests/tests/webauthn.rs). The
        // gateway's callback is per provider; the tests' provider id is `corp`.
        let redirects: Vec<String> = https_ports
            .iter()
            .flat_map(|p| {
                ["127.0.0.1", "localhost"]
                    .map(|h| format!("https://{h}:{p}/.portcullis/callback/corp"))
            })
            .collect();
        let post_logout: Vec<String> = https_ports
            .iter()
            .map(|p| format!("https://127.0.0.1:{p}/"))
            .collect();
        let mut client = serde_json::json!({
            "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
            "redirect_uris": redirects, "post_logout_redirect_uris": post_logout,
            "grant_types": ["authorization_code", "refresh_token"],
        });
        if let Some(b) = backchannel {
            client["backchannel_logout_uri"] = serde_json::json!(b);
            client["backchannel_logout_session_required"] = serde_json::json!(true);
        }
        edit(&mut client);
        let dir = oidc_dir();
        assert!(
            dir.join("node_modules/oidc-provider").exists(),
            "run `npm ci` in {} (tests/run does)",
            dir.display()
        );
        let accounts = tempfile::tempdir().expect("tempdir");
        let peer = Peer::spawn(
            Command::new("node")
                .arg(dir.join("provider.mjs"))
                .current_dir(&dir)
                .env("PORT", port.to_string())
                .env("AT_TTL", at_ttl.to_string())
                .env("ACCOUNTS_FILE", accounts.path().join("accounts.json"))
                .env("CLIENTS", serde_json::json!([client]).to_string()),
        );
        wait_for_port(port, Duration::from_secs(20));
        Self {
            peer,
            issuer: format!("http://127.0.0.1:{port}"),
            accounts,
        }
    }

    /// Changes what the provider says about users from now on (e.g. `{"alice": {"groups":
    /// ["eng"]}}`): the claims of later tokens, refreshes included, merge these over the
    /// built-in accounts.
    pub fn set_accounts(&self, overrides: &serde_json::Value) {
        let path = self.accounts.path().join("accounts.json");
        let tmp = self.accounts.path().join("accounts.tmp");
        std::fs::write(&tmp, overrides.to_string()).expect("write accounts");
        std::fs::rename(&tmp, &path).expect("replace accounts");
    }

    /// The `session:` and `identity_providers:` config blocks most single sign-on tests use:
    /// the test session key and this provider as `corp`, asking for email and groups.
    pub fn sso_config(&self) -> String {
        format!(
            "session:
  keys: [\"{SESSION_KEY}\"]
identity_providers:
  - {{ id: corp, type: oidc, issuer: \"{}\", client_id: {CLIENT_ID}, client_secret: {CLIENT_SECRET}, scopes: [openid, email, profile, groups] }}
",
            self.issuer
        )
    }
}

/// A private `redis-server` on a free port.
pub struct Redis {
    /// The process.
    pub peer: Peer,
    /// Its port.
    pub port: u16,
}

impl Redis {
    /// Starts redis-server with persistence off.
    pub fn start() -> Self {
        let port = free_port();
        let peer = Peer::spawn(Command::new("redis-server").args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]));
        wait_for_port(port, Duration::from_secs(10));
        Self { peer, port }
    }

    /// `redis://127.0.0.1:PORT/0`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// `CLIENT LIST` without the asking `redis-cli` itself: one line per connection.
    pub fn clients(&self) -> Vec<String> {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "CLIENT", "LIST"])
            .output()
            .expect("redis-cli (Debian redis-tools, installed with redis-server)");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.contains("cmd=client|list"))
            .map(str::to_string)
            .collect()
    }
}

/// One hop of a redirect chain.
#[derive(Debug, Clone)]
pub struct Hop {
    /// URL requested.
    pub url: String,
    /// Status.
    pub status: u16,
    /// `Location`, if any.
    pub location: Option<String>,
    /// `Set-Cookie` values.
    pub set_cookies: Vec<String>,
}

/// The end of a walk: every hop and the last body.
#[derive(Debug)]
pub struct Walk {
    /// The hops in order.
    pub hops: Vec<Hop>,
    /// Body of the last response.
    pub body: String,
}

impl Walk {
    /// The last hop.
    pub fn last(&self) -> &Hop {
        self.hops.last().expect("at least one hop")
    }

    /// The last `Set-Cookie` of a live session on this walk, with its attributes.
    pub fn session_set_cookie(&self) -> Option<String> {
        self.hops
            .iter()
            .flat_map(|h| h.set_cookies.iter())
            .rfind(|c| c.starts_with("__Host-portcullis=") && !c.contains("Max-Age=0"))
            .cloned()
    }

    /// [`Walk::session_set_cookie`] as a `Cookie` value (`name=value`).
    pub fn session_cookie(&self) -> Option<String> {
        self.session_set_cookie()
            .and_then(|c| c.split(';').next().map(str::to_string))
    }
}

/// A browser: cookie jar, `Accept: text/html`, redirects followed one hop at a time.
pub struct Browser {
    /// The HTTP client.
    pub client: reqwest::Client,
    /// Its cookie jar (tests copy a cookie from one browser to another, or put an old one back).
    pub jar: std::sync::Arc<reqwest::cookie::Jar>,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    /// A fresh browser with an empty cookie jar (accepts the gateway's self-signed cert).
    pub fn new() -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
        let client = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .tls_danger_accept_invalid_certs(true)
            .timeout(Duration::from_secs(15))
            .build()
            .expect("client");
        Self { client, jar }
    }

    async fn hop(&self, req: reqwest::RequestBuilder) -> (Hop, String) {
        let resp = req
            .header("accept", "text/html,application/xhtml+xml")
            .send()
            .await
            .expect("request");
        let url = resp.url().to_string();
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(|l| {
                url::Url::parse(&url)
                    .and_then(|b| b.join(l))
                    .map(|u| u.to_string())
                    .unwrap_or_else(|_| l.to_string())
            });
        let set_cookies = resp
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect();
        let body = resp.text().await.unwrap_or_default();
        (
            Hop {
                url,
                status,
                location,
                set_cookies,
            },
            body,
        )
    }

    /// GETs `url` and follows redirects until a non-redirect, or until `stop` says to stop
    /// before requesting a URL (that URL is then the last hop's `location`).
    pub async fn walk_until(&self, url: &str, stop: impl Fn(&str) -> bool) -> Walk {
        self.walk_from(self.client.get(url), stop).await
    }

    /// GETs `url` and follows every redirect.
    pub async fn walk(&self, url: &str) -> Walk {
        self.walk_until(url, |_| false).await
    }

    /// GETs `url` as an API client would (`Accept: application/json`), with this browser's
    /// cookies, without following redirects.
    pub async fn api_get(&self, url: impl reqwest::IntoUrl) -> reqwest::Response {
        self.client
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .expect("request")
    }

    /// Signs out at `origin` the way a browser does: GET the logout page, POST its form (with
    /// the CSRF token). Returns the POST's response without following it.
    pub async fn logout(&self, origin: &str) -> reqwest::Response {
        let form = self.form_at(&format!("{origin}/.portcullis/logout")).await;
        self.client
            .post(&form.action)
            .form(&form.fields)
            .send()
            .await
            .expect("logout request")
    }

    /// Posts `code` in the first form of `page` (an MFA code form, hidden fields included) and
    /// follows redirects.
    pub async fn post_code(&self, page_url: &str, page: &str, code: &str) -> Walk {
        let form = Form::parse(page_url, page);
        let mut fields = form.fields.clone();
        fields.push(("code".into(), code.into()));
        self.walk_from(self.client.post(&form.action).form(&fields), |_| false)
            .await
    }

    /// GETs the page at `url` and returns its first form.
    pub async fn form_at(&self, url: &str) -> Form {
        let page = self
            .client
            .get(url)
            .send()
            .await
            .expect("request")
            .text()
            .await
            .expect("body");
        Form::parse(url, &page)
    }

    /// Sends `req` and follows redirects.
    pub async fn walk_from(
        &self,
        req: reqwest::RequestBuilder,
        stop: impl Fn(&str) -> bool,
    ) -> Walk {
        let mut hops = Vec::new();
        let (mut hop, mut body) = self.hop(req).await;
        for _ in 0..20 {
            let next = hop.location.clone();
            hops.push(hop);
            match next {
                Some(n)
                    if !stop(&n) && hops.last().is_some_and(|h| (300..400).contains(&h.status)) =>
                {
                    (hop, body) = self.hop(self.client.get(&n)).await;
                }
                _ => return Walk { hops, body },
            }
        }
        panic!("redirect loop: {hops:#?}");
    }

    /// Signs in as `user` at the provider's dev login form shown in `page` (the body of the
    /// last hop, whose URL is `page_url`), and follows redirects back to the app.
    pub async fn submit_login(&self, page_url: &str, page: &str, user: &str) -> Walk {
        self.submit_login_until(page_url, page, user, |_| false)
            .await
    }

    /// Like [`Browser::submit_login`], stopping before a URL `stop` accepts.
    pub async fn submit_login_until(
        &self,
        page_url: &str,
        page: &str,
        user: &str,
        stop: impl Fn(&str) -> bool,
    ) -> Walk {
        let form = Form::parse(page_url, page);
        let mut fields = form.fields;
        fields.push(("login".into(), user.into()));
        fields.push(("password".into(), "any".into()));
        self.walk_from(self.client.post(&form.action).form(&fields), stop)
            .await
    }

    /// Opens `url`, which shows the gateway's local-account password form (directly or after
    /// redirects), signs in as `user` with `password`, and follows redirects.
    pub async fn password_sign_in(&self, url: &str, user: &str, password: &str) -> Walk {
        let w = self.walk(url).await;
        assert_eq!(w.last().status, 200, "the sign-in form: {w:#?}");
        assert!(w.body.contains("name=\"password\""), "{}", w.body);
        let form = Form::parse(&w.last().url, &w.body);
        let mut fields = form.fields;
        fields.push(("username".into(), user.into()));
        fields.push(("password".into(), password.into()));
        self.walk_from(self.client.post(&form.action).form(&fields), |_| false)
            .await
    }

    /// Full login: open `app_url`, sign in as `user`, come back. Returns the walk to the app.
    pub async fn login(&self, app_url: &str, user: &str) -> Walk {
        let w = self.walk(app_url).await;
        let last = w.last().clone();
        assert_eq!(
            last.status, 200,
            "expected the provider's login form: {w:#?}"
        );
        self.submit_login(&last.url, &w.body, user).await
    }
}

/// An HTML form scraped from a page.
#[derive(Debug, Clone)]
pub struct Form {
    /// Absolute action URL.
    pub action: String,
    /// Hidden inputs.
    pub fields: Vec<(String, String)>,
}

impl Form {
    /// The first form on `page` (at `base`).
    pub fn parse(base: &str, page: &str) -> Self {
        let action_re = regex_lite::Regex::new(r#"<form[^>]*action="([^"]+)""#).unwrap();
        let action = action_re
            .captures(page)
            .unwrap_or_else(|| panic!("no form in page: {page}"))[1]
            .replace("&amp;", "&");
        let action = url::Url::parse(base)
            .unwrap()
            .join(&action)
            .unwrap()
            .to_string();
        let input_re = regex_lite::Regex::new(r#"<input[^>]*>"#).unwrap();
        let attr = |tag: &str, name: &str| {
            regex_lite::Regex::new(&format!(r#"{name}="([^"]*)""#))
                .unwrap()
                .captures(tag)
                .map(|c| c[1].to_string())
        };
        let fields = input_re
            .find_iter(page)
            .map(|m| m.as_str())
            .filter(|t| t.contains(r#"type="hidden""#) || t.contains("type=hidden"))
            .filter_map(|t| Some((attr(t, "name")?, attr(t, "value").unwrap_or_default())))
            .collect();
        Self { action, fields }
    }
}

/// The JSON payload of a JWT (unverified).
pub fn jwt_claims(token: &str) -> serde_json::Value {
    let p = token.split('.').nth(1).expect("JWT payload");
    serde_json::from_slice(&B64.decode(p).expect("base64url")).expect("JSON")
}

/// Verifies an ES256 JWT against a JWKS document.
pub fn verify_es256(jwks: &serde_json::Value, token: &str) -> bool {
    let Some((input, sig)) = token.rsplit_once('.') else {
        return false;
    };
    let Some(header) = input
        .split('.')
        .next()
        .and_then(|h| B64.decode(h).ok())
        .and_then(|h| serde_json::from_slice::<serde_json::Value>(&h).ok())
    else {
        return false;
    };
    if header["alg"] != "ES256" {
        return false;
    }
    let Some(key) = jwks["keys"]
        .as_array()
        .and_then(|k| k.iter().find(|k| k["kid"] == header["kid"]))
    else {
        return false;
    };
    let mut point = vec![4u8];
    point.extend(
        B64.decode(key["x"].as_str().unwrap_or(""))
            .unwrap_or_default(),
    );
    point.extend(
        B64.decode(key["y"].as_str().unwrap_or(""))
            .unwrap_or_default(),
    );
    let Ok(sig) = B64.decode(sig) else {
        return false;
    };
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, point)
        .verify(input.as_bytes(), &sig)
        .is_ok()
}

/// Waits until `f` is true.
pub async fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    f()
}

/// A session key for configs (base64 of 32 bytes).
pub const SESSION_KEY: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
