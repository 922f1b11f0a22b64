//! The SCIM service end to end over a real store (SQLite, and PostgreSQL when configured),
//! driven with request values: the RFC flows, Entra ID's and Okta's request shapes, and the
//! hostile inputs of the issue — each refusal in the error schema and changing nothing.

use super::*;
use serde_json::json;
use std::sync::{Arc, Mutex};

/// Counts revocations: SCIM-created users have no provider links, so the test links one.
#[derive(Default)]
struct Revoker(Mutex<Vec<String>>);

#[async_trait::async_trait]
impl crate::directory::SessionRevoker for Revoker {
    async fn revoke_user(&self, provider: &str, subject: &str) -> usize {
        self.0.lock().unwrap().push(format!("{provider}:{subject}"));
        1
    }
}

const A: &str = "token-of-tenant-a-0123456789";
const B: &str = "token-of-tenant-b-0123456789";
const ORIGIN: &str = "https://gw.test";
const BASE: &str = "https://gw.test/.portcullis/scim/v2";

struct Fixture {
    svc: ScimService,
    store: crate::directory::DirectoryStore,
    revoked: Arc<Revoker>,
    chain: tokio::sync::mpsc::UnboundedReceiver<(crate::audit::chain::Event, String)>,
}

fn scim_config() -> ScimConfig {
    let yaml = format!("scim: {{ tokens: [\"{A}\", {{ token: \"{B}\", tenant: b }}] }}\n");
    let spec: crate::directory::config::DirectorySpec = serde_yaml::from_str(&yaml).expect("spec");
    let mut p = crate::config::problems::Problems::default();
    let cfg = crate::directory::config::build(spec, &mut p).expect("config");
    assert!(p.0.is_empty(), "{p:?}");
    cfg.scim.expect("scim")
}

fn fixture(db: crate::store::Db) -> Fixture {
    let store = crate::directory::DirectoryStore::new(db, crate::clock::Clock::system());
    let revoked = Arc::new(Revoker::default());
    let (audit, chain) = crate::audit::Audit::capture();
    let lifecycle = crate::directory::Lifecycle {
        store: store.clone(),
        audit,
        revoker: Some(revoked.clone()),
        mfa: None,
        settings: Default::default(),
    };
    let svc = ScimService::new(lifecycle, scim_config());
    Fixture {
        svc,
        store,
        revoked,
        chain,
    }
}

/// The kinds recorded so far.
fn kinds(
    chain: &mut tokio::sync::mpsc::UnboundedReceiver<(crate::audit::chain::Event, String)>,
) -> Vec<String> {
    std::iter::from_fn(|| chain.try_recv().ok())
        .map(|(e, _)| e.kind)
        .collect()
}

async fn call(
    svc: &ScimService,
    token: &str,
    method: &str,
    path: &str,
    body: Value,
) -> ScimResponse {
    call_with(svc, token, method, path, body, None).await
}

async fn call_with(
    svc: &ScimService,
    token: &str,
    method: &str,
    path: &str,
    body: Value,
    if_match: Option<&str>,
) -> ScimResponse {
    let bytes = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    let mut req = request(method, path, Some(&format!("Bearer {token}")), bytes);
    if let Some(m) = if_match {
        req.headers
            .insert(http::header::IF_MATCH, m.parse().unwrap());
    }
    svc.handle(&req).await
}

/// A SCIM request for `path` (below [`PREFIX`], with its query) as the dispatcher builds it.
fn request(method: &str, path: &str, auth: Option<&str>, body: Vec<u8>) -> LocalRequest {
    let mut req = LocalRequest::new(method.parse().unwrap(), &format!("{PREFIX}{path}"));
    req.origin = ORIGIN.to_string();
    if let Some(a) = auth {
        req.headers
            .insert(http::header::AUTHORIZATION, a.parse().unwrap());
    }
    req.body = Ok(body);
    req
}

