//! Microsoft Graph and the Microsoft identity platform token endpoint, as documented:
//! `POST /{tenant}/oauth2/v2.0/token` (client credentials: client id and secret checked, scope
//! `https://graph.microsoft.com/.default`), `GET /v1.0/users/delta` and `/v1.0/groups/delta`
//! with `$select`, `@odata.nextLink` pages (`$skiptoken`) and a final `@odata.deltaLink`
//! (`$deltatoken`) from which the next round returns only changes: changed properties with the
//! id, `@removed` objects, `members@delta` with `@removed` members. Every Graph call needs a
//! bearer token this server issued.

use super::{Directory, Fault, Req, Resp, Server, PAGE};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

/// The tenant, client and secret the stand-in accepts.
pub const TENANT: &str = "contoso-tenant";
/// Application (client) id.
pub const CLIENT_ID: &str = "app-123";
/// The client secret.
pub const SECRET: &str = "graph-client-secret";

struct Round {
    items: Vec<Value>,
    delta: String,
}

struct State {
    dir: Directory,
    fault: Fault,
    throttled: bool,
    tokens: Vec<String>,
    snapshots: Vec<Directory>,
    rounds: Vec<Round>,
    base: String,
    foreign: String,
    expired_before: usize,
    slow: std::time::Duration,
}

/// A running Graph stand-in.
pub struct Graph {
    /// The server (login_url and graph_url both point at it).
    pub server: Server,
    state: Arc<Mutex<State>>,
}

fn user_json(u: &super::User) -> Value {
    json!({"id": u.id, "userPrincipalName": u.name, "displayName": u.display,
        "givenName": null, "surname": null, "mail": u.name, "accountEnabled": u.enabled})
}

fn member(id: &str) -> Value {
    json!({"@odata.type": "#microsoft.graph.user", "id": id})
}

fn users_delta(old: &Directory, now: &Directory) -> Vec<Value> {
    let mut out = Vec::new();
    for u in &now.users {
        match old.users.iter().find(|o| o.id == u.id) {
            None => out.push(user_json(u)),
            Some(o) if o != u => {
                let mut v = json!({"id": u.id});
                if o.name != u.name {
                    v["userPrincipalName"] = json!(u.name);
                    v["mail"] = json!(u.name);
                }
                if o.display != u.display {
                    v["displayName"] = json!(u.display);
                }
                if o.enabled != u.enabled {
                    v["accountEnabled"] = json!(u.enabled);
                }
                out.push(v);
            }
            Some(_) => {}
        }
    }
    for o in &old.users {
        if !now.users.iter().any(|u| u.id == o.id) {
            out.push(json!({"id": o.id, "@removed": {"reason": "changed"}}));
        }
    }
    out
}

fn groups_delta(old: Option<&Directory>, now: &Directory) -> Vec<Value> {
    let mut out = Vec::new();
    for g in &now.groups {
        let prev = old.and_then(|o| o.groups.iter().find(|p| p.id == g.id));
        match prev {
            None => out.push(json!({"id": g.id, "displayName": g.name,
                "members@delta": g.members.iter().map(|m| member(m)).collect::<Vec<_>>()})),
            Some(p) if p != g => {
                let mut changes: Vec<Value> = g
                    .members
                    .iter()
                    .filter(|m| !p.members.contains(m))
                    .map(|m| member(m))
                    .collect();
                for m in p.members.iter().filter(|m| !g.members.contains(m)) {
                    let mut v = member(m);
                    v["@removed"] = json!({"reason": "deleted"});
                    changes.push(v);
                }
                let mut v = json!({"id": g.id, "members@delta": changes});
                if p.name != g.name {
                    v["displayName"] = json!(g.name);
                }
                out.push(v);
            }
            Some(_) => {}
        }
    }
    if let Some(o) = old {
        for p in &o.groups {
            if !now.groups.iter().any(|g| g.id == p.id) {
                out.push(json!({"id": p.id, "@removed": {"reason": "deleted"}}));
            }
        }
    }
    out
}

fn unauthorized() -> Resp {
    Resp::json(
        401,
        &json!({"error": {"code": "InvalidAuthenticationToken", "message": "Access token is empty or invalid."}}),
    )
}

