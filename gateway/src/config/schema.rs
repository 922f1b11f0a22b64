//! The config file as written by operators: a serde schema that refuses unknown keys. Nothing
//! here is validated beyond shape; [`super::model`] turns it into the runtime model.

use portcullis_policy::spec::{ConditionSpec, PolicySpec, RoleSpec, SodSpec};
use serde::Deserialize;
use std::collections::BTreeMap;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Listeners, threads, proxies and logging.
    #[serde(default)]
    pub server: ServerSpec,
    /// Routes in any order; lookup precedence does not depend on it.
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
    /// Session cookie and store.
    #[serde(default)]
    pub session: Option<super::auth_schema::SessionSpec>,
    /// Identity providers for single sign-on.
    #[serde(default)]
    pub identity_providers: Vec<super::auth_schema::IdpSpec>,
    /// The signed assertion sent to upstreams.
    #[serde(default)]
    pub assertion: Option<super::auth_schema::AssertionSpec>,
    /// Shared database: `sqlite://PATH` (default `<server.data_dir>/portcullis.db`) or `postgres://…`.
    #[serde(default)]
    pub store: Option<String>,
    /// Per-request decision records streamed to collectors.
    #[serde(default)]
    pub decision_log: Option<crate::decisionlog::config::DecisionLogSpec>,
    /// Tamper-evident audit log of security and admin events.
    #[serde(default)]
    pub audit: Option<crate::audit::config::AuditSpec>,
    /// Role hierarchy: `payroll-admin: { inherits: [payroll-viewer] }`.
    #[serde(default)]
    pub roles: BTreeMap<String, RoleSpec>,
    /// Segregation-of-duties constraints.
    #[serde(default)]
    pub sod: Vec<SodSpec>,
    /// Named, reusable policy conditions.
    #[serde(default)]
    pub policies: BTreeMap<String, ConditionSpec>,
    /// Where the tenant a request addresses comes from.
    #[serde(default)]
    pub tenants: Option<TenantsSpec>,
    /// GeoIP databases (MaxMind / GeoLite2 `.mmdb`).
    #[serde(default)]
    pub geoip: Option<GeoIpSpec>,
    /// Second factors and step-up.
    #[serde(default)]
    pub mfa: Option<crate::mfa::config::MfaSpec>,
    /// Forward-auth (`/.portcullis/auth`) for the proxy named here; absent: no such endpoint.
    #[serde(default)]
    pub forward_auth: Option<crate::forward_auth::ForwardAuthSpec>,
    /// The directory of users, groups and roles (in `store`); absent: sessions come from
    /// provider tokens alone, as before.
    #[serde(default)]
    pub directory: Option<crate::directory::config::DirectorySpec>,
    /// The admin console and its JSON API; absent: neither exists.
    #[serde(default)]
    pub console: Option<crate::console::config::ConsoleSpec>,
    /// The sign-in page: home-realm discovery (`login.domains`).
    #[serde(default)]
    pub login: Option<crate::realm::LoginSpec>,
}

/// `tenants:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantsSpec {
    /// `host`, `path` or `header`.
    pub from: String,
    /// `{tenant}.apps.example.com` (host) or `/t/{tenant}/` (path).
    #[serde(default)]
    pub pattern: Option<String>,
    /// Header name when `from: header` (believed only from trusted proxies).
    #[serde(default)]
    pub header: Option<String>,
}

/// `geoip:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeoIpSpec {
    /// GeoLite2-City or GeoLite2-Country database: country and region.
    #[serde(default)]
    pub city: Option<String>,
    /// GeoLite2-ASN database.
    #[serde(default)]
    pub asn: Option<String>,
}

