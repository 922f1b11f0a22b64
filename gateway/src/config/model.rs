//! The validated runtime model. Conversion from the schema checks everything it can and reports
//! every problem at once, each with the key path it belongs to.

use super::schema::{self, ConfigFile, RouteSpec};
use crate::geoip::GeoIp;
use crate::tenant::TenantRule;
use crate::tls::{self, CertBundle};
use ipnet::IpNet;
use portcullis_policy::compile::{CompileOptions, CompiledPolicy, Compiler, Library};
use portcullis_policy::path::{ParamRule, PathLimits};
use portcullis_policy::routing::{RouteKeyError, RouteTable};
use portcullis_policy::spec::LibrarySpec;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

pub use super::problems::{duration, Problem, Problems};

/// Shortest `server.admin.metrics_token` accepted (a guessable token protects nothing).
const MIN_METRICS_TOKEN: usize = 16;

/// The whole validated config.
#[derive(Debug)]
pub struct Config {
    /// Listener and process settings.
    pub server: Server,
    /// Routes in file order; the index in this list is the route's key in the lookup table.
    pub routes: Vec<Route>,
    /// Index from host and path to a position in `routes`.
    pub table: RouteTable,
    /// Session settings.
    pub session: super::auth_model::SessionConfig,
    /// OpenID Connect identity providers.
    pub identity_providers: Vec<super::auth_model::IdpConfig>,
    /// Local-account providers (`type: local`).
    pub local_providers: Vec<super::auth_model::LocalIdpConfig>,
    /// LDAP / Active Directory providers (`type: ldap`).
    pub ldap_providers: Vec<crate::ldap::config::LdapConfig>,
    /// Home-realm discovery: email domain (lower case) → provider id (`login.domains`).
    pub login_domains: std::collections::BTreeMap<String, String>,
    /// SAML 2.0 providers (`type: saml`).
    pub saml_providers: Vec<crate::saml::config::SamlConfig>,
    /// Upstream assertion settings.
    pub assertion: super::auth_model::AssertionConfig,
    /// Shared database.
    pub store: crate::store::StoreUrl,
    /// Decision log, when configured.
    pub decision_log: Option<crate::decisionlog::config::DecisionLogConfig>,
    /// Audit log, when configured.
    pub audit: Option<crate::audit::config::AuditConfig>,
    /// Roles, SoD rules and named policies shared by all routes.
    pub library: Arc<Library>,
    /// How the tenant a request addresses is found.
    pub tenants: Option<TenantRule>,
    /// GeoIP databases.
    pub geoip: Option<Arc<GeoIp>>,
    /// Second factors, when configured.
    pub mfa: Option<crate::mfa::config::MfaConfig>,
    /// Forward-auth, when configured.
    pub forward_auth: Option<crate::forward_auth::ForwardAuthConfig>,
    /// The directory, when configured.
    pub directory: Option<crate::directory::config::DirectoryConfig>,
    /// The admin console and its API, when configured.
    pub console: Option<crate::console::config::ConsoleConfig>,
}

/// Output format of the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Validated `server:`.
#[derive(Debug)]
pub struct Server {
    /// TLS listener, if any.
    pub https: Option<Https>,
    /// Plain listener, if any.
    pub http: Option<Http>,
    /// Admin listener.
    pub admin_listen: SocketAddr,
    /// The Envoy gRPC ext_authz listener (`server.ext_authz.listen`), when configured.
    pub ext_authz_listen: Option<SocketAddr>,
    /// SHA-256 of the bearer token `/metrics` requires (`server.admin.metrics_token`).
    pub metrics_token_sha256: Option<[u8; 32]>,
    /// Worker threads.
    pub threads: usize,
    /// Proxies whose forwarding headers are trusted.
    pub trusted_proxies: Vec<IpNet>,
    /// Drain time on SIGTERM.
    pub grace_period: Duration,
    /// Final shutdown wait.
    pub shutdown_timeout: Duration,
    /// Treatment of `;` in paths.
    pub path_params: ParamRule,
    /// Case-insensitive route prefixes.
    pub case_insensitive_paths: bool,
    /// Size bounds on request paths (`max_path_bytes`, `max_path_segments`), for proxied
    /// requests and forward-auth alike.
    pub path_limits: PathLimits,
    /// Config file polling interval (`None`: only SIGHUP).
    pub watch_interval: Option<Duration>,
    /// Upgrade socket path.
    pub upgrade_sock: String,
    /// PID file path.
    pub pid_file: String,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter.
    pub log_level: String,
    /// Access log on or off.
    pub access_log: bool,
    /// State directory.
    pub data_dir: std::path::PathBuf,
}