impl Graph {
    /// Starts the stand-in serving `dir`.
    pub async fn start(dir: Directory) -> Self {
        let state = Arc::new(Mutex::new(State {
            dir,
            fault: Fault::None,
            throttled: false,
            tokens: Vec::new(),
            snapshots: Vec::new(),
            rounds: Vec::new(),
            base: String::new(),
            foreign: String::new(),
            expired_before: 0,
            slow: std::time::Duration::ZERO,
        }));
        let s = state.clone();
        let server = Server::start(move |r| handle(&mut s.lock().unwrap(), r)).await;
        state.lock().unwrap().base = server.url.clone();
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

    /// Every delta link issued so far expires: Graph answers 410 `resyncRequired` and the
    /// client must start a full round.
    pub fn expire_delta_links(&self) {
        let mut s = self.state.lock().unwrap();
        s.expired_before = s.snapshots.len();
    }

    /// Every users page takes `d` to answer (a run lasts a while).
    pub fn set_slow(&self, d: std::time::Duration) {
        self.state.lock().unwrap().slow = d;
    }

    /// Where [`Fault::ForeignNextLink`] points.
    pub fn set_foreign(&self, url: &str) {
        self.state.lock().unwrap().foreign = url.to_string();
    }

    /// The config keys that point a connector `id` at this stand-in.
    pub fn connector(&self, id: &str, secret: &str) -> String {
        format!(
            "{{ id: {id}, type: entra_id, tenant_id: {TENANT}, client_id: {CLIENT_ID}, client_secret: \"{secret}\", graph_url: \"{u}\", login_url: \"{u}\" }}",
            u = self.server.url
        )
    }
}

fn handle(s: &mut State, r: &Req) -> Resp {
    if r.method == "POST" && r.path == format!("/{TENANT}/oauth2/v2.0/token") {
        let f = r.form();
        let get = |k: &str| f.get(k).map(String::as_str);
        if get("grant_type") != Some("client_credentials")
            || get("scope") != Some("https://graph.microsoft.com/.default")
        {
            return Resp::json(400, &json!({"error": "invalid_request"}));
        }
        if get("client_id") != Some(CLIENT_ID) || get("client_secret") != Some(SECRET) {
            return Resp::json(
                401,
                &json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."}),
            );
        }
        let token = format!("graph-token-{}", s.tokens.len() + 1);
        s.tokens.push(token.clone());
        let kind = if s.fault == Fault::WrongTokenType {
            "pop"
        } else {
            "Bearer"
        };
        return Resp::json(
            200,
            &json!({"token_type": kind, "expires_in": 3599, "ext_expires_in": 3599, "access_token": token}),
        );
    }
    let kind = match r.path.as_str() {
        "/v1.0/users/delta" => "users",
        "/v1.0/groups/delta" => "groups",
        _ => return Resp::json(404, &json!({"error": {"code": "Request_ResourceNotFound"}})),
    };
    if !r.bearer().is_some_and(|t| s.tokens.iter().any(|x| x == t)) {
        return unauthorized();
    }
    let path = format!("{}/v1.0/{kind}/delta", s.base);
    let (round, offset) = if let Some(skip) = r.query.get("$skiptoken") {
        let (a, b) = skip.split_once(':').unwrap_or(("x", "x"));
        match (a.parse::<usize>(), b.parse::<usize>()) {
            (Ok(a), Ok(b)) if a < s.rounds.len() => (a, b),
            _ => return Resp::json(400, &json!({"error": {"code": "badRequest"}})),
        }
    } else {
        let items = if let Some(t) = r.query.get("$deltatoken") {
            let index = t.parse::<usize>().ok().filter(|i| *i >= s.expired_before);
            let Some(old) = index.and_then(|i| s.snapshots.get(i)) else {
                return Resp::json(410, &json!({"error": {"code": "resyncRequired"}}));
            };
            if kind == "users" {
                users_delta(old, &s.dir)
            } else {
                groups_delta(Some(old), &s.dir)
            }
        } else {
            let select = r.query.get("$select").cloned().unwrap_or_default();
            if !select.split(',').any(|f| f == "id") {
                return Resp::json(
                    400,
                    &json!({"error": {"code": "BadRequest", "message": "$select"}}),
                );
            }
            if kind == "users" {
                s.dir.users.iter().map(user_json).collect()
            } else {
                groups_delta(None, &s.dir)
            }
        };
        s.snapshots.push(s.dir.clone());
        let delta = format!("{path}?$deltatoken={}", s.snapshots.len() - 1);
        s.rounds.push(Round { items, delta });
        (s.rounds.len() - 1, 0)
    };
    if kind == "users" {
        match s.fault {
            Fault::ThrottleOnce if offset == 0 && !s.throttled => {
                s.throttled = true;
                let mut resp = Resp::json(
                    429,
                    &json!({"error": {"code": "TooManyRequests", "message": "Too many requests"}}),
                );
                resp.headers.push(("retry-after".into(), "1".into()));
                return resp;
            }
            Fault::FailPage2 if offset == PAGE => {
                return Resp::json(500, &json!({"error": {"code": "generalException"}}));
            }
            Fault::HugeBody if offset == PAGE => {
                let mut resp = Resp::json(200, &json!({}));
                resp.body = format!("{{\"value\": [\"{}\"]}}", "x".repeat(17 << 20)).into_bytes();
                return resp;
            }
            _ => {}
        }
    }
    let rd = &s.rounds[round];
    let end = (offset + PAGE).min(rd.items.len());
    let items: Vec<Value> = rd.items[offset.min(end)..end].to_vec();
    let mut page =
        json!({"@odata.context": format!("{}/v1.0/$metadata#{kind}", s.base), "value": items});
    let more = end < rd.items.len();
    if kind == "users" && s.fault == Fault::LoopPaging {
        page["@odata.nextLink"] = json!(format!("{path}?$skiptoken={round}:0"));
    } else if more {
        let host = if kind == "users" && s.fault == Fault::ForeignNextLink {
            format!("{}/v1.0/{kind}/delta", s.foreign)
        } else {
            path.clone()
        };
        page["@odata.nextLink"] = json!(format!("{host}?$skiptoken={round}:{end}"));
    } else {
        page["@odata.deltaLink"] = json!(rd.delta);
    }
    let mut resp = Resp::json(200, &page);
    if kind == "users" {
        resp.delay = s.slow;
    }
    resp
}
