use super::*;

fn adapter(yaml: &str) -> Result<Adapter, Vec<String>> {
    let spec: AdapterSpec = serde_yaml::from_str(yaml).unwrap();
    let mut p = Problems::default();
    let a = build(spec, "routes[0].adapter", &mut p);
    if p.0.is_empty() {
        Ok(a)
    } else {
        Err(p
            .0
            .iter()
            .map(|x| format!("{}: {}", x.path, x.message))
            .collect())
    }
}

fn alice() -> Identity {
    Identity {
        user: "alice".into(),
        email: Some("alice@example.com".into()),
        groups: vec!["eng".into()],
        roles: vec!["finance-admin".into()],
        ..Default::default()
    }
}

fn request(headers: &[(&str, &str)]) -> RequestHeader {
    let mut r = RequestHeader::build("GET", b"/x", None).unwrap();
    for (k, v) in headers {
        r.append_header(k.to_string(), *v).unwrap();
    }
    r
}

fn values(r: &RequestHeader, name: &str) -> Vec<String> {
    r.headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

#[test]
fn identity_goes_out_under_the_names_the_app_reads_and_client_copies_in_any_spelling_go_first() {
    let a = adapter("identity_headers: { user: [REMOTE_USER, X-Forwarded-User], email: [X-Forwarded-Email] }\nassertion_header: X-Auth-Token\nrequest_headers: { set: { X-App: portcullis }, remove: [X-Debug] }").unwrap();
    let mut r = request(&[
        ("remote_user", "admin"),
        ("Remote-User", "admin"),
        ("REMOTE.USER", "admin"),
        ("x-forwarded-user", "admin"),
        ("x-auth-token", "forged"),
        ("x-app", "client"),
        ("x-debug", "1"),
        ("remoteuser", "kept: not a spelling of the name"),
    ]);
    a.apply_request(&mut r, Some(&alice()), Some("jwt"))
        .unwrap();
    assert_eq!(values(&r, "remote_user"), ["alice"]);
    assert!(values(&r, "remote-user").is_empty());
    assert!(values(&r, "remote.user").is_empty());
    assert_eq!(values(&r, "x-forwarded-user"), ["alice"]);
    assert_eq!(values(&r, "x-forwarded-email"), ["alice@example.com"]);
    assert_eq!(values(&r, "x-auth-token"), ["jwt"]);
    assert_eq!(values(&r, "x-app"), ["portcullis"]);
    assert!(values(&r, "x-debug").is_empty());
    assert_eq!(values(&r, "remoteuser").len(), 1);
}

#[test]
fn without_an_identity_nothing_is_vouched_for_and_client_copies_are_still_removed() {
    let a = adapter(
        "identity_headers: { user: [REMOTE_USER] }\nbasic_auth: { username: svc, password: pw }",
    )
    .unwrap();
    let mut r = request(&[
        ("remote_user", "admin"),
        ("authorization", "Basic Zm9vOmJhcg=="),
    ]);
    a.apply_request(&mut r, None, None).unwrap();
    assert!(values(&r, "remote_user").is_empty());
    assert!(
        values(&r, "authorization").is_empty(),
        "no credentials for strangers"
    );
}

#[test]
fn basic_credentials_by_role_then_the_default() {
    let a = adapter("basic_auth: { username: svc, password: pw }\nbasic_auth_by_role: [ { role: finance-admin, username: fin, password: 'p:w' } ]").unwrap();
    let mut r = request(&[("authorization", "Bearer client")]);
    a.apply_request(&mut r, Some(&alice()), None).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    assert_eq!(
        values(&r, "authorization"),
        [format!("Basic {}", b64.encode("fin:p:w"))]
    );
    let bob = Identity {
        user: "bob".into(),
        ..Default::default()
    };
    let mut r = request(&[]);
    a.apply_request(&mut r, Some(&bob), None).unwrap();
    assert_eq!(
        values(&r, "authorization"),
        [format!("Basic {}", b64.encode("svc:pw"))]
    );
    assert!(
        !format!("{a:?}").contains("pw"),
        "credentials never printed"
    );
}

#[test]
fn the_assertion_as_a_bearer_token() {
    let a = adapter("assertion_header: Authorization").unwrap();
    let mut r = request(&[("authorization", "Basic forged")]);
    a.apply_request(&mut r, Some(&alice()), Some("jwt"))
        .unwrap();
    assert_eq!(values(&r, "authorization"), ["Bearer jwt"]);
}

#[test]
fn prefixes_are_rewritten_on_segment_boundaries_only() {
    let a = adapter("strip_prefix: /legacy\nadd_prefix: /app").unwrap();
    assert_eq!(a.rewrite_path("/legacy/x/y"), "/app/x/y");
    assert_eq!(a.rewrite_path("/legacy"), "/app/");
    assert_eq!(a.rewrite_path("/legacy/"), "/app/");
    assert_eq!(
        a.rewrite_path("/legacyx/y"),
        "/app/legacyx/y",
        "not a segment of the prefix"
    );
    assert_eq!(a.rewrite_path("/other"), "/app/other");
    let strip = adapter("strip_prefix: /legacy").unwrap();
    assert_eq!(
        strip.rewrite_path("/legacy/a%2Fb"),
        "/a%2Fb",
        "encoded as normalised"
    );
    assert_eq!(strip.rewrite_path("/legacy"), "/");
}

#[test]
fn response_headers_are_set_and_removed() {
    let a = adapter(
        "response_headers: { set: { Cache-Control: no-store }, remove: [Server, X-Powered-By] }",
    )
    .unwrap();
    let mut resp = ResponseHeader::build(200, None).unwrap();
    resp.append_header("server", "legacy/1.0").unwrap();
    resp.append_header("x-powered-by", "php").unwrap();
    resp.append_header("cache-control", "public").unwrap();
    a.apply_response(&mut resp).unwrap();
    assert!(resp.headers.get("server").is_none());
    assert!(resp.headers.get("x-powered-by").is_none());
    assert_eq!(resp.headers.get("cache-control").unwrap(), "no-store");
}

#[test]
fn bad_adapters_are_refused_with_every_key_path() {
    let errs = adapter(
        "identity_headers: { user: [\"bad name\"] }\nrequest_headers: { set: { Host: x, X-Portcullis-User: admin, X-Ok: \"a\\nb\" } }\nbasic_auth: { username: \"a:b\", password: p }\nbasic_auth_by_role: [ { role: r, username: u } ]\nstrip_prefix: legacy/\nadd_prefix: /app/",
    )
    .unwrap_err();
    for key in [
        "routes[0].adapter.identity_headers.user[0]",
        "routes[0].adapter.request_headers.set.Host",
        "routes[0].adapter.request_headers.set.X-Portcullis-User",
        "routes[0].adapter.request_headers.set.X-Ok",
        "routes[0].adapter.basic_auth.username",
        "routes[0].adapter.basic_auth_by_role[0]",
        "routes[0].adapter.strip_prefix",
        "routes[0].adapter.add_prefix",
    ] {
        assert!(
            errs.iter().any(|e| e.starts_with(key)),
            "{key} missing from {errs:#?}"
        );
    }
    let e = adapter("assertion_header: authorization\nbasic_auth: { username: u, password: p }")
        .unwrap_err();
    assert!(e[0].contains("assertion_header"), "{e:?}");
}