/// Validated `server.https`.
#[derive(Debug)]
pub struct Https {
    /// Listen address.
    pub listen: SocketAddr,
    /// Certificates; the first is the default when SNI matches none. Empty: self-signed.
    pub certs: Vec<Arc<CertBundle>>,
    /// ALPN h2.
    pub http2: bool,
    /// mTLS client certificate settings.
    pub client_auth: Option<ClientAuth>,
}

/// Validated `server.https.client_auth`.
#[derive(Debug, Clone)]
pub struct ClientAuth {
    /// Named CAs.
    pub cas: Vec<ClientCa>,
    /// Handshake fails without a valid client certificate.
    pub required: bool,
}

/// One named client-certificate CA.
#[derive(Debug, Clone)]
pub struct ClientCa {
    /// Name for `device.cas` conditions.
    pub name: String,
    /// DER certificates.
    pub ders: Vec<Vec<u8>>,
}

/// Validated `server.http`.
#[derive(Debug)]
pub struct Http {
    /// Listen address.
    pub listen: SocketAddr,
    /// Redirect everything to HTTPS.
    pub redirect_to_https: bool,
}

/// One upstream endpoint.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Resolved address.
    pub addr: SocketAddr,
    /// `host[:port]` as written, for the Host header when not preserving it.
    pub authority: String,
    /// Host part as written, the default SNI.
    pub host: String,
    /// TLS to the upstream.
    pub tls: bool,
}

/// Validated `routes[]`.
#[derive(Debug)]
pub struct Route {
    /// Unique id.
    pub id: String,
    /// Host pattern.
    pub host: Option<String>,
    /// Path prefix.
    pub path: String,
    /// Endpoints, round robin.
    pub endpoints: Vec<Endpoint>,
    /// Access requirement, compiled.
    pub policy: CompiledPolicy,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Per-read timeout.
    pub read_timeout: Duration,
    /// Extra CA certificates (DER) for TLS upstreams.
    pub upstream_ca: Option<Arc<Vec<Vec<u8>>>>,
    /// SNI override.
    pub upstream_sni: Option<String>,
    /// Verification disabled (dangerous).
    pub dangerous_skip_verify: bool,
    /// Keep the client's Host header.
    pub preserve_host: bool,
    /// Identity provider of this route, if pinned.
    pub identity_provider: Option<String>,
    /// Assertion audience (default the route id).
    pub assertion_audience: String,
    /// Whether the upstream is told who the user is (see `RouteSpec::identity_headers`).
    pub identity_headers: bool,
    /// Legacy-app adapter (`routes[].adapter`).
    pub adapter: Option<crate::adapter::Adapter>,
}

fn socket_addr(value: &str, path: &str, problems: &mut Problems) -> Option<SocketAddr> {
    match value.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            problems.add(
                path,
                format!("{value:?} is not a socket address like 0.0.0.0:8443"),
            );
            None
        }
    }
}

