//! Stand-ins for the vendor directory APIs the directory sync reads (Microsoft Graph, Google
//! Workspace Admin SDK, AWS IAM Identity Center), which cannot be reached from here. Each
//! speaks its API's documented wire format and checks what the vendor checks: Graph issues
//! bearer tokens only for the right client secret, Google verifies the RS256 JWT assertion
//! with the service account's public key, AWS verifies the SigV4 signature with its own
//! implementation ([`sigv4`]). [`Fault`] makes them misbehave the ways the suite tests.

pub mod aws;
pub mod google;
pub mod graph;
pub mod sigv4;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How a stand-in misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Behaves.
    None,
    /// The first users page answers 429 with `Retry-After: 1` once.
    ThrottleOnce,
    /// The second users page answers 500.
    FailPage2,
    /// The second users page is a 17 MiB body.
    HugeBody,
    /// The users pages never end: the next link or token is the current one.
    LoopPaging,
    /// Graph: the next link points at another host (which would receive the token).
    ForeignNextLink,
    /// The token endpoint answers a `pop` token instead of a bearer token.
    WrongTokenType,
}

/// One request as the stand-ins see it.
#[derive(Debug, Clone)]
pub struct Req {
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Query parameters (decoded).
    pub query: HashMap<String, String>,
    /// Raw query.
    pub raw_query: String,
    /// Headers, names lowercased (repeated ones joined with `,`).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Req {
    /// A header value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The form fields of a `application/x-www-form-urlencoded` body.
    pub fn form(&self) -> HashMap<String, String> {
        url::form_urlencoded::parse(&self.body)
            .into_owned()
            .collect()
    }

    /// The bearer token of `Authorization`.
    pub fn bearer(&self) -> Option<&str> {
        self.header("authorization")?.strip_prefix("Bearer ")
    }
}

/// An answer.
#[derive(Debug, Clone)]
pub struct Resp {
    /// Status.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
    /// How long to wait before answering (a slow server).
    pub delay: std::time::Duration,
}

impl Resp {
    /// JSON with a status.
    pub fn json(status: u16, v: &serde_json::Value) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: v.to_string().into_bytes(),
            delay: std::time::Duration::ZERO,
        }
    }
}

/// A running stand-in: a hyper HTTP/1.1 server on 127.0.0.1 that hands every request to a
/// handler and records it.
pub struct Server {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// Every request received, in order.
    pub log: Arc<Mutex<Vec<Req>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    /// Starts a server answering with `handler`.
    pub async fn start(handler: impl Fn(&Req) -> Resp + Send + Sync + 'static) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let log: Arc<Mutex<Vec<Req>>> = Arc::default();
        let handler = Arc::new(handler);
        let l = log.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (handler, log) = (handler.clone(), l.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |r: hyper::Request<hyper::body::Incoming>| {
                            let (handler, log) = (handler.clone(), log.clone());
                            async move {
                                let (parts, body) = r.into_parts();
                                let body = body
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                let mut headers: Vec<(String, String)> = Vec::new();
                                for (k, v) in &parts.headers {
                                    let v = String::from_utf8_lossy(v.as_bytes()).to_string();
                                    match headers.iter_mut().find(|(n, _)| n == k.as_str()) {
                                        Some((_, old)) => *old = format!("{old},{v}"),
                                        None => headers.push((k.as_str().to_string(), v)),
                                    }
                                }
                                let raw_query = parts.uri.query().unwrap_or("").to_string();
                                let req = Req {
                                    method: parts.method.to_string(),
                                    path: parts.uri.path().to_string(),
                                    query: url::form_urlencoded::parse(raw_query.as_bytes())
                                        .into_owned()
                                        .collect(),
                                    raw_query,
                                    headers,
                                    body: body.to_vec(),
                                };
                                log.lock().unwrap().push(req.clone());
                                let out = handler(&req);
                                if !out.delay.is_zero() {
                                    tokio::time::sleep(out.delay).await;
                                }
                                let mut b = hyper::Response::builder().status(out.status);
                                for (k, v) in &out.headers {
                                    b = b.header(k, v);
                                }
                                Ok::<_, std::convert::Infallible>(
                                    b.body(Full::new(Bytes::from(out.body))).unwrap(),
                                )
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self { url, log, task }
    }

    /// Requests received whose path starts with `prefix`.
    pub fn requests(&self, prefix: &str) -> Vec<Req> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path.starts_with(prefix))
            .cloned()
            .collect()
    }
}

/// A directory user as the stand-ins keep it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Stable upstream id.
    pub id: String,
    /// userPrincipalName / primaryEmail / UserName.
    pub name: String,
    /// Display name.
    pub display: String,
    /// False: disabled (`accountEnabled: false`, `suspended: true`).
    pub enabled: bool,
}

/// A group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Stable upstream id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Member user ids.
    pub members: Vec<String>,
}

/// The directory a stand-in serves (the test edits it between runs).
#[derive(Debug, Clone, Default)]
pub struct Directory {
    /// Users in listing order.
    pub users: Vec<User>,
    /// Groups.
    pub groups: Vec<Group>,
}

impl Directory {
    /// Users `(id, name)`, enabled, display name = name uppercased; and one group `staff`
    /// (id `g-staff`) with all of them.
    pub fn of(users: &[(&str, &str)]) -> Self {
        Self {
            users: users
                .iter()
                .map(|(id, name)| User {
                    id: id.to_string(),
                    name: name.to_string(),
                    display: name.to_uppercase(),
                    enabled: true,
                })
                .collect(),
            groups: vec![Group {
                id: "g-staff".into(),
                name: "staff".into(),
                members: users.iter().map(|(id, _)| id.to_string()).collect(),
            }],
        }
    }

    /// Removes user `id` (and their memberships).
    pub fn remove(&mut self, id: &str) {
        self.users.retain(|u| u.id != id);
        for g in &mut self.groups {
            g.members.retain(|m| m != id);
        }
    }

    /// User `id`, to change.
    pub fn user(&mut self, id: &str) -> &mut User {
        self.users.iter_mut().find(|u| u.id == id).expect("user")
    }
}

/// Users per page in every stand-in (small, so that three users make two pages).
pub const PAGE: usize = 2;
