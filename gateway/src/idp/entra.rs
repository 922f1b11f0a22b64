//! Entra ID groups overage: when a user is in more groups than fit in a token, Entra sends
//! `_claim_names.groups` (or `hasgroups: true`) instead of the list. With `entra:` configured on
//! the provider, the gateway asks Microsoft Graph for the user's groups at sign-in and at every
//! refresh, with the user's own (delegated) access token:
//! `GET {graph_url}/v1.0/me/transitiveMemberOf/microsoft.graph.group?$select=id` (the group
//! object ids, as the `groups` claim carries them), following `@odata.nextLink`.
//!
//! Fail closed: a Graph error, a page over the size cap, too many pages, or a `nextLink` to
//! another origin (which would send the user's token elsewhere) refuses the sign-in. A partial
//! list is never used: a rule that *denies* a group must see every group.

use super::http::{read_capped, HttpClient, MAX_BODY};
use serde_json::{Map, Value};

/// Pages followed at most (999 groups each: about 50 000 groups).
pub const MAX_PAGES: usize = 50;

/// `entra:` on an OIDC provider, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntraConfig {
    /// Microsoft Graph's base URL (`https://graph.microsoft.com`; a national cloud's, or a
    /// local test server's).
    pub graph_url: url::Url,
}

/// Why the groups could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GraphError {
    /// Connection, status or body problem.
    #[error("Microsoft Graph: {0}")]
    Request(String),
    /// A `nextLink` leaves `graph_url`'s origin.
    #[error("Microsoft Graph nextLink leaves {0}")]
    Origin(String),
    /// More than [`MAX_PAGES`] pages.
    #[error("Microsoft Graph returned more than {MAX_PAGES} pages of groups")]
    TooManyPages,
}

/// The ids of every group the access token's user is in (transitively).
pub async fn groups(
    http: &HttpClient,
    cfg: &EntraConfig,
    access_token: &str,
) -> Result<Vec<String>, GraphError> {
    let base = cfg.graph_url.as_str().trim_end_matches('/');
    let mut next = Some(format!(
        "{base}/v1.0/me/transitiveMemberOf/microsoft.graph.group?$select=id&$top=999"
    ));
    let mut ids = Vec::new();
    for _ in 0..MAX_PAGES {
        let Some(url) = next.take() else {
            return Ok(ids);
        };
        let u = url::Url::parse(&url).map_err(|e| GraphError::Request(e.to_string()))?;
        if u.origin() != cfg.graph_url.origin() {
            return Err(GraphError::Origin(
                cfg.graph_url.origin().ascii_serialization(),
            ));
        }
        let resp = http
            .0
            .get(u)
            .bearer_auth(access_token)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| GraphError::Request(e.to_string()))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(GraphError::Request(format!("status {status}")));
        }
        let body = read_capped(resp, MAX_BODY)
            .await
            .map_err(|e| GraphError::Request(e.to_string()))?;
        let page: Value =
            serde_json::from_slice(&body).map_err(|e| GraphError::Request(e.to_string()))?;
        let values = page
            .get("value")
            .and_then(Value::as_array)
            .ok_or_else(|| GraphError::Request("no value array".into()))?;
        for g in values {
            let id = g
                .get("id")
                .and_then(Value::as_str)
                .ok_or_else(|| GraphError::Request("a group without an id".into()))?;
            ids.push(id.to_string());
        }
        next = page
            .get("@odata.nextLink")
            .and_then(Value::as_str)
            .map(str::to_string);
    }
    match next {
        None => Ok(ids),
        Some(_) => Err(GraphError::TooManyPages),
    }
}

/// Replaces the overage form in `claims` by the resolved list, so the identity is built as if
/// the token had carried it.
pub fn apply(claims: &mut Map<String, Value>, groups_claim: &str, ids: Vec<String>) {
    if let Some(Value::Object(names)) = claims.get_mut("_claim_names") {
        names.remove(groups_claim);
    }
    claims.remove("hasgroups");
    claims.insert(
        groups_claim.to_string(),
        Value::Array(ids.into_iter().map(Value::String).collect()),
    );
}

#[cfg(test)]
mod tests;
