//! Legacy-app adapters (`routes[].adapter`): what an app that knows only `REMOTE_USER`, HTTP
//! Basic credentials or a fixed path prefix needs, per route — identity under the header names
//! it reads, the signed assertion under another name, Basic credentials from a Secret (per role
//! if wanted), a path prefix stripped or added, and request/response headers set or removed.
//!
//! The rule of [`crate::identity`] holds here too: every header name the adapter injects is
//! first removed from the client's request in every spelling a framework might fold together
//! (case, `_`, `.`), so `Remote_User: admin` from a client never reaches a CGI/WSGI app as
//! `REMOTE_USER`. Basic credentials go only to requests with a verified identity.

use crate::config::problems::Problems;
use base64::Engine;
use pingora_http::{RequestHeader, ResponseHeader};
use portcullis_policy::input::Identity;
use serde::Deserialize;

/// `routes[].adapter`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdapterSpec {
    /// More names for each identity value (`user: [REMOTE_USER, X-Forwarded-User]`).
    #[serde(default)]
    pub identity_headers: IdentityNamesSpec,
    /// The signed assertion under this name too (`Authorization` sends `Bearer <jwt>`).
    #[serde(default)]
    pub assertion_header: Option<String>,
    /// Basic credentials for every signed-in request.
    #[serde(default)]
    pub basic_auth: Option<BasicSpec>,
    /// Basic credentials by role, first match wins, before `basic_auth`.
    #[serde(default)]
    pub basic_auth_by_role: Vec<RoleBasicSpec>,
    /// A path prefix removed before the request goes upstream (`/legacy/x` → `/x`).
    #[serde(default)]
    pub strip_prefix: Option<String>,
    /// A path prefix added after `strip_prefix` (`/x` → `/app/x`).
    #[serde(default)]
    pub add_prefix: Option<String>,
    /// Request headers set or removed.
    #[serde(default)]
    pub request_headers: HeaderOpsSpec,
    /// Response headers set or removed.
    #[serde(default)]
    pub response_headers: HeaderOpsSpec,
}

/// `adapter.identity_headers`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityNamesSpec {
    #[serde(default)]
    user: Vec<String>,
    #[serde(default)]
    email: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    tenant: Vec<String>,
}

/// Basic credentials.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicSpec {
    /// User name (no `:`).
    pub username: String,
    /// Password (`${NAME}` from a Secret), or:
    #[serde(default)]
    pub password: Option<String>,
    /// A file holding the password (a mounted Secret; trailing newline ignored).
    #[serde(default)]
    pub password_file: Option<String>,
}

/// Basic credentials for one role.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleBasicSpec {
    /// The role (from the identity's roles).
    pub role: String,
    /// The credentials.
    #[serde(flatten)]
    pub basic: BasicSpec,
}

/// Headers to set and remove.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderOpsSpec {
    /// Name → value, replacing any the message had.
    #[serde(default)]
    pub set: std::collections::BTreeMap<String, String>,
    /// Names removed.
    #[serde(default)]
    pub remove: Vec<String>,
}

/// A ready `Authorization: Basic …` value; never printed.
#[derive(Clone)]
struct BasicValue(String);

impl std::fmt::Debug for BasicValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Basic <redacted>")
    }
}

/// Validated `routes[].adapter`.
#[derive(Debug, Clone, Default)]
pub struct Adapter {
    /// (identity field, header name) pairs.
    identity: Vec<(&'static str, http::HeaderName)>,
    assertion: Option<http::HeaderName>,
    basic: Option<BasicValue>,
    basic_by_role: Vec<(String, BasicValue)>,
    strip_prefix: Option<String>,
    add_prefix: Option<String>,
    request_set: Vec<(http::HeaderName, http::HeaderValue)>,
    request_remove: Vec<http::HeaderName>,
    response_set: Vec<(http::HeaderName, http::HeaderValue)>,
    response_remove: Vec<http::HeaderName>,
    /// Folded spellings of every injected request header (removed from the client's first).
    injected_folded: Vec<String>,
}

/// `abc_DEF.x` → `abc-def-x`: how CGI-style frameworks see header names alike.
fn fold(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'_' | b'.' => '-',
            b => char::from(b.to_ascii_lowercase()),
        })
        .collect()
}

