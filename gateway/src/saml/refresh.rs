//! IdP metadata from a URL (`idp_metadata_url`): fetched at start and every
//! `idp_metadata_refresh` with the providers' HTTP client (no redirects, 10 s timeout, body
//! bounded by [`super::xml::MAX_XML`]), checked like a file (a signing certificate is required)
//! and, with `idp_metadata_signing_cert`, only accepted when signed by it. A failed fetch keeps
//! the last good metadata (logged); until a first success, sign-ins at that provider answer
//! "provider unavailable" rather than trusting anything.

use super::config::MetadataSource;
use super::metadata::{self, IdpMetadata};
use super::{SamlError, Sp};
use crate::idp::http::{read_capped, HttpClient};
use std::sync::Arc;
use std::time::Duration;

/// After a failure, the next attempt comes this soon (or at the refresh interval if sooner).
const RETRY: Duration = Duration::from_secs(30);

/// Fetches and checks the metadata of `url`.
pub async fn fetch(
    http: &HttpClient,
    url: &url::Url,
    signing_cert: Option<&[u8]>,
) -> Result<IdpMetadata, SamlError> {
    let resp = http
        .0
        .get(url.clone())
        .send()
        .await
        .map_err(|e| SamlError::Unavailable(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(SamlError::Unavailable(format!("HTTP {}", resp.status())));
    }
    let body = read_capped(resp, super::xml::MAX_XML)
        .await
        .map_err(|e| SamlError::Unavailable(e.to_string()))?;
    let text =
        String::from_utf8(body).map_err(|_| SamlError::Metadata("metadata is not UTF-8".into()))?;
    metadata::parse_idp(&text, signing_cert)
}

/// Keeps the metadata of every URL-sourced provider fresh until shutdown.
pub struct Refresher {
    /// The providers (those with a file source are skipped).
    pub sps: Vec<Arc<Sp>>,
    /// The HTTP client.
    pub http: HttpClient,
}

impl Refresher {
    /// One provider's loop.
    async fn run_one(&self, sp: &Sp) {
        let MetadataSource::Url {
            url,
            signing_cert,
            refresh,
        } = &sp.cfg.metadata
        else {
            return;
        };
        loop {
            let wait = match fetch(&self.http, url, signing_cert.as_deref()).await {
                Ok(m) => {
                    let changed = sp.idp().ok().is_none_or(|old| *old != m);
                    if changed {
                        tracing::info!(idp = %sp.cfg.id, entity = %m.entity_id, keys = m.signing_certs.len(), "SAML IdP metadata loaded");
                    }
                    sp.set_idp(m);
                    *refresh
                }
                Err(e) => {
                    tracing::warn!(idp = %sp.cfg.id, url = %url, error = %e, "SAML IdP metadata refresh failed (keeping the last good one)");
                    (*refresh).min(RETRY)
                }
            };
            tokio::time::sleep(wait).await;
        }
    }
}

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for Refresher {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        let all = futures_util::future::join_all(self.sps.iter().map(|sp| self.run_one(sp)));
        tokio::select! {
            _ = all => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// The refresher, when a provider takes its metadata from a URL.
pub fn service(sps: &[Arc<Sp>]) -> Option<Refresher> {
    let sps: Vec<Arc<Sp>> = sps
        .iter()
        .filter(|s| matches!(s.cfg.metadata, MetadataSource::Url { .. }))
        .cloned()
        .collect();
    if sps.is_empty() {
        return None;
    }
    Some(Refresher {
        sps,
        http: HttpClient::new()?,
    })
}