/// `server:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    /// The TLS listener; without `cert`/`key` a self-signed certificate is generated at start.
    #[serde(default = "default_https")]
    pub https: Option<HttpsSpec>,
    /// An optional plain-HTTP listener (sidecars behind a mesh, or redirect to HTTPS).
    #[serde(default)]
    pub http: Option<HttpSpec>,
    /// Metrics and health endpoints.
    #[serde(default)]
    pub admin: AdminSpec,
    /// Envoy gRPC ext_authz v3 (`envoy.service.auth.v3.Authorization/Check`); absent: off.
    #[serde(default)]
    pub ext_authz: Option<ExtAuthzSpec>,
    /// Worker threads per listener service.
    #[serde(default)]
    pub threads: Option<usize>,
    /// CIDRs whose `X-Forwarded-*` headers are believed.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// How long SIGTERM keeps serving in-flight requests before stopping.
    #[serde(default)]
    pub grace_period: Option<String>,
    /// How long the final shutdown waits for the runtimes to stop.
    #[serde(default)]
    pub shutdown_timeout: Option<String>,
    /// `reject` (default) or `strip` for `;` path parameters.
    #[serde(default)]
    pub path_params: Option<String>,
    /// Match route prefixes ignoring ASCII case.
    #[serde(default)]
    pub case_insensitive_paths: bool,
    /// Longest raw request path accepted (bytes); longer gets 414. Default 8 KiB.
    #[serde(default)]
    pub max_path_bytes: Option<usize>,
    /// Most `/`-separated path segments accepted; more gets 414. Default 256.
    #[serde(default)]
    pub max_path_segments: Option<usize>,
    /// How often the config file is checked for changes (SIGHUP always reloads); `0s` disables.
    #[serde(default)]
    pub watch_interval: Option<String>,
    /// Where pingora hands listening sockets to a new process during a zero-downtime upgrade.
    #[serde(default)]
    pub upgrade_sock: Option<String>,
    /// PID file (needed for the upgrade procedure under systemd).
    #[serde(default)]
    pub pid_file: Option<String>,
    /// Logging.
    #[serde(default)]
    pub log: LogSpec,
    /// Where state lives (SQLite store, decision-log spool, generated keys); default `/var/lib/portcullis`.
    #[serde(default)]
    pub data_dir: Option<String>,
}

impl Default for ServerSpec {
    fn default() -> Self {
        Self {
            https: default_https(),
            http: None,
            admin: AdminSpec::default(),
            ext_authz: None,
            threads: None,
            trusted_proxies: Vec::new(),
            grace_period: None,
            shutdown_timeout: None,
            path_params: None,
            case_insensitive_paths: false,
            max_path_bytes: None,
            max_path_segments: None,
            watch_interval: None,
            upgrade_sock: None,
            pid_file: None,
            log: LogSpec::default(),
            data_dir: None,
        }
    }
}

fn default_https() -> Option<HttpsSpec> {
    Some(HttpsSpec {
        listen: default_https_listen(),
        cert: None,
        key: None,
        certificates: Vec::new(),
        http2: true,
        client_auth: None,
    })
}

fn default_https_listen() -> String {
    "0.0.0.0:8443".to_string()
}

fn yes() -> bool {
    true
}

/// `server.https`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpsSpec {
    /// Socket address.
    #[serde(default = "default_https_listen")]
    pub listen: String,
    /// PEM certificate chain of the default certificate.
    #[serde(default)]
    pub cert: Option<String>,
    /// PEM private key of the default certificate.
    #[serde(default)]
    pub key: Option<String>,
    /// More certificates, chosen by SNI from the names in each certificate.
    #[serde(default)]
    pub certificates: Vec<CertSpec>,
    /// Offer HTTP/2 by ALPN.
    #[serde(default = "yes")]
    pub http2: bool,
    /// Ask for client certificates (mTLS) issued by these CAs: device facts for policies.
    #[serde(default)]
    pub client_auth: Option<ClientAuthSpec>,
}

/// `server.https.client_auth`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientAuthSpec {
    /// Named CAs; a verified certificate's issuer name becomes `device.client_cert_ca`.
    pub cas: Vec<ClientCaSpec>,
    /// Refuse the TLS handshake without a valid client certificate (default: optional).
    #[serde(default)]
    pub required: bool,
}

/// One client-certificate CA.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCaSpec {
    /// Name used in `device: { cas: [...] }` conditions.
    pub name: String,
    /// PEM file of the CA certificate(s).
    pub file: String,
}

/// One certificate and its key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertSpec {
    /// PEM certificate chain.
    pub cert: String,
    /// PEM private key.
    pub key: String,
}

