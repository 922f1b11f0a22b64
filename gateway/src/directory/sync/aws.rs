//! AWS IAM Identity Center identity store (`aws_identity_center`): the JSON 1.1 protocol —
//! `POST /` with `X-Amz-Target: AWSIdentityStore.ListUsers`, `ListGroups`,
//! `ListGroupMemberships` and `NextToken` paging — signed with SigV4 (service
//! `identitystore`) by AWS's own `aws-sigv4` crate, with credentials from the standard
//! environment variables. Every run is a full listing (the API has no delta); a user absent
//! from a complete one was removed upstream.

use super::http::{token_pages, Http};
use super::remote::{Fetched, Members, RemoteGroup, RemoteMember, RemoteUser};
use super::SyncError;
use crate::config::env::EnvLookup;
use crate::directory::config::SyncConfig;
use crate::directory::model::MemberKind;
use serde_json::{json, Value};
use std::time::SystemTime;

/// SigV4 service name.
pub const SERVICE: &str = "identitystore";
/// Items per page (the API's maximum).
const PAGE: u64 = 100;

/// Credentials from the environment.
#[derive(Clone)]
pub struct Credentials {
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: String,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: String,
    /// `AWS_SESSION_TOKEN` (temporary credentials).
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// From `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and optional `AWS_SESSION_TOKEN`.
    pub fn from_env(env: &dyn EnvLookup) -> Result<Self, SyncError> {
        let get = |k: &str| env.var(k).filter(|v| !v.is_empty());
        match (get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY")) {
            (Some(access_key_id), Some(secret_access_key)) => Ok(Self {
                access_key_id,
                secret_access_key,
                session_token: get("AWS_SESSION_TOKEN"),
            }),
            _ => Err(SyncError::Credentials(
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set".into(),
            )),
        }
    }
}

/// SigV4 headers (`x-amz-date`, `authorization`, `x-amz-security-token`) for a POST of `body`
/// to `url` with `headers`, at `time`.
pub fn sign(
    creds: &Credentials,
    region: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    time: SystemTime,
) -> Result<Vec<(String, String)>, SyncError> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings};
    let identity = aws_credential_types::Credentials::new(
        &creds.access_key_id,
        &creds.secret_access_key,
        creds.session_token.clone(),
        None,
        "environment",
    )
    .into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SERVICE)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| SyncError::Setup(format!("SigV4: {e}")))?
        .into();
    let request = SignableRequest::new(
        "POST",
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| SyncError::Setup(format!("SigV4: {e}")))?;
    let (instructions, _) = aws_sigv4::http_request::sign(request, &params)
        .map_err(|e| SyncError::Setup(format!("SigV4: {e}")))?
        .into_parts();
    Ok(instructions
        .headers()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

/// The identity store connector.
#[derive(Debug)]
pub struct Aws {
    endpoint: url::Url,
    region: String,
    store_id: String,
    creds: Credentials,
    http: Http,
}

fn s(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_string)
}

impl Aws {
    /// From validated config and the environment.
    pub fn new(c: &SyncConfig, http: Http, env: &dyn EnvLookup) -> Result<Self, SyncError> {
        let region = c.region.clone().unwrap_or_default();
        let endpoint = match &c.endpoint {
            Some(u) => u.clone(),
            None => url::Url::parse(&format!("https://identitystore.{region}.amazonaws.com/"))
                .map_err(|e| SyncError::Setup(format!("region: {e}")))?,
        };
        Ok(Self {
            endpoint,
            region,
            store_id: c.identity_store_id.clone().unwrap_or_default(),
            creds: Credentials::from_env(env)?,
            http,
        })
    }

