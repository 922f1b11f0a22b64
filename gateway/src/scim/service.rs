//! The SCIM 2.0 service provider at `/.portcullis/scim/v2` (RFC 7644): discovery, Users and
//! Groups (list with filter and paging, get, create, replace, patch, delete), ETags, the error
//! schema. A plain async function over the dispatcher's [`LocalRequest`]
//! ([`ScimService::handle`]) so it is tested without the proxy.
//!
//! Every call needs a bearer token from `directory.scim.tokens`; only their SHA-256 is kept and
//! a presented token is compared with each in constant time. A token belongs to one tenant and
//! every store call is scoped by it: tenant A's token can neither see nor change tenant B.
//! User writes go through the directory's [`Lifecycle`], so deactivating a user (`active:
//! false`, by PUT or PATCH) or deleting one deprovisions it the way sync and the admin API
//! will: every session ends and the audit chain records it.

use super::discovery::{self, MAX_PAYLOAD, MAX_RESULTS};
use super::error::ScimError;
use super::filter::{self, CompValue, CompareOp, Filter};
use super::patch;
use super::resource::{self, etag};
use crate::directory::config::ScimConfig;
use crate::directory::store::{self as dstore, DirectoryError, Query};
use crate::directory::{Lifecycle, Mode};
use crate::local_request::{BodyError, LocalRequest};
use serde_json::Value;

/// Where the SCIM service is mounted.
pub const PREFIX: &str = "/.portcullis/scim/v2";

/// The parts of a [`LocalRequest`] the SCIM routes read, taken out once by
/// [`ScimService::handle`].
#[derive(Debug)]
struct ScimRequest<'a> {
    /// HTTP method.
    method: &'a str,
    /// Path below [`PREFIX`] (`/Users/123`).
    path: &'a str,
    /// Raw query string.
    query: &'a str,
    /// `If-Match` header.
    if_match: Option<&'a str>,
    /// Body (at most [`MAX_PAYLOAD`]).
    body: &'a [u8],
    /// Absolute URL of [`PREFIX`] on this gateway (for `location` and `$ref`).
    base: &'a str,
}

/// The answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ScimResponse {
    /// HTTP status.
    pub status: u16,
    /// JSON body (`application/scim+json`), none for 204.
    pub body: Option<Value>,
    /// `ETag`.
    pub etag: Option<String>,
    /// `Location` (201).
    pub location: Option<String>,
}

impl ScimResponse {
    fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            body: Some(body),
            etag: None,
            location: None,
        }
    }

    fn resource(status: u16, body: Value) -> Self {
        let etag = body["meta"]["version"].as_str().map(str::to_string);
        let location = (status == 201)
            .then(|| body["meta"]["location"].as_str().map(str::to_string))
            .flatten();
        Self {
            status,
            body: Some(body),
            etag,
            location,
        }
    }
}

impl From<ScimError> for ScimResponse {
    fn from(e: ScimError) -> Self {
        Self::json(e.status, e.body())
    }
}

fn store_error(e: DirectoryError, what: &str) -> ScimError {
    match e {
        DirectoryError::Conflict { attribute } => {
            ScimError::conflict(format!("{attribute} is already taken"))
        }
        DirectoryError::NotFound => ScimError::not_found(what),
        DirectoryError::PreconditionFailed { current } => ScimError::status(
            412,
            format!("the resource changed: its version is now {}", etag(current)),
        ),
        DirectoryError::Invalid(m) => ScimError::bad("invalidValue", m),
        DirectoryError::Store(e) => {
            tracing::error!(error = %e, "scim: directory store failed");
            ScimError::status(503, "the directory is unavailable; retry later")
        }
    }
}

/// The service.
pub struct ScimService {
    lifecycle: Lifecycle,
    config: ScimConfig,
}

/// Which resource a path names.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Users,
    Groups,
}

impl ScimService {
    /// The service over the directory's user lifecycle.
    pub fn new(lifecycle: Lifecycle, config: ScimConfig) -> Self {
        Self { lifecycle, config }
    }

