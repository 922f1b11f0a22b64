//! Microsoft Graph (`entra_id`): an OAuth 2.0 client-credentials token from
//! `{login_url}/{tenant_id}/oauth2/v2.0/token` (scope `https://graph.microsoft.com/.default`),
//! then `/v1.0/users/delta` and `/v1.0/groups/delta` (`$select`, `@odata.nextLink` paging).
//! The first run is a full round; its `@odata.deltaLink`s are the cursor of the next, which
//! reads only changes: changed attributes, `@removed` users and groups, `members@delta` with
//! `@removed` members. A stored link Graph no longer accepts (410 Gone, `resyncRequired`)
//! starts a full round again.

use super::http::{Http, Pages};
use super::remote::{Fetched, Members, RemoteGroup, RemoteMember, RemoteUser};
use super::{bearer, SyncError};
use crate::directory::config::SyncConfig;
use crate::directory::model::MemberKind;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;

/// Attributes read for users.
const USER_SELECT: &str = "id,userPrincipalName,displayName,givenName,surname,mail,accountEnabled";

/// The Graph connector.
#[derive(Debug)]
pub struct Entra {
    token_url: url::Url,
    graph: url::Url,
    client_id: String,
    client_secret: String,
    http: Http,
}

/// The cursor: both delta links.
#[derive(Debug, Serialize, Deserialize)]
struct Cursor {
    users: String,
    groups: String,
}

/// One page of a delta listing.
#[derive(Debug, Deserialize)]
struct Page {
    #[serde(default)]
    value: Vec<Value>,
    #[serde(rename = "@odata.nextLink")]
    next: Option<String>,
    #[serde(rename = "@odata.deltaLink")]
    delta: Option<String>,
}

fn s(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_string)
}

fn removed(v: &Value) -> bool {
    v.get("@removed").is_some()
}

impl Entra {
    /// From validated config (the required keys are present).
    pub fn new(c: &SyncConfig, http: Http) -> Result<Self, SyncError> {
        let tenant = c.tenant_id.as_deref().unwrap_or_default();
        let mut token_url = c.login_url.clone();
        token_url
            .path_segments_mut()
            .map_err(|()| SyncError::Setup("login_url cannot be a base".into()))?
            .pop_if_empty()
            .extend([tenant, "oauth2", "v2.0", "token"]);
        Ok(Self {
            token_url,
            graph: c.graph_url.clone(),
            client_id: c.client_id.clone().unwrap_or_default(),
            client_secret: c.client_secret.clone().unwrap_or_default(),
            http,
        })
    }