/// Converts the parsed file into the model, collecting every problem.
pub fn build(file: ConfigFile, problems: &mut Problems) -> Option<Config> {
    let data_dir = std::path::PathBuf::from(
        file.server
            .data_dir
            .clone()
            .unwrap_or_else(|| "/var/lib/portcullis".to_string()),
    );
    let store = crate::store::StoreUrl::build(file.store.as_deref(), &data_dir, problems);
    let decision_log = file
        .decision_log
        .and_then(|d| crate::decisionlog::config::build(d, &data_dir, problems));
    let audit = file
        .audit
        .and_then(|a| crate::audit::config::build(a, &data_dir, problems));
    let mfa = file
        .mfa
        .and_then(|m| crate::mfa::config::build(m, &data_dir, problems));
    let directory = file
        .directory
        .and_then(|d| crate::directory::config::build(d, problems));
    let forward_auth = file
        .forward_auth
        .and_then(|f| crate::forward_auth::build(f, &file.server.trusted_proxies, problems));
    let server = build_server(file.server, problems);
    let session = super::auth_model::build_session(file.session, problems);
    let idps = super::auth_model::build_idps(file.identity_providers, problems);
    let (identity_providers, local_providers, ldap_providers, saml_providers) =
        (idps.oidc, idps.local, idps.ldap, idps.saml);
    if directory.is_none() {
        for l in &local_providers {
            problems.add(
                format!("identity_providers[{}].type", l.index),
                "local accounts live in the directory: add a directory: section",
            );
        }
    }
    let assertion = super::auth_model::build_assertion(file.assertion, problems);
    if directory.is_none() {
        for (i, idp) in identity_providers.iter().enumerate() {
            if idp.jit {
                problems.add(
                    format!("identity_providers[{i}].jit"),
                    "creates directory users: it needs a directory: section",
                );
            }
        }
    }
    let idp_ids: Vec<String> = identity_providers
        .iter()
        .map(|i| i.id.clone())
        .chain(local_providers.iter().map(|l| l.id.clone()))
        .chain(ldap_providers.iter().map(|l| l.id.clone()))
        .chain(saml_providers.iter().map(|s| s.id.clone()))
        .collect();
    if directory.is_none() {
        for l in ldap_providers.iter().filter(|l| l.jit) {
            problems.add(
                format!("identity_providers[{}].jit", l.index),
                "creates directory users: it needs a directory: section",
            );
        }
    }
    let login_domains = crate::realm::build(file.login, &idp_ids, problems);
    let case_insensitive = server.as_ref().is_some_and(|s| s.case_insensitive_paths);
    let mut roles = file.roles;
    if file.console.is_some() {
        roles
            .entry(crate::console::config::ADMIN_ROLE.to_string())
            .or_default();
    }
    let mut compiler = Compiler::with_options(
        &LibrarySpec {
            roles,
            sod: file.sod,
            policies: file.policies,
        },
        CompileOptions {
            case_insensitive_paths: case_insensitive,
        },
    );
    let mut table = RouteTable::new(case_insensitive);
    let mut routes = Vec::with_capacity(file.routes.len());
    let mut ids = std::collections::HashMap::new();
    for (i, spec) in file.routes.into_iter().enumerate() {
        let base = format!("routes[{i}]");
        match table.insert(spec.host.as_deref(), &spec.path, i) {
            Ok(()) => {}
            Err(RouteKeyError::Duplicate(prev)) => problems.add(
                format!("{base}.path"),
                format!("same host and path as routes[{prev}], so one of them could never match"),
            ),
            Err(RouteKeyError::BadHost) => problems.add(
                format!("{base}.host"),
                format!(
                    "{:?} is not a host name or *.domain pattern",
                    spec.host.as_deref().unwrap_or("")
                ),
            ),
            // Reported by build_route with the offending value.
            Err(RouteKeyError::PrefixNotAbsolute) => {}
        }
        if let Some(prev) = ids.insert(spec.id.clone(), i) {
            problems.add(
                format!("{base}.id"),
                format!("{:?} is already the id of routes[{prev}]", spec.id),
            );
        }
        if let Some(idp) = &spec.identity_provider {
            if !idp_ids.contains(idp) {
                problems.add(
                    format!("{base}.identity_provider"),
                    format!("{idp:?} is not the id of an identity_providers entry"),
                );
            }
        }
        if let Some(r) = build_route(spec, &base, &mut compiler, problems) {
            routes.push(r);
        }
    }
    let console = file.console.and_then(|c| {
        crate::console::config::build(
            c,
            &mut compiler,
            directory.is_some(),
            mfa.is_some(),
            problems,
        )
    });
    let library = match compiler.finish() {
        Ok(lib) => Some(lib),
        Err(policy_problems) => {
            for p in policy_problems.0 {
                problems.add(p.path, p.message);
            }
            None
        }
    };
    let tenants = file.tenants.and_then(|t| {
        TenantRule::parse(&t.from, t.pattern.as_deref(), t.header.as_deref())
            .map(|r| r.case_insensitive_paths(case_insensitive))
            .map_err(|(key, msg)| problems.add(format!("tenants.{key}"), msg))
            .ok()
    });
    let geoip = file.geoip.and_then(|g| {
        GeoIp::open(g.city.as_deref(), g.asn.as_deref())
            .map(Arc::new)
            .map_err(|(key, msg)| problems.add(format!("geoip.{key}"), msg))
            .ok()
    });
    let server = server?;
    if problems.0.is_empty() {
        Some(Config {
            server,
            routes,
            table,
            session,
            identity_providers,
            local_providers,
            ldap_providers,
            login_domains,
            saml_providers,
            assertion,
            store: store?,
            decision_log,
            audit,
            library: library?,
            tenants,
            geoip,
            mfa,
            forward_auth,
            directory,
            console,
        })
    } else {
        None
    }
}