fn user(name: &str) -> Value {
    json!({
        "schemas": [resource::USER_SCHEMA],
        "userName": name, "externalId": format!("ext-{name}"),
        "name": {"givenName": "Given", "familyName": "Family"},
        "emails": [{"value": format!("{name}@example.com"), "type": "work", "primary": true}],
        "active": true,
    })
}

async fn each_db(f: impl AsyncFn(Fixture)) {
    for (name, db, _dir) in
        crate::store::test_databases("scim", &[&crate::directory::MIGRATIONS]).await
    {
        eprintln!("on {name}");
        f(fixture(db)).await;
    }
}

#[tokio::test]
async fn users_crud_filter_paging_etag_and_deprovisioning() {
    each_db(async |mut fx: Fixture| {
        let svc = &fx.svc;
        let r = call(svc, A, "POST", "/Users", user("bjensen")).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        let id = r.body.as_ref().unwrap()["id"].as_str().unwrap().to_string();
        assert_eq!(r.location.as_deref(), Some(format!("{BASE}/Users/{id}").as_str()));
        assert_eq!(r.etag.as_deref(), Some("W/\"1\""));
        let (ev, _) = fx.chain.try_recv().expect("audited");
        assert_eq!(ev.kind, "directory.user_created");
        assert_eq!(ev.actor.as_deref(), Some("scim:"), "the default tenant's token");

        // Same userName differing in case: uniqueness.
        let r = call(svc, A, "POST", "/Users", user("BJensen")).await;
        assert_eq!(r.status, 409);
        assert_eq!(r.body.as_ref().unwrap()["scimType"], "uniqueness");
        // The same userName in another tenant is another user.
        assert_eq!(call(svc, B, "POST", "/Users", user("bjensen")).await.status, 201);
        for n in ["alice", "bob", "carol"] {
            assert_eq!(call(svc, A, "POST", "/Users", user(n)).await.status, 201);
        }

        // Filters as Entra ID and Okta send them, and paging.
        let r = call(svc, A, "GET", "/Users?filter=userName%20eq%20%22BJENSEN%22", Value::Null).await;
        let b = r.body.unwrap();
        assert_eq!(b["totalResults"], 1, "{b}");
        assert_eq!(b["Resources"][0]["id"], id.as_str());
        let r = call(svc, A, "GET", "/Users?filter=externalId%20Eq%20%22ext-alice%22", Value::Null).await;
        assert_eq!(r.body.unwrap()["totalResults"], 1);
        let r = call(svc, A, "GET", "/Users?startIndex=2&count=2", Value::Null).await;
        let b = r.body.unwrap();
        assert_eq!((b["totalResults"].as_i64(), b["itemsPerPage"].as_i64(), b["startIndex"].as_i64()), (Some(4), Some(2), Some(2)));
        let r = call(svc, A, "GET", "/Users?filter=emails%5Bvalue%20co%20%22alice%40%22%5D", Value::Null).await;
        assert_eq!(r.body.unwrap()["totalResults"], 1);
        let r = call(svc, A, "GET", &format!("/Users/{id}?attributes=userName,name.givenName"), Value::Null).await;
        let b = r.body.unwrap();
        assert_eq!(b["name"], json!({"givenName": "Given"}));
        assert!(b.get("emails").is_none() && b.get("id").is_some());

        // Tenant B's token neither sees nor changes tenant A's user.
        assert_eq!(call(svc, B, "GET", &format!("/Users/{id}"), Value::Null).await.status, 404);
        assert_eq!(call(svc, B, "PUT", &format!("/Users/{id}"), user("x")).await.status, 404);
        assert_eq!(call(svc, B, "DELETE", &format!("/Users/{id}"), Value::Null).await.status, 404);
        let r = call(svc, B, "GET", "/Users?filter=userName%20eq%20%22alice%22", Value::Null).await;
        assert_eq!(r.body.unwrap()["totalResults"], 0);

        // PUT with a stale ETag is refused; the current one applies.
        let mut put = user("bjensen");
        put["displayName"] = "Babs".into();
        let r = call_with(svc, A, "PUT", &format!("/Users/{id}"), put.clone(), Some("W/\"0\"")).await;
        assert_eq!(r.status, 412);
        let r = call_with(svc, A, "PUT", &format!("/Users/{id}"), put, Some("W/\"1\"")).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.etag.as_deref(), Some("W/\"2\""));

        // Entra ID deactivates with a capitalised op and a string boolean: deprovisioned, and
        // the sessions of the identity linked to the user end.
        fx.store.link("corp", "sub-bjensen", &id).await.unwrap();
        kinds(&mut fx.chain);
        let patch = json!({"schemas": [patch::PATCH_SCHEMA], "Operations": [{"op": "Replace", "path": "active", "value": "False"}]});
        let r = call(svc, A, "PATCH", &format!("/Users/{id}"), patch).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.body.unwrap()["active"], false);
        assert_eq!(*fx.revoked.0.lock().unwrap(), vec!["corp:sub-bjensen".to_string()]);
        assert_eq!(kinds(&mut fx.chain), ["directory.user_deprovisioned"]);
        // DELETE deprovisions too, then the user is gone.
        let r = call(svc, A, "GET", "/Users?filter=userName%20eq%20%22alice%22", Value::Null).await;
        let alice = r.body.unwrap()["Resources"][0]["id"].as_str().unwrap().to_string();
        assert_eq!(call(svc, A, "DELETE", &format!("/Users/{alice}"), Value::Null).await.status, 204);
        assert_eq!(call(svc, A, "GET", &format!("/Users/{alice}"), Value::Null).await.status, 404);
        assert!(kinds(&mut fx.chain).contains(&"directory.user_deprovisioned".to_string()));
    })
    .await;
}

