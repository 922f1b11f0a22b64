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