    /// The tenant of the presented bearer token ([`ScimConfig::tenant_for`]: constant time).
    fn tenant(&self, authorization: Option<&str>) -> Option<String> {
        let presented = authorization?
            .strip_prefix("Bearer ")
            .or_else(|| authorization?.strip_prefix("bearer "))?
            .trim();
        if presented.is_empty() {
            return None;
        }
        self.config.tenant_for(presented).map(str::to_string)
    }

    /// Serves one request: over HTTPS only (bearer tokens never travel in clear; `tls` is
    /// also true behind a trusted proxy that terminated TLS), with a valid token, and a body
    /// the dispatcher read within [`MAX_PAYLOAD`].
    pub async fn handle(&self, req: &LocalRequest) -> ScimResponse {
        if !req.tls {
            return ScimError::status(403, "SCIM is served over HTTPS only").into();
        }
        let Some(tenant) = self.tenant(req.header(http::header::AUTHORIZATION)) else {
            return ScimError::status(401, "a valid bearer token is required").into();
        };
        let body = match req.bytes() {
            Ok(b) => b,
            Err(BodyError::TooLarge) => {
                return ScimError::status(413, "request body too large").into()
            }
            Err(e) => return ScimError::bad("invalidSyntax", e.message()).into(),
        };
        let base = format!("{}{PREFIX}", req.origin);
        let call = ScimRequest {
            method: req.method.as_str(),
            path: req.path.strip_prefix(PREFIX).unwrap_or(""),
            query: &req.query,
            if_match: req.header(http::header::IF_MATCH),
            body,
            base: &base,
        };
        match self.route(&call, &tenant).await {
            Ok(r) => r,
            Err(e) => e.into(),
        }
    }

    async fn route(&self, req: &ScimRequest<'_>, tenant: &str) -> Result<ScimResponse, ScimError> {
        if req.body.len() > MAX_PAYLOAD {
            return Err(ScimError::status(413, "request body too large"));
        }
        let parts: Vec<&str> = req.path.trim_matches('/').split('/').collect();
        let get = req.method == "GET";
        let base = req.base;
        match parts.as_slice() {
            ["ServiceProviderConfig"] if get => Ok(ScimResponse::json(
                200,
                discovery::service_provider_config(base),
            )),
            ["ResourceTypes"] if get => {
                let all = discovery::resource_types(base);
                let n = i64::try_from(all.len()).unwrap_or(0);
                Ok(ScimResponse::json(200, discovery::list(all, n, 1)))
            }
            ["Schemas"] if get => {
                let all = discovery::schemas(base);
                let n = i64::try_from(all.len()).unwrap_or(0);
                Ok(ScimResponse::json(200, discovery::list(all, n, 1)))
            }
            ["ResourceTypes", id] | ["Schemas", id] if get => {
                let all = if parts[0] == "Schemas" {
                    discovery::schemas(base)
                } else {
                    discovery::resource_types(base)
                };
                all.into_iter()
                    .find(|r| r["id"].as_str() == Some(id))
                    .map(|r| ScimResponse::json(200, r))
                    .ok_or_else(|| ScimError::not_found(&format!("{} {id}", parts[0])))
            }
            // The discovery documents are read-only (RFC 7644 4).
            ["ServiceProviderConfig" | "ResourceTypes" | "Schemas", ..] if !get => {
                Err(ScimError::status(405, "discovery documents are read-only"))
            }
            // Searching several resource types at once is not offered (RFC 7644 3.4.3).
            [".search"] => Err(ScimError::status(
                501,
                "search Users or Groups: POST /Users/.search or /Groups/.search",
            )),
            [kind @ ("Users" | "Groups"), ".search"] if req.method == "POST" => {
                let kind = if *kind == "Users" {
                    Kind::Users
                } else {
                    Kind::Groups
                };
                let params = search_params(&Self::json_body(req)?)?;
                self.list_with(kind, tenant, req.base, &params).await
            }
            [kind @ ("Users" | "Groups")] => {
                let kind = if *kind == "Users" {
                    Kind::Users
                } else {
                    Kind::Groups
                };
                match req.method {
                    "GET" => self.list(kind, tenant, req).await,
                    "POST" => self.create(kind, tenant, req).await,
                    _ => Err(ScimError::status(405, "method not allowed")),
                }
            }
            [kind @ ("Users" | "Groups"), id] => {
                let kind = if *kind == "Users" {
                    Kind::Users
                } else {
                    Kind::Groups
                };
                match req.method {
                    "GET" => self.get(kind, tenant, id, req).await,
                    "PUT" => self.replace(kind, tenant, id, req).await,
                    "PATCH" => self.patch(kind, tenant, id, req).await,
                    "DELETE" => self.delete(kind, tenant, id).await,
                    _ => Err(ScimError::status(405, "method not allowed")),
                }
            }
            _ => Err(ScimError::not_found("endpoint")),
        }
    }