#[tokio::test]
async fn groups_members_and_cross_tenant_members() {
    each_db(async |fx: Fixture| {
        let svc = &fx.svc;
        let ua = call(svc, A, "POST", "/Users", user("ann")).await.body.unwrap()["id"].as_str().unwrap().to_string();
        let ub = call(svc, B, "POST", "/Users", user("ben")).await.body.unwrap()["id"].as_str().unwrap().to_string();
        let r = call(svc, A, "POST", "/Groups", json!({"schemas": [resource::GROUP_SCHEMA], "displayName": "Ops"})).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        let g = r.body.unwrap()["id"].as_str().unwrap().to_string();
        // Entra ID adds members with PATCH on `members`.
        let add = |who: &str| json!({"schemas": [patch::PATCH_SCHEMA], "Operations": [{"op": "Add", "path": "members", "value": [{"value": who}]}]});
        let r = call(svc, A, "PATCH", &format!("/Groups/{g}"), add(&ua)).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.body.unwrap()["members"][0]["value"], ua.as_str());
        // A member from tenant B is refused and changes nothing.
        let r = call(svc, A, "PATCH", &format!("/Groups/{g}"), add(&ub)).await;
        assert_eq!(r.status, 400, "{:?}", r.body);
        let r = call(svc, A, "GET", &format!("/Groups/{g}"), Value::Null).await;
        assert_eq!(r.body.unwrap()["members"].as_array().unwrap().len(), 1);
        let r = call(svc, A, "GET", &format!("/Groups?filter=members%5Bvalue%20eq%20%22{ua}%22%5D"), Value::Null).await;
        assert_eq!(r.body.unwrap()["totalResults"], 1);
        let rm = json!({"schemas": [patch::PATCH_SCHEMA], "Operations": [{"op": "Remove", "path": "members", "value": [{"value": ua}]}]});
        let r = call(svc, A, "PATCH", &format!("/Groups/{g}"), rm).await;
        assert_eq!(r.body.unwrap()["members"], json!([]));
    })
    .await;
}

