//! The facts of an Envoy `CheckRequest`, and the `CheckResponse` for an answer.
//!
//! Method, scheme, host, path and query come from `attributes.request.http`, the client address
//! from `attributes.source.address`: Envoy fills them from the request it received, so nothing a
//! client sends in a header (`X-Forwarded-For`, `X-Original-URL`…) changes them. The client's
//! headers (its cookie, `Accept`) are kept for the session and the policy, minus pseudo-headers,
//! `Host` and the forwarding families, which describe a hop and not the client.

use super::pb;
use crate::errors::{GatewayError, Reply};
use crate::forward_auth::{self as fa, ForwardAuthError, Original, MAX_HEADER_BYTES};
use http::{HeaderMap, HeaderName, HeaderValue};
use std::net::IpAddr;

/// What a check is judged on.
#[derive(Debug, Clone)]
pub struct Facts {
    /// The client's request as Envoy received it.
    pub original: Original,
    /// The downstream client's address as Envoy saw it.
    pub client_ip: IpAddr,
    /// The client's headers that are facts about the client (cookie, accept, user agent…).
    pub headers: HeaderMap,
    /// The client used HTTPS (`:scheme` https): session cookies carry the `__Host-` prefix.
    pub tls: bool,
}

/// Reads the facts of `req`; anything missing or malformed is a refusal.
pub fn facts(req: &pb::CheckRequest) -> Result<Facts, ForwardAuthError> {
    let attrs = req
        .attributes
        .as_ref()
        .ok_or(ForwardAuthError::Missing("attributes"))?;
    let http = attrs
        .request
        .as_ref()
        .and_then(|r| r.http.as_ref())
        .ok_or(ForwardAuthError::Missing("attributes.request.http"))?;
    let method = fa::method(&http.method, "request.http.method")?;
    let proto = fa::proto(
        Some(http.scheme.as_str()).filter(|s| !s.is_empty()),
        "request.http.scheme",
    )?;
    if http.host.is_empty() {
        return Err(ForwardAuthError::Missing("request.http.host"));
    }
    if http.host.len() > MAX_HEADER_BYTES {
        return Err(ForwardAuthError::TooLong("request.http.host"));
    }
    if http.path.len() > MAX_HEADER_BYTES {
        return Err(ForwardAuthError::TooLong("request.http.path"));
    }
    let path_and_query = fa::path_and_query(&http.path, "request.http.path")?;
    let client_ip = attrs
        .source
        .as_ref()
        .and_then(|p| p.address.as_ref())
        .and_then(|a| a.socket_address.as_ref())
        .ok_or(ForwardAuthError::Missing("source.address"))?
        .address
        .parse::<IpAddr>()
        .map_err(|_| ForwardAuthError::Invalid("source.address"))?;
    let mut headers = HeaderMap::with_capacity(http.headers.len());
    for (name, value) in &http.headers {
        if name.starts_with(':') || name.eq_ignore_ascii_case("host") || fa::is_family_header(name)
        {
            continue;
        }
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ForwardAuthError::Invalid("request.http.headers"))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| ForwardAuthError::Invalid("request.http.headers"))?;
        headers.append(name, value);
    }
    Ok(Facts {
        tls: proto.as_deref() == Some("https"),
        original: Original {
            proto,
            host: http.host.clone(),
            method,
            path_and_query,
        },
        client_ip,
        headers,
    })
}

fn header(key: &str, value: &str, append_action: i32) -> pb::HeaderValueOption {
    pb::HeaderValueOption {
        header: Some(pb::HeaderValue {
            key: key.to_string(),
            value: value.to_string(),
        }),
        append_action,
        keep_empty_value: true,
    }
}

fn status(code: i32, message: &str) -> Option<pb::Status> {
    Some(pb::Status {
        code,
        message: message.to_string(),
    })
}

/// An allowed request: the reply's identity headers and assertion overwrite the request's
/// (every identity name is in the reply, empty when not vouched for, so a client's copy is
/// blanked); a rotated session cookie goes to the client.
pub fn allowed(reply: &Reply) -> pb::CheckResponse {
    let mut ok = pb::OkHttpResponse::default();
    for (k, v) in &reply.headers {
        if k.eq_ignore_ascii_case("set-cookie") {
            ok.response_headers_to_add
                .push(header(k, v, pb::APPEND_IF_EXISTS_OR_ADD));
        } else {
            ok.headers
                .push(header(k, v, pb::OVERWRITE_IF_EXISTS_OR_ADD));
        }
    }
    pb::CheckResponse {
        status: status(pb::OK, ""),
        denied_response: None,
        ok_response: Some(ok),
    }
}