    fn json_body(req: &ScimRequest<'_>) -> Result<Value, ScimError> {
        let v: Value = serde_json::from_slice(req.body)
            .map_err(|e| ScimError::bad("invalidSyntax", format!("body is not JSON: {e}")))?;
        if json_depth(&v) > 16 {
            return Err(ScimError::bad("invalidSyntax", "body nested too deeply"));
        }
        Ok(v)
    }

    /// The version an `If-Match` header asks for (`W/"3"` or `"3"`; `*` means any).
    fn expected(req: &ScimRequest<'_>) -> Result<Option<i64>, ScimError> {
        let Some(v) = req.if_match.map(str::trim) else {
            return Ok(None);
        };
        if v == "*" {
            return Ok(None);
        }
        v.trim_start_matches("W/")
            .trim_matches('"')
            .parse()
            .map(Some)
            .map_err(|_| ScimError::status(412, "If-Match is not an ETag of this resource"))
    }

    async fn render(
        &self,
        kind: Kind,
        tenant: &str,
        id: &str,
        base: &str,
    ) -> Result<Value, ScimError> {
        match kind {
            Kind::Users => {
                let u = self
                    .lifecycle
                    .store
                    .get_user(tenant, id)
                    .await
                    .map_err(|e| store_error(e, &format!("User {id}")))?;
                let groups = self
                    .lifecycle
                    .store
                    .direct_groups(tenant, id)
                    .await
                    .map_err(|e| store_error(e, &format!("User {id}")))?;
                Ok(resource::user_json(&u, base, &groups))
            }
            Kind::Groups => {
                let g = self
                    .lifecycle
                    .store
                    .get_group(tenant, id)
                    .await
                    .map_err(|e| store_error(e, &format!("Group {id}")))?;
                Ok(resource::group_json(&g, base))
            }
        }
    }

    async fn get(
        &self,
        kind: Kind,
        tenant: &str,
        id: &str,
        req: &ScimRequest<'_>,
    ) -> Result<ScimResponse, ScimError> {
        let v = self.render(kind, tenant, id, req.base).await?;
        let v = project(v, &query_params(req.query))?;
        Ok(ScimResponse::resource(200, v))
    }

    async fn list(
        &self,
        kind: Kind,
        tenant: &str,
        req: &ScimRequest<'_>,
    ) -> Result<ScimResponse, ScimError> {
        self.list_with(kind, tenant, req.base, &query_params(req.query))
            .await
    }