fn build_server(s: schema::ServerSpec, problems: &mut Problems) -> Option<Server> {
    let https = s.https.map(|h| {
        let listen = socket_addr(&h.listen, "server.https.listen", problems);
        let mut certs = Vec::new();
        match (&h.cert, &h.key) {
            (Some(c), Some(k)) => load_cert(c, k, "server.https", &mut certs, problems),
            (None, None) => {
                if !h.certificates.is_empty() {
                    problems.add(
                        "server.https.cert",
                        "certificates[] needs a default cert and key",
                    );
                }
            }
            (Some(_), None) => problems.add("server.https.key", "cert is set but key is missing"),
            (None, Some(_)) => problems.add("server.https.cert", "key is set but cert is missing"),
        }
        for (i, c) in h.certificates.iter().enumerate() {
            let base = format!("server.https.certificates[{i}]");
            load_cert(&c.cert, &c.key, &base, &mut certs, problems);
        }
        let client_auth = h
            .client_auth
            .as_ref()
            .map(|ca| build_client_auth(ca, problems));
        (listen, certs, h.http2, client_auth)
    });
    let http = s.http.map(|h| {
        (
            socket_addr(&h.listen, "server.http.listen", problems),
            h.redirect_to_https,
        )
    });
    if https.is_none() && http.is_none() {
        problems.add(
            "server",
            "no listener: configure server.https or server.http",
        );
    }
    if matches!(&http, Some((_, true))) && https.is_none() {
        problems.add(
            "server.http.redirect_to_https",
            "redirect_to_https needs server.https",
        );
    }
    let admin_listen = socket_addr(&s.admin.listen, "server.admin.listen", problems);
    let metrics_token_sha256 = match s.admin.metrics_token.as_deref() {
        Some(t) if t.len() < MIN_METRICS_TOKEN => {
            problems.add(
                "server.admin.metrics_token",
                format!(
                    "too short: use at least {MIN_METRICS_TOKEN} characters (openssl rand -hex 32)"
                ),
            );
            None
        }
        Some(t) => Some(<sha2::Sha256 as sha2::Digest>::digest(t.as_bytes()).into()),
        None => None,
    };
    let threads = s.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    if threads == 0 || threads > 1024 {
        problems.add(
            "server.threads",
            format!("{threads} is not between 1 and 1024"),
        );
    }
    let mut trusted_proxies = Vec::new();
    for (i, p) in s.trusted_proxies.iter().enumerate() {
        match parse_cidr(p) {
            Some(n) => trusted_proxies.push(n),
            None => problems.add(
                format!("server.trusted_proxies[{i}]"),
                format!("{p:?} is not a CIDR like 10.0.0.0/8 or an IP address"),
            ),
        }
    }
    let ext_authz_listen = s.ext_authz.as_ref().and_then(|e| {
        if s.trusted_proxies.is_empty() {
            problems.add(
                "server.ext_authz",
                "needs server.trusted_proxies: the ext_authz listener answers only the proxies listed there",
            );
        }
        socket_addr(&e.listen, "server.ext_authz.listen", problems)
    });
    let path_params = match s.path_params.as_deref() {
        None | Some("reject") => ParamRule::Reject,
        Some("strip") => ParamRule::Strip,
        Some(other) => {
            problems.add(
                "server.path_params",
                format!("{other:?} is not one of reject, strip"),
            );
            ParamRule::Reject
        }
    };
    let path_limits = path_limits(s.max_path_bytes, s.max_path_segments, problems);
    let log_format = match s.log.format.as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            problems.add(
                "server.log.format",
                format!("{other:?} is not one of text, json"),
            );
            LogFormat::Text
        }
    };
    let log_level = s.log.level.unwrap_or_else(|| "info".to_string());
    if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
        problems.add(
            "server.log.level",
            format!("{log_level:?} is not a log filter"),
        );
    }
    let grace_period = duration(
        s.grace_period.as_deref(),
        Duration::from_secs(30),
        "server.grace_period",
        problems,
    );
    let shutdown_timeout = duration(
        s.shutdown_timeout.as_deref(),
        Duration::from_secs(5),
        "server.shutdown_timeout",
        problems,
    );
    let watch = duration(
        s.watch_interval.as_deref(),
        Duration::from_secs(2),
        "server.watch_interval",
        problems,
    );
    let (https_listen, certs, http2, client_auth) = match https {
        Some((l, c, h2, ca)) => (Some(l), c, h2, ca),
        None => (None, Vec::new(), false, None),
    };
    let https = match https_listen {
        Some(Some(listen)) => Some(Https {
            listen,
            certs,
            http2,
            client_auth,
        }),
        Some(None) => return None,
        None => None,
    };
    let http = match http {
        Some((Some(listen), redirect_to_https)) => Some(Http {
            listen,
            redirect_to_https,
        }),
        Some((None, _)) => return None,
        None => None,
    };
    Some(Server {
        https,
        http,
        admin_listen: admin_listen?,
        ext_authz_listen,
        metrics_token_sha256,
        threads,
        trusted_proxies,
        grace_period,
        shutdown_timeout,
        path_params,
        case_insensitive_paths: s.case_insensitive_paths,
        path_limits,
        watch_interval: (!watch.is_zero()).then_some(watch),
        upgrade_sock: s
            .upgrade_sock
            .unwrap_or_else(|| "/tmp/portcullis_upgrade.sock".to_string()),
        pid_file: s
            .pid_file
            .unwrap_or_else(|| "/tmp/portcullis.pid".to_string()),
        log_format,
        log_level,
        access_log: s.log.access_log,
        data_dir: std::path::PathBuf::from(
            s.data_dir
                .unwrap_or_else(|| "/var/lib/portcullis".to_string()),
        ),
    })
}

