//! Directory sync: `directory.sync[]` connectors read an upstream directory (Microsoft Graph,
//! Google Workspace, AWS IAM Identity Center) and bring the directory in line with it.
//!
//! One run ([`run_once`]): read the upstream ([`Connector::fetch`], paging, throttling and
//! partial failure in [`http`]), load what the directory holds for the connector, compute the
//! [`diff::Diff`] (a pure function: `--dry-run` prints it and stops), then apply it through the
//! directory [`Lifecycle`] — so a creation is audited as `directory.user_created` and a removal
//! upstream deprovisions (sessions end on every replica, `directory.user_deprovisioned`).
//! Synced users are linked by `(sync:<id>, upstream id)` and have source `sync:<id>`; synced
//! groups have source `sync:<id>` and the upstream id as externalId. Nothing else is touched.
//!
//! `portcullis directory sync` runs it once ([`cli`]); `run` runs it on a schedule
//! ([`schedule`]), one run at a time per connector across replicas.

pub mod apply;
pub mod aws;
pub mod cli;
pub mod diff;
pub mod entra;
pub mod google;
pub mod http;
pub mod jwt;
pub mod remote;
pub mod schedule;
pub mod state;

use crate::config::env::EnvLookup;
use crate::directory::config::{SyncConfig, SyncKind};
use crate::directory::store::DirectoryError;
use crate::directory::Lifecycle;
use diff::{Diff, Local};
use remote::Fetched;
use serde::Serialize;
use state::SyncState;
use thiserror::Error;

/// Why a sync run failed (a failed page is not an error: the run goes on, incomplete).
#[derive(Debug, Error)]
pub enum SyncError {
    /// The connector could not be set up (a URL, the HTTP client).
    #[error("setup: {0}")]
    Setup(String),
    /// Credentials are missing or unusable (key file, environment).
    #[error("credentials: {0}")]
    Credentials(String),
    /// Connection, TLS, timeout, or a body over the size limit.
    #[error("{0}")]
    Http(#[from] crate::idp::http::HttpError),
    /// The upstream answered with an error status.
    #[error("{what}: HTTP {status}")]
    Status {
        /// Which call.
        what: String,
        /// The status.
        status: u16,
    },
    /// Still throttled after every retry.
    #[error("{what}: still throttled after {attempts} attempts")]
    Throttled {
        /// Which call.
        what: String,
        /// Tries made.
        attempts: u32,
    },
    /// An answer is not what the API documents.
    #[error("{what}: unexpected answer ({error})")]
    Format {
        /// Which call.
        what: String,
        /// What was wrong.
        error: String,
    },
    /// The token endpoint's answer is unusable (not a bearer token).
    #[error("{0}")]
    Token(String),
    /// Paging went wrong: a link to another origin, a loop, too many pages.
    #[error("{0}")]
    Paging(String),
    /// The directory could not be read or written.
    #[error("directory: {0}")]
    Directory(#[from] DirectoryError),
}

impl From<reqwest::Error> for SyncError {
    fn from(e: reqwest::Error) -> Self {
        Self::Http(crate::idp::http::HttpError::Transport(e))
    }
}

/// The access token of an OAuth token response, which must be a bearer token: another type
/// (`pop`, `mac`, a missing one) would be used wrongly, so it is refused.
pub(crate) fn bearer(a: &http::Answer, what: &str) -> Result<String, SyncError> {
    #[derive(serde::Deserialize)]
    struct TokenResponse {
        access_token: Option<String>,
        token_type: Option<String>,
    }
    let t: TokenResponse = a.json(what)?;
    if !t
        .token_type
        .as_deref()
        .is_some_and(|v| v.eq_ignore_ascii_case("bearer"))
    {
        return Err(SyncError::Token(format!(
            "{what}: token_type {:?} is not Bearer: refused",
            t.token_type.unwrap_or_default()
        )));
    }
    match t.access_token {
        Some(tok) if !tok.is_empty() && tok.bytes().all(|b| b.is_ascii_graphic()) => Ok(tok),
        _ => Err(SyncError::Token(format!("{what}: no usable access_token"))),
    }
}

/// A configured connector, ready to read its upstream.
#[derive(Debug)]
pub enum Connector {
    /// Microsoft Graph.
    Entra(entra::Entra),
    /// Google Workspace.
    Google(Box<google::Google>),
    /// AWS IAM Identity Center.
    Aws(aws::Aws),
}

impl Connector {
    /// Builds the connector of `c` (reads the Google key file, the AWS environment).
    pub fn new(
        c: &SyncConfig,
        env: &dyn EnvLookup,
        clock: crate::clock::Clock,
    ) -> Result<Self, SyncError> {
        let http = http::Http::new(http::Retry::default())?;
        Ok(match c.kind {
            SyncKind::EntraId => Self::Entra(entra::Entra::new(c, http)?),
            SyncKind::GoogleWorkspace => {
                Self::Google(Box::new(google::Google::new(c, http, clock)?))
            }
            SyncKind::AwsIdentityCenter => Self::Aws(aws::Aws::new(c, http, env)?),
        })
    }

    /// Reads the upstream (from `cursor` where the API has deltas).
    pub async fn fetch(&self, cursor: Option<&str>) -> Result<Fetched, SyncError> {
        match self {
            Self::Entra(e) => e.fetch(cursor).await,
            Self::Google(g) => g.fetch().await,
            Self::Aws(a) => a.fetch().await,
        }
    }
}

/// How a run ended (the `outcome` label of `portcullis_directory_sync_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Complete listing, every change applied.
    Success,
    /// Some pages or changes failed: what could be applied was, nothing was removed.
    Partial,
    /// Nothing was read (token, setup) or the directory failed.
    Error,
    /// Another replica (or process) holds this connector's lock.
    Locked,
}

impl Outcome {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Partial => "partial",
            Self::Error => "error",
            Self::Locked => "locked",
        }
    }
}

