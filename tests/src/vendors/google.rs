//! Google's OAuth 2.0 token endpoint for service accounts and the Admin SDK Directory API, as
//! documented: `POST /token` with `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer` and
//! an RS256 JWT `assertion` — verified here with the service account's public key, and its
//! `iss`, `sub`, `aud`, `scope`, `iat`/`exp` checked — then `GET
//! /admin/directory/v1/users?customer=…`, `/groups?customer=…` and `/groups/{key}/members`
//! with `pageToken`/`nextPageToken`. Every API call needs a bearer token this server issued.

use super::{Directory, Fault, Req, Resp, Server, PAGE};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ring::signature::{KeyPair, RsaKeyPair, UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

/// The service account.
pub const CLIENT_EMAIL: &str = "portcullis-sync@example-project.iam.gserviceaccount.com";
/// The admin it may act for (domain-wide delegation).
pub const ADMIN: &str = "admin@example.com";
/// The customer.
pub const CUSTOMER: &str = "my_customer";

/// The scopes the grant must ask for.
const SCOPES: [&str; 3] = [
    "https://www.googleapis.com/auth/admin.directory.user.readonly",
    "https://www.googleapis.com/auth/admin.directory.group.readonly",
    "https://www.googleapis.com/auth/admin.directory.group.member.readonly",
];

/// The committed test-only service account key (tests/fixtures/sync-sa.pem).
pub fn private_key_pem() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/sync-sa.pem"))
        .expect("tests/fixtures/sync-sa.pem")
}

/// The public key of [`private_key_pem`] (RSAPublicKey DER), as Google publishes it.
fn public_key() -> Vec<u8> {
    let pem = private_key_pem();
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    RsaKeyPair::from_pkcs8(&der)
        .unwrap()
        .public_key()
        .as_ref()
        .to_vec()
}

struct State {
    dir: Directory,
    fault: Fault,
    throttled: bool,
    tokens: Vec<String>,
    public_key: Vec<u8>,
    token_url: String,
}

/// A running Google stand-in.
pub struct Google {
    /// The server (api_url and the key file's token_uri).
    pub server: Server,
    state: Arc<Mutex<State>>,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Why an assertion is refused, or `None` when Google would accept it.
fn check_assertion(jwt: &str, public_key: &[u8], token_url: &str) -> Option<String> {
    let parts: Vec<&str> = jwt.split('.').collect();
    if parts.len() != 3 {
        return Some("not a JWS".into());
    }
    let header: Value = serde_json::from_slice(&B64.decode(parts[0]).ok()?).ok()?;
    if header["alg"] != "RS256" {
        return Some(format!("alg {}", header["alg"]));
    }
    let sig = B64.decode(parts[2]).ok()?;
    let input = format!("{}.{}", parts[0], parts[1]);
    if UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public_key)
        .verify(input.as_bytes(), &sig)
        .is_err()
    {
        return Some("Invalid JWT Signature.".into());
    }
    let c: Value = serde_json::from_slice(&B64.decode(parts[1]).ok()?).ok()?;
    let scopes: Vec<&str> = c["scope"].as_str().unwrap_or("").split(' ').collect();
    let (iat, exp) = (c["iat"].as_i64()?, c["exp"].as_i64()?);
    if c["iss"] != CLIENT_EMAIL {
        Some("iss".into())
    } else if c["sub"] != ADMIN {
        Some("sub: not authorized to act for this user".into())
    } else if c["aud"] != token_url {
        Some("aud".into())
    } else if !SCOPES.iter().all(|s| scopes.contains(s)) {
        Some("scope".into())
    } else if exp <= now() || exp - iat > 3600 || iat > now() + 60 {
        Some("Invalid JWT: Token must be a short-lived token and in a reasonable timeframe".into())
    } else {
        None
    }
}

impl Google {
    /// Starts the stand-in serving `dir`, verifying assertions with the key of
    /// [`private_key_pem`].
    pub async fn start(dir: Directory) -> Self {
        let state = Arc::new(Mutex::new(State {
            dir,
            fault: Fault::None,
            throttled: false,
            tokens: Vec::new(),
            public_key: public_key(),
            token_url: String::new(),
        }));
        let s = state.clone();
        let server = Server::start(move |r| handle(&mut s.lock().unwrap(), r)).await;
        state.lock().unwrap().token_url = format!("{}/token", server.url);
        Self { server, state }
    }

    /// Changes the directory served.
    pub fn edit(&self, f: impl FnOnce(&mut Directory)) {
        f(&mut self.state.lock().unwrap().dir);
    }

    /// Sets the fault (and re-arms a one-time throttle).
    pub fn set_fault(&self, fault: Fault) {
        let mut s = self.state.lock().unwrap();
        s.fault = fault;
        s.throttled = false;
    }

    /// A service account key file (JSON, as the Cloud console downloads it) whose `token_uri`
    /// is this stand-in, signed by `private_key`.
    pub fn key_file(&self, private_key: &str) -> String {
        json!({
            "type": "service_account",
            "project_id": "example-project",
            "private_key_id": "0123456789abcdef",
            "private_key": private_key,
            "client_email": CLIENT_EMAIL,
            "client_id": "1234567890",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": format!("{}/token", self.server.url),
        })
        .to_string()
    }