fn build_client_auth(spec: &schema::ClientAuthSpec, problems: &mut Problems) -> ClientAuth {
    let mut cas = Vec::new();
    let mut names = std::collections::HashSet::new();
    if spec.cas.is_empty() {
        problems.add("server.https.client_auth.cas", "needs at least one CA");
    }
    for (i, ca) in spec.cas.iter().enumerate() {
        let base = format!("server.https.client_auth.cas[{i}]");
        if !names.insert(ca.name.clone()) {
            problems.add(
                format!("{base}.name"),
                format!("{:?} is used twice", ca.name),
            );
        }
        match tls::load_ca_ders(&ca.file) {
            Ok(ders) => cas.push(ClientCa {
                name: ca.name.clone(),
                ders,
            }),
            Err(e) => problems.add(format!("{base}.file"), e.to_string()),
        }
    }
    ClientAuth {
        cas,
        required: spec.required,
    }
}

fn load_cert(
    cert: &str,
    key: &str,
    base: &str,
    out: &mut Vec<Arc<CertBundle>>,
    problems: &mut Problems,
) {
    match tls::load_cert_bundle(cert, key) {
        Ok(b) => out.push(Arc::new(b)),
        Err(e) => problems.add(format!("{base}.{}", e.field()), e.to_string()),
    }
}