#[tokio::test]
async fn hostile_requests_get_scim_errors_and_change_nothing() {
    each_db(async |fx: Fixture| {
        let svc = &fx.svc;
        // No token, a wrong token, another scheme.
        for auth in [None, Some("Bearer nope"), Some("Basic dG9rZW4="), Some("Bearer ")] {
            let r = svc
                .handle(&request("GET", "/Users", auth, Vec::new()))
                .await;
            assert_eq!(r.status, 401, "{auth:?}");
        }
        let bad = [
            ("GET", "/Users?filter=userName%20eq".to_string(), Value::Null, 400, Some("invalidFilter")),
            ("GET", format!("/Users?filter={}", "(".repeat(100)), Value::Null, 400, Some("invalidFilter")),
            ("GET", "/Users?filter=title%20eq%20%22x%22".into(), Value::Null, 400, Some("invalidFilter")),
            ("GET", "/Users?filter=userName%20gt%20%22a%22".into(), Value::Null, 400, Some("invalidFilter")),
            ("GET", "/Users?count=abc".into(), Value::Null, 400, Some("invalidValue")),
            ("POST", "/Users".into(), json!({"userName": "x", "favouriteColour": "red"}), 400, Some("invalidValue")),
            ("POST", "/Users".into(), json!({"userName": "x'; DROP TABLE directory_users; --"}), 201, None),
            ("POST", "/Users".into(), json!({"name": {"givenName": "no userName"}}), 400, Some("invalidValue")),
            ("POST", "/Users".into(), json!({"userName": "x", "password": "p"}), 400, Some("mutability")),
            ("PATCH", "/Users/nope".into(), json!({"schemas": [patch::PATCH_SCHEMA], "Operations": [{"op": "replace", "path": "active", "value": false}]}), 404, None),
            ("DELETE", "/Users/nope".into(), Value::Null, 404, None),
            ("GET", "/Secrets".into(), Value::Null, 404, None),
            ("PUT", "/Users".into(), Value::Null, 405, None),
        ];
        for (method, path, body, status, ty) in bad {
            let r = call(svc, A, method, &path, body).await;
            assert_eq!(r.status, status, "{method} {path}: {:?}", r.body);
            let b = r.body.unwrap_or_default();
            if status >= 400 {
                assert_eq!(b["schemas"][0], super::super::error::ERROR_SCHEMA);
            }
            assert_eq!(b.get("scimType").and_then(Value::as_str), ty, "{method} {path}");
        }
        // The injection-looking userName was stored as text, and nothing else was created.
        let r = call(svc, A, "GET", "/Users", Value::Null).await;
        assert_eq!(r.body.unwrap()["totalResults"], 1);
        // A deeply nested or oversized body.
        let mut deep = json!(1);
        for _ in 0..64 {
            deep = json!([deep]);
        }
        let r = call(svc, A, "POST", "/Users", json!({"userName": "y", "x": deep})).await;
        assert_eq!(r.status, 400);
        let big = vec![b'a'; MAX_PAYLOAD + 1];
        let auth = format!("Bearer {A}");
        let r = svc
            .handle(&request("POST", "/Users", Some(&auth), big))
            .await;
        assert_eq!(r.status, 413);
        // What the dispatcher could not read is refused the same way, before any route runs.
        for (err, status) in [(BodyError::TooLarge, 413), (BodyError::Unreadable, 400)] {
            let mut req = request("POST", "/Users", Some(&auth), Vec::new());
            req.body = Err(err);
            assert_eq!(svc.handle(&req).await.status, status, "{err:?}");
        }
        // A valid token over plain HTTP is refused: it has already travelled in clear.
        let mut req = request("GET", "/Users", Some(&auth), Vec::new());
        req.tls = false;
        let r = svc.handle(&req).await;
        assert_eq!(r.status, 403);
        assert!(r.body.unwrap()["detail"].as_str().unwrap().contains("HTTPS"));
    })
    .await;
}