    /// A list page from query parameters (GET) or a SearchRequest's members (POST `.search`),
    /// read the same way.
    async fn list_with(
        &self,
        kind: Kind,
        tenant: &str,
        base: &str,
        params: &[(String, String)],
    ) -> Result<ScimResponse, ScimError> {
        let filter = match params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("filter"))
        {
            Some((_, f)) => Some(translate(&filter::parse(f)?, kind)?),
            None => None,
        };
        let num = |name: &str, default: i64| -> Result<i64, ScimError> {
            match params.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)) {
                Some((_, v)) => v.parse::<i64>().map_err(|_| {
                    ScimError::bad("invalidValue", format!("{name} must be an integer"))
                }),
                None => Ok(default),
            }
        };
        let start = num("startIndex", 1)?.max(1);
        let count = num("count", MAX_RESULTS)?.clamp(0, MAX_RESULTS);
        let q = Query {
            filter,
            start_index: usize::try_from(start).unwrap_or(1),
            count: usize::try_from(count).unwrap_or(0),
        };
        let (total, items) = match kind {
            Kind::Users => {
                let p = self
                    .lifecycle
                    .store
                    .list_users(tenant, &q)
                    .await
                    .map_err(|e| store_error(e, "Users"))?;
                (
                    p.total,
                    p.items
                        .iter()
                        .map(|u| resource::user_json(u, base, &[]))
                        .collect::<Vec<_>>(),
                )
            }
            Kind::Groups => {
                let p = self
                    .lifecycle
                    .store
                    .list_groups(tenant, &q)
                    .await
                    .map_err(|e| store_error(e, "Groups"))?;
                (
                    p.total,
                    p.items
                        .iter()
                        .map(|g| resource::group_json(g, base))
                        .collect(),
                )
            }
        };
        let items = items
            .into_iter()
            .map(|v| project(v, params))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ScimResponse::json(
            200,
            discovery::list(items, total, start),
        ))
    }

    async fn create(
        &self,
        kind: Kind,
        tenant: &str,
        req: &ScimRequest<'_>,
    ) -> Result<ScimResponse, ScimError> {
        let body = Self::json_body(req)?;
        let actor = format!("scim:{tenant}");
        let v = match kind {
            Kind::Users => {
                let mut u = resource::user_from(&body)?;
                u.source = "scim".into();
                let u = self
                    .lifecycle
                    .create_user(tenant, &u, &actor)
                    .await
                    .map_err(|e| store_error(e, "User"))?;
                resource::user_json(&u, req.base, &[])
            }
            Kind::Groups => {
                let mut g = resource::group_from(&body)?;
                g.source = "scim".into();
                let g = self
                    .lifecycle
                    .store
                    .create_group(tenant, &g)
                    .await
                    .map_err(|e| store_error(e, "Group"))?;
                resource::group_json(&g, req.base)
            }
        };
        Ok(ScimResponse::resource(201, v))
    }

    /// Stores a full replacement (PUT, or the result of a PATCH) of user or group `id`.
    async fn store_replacement(
        &self,
        kind: Kind,
        tenant: &str,
        id: &str,
        body: &Value,
        expected: Option<i64>,
        base: &str,
    ) -> Result<ScimResponse, ScimError> {
        let actor = format!("scim:{tenant}");
        let v = match kind {
            Kind::Users => {
                let mut u = resource::user_from(body)?;
                u.id = id.to_string();
                // Active to inactive deprovisions (sessions end, audited) inside the lifecycle.
                let (u, _) = self
                    .lifecycle
                    .replace_user(tenant, &u, expected, &actor)
                    .await
                    .map_err(|e| store_error(e, &format!("User {id}")))?;
                resource::user_json(&u, base, &[])
            }
            Kind::Groups => {
                let mut g = resource::group_from(body)?;
                g.id = id.to_string();
                let g = self
                    .lifecycle
                    .store
                    .replace_group(tenant, &g, expected)
                    .await
                    .map_err(|e| store_error(e, &format!("Group {id}")))?;
                resource::group_json(&g, base)
            }
        };
        Ok(ScimResponse::resource(200, v))
    }

    async fn replace(
        &self,
        kind: Kind,
        tenant: &str,
        id: &str,
        req: &ScimRequest<'_>,
    ) -> Result<ScimResponse, ScimError> {
        let body = Self::json_body(req)?;
        self.store_replacement(kind, tenant, id, &body, Self::expected(req)?, req.base)
            .await
    }

    async fn patch(
        &self,
        kind: Kind,
        tenant: &str,
        id: &str,
        req: &ScimRequest<'_>,
    ) -> Result<ScimResponse, ScimError> {
        let ops = patch::parse_request(&Self::json_body(req)?)?;
        let current = self.render(kind, tenant, id, req.base).await?;
        let version = current["meta"]["version"].as_str().and_then(|v| {
            v.trim_start_matches("W/")
                .trim_matches('"')
                .parse::<i64>()
                .ok()
        });
        // The precondition is the client's If-Match if given, else the version read here: a
        // concurrent change between the read and the write is refused, never overwritten.
        let expected = Self::expected(req)?.or(version);
        let patched = patch::apply_all(&current, &ops)?;
        self.store_replacement(kind, tenant, id, &patched, expected, req.base)
            .await
    }

    async fn delete(&self, kind: Kind, tenant: &str, id: &str) -> Result<ScimResponse, ScimError> {
        let actor = format!("scim:{tenant}");
        let gone = match kind {
            Kind::Users => {
                self.lifecycle
                    .deprovision(tenant, id, &actor, Mode::Delete)
                    .await
                    .map_err(|e| store_error(e, &format!("User {id}")))?;
                true
            }
            Kind::Groups => self
                .lifecycle
                .store
                .delete_group(tenant, id)
                .await
                .map_err(|e| store_error(e, "Group"))?,
        };
        if !gone {
            return Err(ScimError::not_found(id));
        }
        Ok(ScimResponse {
            status: 204,
            body: None,
            etag: None,
            location: None,
        })
    }
}