/// `server.http`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSpec {
    /// Socket address.
    pub listen: String,
    /// Answer every request with a redirect to the HTTPS listener.
    #[serde(default)]
    pub redirect_to_https: bool,
}

/// `server.ext_authz`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtAuthzSpec {
    /// Socket address of the gRPC (h2c) listener; keep it on loopback or a private network.
    pub listen: String,
}

/// `server.admin`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSpec {
    /// Socket address; keep it on loopback or a private network.
    #[serde(default = "default_admin_listen")]
    pub listen: String,
    /// A bearer token `/metrics` requires (`Authorization: Bearer …`); probes never need it.
    /// For an admin listener on a pod or private network address (Kubernetes probes).
    #[serde(default)]
    pub metrics_token: Option<String>,
}

impl Default for AdminSpec {
    fn default() -> Self {
        Self {
            listen: default_admin_listen(),
            metrics_token: None,
        }
    }
}

fn default_admin_listen() -> String {
    "127.0.0.1:9090".to_string()
}

/// `server.log`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSpec {
    /// `text` (default) or `json`.
    #[serde(default)]
    pub format: Option<String>,
    /// A `tracing` filter such as `info` or `portcullis=debug,info`.
    #[serde(default)]
    pub level: Option<String>,
    /// One line per request on target `access` (default on).
    #[serde(default = "yes")]
    pub access_log: bool,
}

impl Default for LogSpec {
    fn default() -> Self {
        Self {
            format: None,
            level: None,
            access_log: true,
        }
    }
}

/// One or several values.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// A single value.
    One(String),
    /// A list of values.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The values as a list.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// `routes[]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// Unique name, used in metrics, logs and as the assertion audience.
    pub id: String,
    /// Exact host or `*.domain`; absent matches any host.
    #[serde(default)]
    pub host: Option<String>,
    /// Path prefix on a segment boundary.
    #[serde(default = "default_path")]
    pub path: String,
    /// `http://` or `https://` endpoints, used round robin.
    pub upstream: OneOrMany,
    /// `public`, `authenticated`, a named policy, or `{allow, deny}` rules.
    pub policy: PolicySpec,

    /// Per-route timeouts.
    #[serde(default)]
    pub timeouts: TimeoutSpec,
    /// TLS towards `https://` upstreams.
    #[serde(default)]
    pub upstream_tls: UpstreamTlsSpec,
    /// Send the client's Host header upstream (default) instead of the upstream's authority.
    #[serde(default = "yes")]
    pub preserve_host: bool,
    /// Which `identity_providers[].id` signs users in on this route (default: the only one,
    /// or a chooser page when there are several).
    #[serde(default)]
    pub identity_provider: Option<String>,
    /// `aud` of the upstream assertion (default: the route id).
    #[serde(default)]
    pub assertion_audience: Option<String>,
    /// Send the identity headers and the assertion upstream. Default: on for routes that need
    /// a signed-in user, off on `public` routes (a public app should not receive — and log —
    /// who happens to be signed in); `true` opts a public route in.
    #[serde(default)]
    pub identity_headers: Option<bool>,
    /// Legacy-app adapter: identity under other names, Basic credentials, path prefixes,
    /// header operations ([`crate::adapter`]).
    #[serde(default)]
    pub adapter: Option<crate::adapter::AdapterSpec>,
}

fn default_path() -> String {
    "/".to_string()
}

/// `routes[].timeouts`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutSpec {
    /// TCP (+TLS) connect timeout, e.g. `2s`.
    #[serde(default)]
    pub connect: Option<String>,
    /// Time to wait for each read from the upstream, e.g. `60s`.
    #[serde(default)]
    pub read: Option<String>,
}

/// `routes[].upstream_tls`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsSpec {
    /// PEM bundle of CAs that sign the upstream's certificate (default: system roots).
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Server name to send and verify (default: the upstream URL's host).
    #[serde(default)]
    pub sni: Option<String>,
    /// Skips certificate verification. Named to stand out in reviews; logged at start.
    #[serde(default)]
    pub dangerous_skip_verify: bool,
}