/// What one run did.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The diff (applied unless `dry_run`).
    #[serde(flatten)]
    pub diff: Diff,
    /// Whether it was a dry run.
    pub dry_run: bool,
    /// Changes that failed to apply.
    pub errors: Vec<String>,
    /// How it ended.
    pub outcome: Outcome,
}

/// What the directory holds for connector `c`, for the users and groups `fetched` names.
async fn load_local(
    lifecycle: &Lifecycle,
    c: &SyncConfig,
    fetched: &Fetched,
) -> Result<Local, DirectoryError> {
    let source = format!("{}{}", crate::directory::signin::SYNC_LINK_PREFIX, c.id);
    let store = &lifecycle.store;
    let users: std::collections::HashMap<String, _> = store
        .users_linked_from(&source)
        .await?
        .into_iter()
        .collect();
    let groups = store
        .groups_with_source(&c.tenant, &source)
        .await?
        .into_iter()
        .filter_map(|g| g.external_id.clone().map(|e| (e, g)))
        .collect();
    let mut foreign_names = std::collections::HashSet::new();
    for r in fetched.users.iter().filter(|r| !users.contains_key(&r.id)) {
        let Some(name) = &r.user_name else { continue };
        if store.user_by_name(&c.tenant, name).await?.is_some() {
            foreign_names.insert(name.to_lowercase());
        }
    }
    Ok(Local {
        users,
        groups,
        foreign_names,
    })
}

/// One run of connector `c`: read, diff, and (unless `dry_run`) apply and save the cursor.
pub async fn run_once(
    c: &SyncConfig,
    connector: &Connector,
    lifecycle: &Lifecycle,
    state: &SyncState,
    dry_run: bool,
) -> Result<Report, SyncError> {
    let cursor = state.cursor(&c.id).await?;
    let fetched = connector.fetch(cursor.as_deref()).await?;
    let local = load_local(lifecycle, c, &fetched).await?;
    let diff = diff::guarded(&c.id, &fetched, &local, c.deletion_threshold);
    let complete = diff.complete;
    if dry_run {
        let outcome = if complete {
            Outcome::Success
        } else {
            Outcome::Partial
        };
        return Ok(Report {
            diff,
            dry_run,
            errors: Vec::new(),
            outcome,
        });
    }
    let errors = apply::apply(&diff, lifecycle, c, &local).await;
    let outcome = if complete && errors.is_empty() {
        state
            .save(
                &c.id,
                fetched.cursor.as_deref(),
                chrono::Utc::now().timestamp(),
            )
            .await?;
        Outcome::Success
    } else {
        Outcome::Partial
    };
    Ok(Report {
        diff,
        dry_run,
        errors,
        outcome,
    })
}

#[cfg(test)]
mod tests;