/// Nesting depth of a JSON value (bounded input → bounded recursion in later passes).
fn json_depth(v: &Value) -> usize {
    // Iterative: a hostile body cannot overflow the stack here.
    let mut max = 0;
    let mut stack = vec![(v, 1usize)];
    while let Some((v, d)) = stack.pop() {
        max = max.max(d);
        match v {
            Value::Array(a) => stack.extend(a.iter().map(|x| (x, d + 1))),
            Value::Object(o) => stack.extend(o.values().map(|x| (x, d + 1))),
            _ => {}
        }
    }
    max
}

/// A SearchRequest body (RFC 7644 3.4.3) as the parameters of a GET list.
fn search_params(body: &Value) -> Result<Vec<(String, String)>, ScimError> {
    let mut out = Vec::new();
    for name in [
        "filter",
        "startIndex",
        "count",
        "attributes",
        "excludedAttributes",
    ] {
        match super::eval::get_ci(body, name) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => out.push((name.to_string(), s.clone())),
            Some(Value::Number(n)) => out.push((name.to_string(), n.to_string())),
            Some(Value::Array(a)) => {
                let items: Option<Vec<&str>> = a.iter().map(Value::as_str).collect();
                let items = items.ok_or_else(|| {
                    ScimError::bad("invalidValue", format!("{name} must list strings"))
                })?;
                out.push((name.to_string(), items.join(",")));
            }
            Some(_) => {
                return Err(ScimError::bad(
                    "invalidValue",
                    format!("{name} has the wrong type"),
                ))
            }
        }
    }
    Ok(out)
}

fn query_params(q: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(q.as_bytes())
        .into_owned()
        .collect()
}

