//! SAML 2.0 sign-in against a real IdP (PyPI pysaml2, started by the harness) and a hostile
//! suite: responses the harness forges and signs itself with `xmlsec1` (with the real IdP key
//! or an attacker's). Every hostile case must end without a session, without reaching the
//! upstream, and with an `auth.login_failed` audit line naming the reason.

use portcullis_e2e::oidc::*;
use portcullis_e2e::saml::*;
use portcullis_e2e::*;

const SP: &str = "https://gw.test/saml";
const MFA: &str = "urn:oasis:names:tc:SAML:2.0:ac:classes:MultiFactor";

fn config(idp: &SamlIdp, up: &str, store: &str) -> String {
    let d = idp.dir.path().display();
    format!(
        "{SERVER}session:
  keys: [\"{SESSION_KEY}\"]
  store: {store}
identity_providers:
  - id: partner
    type: saml
    idp_metadata_file: {d}/idp.xml
    sp_entity_id: {SP}
    sp_key_file: {d}/sp.key
    sp_cert_file: {d}/sp.crt
    sign_authn_requests: true
    claims: {{ user: NameID, email: mail, groups: memberOf, name: displayName }}
routes:
  - {{ id: app, path: /app, upstream: \"{up}\", policy: authenticated }}
  - {{ id: strong, path: /strong, upstream: \"{up}\", policy: {{ allow: [ {{ mfa: {{ methods: [\"idp:{MFA}\"] }} }} ] }} }}
"
    )
}

/// Starts the IdP and a gateway that trusts it (and that the IdP trusts back).
async fn setup(py: &std::path::Path, up: &Whoami, store: &str) -> (SamlIdp, Gateway) {
    let idp = SamlIdp::start(py);
    let gw = Gateway::start(&config(&idp, &up.url(), store));
    let md = Browser::new()
        .client
        .get(format!("{}/.portcullis/saml/metadata", gw.https()))
        .send()
        .await
        .expect("SP metadata");
    assert_eq!(md.status(), 200);
    idp.trust_sp(&md.text().await.expect("body"));
    (idp, gw)
}

/// Walks from `url` to the IdP, adds `mode` to the IdP URL (outside the signed query), and
/// posts the IdP's form back to the gateway.
async fn sign_in(b: &Browser, idp: &SamlIdp, url: &str, mode: &str) -> Walk {
    let w = b.walk_until(url, |u| u.starts_with(&idp.url())).await;
    let to_idp = w.last().location.clone().expect("redirect to the IdP");
    let page = b
        .client
        .get(format!("{to_idp}&mode={mode}"))
        .send()
        .await
        .expect("IdP");
    let page_url = page.url().to_string();
    let body = page.text().await.expect("IdP page");
    assert!(body.contains("SAMLResponse"), "IdP answered: {body}");
    let form = Form::parse(&page_url, &body);
    b.walk_from(b.client.post(&form.action).form(&form.fields), |_| false)
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_with_pysaml2_reaches_the_upstream_with_the_identity() {
    let Some(py) = python() else { return };
    let up = Whoami::start("app");
    let (idp, gw) = setup(&py, &up, "memory").await;

    let b = Browser::new();
    let w = sign_in(&b, &idp, &format!("{}/app/hello", gw.https()), "").await;
    assert_eq!(w.last().status, 200, "{w:#?}\n{}", gw.proc.logs());
    assert!(
        w.last().url.ends_with("/app/hello"),
        "back where it started: {w:#?}"
    );
    let set = w.session_set_cookie().expect("session cookie");
    assert!(set.contains("Secure") && set.contains("HttpOnly"));
    let h = &whoami_json(&w.body)["headers"];
    assert_eq!(h["x-portcullis-user"][0], "alice@example.com");
    assert_eq!(h["x-portcullis-email"][0], "alice@example.com");
    assert_eq!(h["x-portcullis-groups"][0], "staff,payroll");
    assert!(gw.proc.logs().contains("audit auth.login"));

    // The AuthnRequest was signed (pysaml2 verified it) and named our ACS.
    let reqs = idp.requests().await;
    let r = &reqs[0];
    assert_eq!(r["signed"], true);
    assert_eq!(r["sig_alg"], RSA_SHA256);
    assert_eq!(r["issuer"], SP);
    assert_eq!(r["acs"], format!("{}/.portcullis/saml/acs", gw.https()));

    // Step-up across protocols: the route wants the IdP's MultiFactor context class.
    let strong = b.api_get(format!("{}/strong/", gw.https())).await;
    assert_ne!(
        strong.status(),
        200,
        "PasswordProtectedTransport is not MFA"
    );
    let b2 = Browser::new();
    let w = sign_in(&b2, &idp, &format!("{}/strong/", gw.https()), "mfa").await;
    assert_eq!(w.last().status, 200, "{w:#?}\n{}", gw.proc.logs());

    // Encrypted assertions (pysaml2 encrypts to the SP certificate from our metadata, key
    // transport RSA-OAEP): AES-CBC and AES-GCM accepted, 3DES refused.
    for mode in ["encrypt", "encrypt_gcm"] {
        let b3 = Browser::new();
        let w = sign_in(&b3, &idp, &format!("{}/app/enc", gw.https()), mode).await;
        assert_eq!(w.last().status, 200, "{mode}: {w:#?}\n{}", gw.proc.logs());
        assert_eq!(
            whoami_json(&w.body)["headers"]["x-portcullis-user"][0],
            "alice@example.com"
        );
    }
    let b3 = Browser::new();
    let w = sign_in(
        &b3,
        &idp,
        &format!("{}/app/enc", gw.https()),
        "encrypt_3des",
    )
    .await;
    assert_ne!(w.last().status, 200);
    assert!(w.session_set_cookie().is_none());
    assert!(gw.proc.logs().contains("is not AES-GCM or AES-CBC"));

    // SHA-1 from the real IdP: refused (allow_sha1 is off).
    let b4 = Browser::new();
    let w = sign_in(&b4, &idp, &format!("{}/app/", gw.https()), "sha1").await;
    assert_ne!(w.last().status, 200);
    assert!(w.session_set_cookie().is_none());
    assert!(
        gw.proc.logs().contains("is not accepted"),
        "{}",
        gw.proc.logs()
    );
}
