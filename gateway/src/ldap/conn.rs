//! Connections to the directory: how to open one (TLS with rustls on ring, the configured CA,
//! connect timeout), and a small pool of connections bound as the service account.
//!
//! The pool only ever holds connections bound as the service account. A user's password is
//! checked on a connection of its own, opened for that one bind and closed after it, so a
//! service connection is never left bound as a user (whose rights could then leak into the
//! next search) and a user's bind never waits behind searches.

use super::config::{LdapConfig, Transport};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, SemaphorePermit};

/// Why the directory could not be used (every one fails the sign-in closed).
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// TCP, TLS or the StartTLS upgrade failed, or the connection dropped.
    #[error("cannot reach the directory: {0}")]
    Unreachable(String),
    /// An operation did not finish within `timeout`.
    #[error("the directory did not answer in time")]
    Timeout,
    /// The service account's bind was refused (wrong `bind_dn`/`bind_password`).
    #[error("the service account's bind was refused: {0}")]
    ServiceBind(String),
    /// A search failed.
    #[error("search failed: {0}")]
    Search(String),
    /// The TLS settings could not be built.
    #[error("TLS settings: {0}")]
    Tls(String),
}

impl From<ldap3::LdapError> for DirectoryError {
    fn from(e: ldap3::LdapError) -> Self {
        match e {
            ldap3::LdapError::Timeout { .. } => Self::Timeout,
            other => Self::Unreachable(other.to_string()),
        }
    }
}

/// Opens connections to one directory.
pub struct Connector {
    url: String,
    settings: LdapConnSettings,
    /// Timeout of each operation.
    pub timeout: Duration,
}

/// The rustls client config: ring, TLS 1.2+, the `ca_file` roots (or the system's).
fn tls_config(ca_pem: Option<&[u8]>) -> Result<Arc<rustls::ClientConfig>, DirectoryError> {
    let tls = |e: &dyn std::fmt::Display| DirectoryError::Tls(e.to_string());
    let mut roots = rustls::RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            for c in rustls_pemfile::certs(&mut &pem[..]) {
                roots.add(c.map_err(|e| tls(&e))?).map_err(|e| tls(&e))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for c in native.certs {
                // A system store may hold certificates rustls cannot use: skip those.
                let _ = roots.add(c);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(&e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

impl Connector {
    /// For `cfg`'s server.
    pub fn new(cfg: &LdapConfig) -> Result<Self, DirectoryError> {
        let mut settings = LdapConnSettings::new().set_conn_timeout(cfg.connect_timeout);
        if cfg.transport != Transport::Insecure {
            settings = settings
                .set_config(tls_config(cfg.ca_pem.as_deref())?)
                .set_starttls(cfg.transport == Transport::StartTls);
        }
        Ok(Self {
            url: cfg.url.clone(),
            settings,
            timeout: cfg.timeout,
        })
    }

    /// A new connection (TLS established, nothing bound). Its driver runs on the runtime
    /// and ends when the last handle is dropped.
    pub async fn open(&self) -> Result<Ldap, DirectoryError> {
        let (conn, ldap) = LdapConnAsync::with_settings(self.settings.clone(), &self.url).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!(error = %e, "ldap connection ended");
            }
        });
        Ok(ldap)
    }
}

/// Service-account connections, at most `size` in use at once.
pub struct Pool {
    connector: Arc<Connector>,
    bind_dn: String,
    bind_password: String,
    idle: Mutex<Vec<Ldap>>,
    permits: Semaphore,
}

/// A connection taken from the pool; it goes back only when [`Pooled::release`] says the
/// operations on it went well (a connection in an unknown state is dropped, i.e. closed).
pub struct Pooled<'a> {
    /// The connection.
    pub ldap: Ldap,
    pool: &'a Pool,
    _permit: SemaphorePermit<'a>,
}

impl Pooled<'_> {
    /// Gives the connection back for reuse.
    pub fn release(self) {
        if let Ok(mut idle) = self.pool.idle.lock() {
            idle.push(self.ldap);
        }
    }
}

impl Pool {
    /// A pool of `size` connections bound as `bind_dn`.
    pub fn new(connector: Arc<Connector>, cfg: &LdapConfig) -> Self {
        Self {
            connector,
            bind_dn: cfg.bind_dn.clone(),
            bind_password: cfg.bind_password.clone(),
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(cfg.pool_size),
        }
    }

    /// A connection bound as the service account: an idle one that is still open, else a new
    /// one. Waits at most the operation timeout for a free slot.
    pub async fn get(&self) -> Result<Pooled<'_>, DirectoryError> {
        let timeout = self.connector.timeout;
        let permit = tokio::time::timeout(timeout, self.permits.acquire())
            .await
            .map_err(|_| DirectoryError::Timeout)?
            .map_err(|_| DirectoryError::Unreachable("pool closed".into()))?;
        loop {
            let reused = self.idle.lock().ok().and_then(|mut v| v.pop());
            let Some(mut ldap) = reused else { break };
            if !ldap.is_closed() {
                return Ok(Pooled {
                    ldap,
                    pool: self,
                    _permit: permit,
                });
            }
        }
        let mut ldap = self.connector.open().await?;
        let bound = ldap
            .with_timeout(timeout)
            .simple_bind(&self.bind_dn, &self.bind_password)
            .await?;
        if bound.rc != 0 {
            return Err(DirectoryError::ServiceBind(format!(
                "result {} {}",
                bound.rc, bound.text
            )));
        }
        Ok(Pooled {
            ldap,
            pool: self,
            _permit: permit,
        })
    }
}