#[tokio::test]
async fn discovery_documents_are_served() {
    each_db(async |fx: Fixture| {
        let svc = &fx.svc;
        let r = call(svc, A, "GET", "/ServiceProviderConfig", Value::Null).await;
        assert_eq!(r.body.unwrap()["patch"]["supported"], true);
        let r = call(svc, A, "GET", "/Schemas", Value::Null).await;
        assert_eq!(r.body.unwrap()["totalResults"], 3);
        let r = call(
            svc,
            A,
            "GET",
            &format!("/Schemas/{}", resource::USER_SCHEMA),
            Value::Null,
        )
        .await;
        assert_eq!(r.status, 200);
        let r = call(svc, A, "GET", "/ResourceTypes/User", Value::Null).await;
        assert_eq!(r.body.unwrap()["endpoint"], "/Users");
    })
    .await;
}

/// The README's limits, each at its boundary: 200 results a page (asked for more or not),
/// 4 KiB filters, 1000 PATCH operations, 10 000 members a request.
#[tokio::test]
async fn documented_limits_hold_at_their_boundaries() {
    each_db(async |fx: Fixture| {
        let svc = &fx.svc;
        for i in 0..201 {
            let r = call(svc, A, "POST", "/Users", user(&format!("u{i:03}"))).await;
            assert_eq!(r.status, 201);
        }
        for q in ["/Users", "/Users?count=1000"] {
            let b = call(svc, A, "GET", q, Value::Null).await.body.unwrap();
            assert_eq!(b["totalResults"], 201, "{q}");
            assert_eq!(b["itemsPerPage"], 200, "{q}");
            assert_eq!(b["Resources"].as_array().unwrap().len(), 200, "{q}");
        }
        let b = call(svc, A, "GET", "/Users?startIndex=201&count=1000", Value::Null)
            .await
            .body
            .unwrap();
        assert_eq!(b["Resources"].as_array().unwrap().len(), 1);

        let filter = |len: usize| {
            let name = "a".repeat(len - "userName eq \"\"".len());
            let f: String =
                url::form_urlencoded::byte_serialize(format!("userName eq \"{name}\"").as_bytes())
                    .collect();
            format!("/Users?filter={f}")
        };
        let r = call(svc, A, "GET", &filter(4096), Value::Null).await;
        assert_eq!(r.status, 200, "a 4 KiB filter is evaluated");
        assert_eq!(r.body.unwrap()["totalResults"], 0);
        let r = call(svc, A, "GET", &filter(4097), Value::Null).await;
        assert_eq!(r.status, 400);
        assert_eq!(r.body.unwrap()["scimType"], "invalidFilter");

        let id = call(svc, A, "GET", "/Users?filter=userName%20eq%20%22u000%22", Value::Null)
            .await
            .body
            .unwrap()["Resources"][0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let ops = |n: usize| {
            let op = json!({"op": "replace", "path": "displayName", "value": "D"});
            json!({"schemas": [patch::PATCH_SCHEMA], "Operations": vec![op; n]})
        };
        let path = format!("/Users/{id}");
        assert_eq!(call(svc, A, "PATCH", &path, ops(1000)).await.status, 200);
        let r = call(svc, A, "PATCH", &path, ops(1001)).await;
        assert_eq!(r.status, 400);

        let group = |n: usize| {
            let members: Vec<Value> = (0..n).map(|_| json!({"value": id})).collect();
            json!({"schemas": [resource::GROUP_SCHEMA], "displayName": format!("g{n}"), "members": members})
        };
        let r = call(svc, A, "POST", "/Groups", group(10_001)).await;
        assert_eq!(r.status, 400);
        assert_eq!(r.body.unwrap()["scimType"], "tooMany");
        let r = call(svc, A, "POST", "/Groups", group(10_000)).await;
        assert_eq!(r.status, 201, "10 000 members (one user, repeated) are accepted");
    })
    .await;
}