    /// Every item under `field` of every page of action `target` with `params`.
    async fn list(
        &self,
        target: &str,
        params: Value,
        field: &str,
        out: &mut Fetched,
    ) -> Vec<Value> {
        let amz_target = format!("AWSIdentityStore.{target}");
        let label = format!("AWS {target} page");
        let (params, amz_target, label) = (&params, amz_target.as_str(), label.as_str());
        token_pages(out, target, |next| async move {
            let mut body = params.clone();
            body["IdentityStoreId"] = json!(self.store_id);
            body["MaxResults"] = json!(PAGE);
            if let Some(t) = &next {
                body["NextToken"] = json!(t);
            }
            let body = body.to_string().into_bytes();
            let a = self
                .http
                .ok(label, || {
                    let headers = [
                        ("content-type", "application/x-amz-json-1.1"),
                        ("x-amz-target", amz_target),
                    ];
                    let signed = sign(
                        &self.creds,
                        &self.region,
                        self.endpoint.as_str(),
                        &headers,
                        &body,
                        SystemTime::now(),
                    )?;
                    let mut r = self.http.client().post(self.endpoint.clone());
                    for (k, v) in headers
                        .into_iter()
                        .chain(signed.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                    {
                        r = r.header(k, v);
                    }
                    Ok(r.body(body.clone()).build()?)
                })
                .await?;
            let page: Value = a.json(label)?;
            let items = page.get(field).and_then(Value::as_array).cloned();
            Ok((items.unwrap_or_default(), s(&page, "NextToken")))
        })
        .await
    }

    /// A full listing of users, groups and memberships.
    pub async fn fetch(&self) -> Result<Fetched, SyncError> {
        let mut out = Fetched {
            full: true,
            complete: true,
            ..Fetched::default()
        };
        for u in self.list("ListUsers", json!({}), "Users", &mut out).await {
            let Some(id) = s(&u, "UserId") else { continue };
            let name = u.get("Name").cloned().unwrap_or(Value::Null);
            let mut emails: Vec<(bool, String)> = u
                .get("Emails")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|e| {
                    Some((
                        e.get("Primary").and_then(Value::as_bool).unwrap_or(false),
                        s(e, "Value")?,
                    ))
                })
                .collect();
            // Primary first, otherwise in the order given.
            emails.sort_by_key(|(primary, _)| !*primary);
            out.users.push(RemoteUser {
                id,
                user_name: s(&u, "UserName"),
                display_name: s(&u, "DisplayName"),
                given_name: s(&name, "GivenName"),
                family_name: s(&name, "FamilyName"),
                emails: Some(emails.into_iter().map(|(_, e)| e).collect()),
                active: Some(true),
            });
        }
        for g in self.list("ListGroups", json!({}), "Groups", &mut out).await {
            let Some(id) = s(&g, "GroupId") else { continue };
            let members = self
                .list(
                    "ListGroupMemberships",
                    json!({ "GroupId": id }),
                    "GroupMemberships",
                    &mut out,
                )
                .await
                .iter()
                .filter_map(|m| {
                    Some(RemoteMember {
                        id: m.get("MemberId").and_then(|x| s(x, "UserId"))?,
                        kind: MemberKind::User,
                    })
                })
                .collect();
            out.groups.push(RemoteGroup {
                display_name: s(&g, "DisplayName"),
                id,
                members: Members::Full(members),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn signs_with_the_identitystore_scope_and_session_token() {
        let creds = Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: Some("tok".into()),
        };
        let time = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_440_938_160); // 20150830T123600Z
        let h = sign(
            &creds,
            "eu-west-1",
            "https://identitystore.eu-west-1.amazonaws.com/",
            &[
                ("content-type", "application/x-amz-json-1.1"),
                ("x-amz-target", "AWSIdentityStore.ListUsers"),
            ],
            b"{}",
            time,
        )
        .unwrap();
        let get = |k: &str| h.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("x-amz-date"), Some("20150830T123600Z"));
        assert_eq!(get("x-amz-security-token"), Some("tok"));
        let auth = get("authorization").unwrap();
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/eu-west-1/identitystore/aws4_request, SignedHeaders="), "{auth}");
        for signed in ["content-type", "host", "x-amz-date", "x-amz-target"] {
            assert!(auth.contains(signed), "{signed} is signed: {auth}");
        }
        assert!(!format!("{creds:?}").contains("EXAMPLEKEY"));
    }

    #[test]
    fn credentials_come_from_the_standard_variables() {
        let mut env = HashMap::new();
        assert!(Credentials::from_env(&env).is_err());
        env.insert("AWS_ACCESS_KEY_ID".to_string(), "AKID".to_string());
        env.insert("AWS_SECRET_ACCESS_KEY".to_string(), "secret".to_string());
        let c = Credentials::from_env(&env).unwrap();
        assert_eq!(c.session_token, None);
    }
}
