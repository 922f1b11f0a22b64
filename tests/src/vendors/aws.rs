//! The AWS IAM Identity Center identity store JSON 1.1 API, as documented: `POST /` with
//! `X-Amz-Target: AWSIdentityStore.ListUsers`, `ListGroups`, `ListGroupMemberships`,
//! `Content-Type: application/x-amz-json-1.1`, `NextToken` paging; every request's SigV4
//! signature is verified ([`super::sigv4`]) and a wrong key or secret is refused like AWS
//! does (`UnrecognizedClientException`, `InvalidSignatureException`).

use super::{sigv4, Directory, Fault, Req, Resp, Server, PAGE};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

/// The access key the stand-in knows.
pub const ACCESS_KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
/// Its secret.
pub const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
/// The region.
pub const REGION: &str = "eu-west-1";
/// The identity store.
pub const STORE_ID: &str = "d-1234567890";

struct State {
    dir: Directory,
    fault: Fault,
    throttled: bool,
    session_token: Option<String>,
}

/// A running identity store stand-in.
pub struct Aws {
    /// The server (`endpoint`).
    pub server: Server,
    state: Arc<Mutex<State>>,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn error(status: u16, kind: &str, message: &str) -> Resp {
    let mut r = Resp::json(status, &json!({"__type": kind, "message": message}));
    r.headers[0].1 = "application/x-amz-json-1.1".into();
    r
}

impl Aws {
    /// Starts the stand-in serving `dir`; requests must carry `session_token` when set.
    pub async fn start(dir: Directory, session_token: Option<&str>) -> Self {
        let state = Arc::new(Mutex::new(State {
            dir,
            fault: Fault::None,
            throttled: false,
            session_token: session_token.map(str::to_string),
        }));
        let s = state.clone();
        let server = Server::start(move |r| handle(&mut s.lock().unwrap(), r)).await;
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

    /// The config keys that point a connector `id` at this stand-in.
    pub fn connector(&self, id: &str) -> String {
        format!(
            "{{ id: {id}, type: aws_identity_center, identity_store_id: {STORE_ID}, region: {REGION}, endpoint: \"{}/\" }}",
            self.server.url
        )
    }
}

fn page(items: Vec<Value>, body: &Value, field: &str, looping: bool) -> Resp {
    let offset: usize = body["NextToken"]
        .as_str()
        .and_then(|t| t.strip_prefix("tok-"))
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let max = body["MaxResults"].as_u64().unwrap_or(100).min(PAGE as u64) as usize;
    let end = (offset + max).min(items.len());
    let mut out = json!({ field: items[offset.min(end)..end].to_vec() });
    if looping {
        out["NextToken"] = json!("tok-0");
    } else if end < items.len() {
        out["NextToken"] = json!(format!("tok-{end}"));
    }
    let mut r = Resp::json(200, &out);
    r.headers[0].1 = "application/x-amz-json-1.1".into();
    r
}

fn handle(s: &mut State, r: &Req) -> Resp {
    if r.method != "POST" || r.path != "/" {
        return error(404, "UnknownOperationException", "");
    }
    if r.header("content-type") != Some("application/x-amz-json-1.1") {
        return error(400, "SerializationException", "content type");
    }
    if let Some(why) = sigv4::verify(
        r,
        ACCESS_KEY_ID,
        SECRET,
        REGION,
        s.session_token.as_deref(),
        now(),
    ) {
        let kind = if why.contains("security token") {
            "UnrecognizedClientException"
        } else {
            "InvalidSignatureException"
        };
        return error(403, kind, &why);
    }
    let Ok(body) = serde_json::from_slice::<Value>(&r.body) else {
        return error(400, "SerializationException", "body");
    };
    if body["IdentityStoreId"] != STORE_ID {
        return error(400, "ValidationException", "IdentityStoreId");
    }
    let target = r.header("x-amz-target").unwrap_or("");
    match target {
        "AWSIdentityStore.ListUsers" => {
            let offset = body["NextToken"].as_str().unwrap_or("");
            match s.fault {
                Fault::ThrottleOnce if offset.is_empty() && !s.throttled => {
                    s.throttled = true;
                    let mut e = error(429, "ThrottlingException", "Rate exceeded");
                    e.headers.push(("retry-after".into(), "1".into()));
                    return e;
                }
                Fault::FailPage2 if offset == format!("tok-{PAGE}") => {
                    return error(500, "InternalServerException", "internal");
                }
                Fault::HugeBody if offset == format!("tok-{PAGE}") => {
                    let mut e = error(200, "", "");
                    e.body = format!("{{\"Users\": [\"{}\"]}}", "x".repeat(17 << 20)).into_bytes();
                    return e;
                }
                _ => {}
            }
            let users = s
                .dir
                .users
                .iter()
                .map(|u| {
                    json!({"UserId": u.id, "UserName": u.name, "DisplayName": u.display,
                        "Name": {"GivenName": null, "FamilyName": null},
                        "Emails": [{"Value": u.name, "Type": "work", "Primary": true}],
                        "IdentityStoreId": STORE_ID})
                })
                .collect();
            page(users, &body, "Users", s.fault == Fault::LoopPaging)
        }
        "AWSIdentityStore.ListGroups" => {
            let groups = s
                .dir
                .groups
                .iter()
                .map(|g| json!({"GroupId": g.id, "DisplayName": g.name, "IdentityStoreId": STORE_ID}))
                .collect();
            page(groups, &body, "Groups", false)
        }
        "AWSIdentityStore.ListGroupMemberships" => {
            let Some(g) = s
                .dir
                .groups
                .iter()
                .find(|g| body["GroupId"] == g.id.as_str())
            else {
                return error(400, "ResourceNotFoundException", "GroupId");
            };
            let members = g
                .members
                .iter()
                .map(|m| json!({"IdentityStoreId": STORE_ID, "MembershipId": format!("m-{}-{m}", g.id), "GroupId": g.id, "MemberId": {"UserId": m}}))
                .collect();
            page(members, &body, "GroupMemberships", false)
        }
        _ => error(400, "UnknownOperationException", target),
    }
}
