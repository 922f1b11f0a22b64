//! Assembles the pingora server from a validated config: the proxy service with its HTTPS and
//! plain listeners, the admin service, and the reloader.

use crate::admin::{AdminApp, AdminListener};
use crate::config::model::ClientAuth;
use crate::config::{self, env::ProcessEnv, reload::Reloader, ConfigErrors};
use crate::logging;
use crate::proxy::Gateway;
use crate::routes::{Runtime, SharedRuntime};
use crate::tls::{self, CertSet, ClientCaIndex, ClientCertCallback, SniResolver};
use arc_swap::ArcSwap;
use pingora::listeners::tls::TlsSettings;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;
use pingora::services::background::background_service;
use std::sync::Arc;
use thiserror::Error;

/// Why the gateway could not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// The config file is invalid.
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    /// The self-signed fallback certificate could not be generated.
    #[error("cannot generate a self-signed certificate: {0}")]
    SelfSigned(String),
    /// Session store, providers or assertion keys could not be set up.
    #[error("single sign-on: {0}")]
    Sso(String),
    /// pingora refused the TLS settings.
    #[error("TLS listener: {0}")]
    Tls(String),
    /// Local accounts could not be set up (users_file, limiter).
    #[error("local accounts: {0}")]
    Local(String),
    /// The decision-log pipeline could not be set up (spool directory, sink settings).
    #[error("decision_log: {0}")]
    DecisionLog(#[from] crate::decisionlog::StartError),
    /// The shared database could not be opened or migrated (the message names it).
    #[error("{0}")]
    Store(String),
    /// The MFA store could not be checked.
    #[error("mfa: {0}")]
    Mfa(String),
    /// The audit log could not be set up (signing key, store).
    #[error("audit: {0}")]
    Audit(String),
    /// A listener's address cannot be bound (in use, not local, no permission).
    #[error("cannot listen: {0}")]
    Bind(String),
}

/// Binds (and releases) every listener address before the server starts, so that one that
/// cannot be bound stops the process with an error naming it. pingora binds inside its service
/// threads, where a failure left the process running, serving nothing, and `/readyz` saying
/// ready. Not done for `--upgrade`: the sockets then come from the running instance.
fn check_listeners(listeners: &[(&str, std::net::SocketAddr)]) -> Result<(), StartError> {
    let failures: Vec<String> = listeners
        .iter()
        .filter_map(|(key, addr)| {
            std::net::TcpListener::bind(addr)
                .err()
                .map(|e| format!("{key} {addr}: {e}"))
        })
        .collect();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(StartError::Bind(failures.join("; ")))
    }
}

/// Where the embedded quick-start config expects its upstream.
const DEMO_UPSTREAM: &str = "127.0.0.1:9000";

/// The `whoami` demo upstream, run in-process for the embedded config so that one command
/// shows the gateway working.
struct DemoUpstream;

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for DemoUpstream {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        let Ok(listen) = DEMO_UPSTREAM.parse() else {
            return;
        };
        let opts = crate::whoami::WhoamiOptions {
            listen,
            name: Some("whoami (embedded demo)".to_string()),
            tls: None,
        };
        tokio::select! {
            r = crate::whoami::serve(opts) => {
                if let Err(e) = r {
                    tracing::error!(error = %e, "demo upstream stopped");
                }
            }
            _ = shutdown.changed() => {}
        }
    }
}

/// Options from the command line.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Config file; `None` runs the embedded quick-start config with its demo upstream.
    pub config: Option<String>,
    /// Take over listening sockets from a running instance (zero-downtime upgrade).
    pub upgrade: bool,
    /// Detach into the background.
    pub daemon: bool,
}

