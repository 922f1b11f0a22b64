//! What the upstream is told: forwarding headers it can believe and no client-made identity.

use portcullis_e2e::*;

fn gateway(up: &Whoami, trusted: &str) -> Gateway {
    Gateway::start(&format!(
        "{SERVER}  trusted_proxies: [{trusted}]\nroutes:\n  - {{ id: app, upstream: \"{}\", policy: public }}\n",
        up.url()
    ))
}

fn seen_headers(gw: &Gateway, headers: &[(&str, &str)]) -> serde_json::Value {
    let resp = raw_request(gw.ports.http, "GET /h HTTP/1.1", headers).expect("request");
    assert_eq!(resp.0, 200);
    whoami_json(&resp.2)["headers"].clone()
}

#[test]
fn spoofed_forwarding_headers_from_untrusted_clients_are_replaced() {
    let up = Whoami::start("u");
    let gw = gateway(&up, "10.0.0.0/8");
    let h = seen_headers(
        &gw,
        &[
            ("Host", "app.test"),
            ("X-Forwarded-For", "6.6.6.6"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "evil.test"),
            ("X_Forwarded_For", "6.6.6.6"),
            ("Forwarded", "for=6.6.6.6"),
            ("X-Real-IP", "6.6.6.6"),
        ],
    );
    assert_eq!(h["x-forwarded-for"], serde_json::json!(["127.0.0.1"]));
    assert_eq!(h["x-forwarded-proto"], serde_json::json!(["http"]));
    assert_eq!(h["x-forwarded-host"], serde_json::json!(["app.test"]));
    for gone in ["x_forwarded_for", "forwarded", "x-real-ip"] {
        assert!(
            h.get(gone).is_none(),
            "{gone} must not reach the upstream: {h}"
        );
    }
}

#[test]
fn trusted_proxies_extend_the_chain() {
    let up = Whoami::start("u");
    let gw = gateway(&up, "127.0.0.1/32");
    let h = seen_headers(
        &gw,
        &[
            ("Host", "app.test"),
            ("X-Forwarded-For", "203.0.113.9"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "public.example"),
        ],
    );
    assert_eq!(
        h["x-forwarded-for"],
        serde_json::json!(["203.0.113.9, 127.0.0.1"])
    );
    assert_eq!(h["x-forwarded-proto"], serde_json::json!(["https"]));
    assert_eq!(h["x-forwarded-host"], serde_json::json!(["public.example"]));
}

#[test]
fn client_supplied_identity_headers_never_reach_the_upstream() {
    let up = Whoami::start("u");
    let gw = gateway(&up, "127.0.0.1/32");
    let h = seen_headers(
        &gw,
        &[
            ("X-Portcullis-User", "admin"),
            ("x-portcullis-groups", "admins"),
            ("X_Portcullis_Roles", "root"),
            ("X.Portcullis.Tenant", "other"),
            ("X-PORTCULLIS-ASSERTION", "eyJ..."),
        ],
    );
    let names: Vec<String> = h.as_object().unwrap().keys().cloned().collect();
    assert!(
        names
            .iter()
            .all(|n| !n.replace(['_', '.'], "-").starts_with("x-portcullis-")),
        "{names:?}"
    );
    assert!(gw
        .proc
        .logs()
        .contains("removed client-supplied X-Portcullis-* headers"));
}

/// H1 and L1: a non-ASCII byte in someone else's cookie once made the whole `Cookie` header
/// unreadable and stripping was skipped; every gateway cookie (session, pre-auth, device,
/// one-time code, MFA enrolment, WebAuthn ceremony) is a bearer credential for some step.
#[test]
fn gateway_cookies_never_reach_the_upstream_whatever_the_header_holds() {
    let up = Whoami::start("u");
    let gw = gateway(&up, "10.0.0.0/8");
    let h = seen_headers(
        &gw,
        &[
            (
                "Cookie",
                "__Host-portcullis=SID; theme=café; portcullis-device=DEV",
            ),
            (
                "Cookie",
                "portcullis=S2; portcullis-otp=O; portcullis-mfa=M; lang=en; portcullis-webauthn=W; portcullis-auth=A; PORTCULLIS=X",
            ),
        ],
    );
    assert_eq!(
        h["cookie"],
        serde_json::json!(["theme=café; lang=en"]),
        "{h}"
    );
}

/// L3: `X-Original-URL`/`X-Rewrite-URL` (IIS, Symfony) and method overrides (Rack, Express,
/// Laravel) make frameworks act on a path or method the gateway never judged.
#[test]
fn path_and_method_override_headers_never_reach_the_upstream() {
    let up = Whoami::start("u");
    let gw = gateway(&up, "127.0.0.1/32");
    let h = seen_headers(
        &gw,
        &[
            ("X-Original-URL", "/admin"),
            ("X-Rewrite-URL", "/admin"),
            ("x_original_url", "/admin"),
            ("X-HTTP-Method-Override", "DELETE"),
            ("X-HTTP-Method", "DELETE"),
            ("X-Method-Override", "DELETE"),
        ],
    );
    let names: Vec<String> = h.as_object().unwrap().keys().cloned().collect();
    for gone in [
        "x-original-url",
        "x-rewrite-url",
        "x_original_url",
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
    ] {
        assert!(!names.iter().any(|n| n == gone), "{gone}: {names:?}");
    }
}

/// M4: a trusted proxy that appends its own `X-Forwarded-For` line (HAProxy `option
/// forwardfor`) leaves the client's line first; reading only that line let the client choose
/// its address. Every line counts, in order.
#[test]
fn a_client_forwarded_for_line_cannot_choose_the_client_behind_a_proxy_that_appends() {
    let up = Whoami::start("u");
    let gw = Gateway::start(&format!(
        "{SERVER}  trusted_proxies: [127.0.0.1/32]\nroutes:\n  - {{ id: lan, path: /lan, upstream: \"{0}\", policy: {{ allow: [ {{ source_ip: [10.0.0.0/8] }} ] }} }}\n  - {{ id: app, upstream: \"{0}\", policy: public }}\n",
        up.url()
    ));
    let lines = [
        ("X-Forwarded-For", "10.1.1.1"),
        ("X-Forwarded-For", "198.51.100.7"),
    ];
    let r = raw_request(gw.ports.http, "GET /lan/x HTTP/1.1", &lines).unwrap();
    assert_eq!(r.0, 403, "the proxy's own line names the client");
    let h = seen_headers(&gw, &lines);
    assert_eq!(
        h["x-forwarded-for"],
        serde_json::json!(["10.1.1.1, 198.51.100.7, 127.0.0.1"])
    );
}

/// L8: every answer the gateway writes itself refuses to be framed.
#[test]
fn gateway_answers_cannot_be_framed() {
    let up = Whoami::start("u");
    let gw = Gateway::start(&format!(
        "{SERVER}routes:\n  - {{ id: app, path: /app, upstream: \"{}\", policy: authenticated }}\n",
        up.url()
    ));
    for target in ["/nowhere", "/app/x", "/%2e%2e/x", "/.portcullis/jwks.json"] {
        let r = raw_request(gw.ports.http, &format!("GET {target} HTTP/1.1"), &[]).unwrap();
        assert_eq!(header(&r, "x-frame-options"), Some("DENY"), "{target}");
        let csp = header(&r, "content-security-policy").unwrap_or_default();
        assert!(csp.contains("frame-ancestors 'none'"), "{target}: {csp}");
    }
}
