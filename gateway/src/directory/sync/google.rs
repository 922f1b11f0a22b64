//! Google Workspace Admin SDK Directory API (`google_workspace`): a token from the
//! service-account JWT bearer grant ([`super::jwt`]), then `users.list`, `groups.list` and
//! `members.list` under `/admin/directory/v1` with `pageToken`/`nextPageToken`. Every run is a
//! full listing: a user absent from a complete one was removed upstream; `suspended: true`
//! deactivates. Groups are named by their email address (unique, what admins write in
//! policies).

use super::http::{token_pages, Http};
use super::jwt::{KeyFile, ServiceAccount};
use super::remote::{Fetched, Members, RemoteGroup, RemoteMember, RemoteUser};
use super::{bearer, SyncError};
use crate::directory::config::{endpoint_url, SyncConfig, GOOGLE_TOKEN_URL};
use crate::directory::model::MemberKind;
use serde_json::Value;

/// Users per page (the API's maximum).
const USERS_PAGE: &str = "500";
/// Groups and members per page (the API's maximum).
const GROUPS_PAGE: &str = "200";

/// The Google Workspace connector.
#[derive(Debug)]
pub struct Google {
    api: url::Url,
    token_url: url::Url,
    customer: String,
    admin: String,
    account: ServiceAccount,
    http: Http,
    clock: crate::clock::Clock,
}

fn s(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_string)
}

impl Google {
    /// From validated config: reads the key file; its `token_uri` (when `token_url` is not
    /// set) must pass the same https check as configured endpoints.
    pub fn new(c: &SyncConfig, http: Http, clock: crate::clock::Clock) -> Result<Self, SyncError> {
        let path = c.credentials_file.clone().unwrap_or_default();
        let text = std::fs::read_to_string(&path).map_err(|e| {
            SyncError::Credentials(format!("credentials_file {}: {e}", path.display()))
        })?;
        let key: KeyFile = serde_json::from_str(&text).map_err(|e| {
            SyncError::Credentials(format!(
                "credentials_file {}: not a service account key ({e})",
                path.display()
            ))
        })?;
        let token_url = match (&c.token_url, &key.token_uri) {
            (Some(u), _) => u.clone(),
            (None, Some(u)) => {
                let mut p = crate::config::problems::Problems::default();
                endpoint_url(u, "token_uri", &mut p).ok_or_else(|| {
                    SyncError::Credentials(format!(
                        "credentials_file {}: token_uri {}",
                        path.display(),
                        p.0.first()
                            .map(|x| x.message.as_str())
                            .unwrap_or("is invalid")
                    ))
                })?
            }
            (None, None) => {
                url::Url::parse(GOOGLE_TOKEN_URL).map_err(|e| SyncError::Setup(e.to_string()))?
            }
        };
        Ok(Self {
            api: c.api_url.clone(),
            token_url,
            customer: c.customer.clone().unwrap_or_else(|| "my_customer".into()),
            admin: c.admin_email.clone().unwrap_or_default(),
            account: ServiceAccount::new(&key)?,
            http,
            clock,
        })
    }

    async fn token(&self) -> Result<String, SyncError> {
        let assertion =
            self.account
                .assertion(&self.admin, self.token_url.as_str(), self.clock.unix())?;
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
            .append_pair("assertion", &assertion)
            .finish();
        let a = self
            .http
            .ok("Google token", || {
                Ok(self
                    .http
                    .client()
                    .post(self.token_url.clone())
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body.clone())
                    .build()?)
            })
            .await?;
        bearer(&a, "Google token")
    }

    fn url(&self, segments: &[&str]) -> Result<url::Url, SyncError> {
        let mut u = self.api.clone();
        {
            let mut p = u
                .path_segments_mut()
                .map_err(|()| SyncError::Setup("api_url cannot be a base".into()))?;
            p.pop_if_empty();
            p.extend(["admin", "directory", "v1"]);
            p.extend(segments);
        }
        Ok(u)
    }

    /// Every item under `field` of every page of `url` (with `query`); a failed page marks
    /// `out` incomplete and returns what was read.
    async fn list(
        &self,
        token: &str,
        url: url::Url,
        query: &[(&str, &str)],
        field: &str,
        out: &mut Fetched,
    ) -> Vec<Value> {
        let url = &url;
        let label = format!("Google {field} page");
        let label = label.as_str();
        token_pages(out, field, |page_token| async move {
            let mut u = url.clone();
            {
                let mut q = u.query_pairs_mut();
                for (k, v) in query {
                    q.append_pair(k, v);
                }
                if let Some(t) = &page_token {
                    q.append_pair("pageToken", t);
                }
            }
            let a = self
                .http
                .ok(label, || {
                    Ok(self
                        .http
                        .client()
                        .get(u.clone())
                        .bearer_auth(token)
                        .build()?)
                })
                .await?;
            let page: Value = a.json(label)?;
            let items = page.get(field).and_then(Value::as_array).cloned();
            Ok((items.unwrap_or_default(), s(&page, "nextPageToken")))
        })
        .await
    }

    /// A full listing of users, groups and their members.
    pub async fn fetch(&self) -> Result<Fetched, SyncError> {
        let token = self.token().await?;
        let mut out = Fetched {
            full: true,
            complete: true,
            ..Fetched::default()
        };
        let users = self
            .list(
                &token,
                self.url(&["users"])?,
                &[("customer", &self.customer), ("maxResults", USERS_PAGE)],
                "users",
                &mut out,
            )
            .await;
        for v in users {
            let Some(id) = s(&v, "id") else { continue };
            let primary = s(&v, "primaryEmail");
            let mut emails: Vec<String> = primary.iter().cloned().collect();
            for e in v
                .get("emails")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(a) = s(e, "address") {
                    if !emails.contains(&a) {
                        emails.push(a);
                    }
                }
            }
            let name = v.get("name").cloned().unwrap_or(Value::Null);
            out.users.push(RemoteUser {
                id,
                user_name: primary,
                display_name: s(&name, "fullName"),
                given_name: s(&name, "givenName"),
                family_name: s(&name, "familyName"),
                emails: Some(emails),
                active: Some(!v.get("suspended").and_then(Value::as_bool).unwrap_or(false)),
            });
        }
        let groups = self
            .list(
                &token,
                self.url(&["groups"])?,
                &[("customer", &self.customer), ("maxResults", GROUPS_PAGE)],
                "groups",
                &mut out,
            )
            .await;
        for g in groups {
            let Some(id) = s(&g, "id") else { continue };
            let members = self
                .list(
                    &token,
                    self.url(&["groups", &id, "members"])?,
                    &[("maxResults", GROUPS_PAGE)],
                    "members",
                    &mut out,
                )
                .await
                .iter()
                .filter_map(|m| {
                    let kind = match m.get("type").and_then(Value::as_str) {
                        Some("USER") => MemberKind::User,
                        Some("GROUP") => MemberKind::Group,
                        _ => return None,
                    };
                    Some(RemoteMember {
                        id: s(m, "id")?,
                        kind,
                    })
                })
                .collect();
            out.groups.push(RemoteGroup {
                display_name: s(&g, "email").or_else(|| s(&g, "name")),
                id,
                members: Members::Full(members),
            });
        }
        Ok(out)
    }
}