/// Listener TLS settings; with `client_auth`, client certificates are verified against the
/// configured CAs and the issuing CA's name is attached to the connection for policies.
fn tls_settings(client_auth: Option<&ClientAuth>) -> Result<TlsSettings, StartError> {
    let tls_err = |e: pingora::BError| StartError::Tls(e.to_string());
    let Some(ca) = client_auth else {
        return TlsSettings::intermediate("", "").map_err(tls_err);
    };
    let named: Vec<(String, Vec<Vec<u8>>)> = ca
        .cas
        .iter()
        .map(|c| (c.name.clone(), c.ders.clone()))
        .collect();
    let index = ClientCaIndex::new(named.iter().map(|(n, d)| (n.as_str(), d.as_slice())))
        .map_err(StartError::Tls)?;
    let verifier = ClientCaIndex::verifier(&named, ca.required).map_err(StartError::Tls)?;
    let mut settings =
        TlsSettings::with_callbacks(Box::new(ClientCertCallback { index })).map_err(tls_err)?;
    settings.set_client_cert_verifier(verifier);
    tracing::info!(cas = ?named.iter().map(|(n, _)| n).collect::<Vec<_>>(), required = ca.required, "mTLS: client certificates requested");
    Ok(settings)
}

/// Starts the gateway and serves until shut down.
pub fn run(opts: RunOptions) -> Result<(), StartError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (cfg, text) = match &opts.config {
        Some(path) => config::load_file(path, &ProcessEnv)?,
        None => (
            config::load_str(
                config::EMBEDDED_EXAMPLE,
                "<embedded config.example.yaml>",
                &ProcessEnv,
            )?,
            config::EMBEDDED_EXAMPLE.to_string(),
        ),
    };
    logging::init(cfg.server.log_format, &cfg.server.log_level);
    if !opts.upgrade {
        let mut listeners = vec![("server.admin.listen", cfg.server.admin_listen)];
        if let Some(h) = &cfg.server.https {
            listeners.push(("server.https.listen", h.listen));
        }
        if let Some(h) = &cfg.server.http {
            listeners.push(("server.http.listen", h.listen));
        }
        if let Some(a) = cfg.server.ext_authz_listen {
            listeners.push(("server.ext_authz.listen", a));
        }
        check_listeners(&listeners)?;
    }

    let mut conf = ServerConf {
        threads: cfg.server.threads,
        grace_period_seconds: Some(cfg.server.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(cfg.server.shutdown_timeout.as_secs()),
        upgrade_sock: cfg.server.upgrade_sock.clone(),
        pid_file: cfg.server.pid_file.clone(),
        daemon: opts.daemon,
        ..ServerConf::default()
    };
    conf.max_retries = 8;
    let opt = Opt {
        upgrade: opts.upgrade,
        daemon: opts.daemon,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();

    for p in cfg
        .identity_providers
        .iter()
        .filter(|p| p.claims.trust_email_without_verified_claim)
    {
        tracing::warn!(idp = %p.id, "dangerous_trust_email_without_verified_claim is set: email rules trust addresses this provider did not mark verified");
    }
    for r in cfg.routes.iter().filter(|r| r.dangerous_skip_verify) {
        tracing::warn!(route = %r.id, "upstream_tls.dangerous_skip_verify is set: upstream certificates are NOT verified");
    }

    crate::metrics::init_series(&cfg);
    let resolver = match &cfg.server.https {
        Some(h) => {
            let set = if h.certs.is_empty() {
                let names: Vec<String> = cfg.routes.iter().filter_map(|r| r.host.clone()).collect();
                let bundle = tls::self_signed(&names).map_err(StartError::SelfSigned)?;
                tracing::warn!(names = ?bundle.names, "server.https has no cert/key: serving a self-signed certificate generated at start; browsers will warn");
                let bundles = [Arc::new(bundle)];
                tls::publish_expiry(&bundles);
                CertSet::new(&bundles)
            } else {
                tls::publish_expiry(&h.certs);
                CertSet::new(&h.certs)
            };
            set.map(|s| Arc::new(SniResolver::new(s)))
        }
        None => None,
    };
    let self_signed = cfg
        .server
        .https
        .as_ref()
        .is_some_and(|h| h.certs.is_empty());

    let https = cfg.server.https.as_ref().map(|h| (h.listen, h.http2));
    let client_auth = cfg
        .server
        .https
        .as_ref()
        .and_then(|h| h.client_auth.clone());
    let http = cfg.server.http.as_ref().map(|h| h.listen);
    let admin = cfg.server.admin_listen;
    let ext_authz_listen = cfg.server.ext_authz_listen;
    let watch_interval = cfg.server.watch_interval;
    let routes = cfg.routes.len();
    // The one database of the process, opened (and every feature's schema migrated) before
    // any feature uses it; only when a feature that keeps state is configured.
    let db = if cfg.audit.is_some() || cfg.mfa.is_some() || cfg.directory.is_some() {
        let features = [
            &crate::audit::store::MIGRATIONS,
            &crate::mfa::store::MIGRATIONS,
            &crate::directory::MIGRATIONS,
            &crate::local::credentials::MIGRATIONS,
            &crate::directory::sync::state::MIGRATIONS,
        ];
        Some(
            crate::store::Db::open_blocking(&cfg.store, &features)
                .map_err(|e| StartError::Store(format!("{e} ({})", cfg.store.redacted())))?,
        )
    } else {
        None
    };
    let (audit, audit_service) = match (&cfg.audit, &db) {
        (Some(a), Some(db)) => {
            let (audit, svc) = crate::audit::start(a, db, &cfg.store).map_err(StartError::Audit)?;
            (audit, Some(svc))
        }
        _ => (crate::audit::Audit::disabled(), None),
    };
    let (decision_log, sink_services) = match &cfg.decision_log {
        Some(d) => {
            let (log, services) = crate::decisionlog::start(d)?;
            (Some(Arc::new(log)), services)
        }
        None => (None, Vec::new()),
    };
    let runtime: SharedRuntime = Arc::new(ArcSwap::from_pointee(Runtime::new(cfg, &text)));
    let source = opts
        .config
        .as_deref()
        .unwrap_or("<embedded config.example.yaml>");
    audit.record(crate::audit::AuditEvent::ConfigLoaded {
        source: source.to_string(),
        sha256: runtime.load().config_hash.clone(),
        routes,
        at: "start",
    });

    // One clock for every expiry in this process (a debug build may offset it for tests).
    let clock = crate::clock::Clock::for_process();
    let directory = match (&runtime.load().config.directory, &db) {
        (Some(_), Some(db)) => Some(crate::directory::DirectoryStore::new(
            db.clone(),
            clock.clone(),
        )),
        _ => None,
    };
    let mut sso = crate::sso::Sso::new(&runtime.load().config, audit.clone(), clock.clone())
        .map_err(StartError::Sso)?;
    if let Some(d) = &directory {
        sso = sso.with_directory(d.clone());
    }
    // One attempt limiter for every password provider (local and LDAP), in Redis with sessions.
    let limiter = Arc::new(crate::local::limiter(sso.redis(), &clock));
    let mut password = Vec::new();
    if let (Some(store), Some(db)) = (&directory, &db) {
        password = local_accounts(&runtime.load().config, store, db, &limiter, &clock)?;
        if opts.config.is_none() && !runtime.load().config.local_providers.is_empty() {
            demo_account(store, db, &clock)?;
        }
    }
    password.extend(ldap_directories(&runtime.load().config, &limiter)?);
    sso = sso.with_password(password);
    let sso = Arc::new(sso);
    if sso.enabled() {
        let providers = sso.providers();
        let ids: Vec<&str> = providers.iter().map(|p| p.cfg.id.as_str()).collect();
        tracing::info!(providers = ?ids, "single sign-on enabled");
    }
    let mfa = match (&runtime.load().config.mfa, &db) {
        (Some(m), Some(db)) => Some(Arc::new(
            crate::mfa::flow::Service::check_and_new(
                with_key(m.clone())?,
                db.clone(),
                &runtime.load().config.store,
                sso.redis(),
                audit.clone(),
                clock.clone(),
            )
            .map_err(StartError::Mfa)?,
        )),
        _ => None,
    };
    // User writes and deprovisioning (SCIM, directory sync, the admin API) end sessions
    // through single sign-on and, when configured, MFA enrolments.
    let mfa_store = match (&runtime.load().config.mfa, &db) {
        (Some(_), Some(db)) => Some(crate::mfa::store::over(db)),
        _ => None,
    };
    let lifecycle = match (&runtime.load().config.directory, &directory) {
        (Some(d), Some(store)) => Some(crate::directory::Lifecycle {
            store: store.clone(),
            audit: audit.clone(),
            revoker: Some(sso.clone() as Arc<dyn crate::directory::SessionRevoker>),
            mfa: mfa_store.clone(),
            settings: d.deprovision,
        }),
        _ => None,
    };
    let sync_service = match (&runtime.load().config.directory, &lifecycle, &db) {
        (Some(d), Some(l), Some(db)) if !d.sync.is_empty() => {
            Some(sync_jobs(&d.sync, l, db, sso.redis(), &clock))
        }
        _ => None,
    };
    let scim = match (&runtime.load().config.directory, &lifecycle) {
        (Some(d), Some(lifecycle)) => d.scim.clone().map(|scim| {
            tracing::info!(
                tokens = scim.tokens.len(),
                "SCIM 2.0 at {}",
                crate::scim::service::PREFIX
            );
            Arc::new(crate::scim::service::ScimService::new(
                lifecycle.clone(),
                scim,
            ))
        }),
        _ => None,
    };
    let console = match (&lifecycle, &db) {
        (Some(lifecycle), Some(db)) if runtime.load().config.console.is_some() => {
            tracing::info!("admin API at {}", crate::console::api::PREFIX);
            Some(Arc::new(crate::console::api::Api {
                directory: lifecycle.store.clone(),
                lifecycle: lifecycle.clone(),
                sso: sso.clone(),
                mfa: mfa_store.clone(),
                credentials: crate::local::credentials::Credentials::new(db.clone()),
                audit: audit.clone(),
                clock: clock.clone(),
            }))
        }
        _ => None,
    };
    let readiness = Arc::new(crate::health::Readiness::default());
    let prober = crate::health::Prober {
        readiness: readiness.clone(),
        sso: sso.clone(),
        decision_log: decision_log.clone(),
        last_refused: Default::default(),
        db: db.clone(),
    };
    let gateway = Gateway {
        mfa,
        sso: sso.clone(),
        runtime: runtime.clone(),
        https_port: https.map(|(a, _)| a.port()),
        decision_log,
        audit: audit.clone(),
        scim,
        console,
    };
    let ext_authz = ext_authz_listen.map(|addr| crate::ext_authz::grpc::ExtAuthzListener {
        addr,
        gateway: Arc::new(gateway.clone()),
    });
    let mut proxy =
        pingora::proxy::http_proxy_service_with_name(&server.configuration, gateway, "portcullis");
    if let (Some((addr, h2)), Some(resolver)) = (https, &resolver) {
        let mut settings = tls_settings(client_auth.as_ref())?;
        settings.set_cert_resolver(resolver.clone());
        if h2 {
            settings.enable_h2();
        }
        proxy.add_tls_with_settings(&addr.to_string(), None, settings);
        tracing::info!(listen = %addr, http2 = h2, "HTTPS listener");
    }
    if let Some(addr) = http {
        proxy.add_tcp(&addr.to_string());
        tracing::info!(listen = %addr, "plain HTTP listener");
    }
    let admin_svc = AdminListener {
        addr: admin,
        app: Arc::new(AdminApp {
            runtime: runtime.clone(),
            readiness,
            audit: audit.clone(),
        }),
    };
    tracing::info!(listen = %admin, "admin listener (/metrics /healthz /readyz)");
    server.add_service(proxy);
    server.add_service(background_service("admin listener", admin_svc));
    if let Some(svc) = ext_authz {
        tracing::info!(listen = %svc.addr, "Envoy gRPC ext_authz listener (h2c)");
        server.add_service(background_service("ext_authz listener", svc));
    }
    for (name, svc) in sink_services {
        server.add_service(background_service(&name, svc));
    }
    server.add_service(background_service("readiness probes", prober));
    if let Some(svc) = audit_service {
        server.add_service(background_service("audit log", svc));
    }
    if let Some(svc) = sync_service {
        server.add_service(background_service("directory sync", svc));
    }
    if let Some(svc) = crate::saml::refresh::service(sso.saml_providers()) {
        server.add_service(background_service("SAML metadata refresh", svc));
    }
    match opts.config {
        Some(path) => {
            let reloader = Reloader {
                path,
                runtime,
                // A self-signed certificate is kept across reloads until real ones are configured.
                resolver: if self_signed { None } else { resolver },
                watch_interval,
                sso: Some(sso.clone()),
                last_rejected: Default::default(),
                audit,
            };
            server.add_service(background_service("config reload", reloader));
        }
        None => {
            tracing::info!("no --config: running the embedded quick-start config with the demo upstream on {DEMO_UPSTREAM}");
            server.add_service(background_service("demo upstream", DemoUpstream));
        }
    }
    server.run(pingora::server::RunArgs::default());
    tracing::info!("portcullis stopped");
    Ok(())
}

/// The scheduled directory sync connectors (fixed at start: a reload does not change them). A
/// connector that cannot be built (an unreadable key file, missing AWS credentials) is logged
/// and counted as failed at each run rather than stopping the gateway.
fn sync_jobs(
    syncs: &[crate::directory::config::SyncConfig],
    lifecycle: &crate::directory::Lifecycle,
    db: &crate::store::Db,
    redis: Option<Arc<crate::session::redis_store::RedisConn>>,
    clock: &crate::clock::Clock,
) -> crate::directory::sync::schedule::SyncService {
    use crate::directory::sync::{schedule, state::SyncState, Connector};
    let lock = schedule::Lock::new(redis);
    let jobs = syncs
        .iter()
        .map(|c| {
            let connector = Connector::new(c, &ProcessEnv, clock.clone()).map_err(|e| {
                tracing::error!(connector = %c.id, error = %e, "directory sync connector cannot be set up");
                e.to_string()
            });
            tracing::info!(connector = %c.id, interval = ?c.interval, "directory sync scheduled");
            Arc::new(schedule::Job {
                cfg: c.clone(),
                connector,
                lifecycle: lifecycle.clone(),
                state: SyncState::new(db.clone()),
                lock: lock.clone(),
            })
        })
        .collect();
    schedule::SyncService { jobs }
}

/// The local-account providers, after seeding `directory.users_file` (read and checked here:
/// every problem in the file is reported, and the gateway does not start with a bad one).
fn local_accounts(
    cfg: &crate::config::model::Config,
    store: &crate::directory::DirectoryStore,
    db: &crate::store::Db,
    limiter: &Arc<crate::mfa::limiter::Limiter>,
    clock: &crate::clock::Clock,
) -> Result<Vec<Arc<crate::password_signin::PasswordProvider>>, StartError> {
    let credentials = crate::local::credentials::Credentials::new(db.clone());
    if let Some(path) = cfg.directory.as_ref().and_then(|d| d.users_file.as_ref()) {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| StartError::Local(format!("directory.users_file {shown}: {e}")))?;
        let file = crate::local::seed::parse(&text, &shown).map_err(|p| {
            let lines: Vec<String> =
                p.0.iter()
                    .map(|x| format!("  {}: {}", x.path, x.message))
                    .collect();
            StartError::Local(format!(
                "directory.users_file {shown}:\n{}",
                lines.join("\n")
            ))
        })?;
        let n = crate::store::Db::block_on(crate::local::seed(
            store,
            &credentials,
            &file.users,
            &file.groups,
            clock.unix(),
        ))
        .map_err(|e| StartError::Local(e.to_string()))?
        .map_err(StartError::Local)?;
        tracing::info!(file = %shown, accounts = n, "local accounts seeded");
    }
    if cfg.local_providers.is_empty() {
        return Ok(Vec::new());
    }
    Ok(cfg
        .local_providers
        .iter()
        .map(|l| {
            let acc = crate::local::login::LocalAccounts::new(
                &l.id,
                Arc::new(store.clone()),
                credentials.clone(),
                limiter.clone(),
            );
            Arc::new(crate::password_signin::PasswordProvider::new(
                &l.id,
                false,
                crate::password_signin::Backend::Local(Arc::new(acc)),
                limiter.clone(),
            ))
        })
        .collect())
}

