//! What upstreams learn about the signed-in user, and how the gateway treats a trusted
//! TLS-terminating proxy, against a real OpenID Provider.

use portcullis_e2e::oidc::*;
use portcullis_e2e::*;

/// L2: identity headers and the assertion go to routes that need a signed-in user, and to a
/// public route only when it opts in (`identity_headers: true`): a public app should not be
/// told — and log — who happens to be signed in. L9: behind a trusted proxy that terminated
/// TLS (`X-Forwarded-Proto: https`), cookies keep `__Host-`/`Secure` and the redirect URI
/// stays `https://`; from anyone else the header changes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn public_routes_learn_identity_only_when_they_opt_in_and_trusted_tls_proxies_keep_cookies_secure(
) {
    let ports = Ports::fresh();
    let up = Whoami::start("app");
    let op = OpenIdProvider::start(&[ports.https], None, 3600);
    let gw = Gateway::start_on(
        ports,
        &format!(
            "{SERVER}  trusted_proxies: [127.0.0.2/32]
session:
  keys: [\"{SESSION_KEY}\"]
identity_providers:
  - {{ id: corp, type: oidc, issuer: \"{}\", client_id: {CLIENT_ID}, client_secret: {CLIENT_SECRET}, scopes: [openid, email, groups] }}
routes:
  - {{ id: app, path: /app, upstream: \"{1}\", policy: authenticated }}
  - {{ id: shared, path: /shared, upstream: \"{1}\", policy: public, identity_headers: true }}
  - {{ id: open, path: /, upstream: \"{1}\", policy: public }}
",
            op.issuer,
            up.url()
        ),
    );
    let b = Browser::new();
    let w = b.login(&format!("{}/app/", gw.https()), "alice").await;
    assert_eq!(w.last().status, 200, "{w:#?}");
    let cookie = w.session_cookie().unwrap();
    let c = client(None);
    let seen = |path: &'static str| {
        let req = c
            .get(format!("{}{path}", gw.https()))
            .header("cookie", &cookie);
        async move { whoami_json(&req.send().await.unwrap().text().await.unwrap())["headers"].clone() }
    };
    let h = seen("/open/x").await;
    for name in [
        "x-portcullis-user",
        "x-portcullis-assertion",
        "x-portcullis-groups",
    ] {
        assert!(h.get(name).is_none(), "{name} sent to a public route: {h}");
    }
    let h = seen("/shared/x").await;
    assert_eq!(h["x-portcullis-user"], serde_json::json!(["alice"]));
    let token = h["x-portcullis-assertion"][0].as_str().unwrap();
    assert_eq!(jwt_claims(token)["aud"], "shared");

    // L9: the plain listener behind a trusted TLS-terminating proxy.
    let start = |c: reqwest::Client| {
        let url = format!("http://127.0.0.1:{}/app/x", ports.http);
        async move {
            c.get(url)
                .header("accept", "text/html")
                .header("x-forwarded-proto", "https")
                .send()
                .await
                .unwrap()
        }
    };
    let r = start(client_from(None, Some([127, 0, 0, 2].into()))).await;
    assert_eq!(r.status(), 302);
    let loc = r.headers()["location"].to_str().unwrap();
    assert!(
        loc.contains(&format!(
            "redirect_uri=https%3A%2F%2F127.0.0.1%3A{}%2F.portcullis%2Fcallback",
            ports.http
        )),
        "{loc}"
    );
    let set = r.headers()["set-cookie"].to_str().unwrap();
    assert!(
        set.starts_with("__Host-portcullis-auth=") && set.contains("Secure"),
        "{set}"
    );
    let r = start(client(None)).await;
    let set = r.headers()["set-cookie"].to_str().unwrap();
    assert!(
        set.starts_with("portcullis-auth=") && !set.contains("Secure"),
        "an untrusted client's X-Forwarded-Proto changes nothing: {set}"
    );
    let loc = r.headers()["location"].to_str().unwrap();
    assert!(loc.contains("redirect_uri=http%3A%2F%2F"), "{loc}");
}
