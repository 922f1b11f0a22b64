use super::*;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// A local stand-in for Graph's `/me/transitiveMemberOf`: `pages(target)` answers each request
/// target with a status and body; every `Authorization` header is kept.
struct Graph {
    url: url::Url,
    seen: Arc<Mutex<Vec<(String, String)>>>,
}

impl Graph {
    async fn start(pages: impl Fn(&str, &str) -> (u16, String) + Send + Sync + 'static) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = url::Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let pages = Arc::new(pages);
        let (log, base) = (seen.clone(), url.as_str().trim_end_matches('/').to_string());
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let (log, pages, base) = (log.clone(), pages.clone(), base.clone());
                tokio::spawn(async move {
                    let mut r = BufReader::new(sock);
                    let mut line = String::new();
                    r.read_line(&mut line).await.unwrap();
                    let target = line.split(' ').nth(1).unwrap_or_default().to_string();
                    let mut auth = String::new();
                    loop {
                        let mut h = String::new();
                        r.read_line(&mut h).await.unwrap();
                        if h.trim().is_empty() {
                            break;
                        }
                        if let Some(v) = h.to_ascii_lowercase().strip_prefix("authorization:") {
                            auth = v.trim().to_string();
                        }
                    }
                    log.lock().unwrap().push((target.clone(), auth));
                    let (status, body) = pages(&base, &target);
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = r.get_mut().write_all(resp.as_bytes()).await;
                });
            }
        });
        Self { url, seen }
    }

    fn cfg(&self) -> EntraConfig {
        EntraConfig {
            graph_url: self.url.clone(),
        }
    }
}

fn http() -> HttpClient {
    HttpClient::new().unwrap()
}

#[tokio::test]
async fn every_page_is_read_with_the_users_token() {
    let g = Graph::start(|base, target| {
        if target.contains("skiptoken=2") {
            (200, r#"{"value":[{"id":"g3"}]}"#.into())
        } else {
            assert!(target.starts_with("/v1.0/me/transitiveMemberOf/microsoft.graph.group?"), "{target}");
            (
                200,
                format!(r#"{{"value":[{{"id":"g1","displayName":"A"}},{{"id":"g2"}}],"@odata.nextLink":"{base}/v1.0/me/transitiveMemberOf/microsoft.graph.group?$skiptoken=2"}}"#),
            )
        }
    })
    .await;
    let ids = groups(&http(), &g.cfg(), "user-token").await.unwrap();
    assert_eq!(ids, ["g1", "g2", "g3"]);
    let seen = g.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter().all(|(_, a)| a == "bearer user-token"),
        "{seen:?}"
    );
}

#[tokio::test]
async fn a_next_link_elsewhere_errors_and_pages_fail_closed() {
    // A nextLink to another origin would hand the user's token to it: refused unrequested.
    let g = Graph::start(|_, _| {
        (
            200,
            r#"{"value":[{"id":"g1"}],"@odata.nextLink":"http://127.0.0.2:9/steal"}"#.into(),
        )
    })
    .await;
    assert!(matches!(
        groups(&http(), &g.cfg(), "t").await,
        Err(GraphError::Origin(_))
    ));
    // Graph refusing the token, a body that is not Graph's, an endless chain, a huge page.
    let refused = Graph::start(|_, _| {
        (
            401,
            r#"{"error":{"code":"InvalidAuthenticationToken"}}"#.into(),
        )
    })
    .await;
    assert!(matches!(
        groups(&http(), &refused.cfg(), "t").await,
        Err(GraphError::Request(_))
    ));
    let odd = Graph::start(|_, _| (200, r#"{"values":[]}"#.into())).await;
    assert!(matches!(
        groups(&http(), &odd.cfg(), "t").await,
        Err(GraphError::Request(_))
    ));
    let endless = Graph::start(|base, _| {
        (
            200,
            format!(r#"{{"value":[{{"id":"g"}}],"@odata.nextLink":"{base}/v1.0/again"}}"#),
        )
    })
    .await;
    assert_eq!(
        groups(&http(), &endless.cfg(), "t").await,
        Err(GraphError::TooManyPages)
    );
    assert_eq!(endless.seen.lock().unwrap().len(), MAX_PAGES);
    let huge = Graph::start(|_, _| {
        let ids: Vec<String> = (0..40_000)
            .map(|i| format!(r#"{{"id":"{i:032}"}}"#))
            .collect();
        (200, format!(r#"{{"value":[{}]}}"#, ids.join(",")))
    })
    .await;
    assert!(matches!(
        groups(&http(), &huge.cfg(), "t").await,
        Err(GraphError::Request(_))
    ));
}

#[test]
fn the_resolved_list_replaces_the_overage_form() {
    let mut c: Map<String, Value> = serde_json::from_value(serde_json::json!({
        "sub": "s", "_claim_names": {"groups": "src1"}, "_claim_sources": {"src1": {"endpoint": "x"}}
    }))
    .unwrap();
    assert!(crate::idp::claims::groups_overage(&c, "groups"));
    apply(&mut c, "groups", vec!["g1".into()]);
    assert!(!crate::idp::claims::groups_overage(&c, "groups"));
    assert_eq!(c["groups"], serde_json::json!(["g1"]));
    let mut c: Map<String, Value> =
        serde_json::from_value(serde_json::json!({"sub": "s", "hasgroups": true})).unwrap();
    assert!(crate::idp::claims::groups_overage(&c, "groups"));
    apply(&mut c, "groups", Vec::new());
    assert!(!crate::idp::claims::groups_overage(&c, "groups"));
}