    /// The config keys that point a connector `id` at this stand-in with key file `path`.
    pub fn connector(&self, id: &str, path: &str) -> String {
        format!(
            "{{ id: {id}, type: google_workspace, customer: {CUSTOMER}, credentials_file: \"{path}\", admin_email: \"{ADMIN}\", api_url: \"{}\" }}",
            self.server.url
        )
    }
}

fn page_of<T: Clone>(items: &[T], r: &Req) -> (Vec<T>, Option<String>) {
    let offset: usize = r
        .query
        .get("pageToken")
        .and_then(|t| t.strip_prefix("page-"))
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let end = (offset + PAGE).min(items.len());
    let next = (end < items.len()).then(|| format!("page-{end}"));
    (items[offset.min(end)..end].to_vec(), next)
}

fn handle(s: &mut State, r: &Req) -> Resp {
    if r.method == "POST" && r.path == "/token" {
        let f = r.form();
        if f.get("grant_type").map(String::as_str)
            != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
        {
            return Resp::json(400, &json!({"error": "unsupported_grant_type"}));
        }
        let jwt = f.get("assertion").cloned().unwrap_or_default();
        if let Some(why) = check_assertion(&jwt, &s.public_key, &s.token_url)
            .or_else(|| (jwt.split('.').count() != 3).then(|| "malformed".to_string()))
        {
            return Resp::json(
                400,
                &json!({"error": "invalid_grant", "error_description": why}),
            );
        }
        let token = format!("ya29.test-{}", s.tokens.len() + 1);
        s.tokens.push(token.clone());
        let kind = if s.fault == Fault::WrongTokenType {
            "pop"
        } else {
            "Bearer"
        };
        return Resp::json(
            200,
            &json!({"access_token": token, "expires_in": 3599, "token_type": kind}),
        );
    }
    if !r.bearer().is_some_and(|t| s.tokens.iter().any(|x| x == t)) {
        return Resp::json(
            401,
            &json!({"error": {"code": 401, "message": "Request had invalid authentication credentials.", "status": "UNAUTHENTICATED"}}),
        );
    }
    let Some(rest) = r.path.strip_prefix("/admin/directory/v1/") else {
        return Resp::json(404, &json!({"error": {"code": 404}}));
    };
    let segments: Vec<&str> = rest.split('/').collect();
    let needs_customer = matches!(segments.as_slice(), ["users"] | ["groups"]);
    if needs_customer && r.query.get("customer").map(String::as_str) != Some(CUSTOMER) {
        return Resp::json(
            400,
            &json!({"error": {"code": 400, "message": "Bad Request"}}),
        );
    }
    match segments.as_slice() {
        ["users"] => {
            let offset_is = |n: usize| {
                r.query.get("pageToken").map(String::as_str)
                    == (n > 0).then(|| format!("page-{n}")).as_deref()
            };
            match s.fault {
                Fault::ThrottleOnce if offset_is(0) && !s.throttled => {
                    s.throttled = true;
                    let mut resp = Resp::json(
                        429,
                        &json!({"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"}}),
                    );
                    resp.headers.push(("retry-after".into(), "1".into()));
                    return resp;
                }
                Fault::FailPage2 if offset_is(PAGE) => {
                    return Resp::json(
                        500,
                        &json!({"error": {"code": 500, "message": "Backend Error"}}),
                    );
                }
                Fault::HugeBody if offset_is(PAGE) => {
                    let mut resp = Resp::json(200, &json!({}));
                    resp.body =
                        format!("{{\"users\": [\"{}\"]}}", "x".repeat(17 << 20)).into_bytes();
                    return resp;
                }
                _ => {}
            }
            let users: Vec<Value> = s
                .dir
                .users
                .iter()
                .map(|u| {
                    json!({"kind": "admin#directory#user", "id": u.id, "primaryEmail": u.name,
                        "name": {"givenName": null, "familyName": null, "fullName": u.display},
                        "suspended": !u.enabled, "emails": [{"address": u.name, "primary": true}]})
                })
                .collect();
            let (items, mut next) = page_of(&users, r);
            if s.fault == Fault::LoopPaging {
                next = Some("page-0".into());
            }
            Resp::json(
                200,
                &json!({"kind": "admin#directory#users", "users": items, "nextPageToken": next}),
            )
        }
        ["groups"] => {
            let groups: Vec<Value> = s
                .dir
                .groups
                .iter()
                .map(|g| json!({"kind": "admin#directory#group", "id": g.id, "email": format!("{}@example.com", g.name), "name": g.name}))
                .collect();
            let (items, next) = page_of(&groups, r);
            Resp::json(
                200,
                &json!({"kind": "admin#directory#groups", "groups": items, "nextPageToken": next}),
            )
        }
        ["groups", key, "members"] => {
            let Some(g) = s.dir.groups.iter().find(|g| g.id == *key) else {
                return Resp::json(
                    404,
                    &json!({"error": {"code": 404, "message": "Resource Not Found: groupKey"}}),
                );
            };
            let members: Vec<Value> = g
                .members
                .iter()
                .map(|m| json!({"kind": "admin#directory#member", "id": m, "role": "MEMBER", "type": "USER", "status": "ACTIVE"}))
                .collect();
            let (items, next) = page_of(&members, r);
            Resp::json(
                200,
                &json!({"kind": "admin#directory#members", "members": items, "nextPageToken": next}),
            )
        }
        _ => Resp::json(404, &json!({"error": {"code": 404}})),
    }
}