/// Headers the adapter must never set or remove (framing, routing, the gateway's own).
fn reserved(name: &str) -> bool {
    let f = fold(name);
    matches!(
        f.as_str(),
        "host"
            | "content-length"
            | "transfer-encoding"
            | "connection"
            | "upgrade"
            | "te"
            | "trailer"
            | "keep-alive"
            | "proxy-connection"
    ) || f.starts_with("x-portcullis-")
}

fn header_name(name: &str, key: &str, problems: &mut Problems) -> Option<http::HeaderName> {
    if reserved(name) {
        problems.add(
            key,
            format!("{name:?} is reserved (framing, Host, or X-Portcullis-*)"),
        );
        return None;
    }
    match http::HeaderName::from_bytes(name.as_bytes()) {
        Ok(h) => Some(h),
        Err(_) => {
            problems.add(key, format!("{name:?} is not a valid header name"));
            None
        }
    }
}

fn header_value(value: &str, key: &str, problems: &mut Problems) -> Option<http::HeaderValue> {
    match http::HeaderValue::from_str(value) {
        Ok(v) => Some(v),
        Err(_) => {
            problems.add(key, "not a valid header value (control characters?)");
            None
        }
    }
}

fn basic_value(spec: &BasicSpec, key: &str, problems: &mut Problems) -> Option<BasicValue> {
    if spec.username.is_empty() || spec.username.contains(':') {
        problems.add(
            format!("{key}.username"),
            "must be non-empty and without ':'",
        );
        return None;
    }
    let password = match (&spec.password, &spec.password_file) {
        (Some(p), None) => p.clone(),
        (None, Some(f)) => match std::fs::read_to_string(f) {
            Ok(p) => p.trim_end_matches(['\r', '\n']).to_string(),
            Err(e) => {
                problems.add(
                    format!("{key}.password_file"),
                    format!("cannot read {f:?}: {e}"),
                );
                return None;
            }
        },
        _ => {
            problems.add(key, "needs exactly one of password or password_file");
            return None;
        }
    };
    if password.is_empty() {
        problems.add(key, "the password is empty");
        return None;
    }
    let token =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{password}", spec.username));
    Some(BasicValue(format!("Basic {token}")))
}

fn prefix(p: &Option<String>, key: &str, problems: &mut Problems) -> Option<String> {
    let p = p.as_deref()?;
    if !p.starts_with('/') || p.len() < 2 || p.ends_with('/') || p.contains(['?', '#', '%']) {
        problems.add(
            key,
            format!("{p:?} must look like /segment[/segment…] (no trailing /, ?, # or %)"),
        );
        return None;
    }
    Some(p.to_string())
}

/// Validates `spec` (at `base`, e.g. `routes[2].adapter`).
pub fn build(spec: AdapterSpec, base: &str, problems: &mut Problems) -> Adapter {
    let mut a = Adapter::default();
    let ids = &spec.identity_headers;
    for (field, names) in [
        ("user", &ids.user),
        ("email", &ids.email),
        ("groups", &ids.groups),
        ("roles", &ids.roles),
        ("tenant", &ids.tenant),
    ] {
        for (i, n) in names.iter().enumerate() {
            let key = format!("{base}.identity_headers.{field}[{i}]");
            if let Some(h) = header_name(n, &key, problems) {
                a.identity.push((field, h));
            }
        }
    }
    a.assertion = spec
        .assertion_header
        .as_deref()
        .and_then(|n| header_name(n, &format!("{base}.assertion_header"), problems));
    a.basic = spec
        .basic_auth
        .as_ref()
        .and_then(|b| basic_value(b, &format!("{base}.basic_auth"), problems));
    for (i, r) in spec.basic_auth_by_role.iter().enumerate() {
        let key = format!("{base}.basic_auth_by_role[{i}]");
        if let Some(v) = basic_value(&r.basic, &key, problems) {
            a.basic_by_role.push((r.role.clone(), v));
        }
    }
    let basic_configured = spec.basic_auth.is_some() || !spec.basic_auth_by_role.is_empty();
    if basic_configured
        && a.assertion
            .as_ref()
            .is_some_and(|h| h == http::header::AUTHORIZATION)
    {
        problems.add(
            format!("{base}.assertion_header"),
            "Authorization is already used by basic_auth",
        );
    }
    a.strip_prefix = prefix(
        &spec.strip_prefix,
        &format!("{base}.strip_prefix"),
        problems,
    );
    a.add_prefix = prefix(&spec.add_prefix, &format!("{base}.add_prefix"), problems);
    let ops = |o: &HeaderOpsSpec, key: &str, problems: &mut Problems| {
        let set = o
            .set
            .iter()
            .filter_map(|(k, v)| {
                let key = format!("{key}.set.{k}");
                Some((
                    header_name(k, &key, problems)?,
                    header_value(v, &key, problems)?,
                ))
            })
            .collect::<Vec<_>>();
        let remove = o
            .remove
            .iter()
            .enumerate()
            .filter_map(|(i, k)| header_name(k, &format!("{key}.remove[{i}]"), problems))
            .collect::<Vec<_>>();
        (set, remove)
    };
    (a.request_set, a.request_remove) = ops(
        &spec.request_headers,
        &format!("{base}.request_headers"),
        problems,
    );
    (a.response_set, a.response_remove) = ops(
        &spec.response_headers,
        &format!("{base}.response_headers"),
        problems,
    );
    let mut injected: Vec<String> = a
        .identity
        .iter()
        .map(|(_, h)| h.as_str())
        .chain(a.assertion.iter().map(http::HeaderName::as_str))
        .chain(a.request_set.iter().map(|(h, _)| h.as_str()))
        .map(fold)
        .collect();
    if basic_configured {
        injected.push("authorization".into());
    }
    injected.sort();
    injected.dedup();
    a.injected_folded = injected;
    a
}