/// A refused request: the HTTP answer the gateway gives for `err` (status, `Location`,
/// `WWW-Authenticate`, JSON body…), with `set_cookie` (a rotated session id) when there is one.
pub fn denied(err: &GatewayError, set_cookie: Option<&str>) -> pb::CheckResponse {
    let code = match err.status() {
        401 | 302 => pb::UNAUTHENTICATED,
        _ => pb::PERMISSION_DENIED,
    };
    let mut denied = pb::DeniedHttpResponse {
        status: Some(pb::HttpStatus { code: 403 }),
        headers: Vec::new(),
        body: String::new(),
    };
    // Building the answer cannot fail for the headers the gateway writes; if it ever did, the
    // client gets a bare 403 (still a denial).
    if let Ok((h, body)) = err.to_response() {
        denied.status = Some(pb::HttpStatus {
            code: i32::from(h.status.as_u16()),
        });
        for (k, v) in h.headers.iter() {
            // Envoy sets the length of the body it sends.
            if k == http::header::CONTENT_LENGTH {
                continue;
            }
            let Ok(v) = v.to_str() else { continue };
            let action = if k == http::header::SET_COOKIE {
                pb::APPEND_IF_EXISTS_OR_ADD
            } else {
                pb::OVERWRITE_IF_EXISTS_OR_ADD
            };
            denied.headers.push(header(k.as_str(), v, action));
        }
        denied.body = String::from_utf8_lossy(&body).into_owned();
    }
    if let Some(c) = set_cookie {
        denied
            .headers
            .push(header("set-cookie", c, pb::APPEND_IF_EXISTS_OR_ADD));
    }
    pb::CheckResponse {
        status: status(code, err.code()),
        denied_response: Some(denied),
        ok_response: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn request(headers: &[(&str, &str)], path: &str) -> pb::CheckRequest {
        pb::CheckRequest {
            attributes: Some(pb::AttributeContext {
                source: Some(pb::Peer {
                    address: Some(pb::Address {
                        socket_address: Some(pb::SocketAddress {
                            address: "198.51.100.7".into(),
                            port_value: 50000,
                        }),
                    }),
                }),
                request: Some(pb::Request {
                    http: Some(pb::HttpRequest {
                        method: "POST".into(),
                        headers: headers
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect::<HashMap<_, _>>(),
                        path: path.into(),
                        host: "app.example.com".into(),
                        scheme: "https".into(),
                    }),
                }),
            }),
        }
    }

    #[test]
    fn facts_come_from_the_attributes_never_from_client_headers() {
        let req = request(
            &[
                (":path", "/pub/x"),
                (":authority", "public.example.com"),
                ("host", "public.example.com"),
                ("cookie", "portcullis=abc"),
                ("accept", "text/html"),
                ("x-forwarded-for", "10.1.1.1"),
                ("x-forwarded-host", "public.example.com"),
                ("x-forwarded-proto", "http"),
                ("x-original-url", "/pub/x"),
                ("x-forwarded-uri", "/pub/x"),
            ],
            "/reports/q?year=2026",
        );
        let f = facts(&req).unwrap();
        assert_eq!(f.original.method, http::Method::POST);
        assert_eq!(f.original.host, "app.example.com");
        assert_eq!(f.original.path(), "/reports/q");
        assert_eq!(f.original.query(), Some("year=2026"));
        assert_eq!(
            f.original.url().as_deref(),
            Some("https://app.example.com/reports/q?year=2026")
        );
        assert!(f.tls);
        assert_eq!(f.client_ip, "198.51.100.7".parse::<IpAddr>().unwrap());
        // The client's cookie and Accept are kept; the hop's and the client's forwarding claims
        // are not.
        assert_eq!(f.headers["cookie"], "portcullis=abc");
        assert_eq!(f.headers["accept"], "text/html");
        let mut names: Vec<_> = f.headers.keys().map(|k| k.as_str().to_string()).collect();
        names.sort();
        assert_eq!(names, ["accept", "cookie"]);
    }

    #[test]
    fn missing_or_malformed_attributes_are_refused() {
        assert_eq!(
            facts(&pb::CheckRequest::default()).unwrap_err(),
            ForwardAuthError::Missing("attributes")
        );
        let mut r = request(&[], "/x");
        if let Some(a) = r.attributes.as_mut() {
            a.source = None;
        }
        assert_eq!(
            facts(&r).unwrap_err(),
            ForwardAuthError::Missing("source.address")
        );
        for path in ["http://evil/x", "//evil/x", "x", "/a b"] {
            assert!(
                matches!(
                    facts(&request(&[], path)),
                    Err(ForwardAuthError::Invalid(_))
                ),
                "{path}"
            );
        }
        let long = format!("/{}", "a".repeat(MAX_HEADER_BYTES));
        let e = facts(&request(&[], &long)).unwrap_err();
        assert_eq!(e.status(), 431);
        let mut r = request(&[], "/x");
        if let Some(h) = r
            .attributes
            .as_mut()
            .and_then(|a| a.request.as_mut())
            .and_then(|r| r.http.as_mut())
        {
            h.scheme = "gopher".into();
        }
        assert!(facts(&r).is_err());
        if let Some(h) = r
            .attributes
            .as_mut()
            .and_then(|a| a.request.as_mut())
            .and_then(|r| r.http.as_mut())
        {
            h.scheme = "https".into();
            h.method = "get".into();
        }
        assert!(facts(&r).is_err());
        assert!(facts(&request(&[("bad name", "v")], "/x")).is_err());
    }

    fn values(h: &[pb::HeaderValueOption]) -> Vec<(String, String, i32)> {
        h.iter()
            .filter_map(|o| {
                o.header
                    .as_ref()
                    .map(|h| (h.key.clone(), h.value.clone(), o.append_action))
            })
            .collect()
    }

    #[test]
    fn an_allowed_check_overwrites_every_identity_header_and_sends_the_cookie_to_the_client() {
        let reply = Reply {
            status: 200,
            content_type: "application/json",
            headers: vec![
                ("x-portcullis-user".into(), "alice".into()),
                ("x-portcullis-tenant".into(), String::new()),
                ("set-cookie".into(), "portcullis=new".into()),
            ],
            body: Vec::new(),
        };
        let r = allowed(&reply);
        assert_eq!(r.status.as_ref().map(|s| s.code), Some(pb::OK));
        assert!(r.denied_response.is_none());
        let ok = r.ok_response.unwrap();
        assert_eq!(
            values(&ok.headers),
            [
                (
                    "x-portcullis-user".into(),
                    "alice".into(),
                    pb::OVERWRITE_IF_EXISTS_OR_ADD
                ),
                (
                    "x-portcullis-tenant".into(),
                    String::new(),
                    pb::OVERWRITE_IF_EXISTS_OR_ADD
                ),
            ]
        );
        assert!(ok.headers.iter().all(|o| o.keep_empty_value));
        assert_eq!(
            values(&ok.response_headers_to_add),
            [(
                "set-cookie".into(),
                "portcullis=new".into(),
                pb::APPEND_IF_EXISTS_OR_ADD
            )]
        );
        // And it survives the wire.
        use prost::Message;
        let bytes = allowed(&reply).encode_to_vec();
        assert_eq!(
            pb::CheckResponse::decode(bytes.as_slice()).unwrap(),
            allowed(&reply)
        );
    }

    #[test]
    fn a_denied_check_carries_the_gateways_http_answer() {
        let login = GatewayError::Login(crate::sso::Redirect {
            location: "https://app.example.com/.portcullis/login?rd=x".into(),
            cookies: vec![],
        });
        for (err, http, grpc) in [
            (GatewayError::Unauthenticated, 401, pb::UNAUTHENTICATED),
            (GatewayError::Forbidden, 403, pb::PERMISSION_DENIED),
            (login, 302, pb::UNAUTHENTICATED),
            (
                GatewayError::ForwardAuth(ForwardAuthError::NotNormal),
                400,
                pb::PERMISSION_DENIED,
            ),
            (
                GatewayError::ForwardAuth(ForwardAuthError::TooLong("x")),
                431,
                pb::PERMISSION_DENIED,
            ),
        ] {
            let r = denied(&err, Some("portcullis=rotated"));
            assert_eq!(r.status.as_ref().map(|s| s.code), Some(grpc), "{err}");
            assert!(r.ok_response.is_none());
            let d = r.denied_response.unwrap();
            assert_eq!(d.status.map(|s| s.code), Some(http), "{err}");
            let h = values(&d.headers);
            assert!(h
                .iter()
                .any(|(k, v, _)| k == "set-cookie" && v == "portcullis=rotated"));
            assert!(!h.iter().any(|(k, _, _)| k == "content-length"));
            assert!(h
                .iter()
                .any(|(k, v, _)| k == "cache-control" && v == "no-store"));
            if http == 302 {
                assert!(h.iter().any(|(k, v, _)| k == "location"
                    && v == "https://app.example.com/.portcullis/login?rd=x"));
            }
            if http == 401 {
                assert!(h.iter().any(|(k, _, _)| k == "www-authenticate"));
            }
            assert!(d.body.contains(err.code()), "{}", d.body);
        }
    }
}