    /// A client-credentials access token for Graph.
    async fn token(&self) -> Result<String, SyncError> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", &self.client_id)
            .append_pair("client_secret", &self.client_secret)
            .append_pair("scope", "https://graph.microsoft.com/.default")
            .append_pair("grant_type", "client_credentials")
            .finish();
        let a = self
            .http
            .ok("Entra ID token", || {
                Ok(self
                    .http
                    .client()
                    .post(self.token_url.clone())
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body.clone())
                    .build()?)
            })
            .await?;
        bearer(&a, "Entra ID token")
    }

    /// Reads users and groups: a delta round from `cursor`, or a full round without one (or
    /// when Graph says the cursor is no longer valid).
    pub async fn fetch(&self, cursor: Option<&str>) -> Result<Fetched, SyncError> {
        let token = self.token().await?;
        let cursor: Option<Cursor> = cursor.and_then(|c| serde_json::from_str(c).ok());
        if let Some(c) = &cursor {
            match self.round(&token, Some(c)).await {
                Err(SyncError::Status { status: 410, .. }) => {
                    tracing::warn!("Entra ID: the stored delta link expired; full round");
                }
                other => return other,
            }
        }
        self.round(&token, None).await
    }

    async fn round(&self, token: &str, cursor: Option<&Cursor>) -> Result<Fetched, SyncError> {
        let full = cursor.is_none();
        let mut out = Fetched {
            full,
            complete: true,
            ..Fetched::default()
        };
        let users_start = match cursor {
            Some(c) => c.users.clone(),
            None => {
                let mut u = self.endpoint("v1.0/users/delta")?;
                u.query_pairs_mut().append_pair("$select", USER_SELECT);
                u.to_string()
            }
        };
        let (pages, users_delta) = self.list(token, &users_start, "users", &mut out).await?;
        for v in pages {
            let Some(id) = s(&v, "id") else { continue };
            if removed(&v) {
                out.removed_users.push(id);
                continue;
            }
            let email = s(&v, "mail");
            out.users.push(RemoteUser {
                id,
                user_name: s(&v, "userPrincipalName"),
                display_name: s(&v, "displayName"),
                given_name: s(&v, "givenName"),
                family_name: s(&v, "surname"),
                emails: v.get("mail").map(|_| email.into_iter().collect()),
                active: v.get("accountEnabled").and_then(Value::as_bool),
            });
        }
        let groups_start = match cursor {
            Some(c) => c.groups.clone(),
            None => {
                let mut u = self.endpoint("v1.0/groups/delta")?;
                u.query_pairs_mut()
                    .append_pair("$select", "id,displayName,members");
                u.to_string()
            }
        };
        let (pages, groups_delta) = self.list(token, &groups_start, "groups", &mut out).await?;
        // A group may come in several pages, its members split between them.
        let mut groups: Vec<RemoteGroup> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for v in pages {
            let Some(id) = s(&v, "id") else { continue };
            if removed(&v) {
                out.removed_groups.push(id);
                continue;
            }
            let i = *index.entry(id.clone()).or_insert_with(|| {
                groups.push(RemoteGroup {
                    id,
                    display_name: None,
                    members: if full {
                        Members::Full(Vec::new())
                    } else {
                        Members::Delta {
                            added: Vec::new(),
                            removed: Vec::new(),
                        }
                    },
                });
                groups.len() - 1
            });
            let g = &mut groups[i];
            if let Some(n) = s(&v, "displayName") {
                g.display_name = Some(n);
            }
            for m in v
                .get("members@delta")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(mid) = s(m, "id") else { continue };
                let kind = match m.get("@odata.type").and_then(Value::as_str) {
                    Some("#microsoft.graph.user") => MemberKind::User,
                    Some("#microsoft.graph.group") => MemberKind::Group,
                    _ => continue,
                };
                match &mut g.members {
                    Members::Full(all) if !removed(m) => all.push(RemoteMember { id: mid, kind }),
                    Members::Full(_) => {}
                    Members::Delta {
                        added,
                        removed: gone,
                    } => {
                        if removed(m) {
                            gone.push(mid);
                        } else {
                            added.push(RemoteMember { id: mid, kind });
                        }
                    }
                }
            }
        }
        out.groups = groups;
        if let (true, Some(users), Some(groups)) = (out.complete, users_delta, groups_delta) {
            out.cursor = serde_json::to_string(&Cursor { users, groups }).ok();
        }
        Ok(out)
    }

    fn endpoint(&self, path: &str) -> Result<url::Url, SyncError> {
        let mut u = self.graph.clone();
        u.path_segments_mut()
            .map_err(|()| SyncError::Setup("graph_url cannot be a base".into()))?
            .pop_if_empty()
            .extend(path.split('/'));
        Ok(u)
    }

    /// Every page from `start` on, following `@odata.nextLink`; returns the objects and the
    /// final `@odata.deltaLink`. A page that fails marks `out` incomplete and ends the
    /// listing with the objects of the pages read; a 410 on the first page is returned (the
    /// cursor expired).
    async fn list(
        &self,
        token: &str,
        start: &str,
        what: &str,
        out: &mut Fetched,
    ) -> Result<(Vec<Value>, Option<String>), SyncError> {
        let mut guard = Pages::links(&self.graph);
        // The stored cursor is ours, but it too must point at the configured Graph.
        if let Err(e) = guard.next(start) {
            out.fail(what, &e);
            return Ok((Vec::new(), None));
        }
        let mut next = start.to_string();
        let mut objects = Vec::new();
        let mut first = true;
        loop {
            let label = format!("Graph {what} page");
            let page = async {
                let a = self
                    .http
                    .ok(&label, || {
                        Ok(self
                            .http
                            .client()
                            .get(next.as_str())
                            .bearer_auth(token)
                            .build()?)
                    })
                    .await?;
                a.json::<Page>(&label)
            }
            .await;
            let page = match page {
                Ok(p) => p,
                Err(e @ SyncError::Status { status: 410, .. }) if first => return Err(e),
                Err(e) => {
                    out.fail(what, &e);
                    return Ok((objects, None));
                }
            };
            first = false;
            objects.extend(page.value);
            match (page.next, page.delta) {
                (Some(n), _) => {
                    if let Err(e) = guard.next(&n) {
                        out.fail(what, &e);
                        return Ok((objects, None));
                    }
                    next = n;
                }
                (None, Some(d)) => {
                    if let Err(e) = Pages::links(&self.graph).next(&d) {
                        out.fail(&format!("{what} delta link"), &e);
                        return Ok((objects, None));
                    }
                    return Ok((objects, Some(d)));
                }
                (None, None) => {
                    out.fail(what, &"last page has no @odata.deltaLink");
                    return Ok((objects, None));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_the_tenant_and_base_paths() {
        let mut p = crate::config::problems::Problems::default();
        let spec: crate::directory::config::DirectorySpec = serde_yaml::from_str(
            "sync: [ { id: e, type: entra_id, tenant_id: contoso-tenant.onmicrosoft.com, client_id: C, client_secret: S, graph_url: \"https://graph.example.com/proxy\" } ]",
        )
        .unwrap();
        let c = crate::directory::config::build(spec, &mut p).unwrap();
        let e = Entra::new(&c.sync[0], Http::new(Default::default()).unwrap()).unwrap();
        assert_eq!(
            e.token_url.as_str(),
            "https://login.microsoftonline.com/contoso-tenant.onmicrosoft.com/oauth2/v2.0/token"
        );
        assert_eq!(
            e.endpoint("v1.0/users/delta").unwrap().as_str(),
            "https://graph.example.com/proxy/v1.0/users/delta"
        );
    }
}