impl Adapter {
    /// The upstream path for the gateway's normalised, encoded `path`: `strip_prefix` removed
    /// when the path is it or below it (segment boundary), then `add_prefix` added.
    pub fn rewrite_path(&self, path: &str) -> String {
        let mut p = path;
        if let Some(s) = &self.strip_prefix {
            if let Some(rest) = p.strip_prefix(s.as_str()) {
                if rest.is_empty() || rest.starts_with('/') {
                    p = if rest.is_empty() { "/" } else { rest };
                }
            }
        }
        match &self.add_prefix {
            Some(a) if p == "/" => format!("{a}/"),
            Some(a) => format!("{a}{p}"),
            None => p.to_string(),
        }
    }

    /// Applies the adapter to the upstream request: the client's copies of every injected
    /// name go first, then the headers are set. `assertion` is the token the gateway signed
    /// for this request, if any.
    pub fn apply_request(
        &self,
        req: &mut RequestHeader,
        identity: Option<&Identity>,
        assertion: Option<&str>,
    ) -> pingora::Result<()> {
        crate::forwarded::remove_headers_where(req, |n| {
            self.injected_folded.binary_search(&fold(n)).is_ok()
        });
        for h in &self.request_remove {
            req.remove_header(h);
        }
        for (h, v) in &self.request_set {
            req.insert_header(h.clone(), v.clone())?;
        }
        let Some(identity) = identity else {
            return Ok(());
        };
        let values = crate::assertion::identity_headers(identity);
        for (field, h) in &self.identity {
            let wanted = format!("x-portcullis-{field}");
            if let Some((_, v)) = values.iter().find(|(k, _)| *k == wanted) {
                req.insert_header(h.clone(), v.as_str())?;
            }
        }
        if let (Some(h), Some(t)) = (&self.assertion, assertion) {
            if h == http::header::AUTHORIZATION {
                req.insert_header(h.clone(), format!("Bearer {t}"))?;
            } else {
                req.insert_header(h.clone(), t)?;
            }
        }
        let by_role = self
            .basic_by_role
            .iter()
            .find(|(role, _)| identity.roles.iter().any(|r| r == role))
            .map(|(_, v)| v);
        if let Some(v) = by_role.or(self.basic.as_ref()) {
            req.insert_header(http::header::AUTHORIZATION, v.0.as_str())?;
        }
        Ok(())
    }

    /// Applies the response header operations.
    pub fn apply_response(&self, resp: &mut ResponseHeader) -> pingora::Result<()> {
        for h in &self.response_remove {
            resp.remove_header(h);
        }
        for (h, v) in &self.response_set {
            resp.insert_header(h.clone(), v.clone())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