/// The LDAP providers (connections are opened at first sign-in, so a directory that is down
/// at start does not stop the gateway: its sign-ins fail closed until it is back).
fn ldap_directories(
    cfg: &crate::config::model::Config,
    limiter: &Arc<crate::mfa::limiter::Limiter>,
) -> Result<Vec<Arc<crate::password_signin::PasswordProvider>>, StartError> {
    cfg.ldap_providers
        .iter()
        .map(|l| {
            if l.transport == crate::ldap::config::Transport::Insecure {
                tracing::warn!(idp = %l.id, url = %l.url, "DANGER: allow_insecure: LDAP passwords cross the network in clear");
            }
            let dir = crate::ldap::Directory::new(l.clone())
                .map_err(|e| StartError::Local(format!("identity_providers[{}]: {e}", l.index)))?;
            Ok(Arc::new(crate::password_signin::PasswordProvider::new(
                &l.id,
                l.jit,
                crate::password_signin::Backend::Ldap(Arc::new(dir)),
                limiter.clone(),
            )))
        })
        .collect()
}

/// `mfa:` with its key: a configured one, or `<data_dir>/mfa.key`, created on first start.
fn with_key(
    mut m: crate::mfa::config::MfaConfig,
) -> Result<crate::mfa::config::MfaConfig, StartError> {
    if let (true, Some(path)) = (m.encryption_key.is_empty(), &m.generated_key) {
        m.encryption_key = crate::mfa::config::load_or_create_key(path).map_err(StartError::Mfa)?;
    }
    Ok(m)
}