/// `attributes` / `excludedAttributes` (RFC 7644 3.4.2.5): `id`, `schemas` and `meta` are
/// always returned.
fn project(v: Value, params: &[(String, String)]) -> Result<Value, ScimError> {
    let list = |name: &str| -> Option<Vec<String>> {
        params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| {
                v.split(',')
                    .map(|s| s.trim().to_ascii_lowercase())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
    };
    let Value::Object(mut o) = v else {
        return Ok(v);
    };
    let always = ["id", "schemas", "meta"];
    let top = |s: &str| -> String {
        // `urn:…:User:name.givenName` → `name`
        let s = s.rsplit(':').next().unwrap_or(s);
        s.split('.').next().unwrap_or(s).to_string()
    };
    if let Some(keep) = list("attributes") {
        let keep_top: Vec<String> = keep.iter().map(|s| top(s)).collect();
        o.retain(|k, _| {
            let lk = k.to_ascii_lowercase();
            always.contains(&lk.as_str()) || keep_top.contains(&lk) || keep.iter().any(|s| s == &lk)
        });
        // Sub-attributes asked for (`name.givenName`) narrow their complex attribute, unless
        // the whole attribute was asked for too.
        let mut subs: std::collections::HashMap<&str, Vec<&str>> = Default::default();
        for s in &keep {
            if let Some((parent, sub)) = s.rsplit(':').next().unwrap_or(s).split_once('.') {
                subs.entry(parent).or_default().push(sub);
            }
        }
        for (parent, wanted) in subs {
            if keep.iter().any(|x| x == parent) {
                continue;
            }
            let target = o.iter_mut().find(|(k, _)| k.eq_ignore_ascii_case(parent));
            if let Some((_, Value::Object(po))) = target {
                po.retain(|k, _| wanted.contains(&k.to_ascii_lowercase().as_str()));
            }
        }
    }
    if let Some(drop) = list("excludedAttributes") {
        o.retain(|k, _| {
            let lk = k.to_ascii_lowercase();
            always.contains(&lk.as_str()) || !drop.contains(&lk)
        });
    }
    Ok(Value::Object(o))
}

/// Translates a parsed filter into the store's SQL-evaluable form; what has no translation is
/// refused as `invalidFilter` (never evaluated partially).
fn translate(f: &Filter, kind: Kind) -> Result<dstore::Filter, ScimError> {
    use dstore::{Attr, Filter as F, Op, Value as V};
    let unsupported =
        |what: String| ScimError::bad("invalidFilter", format!("unsupported filter: {what}"));
    let attr = |p: &filter::AttrPath| -> Result<Attr, ScimError> {
        Ok(match (kind, p.key().as_str()) {
            (_, "id") => Attr::Id,
            (_, "externalid") => Attr::ExternalId,
            (Kind::Users, "username") => Attr::UserName,
            (_, "displayname") => Attr::DisplayName,
            (Kind::Users, "emails" | "emails.value") => Attr::Email,
            (Kind::Users, "active") => Attr::Active,
            (Kind::Groups, "members" | "members.value") => Attr::Member,
            _ => return Err(unsupported(format!("attribute {p}"))),
        })
    };
    Ok(match f {
        Filter::And(a, b) => F::And(Box::new(translate(a, kind)?), Box::new(translate(b, kind)?)),
        Filter::Or(a, b) => F::Or(Box::new(translate(a, kind)?), Box::new(translate(b, kind)?)),
        Filter::Not(a) => F::Not(Box::new(translate(a, kind)?)),
        Filter::Present(p) => F::Present(attr(p)?),
        Filter::Compare(p, op, v) => {
            let a = attr(p)?;
            let op = match op {
                CompareOp::Eq => Op::Eq,
                CompareOp::Ne => Op::Ne,
                CompareOp::Sw => Op::Sw,
                CompareOp::Co => Op::Co,
                CompareOp::Ew => Op::Ew,
                other => return Err(unsupported(format!("operator {other:?} on {p}"))),
            };
            let v = match (a, v) {
                (Attr::Active, CompValue::Bool(b)) => V::Bool(*b),
                (Attr::Active, CompValue::Str(s)) => {
                    let b = resource::boolean(&serde_json::json!({"v": s}), "v")?
                        .ok_or_else(|| unsupported(format!("value of {p}")))?;
                    V::Bool(b)
                }
                (Attr::Active, _) => return Err(unsupported(format!("value of {p}"))),
                (_, CompValue::Str(s)) => V::Str(s.clone()),
                _ => return Err(unsupported(format!("value of {p}"))),
            };
            F::Cmp(a, op, v)
        }
        // `emails[value eq "x"]`, `members[value eq "id"]`: the element's value.
        Filter::ValuePath(p, inner) => match inner.as_ref() {
            Filter::Compare(ip, op, v) if ip.key() == "value" && ip.urn.is_none() => {
                let path = filter::AttrPath {
                    urn: p.urn.clone(),
                    attr: p.attr.clone(),
                    sub: Some("value".into()),
                };
                translate(&Filter::Compare(path, *op, v.clone()), kind)?
            }
            _ => return Err(unsupported(format!("value filter on {p}"))),
        },
    })
}

#[cfg(test)]
mod tests;