/// Parses `10.0.0.0/8`, `2001:db8::/32` or a bare address (as a single-host network).
pub fn parse_cidr(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

fn build_route(
    spec: RouteSpec,
    base: &str,
    compiler: &mut Compiler,
    problems: &mut Problems,
) -> Option<Route> {
    let before = problems.0.len();
    if spec.id.is_empty()
        || !spec
            .id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        problems.add(
            format!("{base}.id"),
            format!(
                "{:?} must be non-empty and use only letters, digits, '-', '_', '.'",
                spec.id
            ),
        );
    }
    if !spec.path.starts_with('/') {
        problems.add(
            format!("{base}.path"),
            format!("{:?} must start with '/'", spec.path),
        );
    } else if let Ok(n) = portcullis_policy::path::normalise(&spec.path, ParamRule::Reject) {
        if n.decoded() != spec.path {
            problems.add(
                format!("{base}.path"),
                format!(
                    "{:?} is not in normalised form (requests are matched as {:?})",
                    spec.path,
                    n.decoded()
                ),
            );
        }
    } else {
        problems.add(
            format!("{base}.path"),
            format!("{:?} is not a path a request could have", spec.path),
        );
    }
    let upstreams = spec.upstream.to_vec();
    if upstreams.is_empty() {
        problems.add(format!("{base}.upstream"), "needs at least one endpoint");
    }
    let mut endpoints = Vec::new();
    for (i, u) in upstreams.iter().enumerate() {
        let path = match &spec.upstream {
            schema::OneOrMany::One(_) => format!("{base}.upstream"),
            schema::OneOrMany::Many(_) => format!("{base}.upstream[{i}]"),
        };
        match parse_endpoint(u) {
            Ok(e) => endpoints.push(e),
            Err(msg) => problems.add(path, format!("{u:?} {msg}")),
        }
    }
    let policy = compiler.policy(&spec.policy, &format!("{base}.policy"));
    let connect_timeout = duration(
        spec.timeouts.connect.as_deref(),
        Duration::from_secs(5),
        &format!("{base}.timeouts.connect"),
        problems,
    );
    let read_timeout = duration(
        spec.timeouts.read.as_deref(),
        Duration::from_secs(60),
        &format!("{base}.timeouts.read"),
        problems,
    );
    let upstream_ca = spec
        .upstream_tls
        .ca_file
        .as_ref()
        .and_then(|f| match tls::load_ca_ders(f) {
            Ok(v) => Some(Arc::new(v)),
            Err(e) => {
                problems.add(format!("{base}.upstream_tls.ca_file"), e.to_string());
                None
            }
        });
    let adapter = spec
        .adapter
        .map(|a| crate::adapter::build(a, &format!("{base}.adapter"), problems));
    if problems.0.len() != before {
        return None;
    }
    let assertion_audience = spec.assertion_audience.unwrap_or_else(|| spec.id.clone());
    let identity_headers = spec.identity_headers.unwrap_or_else(|| !policy.is_public());
    Some(Route {
        adapter,
        identity_headers,
        identity_provider: spec.identity_provider,
        assertion_audience,
        id: spec.id,
        host: spec.host,
        path: spec.path,
        endpoints,
        policy,
        connect_timeout,
        read_timeout,
        upstream_ca,
        upstream_sni: spec.upstream_tls.sni,
        dangerous_skip_verify: spec.upstream_tls.dangerous_skip_verify,
        preserve_host: spec.preserve_host,
    })
}

thread_local! {
    /// Whether upstream host names are resolved while loading (see [`without_resolving`]).
    static RESOLVE_UPSTREAMS: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

/// Runs `load` (a config load on this thread) without resolving upstream host names: each
/// gets the unspecified address. Only for validating a config meant for another network
/// (`portcullis check --no-resolve`); a config loaded this way is never served.
pub fn without_resolving<T>(load: impl FnOnce() -> T) -> T {
    let before = RESOLVE_UPSTREAMS.with(|r| r.replace(false));
    let out = load();
    RESOLVE_UPSTREAMS.with(|r| r.set(before));
    out
}

fn parse_endpoint(u: &str) -> Result<Endpoint, String> {
    let url = url::Url::parse(u).map_err(|e| format!("is not a valid URL ({e})"))?;
    let tls = match url.scheme() {
        "http" => false,
        "https" => true,
        other => return Err(format!("has scheme {other:?}; use http or https")),
    };
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a path, query or fragment".to_string());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials".to_string());
    }
    let host = url
        .host_str()
        .ok_or_else(|| "has no host".to_string())?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = url
        .port_or_known_default()
        .ok_or_else(|| "has no port".to_string())?;
    let addr = if RESOLVE_UPSTREAMS.with(std::cell::Cell::get) {
        (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| format!("does not resolve ({e})"))?
            .next()
            .ok_or_else(|| "resolves to no address".to_string())?
    } else {
        SocketAddr::from(([0, 0, 0, 0], port))
    };
    let authority = match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or(&host)),
        None => url.host_str().unwrap_or(&host).to_string(),
    };
    Ok(Endpoint {
        addr,
        authority,
        host,
        tls,
    })
}

/// `server.max_path_bytes` / `server.max_path_segments`. Upper bounds exist because every
/// per-request path operation (route lookup, globs, tenant extraction) is paid on paths up to
/// these sizes, before authentication (issue 10, H4).
fn path_limits(
    max_bytes: Option<usize>,
    max_segments: Option<usize>,
    problems: &mut Problems,
) -> PathLimits {
    let mut limits = PathLimits::default();
    for (key, value, max, slot) in [
        (
            "server.max_path_bytes",
            max_bytes,
            65_536,
            &mut limits.max_bytes,
        ),
        (
            "server.max_path_segments",
            max_segments,
            4_096,
            &mut limits.max_segments,
        ),
    ] {
        match value {
            None => {}
            Some(v) if (1..=max).contains(&v) => *slot = v,
            Some(v) => problems.add(key, format!("{v} is not between 1 and {max}")),
        }
    }
    limits
}