/// The quick start's account (embedded config only): `demo` in group `admins`, with the
/// password from `PORTCULLIS_DEMO_PASSWORD` or a random one, printed once at start.
fn demo_account(
    store: &crate::directory::DirectoryStore,
    db: &crate::store::Db,
    clock: &crate::clock::Clock,
) -> Result<(), StartError> {
    let password = match std::env::var("PORTCULLIS_DEMO_PASSWORD") {
        Ok(p) if p.len() >= crate::password::MIN_PASSWORD => p,
        _ => crate::password::generate()
            .ok_or_else(|| StartError::Local("no system randomness".into()))?,
    };
    let hash = crate::password::hash(&password)
        .ok_or_else(|| StartError::Local("cannot hash the demo password".into()))?;
    let demo = crate::local::seed::SeedUser {
        user_name: "demo".into(),
        password_hash: hash,
        email: None,
        display_name: Some("Quick-start user".into()),
        groups: vec!["admins".into()],
        tenant: String::new(),
    };
    let credentials = crate::local::credentials::Credentials::new(db.clone());
    crate::store::Db::block_on(crate::local::seed(
        store,
        &credentials,
        &[demo],
        &[],
        clock.unix(),
    ))
    .map_err(|e| StartError::Local(e.to_string()))?
    .map_err(StartError::Local)?;
    tracing::warn!("quick start: sign in at https://localhost:8443/admin/ as demo / {password}");
    Ok(())
}
