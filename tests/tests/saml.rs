//! SAML 2.0 sign-in against a real IdP (PyPI pysaml2, started by the harness) and a hostile
//! suite: responses the harness forges and signs itself with `xmlsec1` (with the real IdP key
//! or an attacker's). Every hostile case must end without a session, without reaching the
//! upstream, and with an `auth.login_failed` audit line naming the reason.

use portcullis_e2e::oidc::*;
use portcullis_e2e::saml::*;
use portcullis_e2e::*;
use reqwest::cookie::CookieStore;

const SP: &str = "https://gw.test/saml";
const MFA: &str = "urn:oasis:names:tc:SAML:2.0:ac:classes:MultiFactor";

fn config(idp: &SamlIdp, up: &str, store: &str) -> String {
    config_with(idp, up, store, "")
}

fn config_with(idp: &SamlIdp, up: &str, store: &str, extra: &str) -> String {
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
{extra}routes:
  - {{ id: app, path: /app, upstream: \"{up}\", policy: authenticated }}
  - {{ id: strong, path: /strong, upstream: \"{up}\", policy: {{ allow: [ {{ mfa: {{ methods: [\"idp:{MFA}\"] }} }} ] }} }}
"
    )
}

/// Starts the IdP and a gateway that trusts it (and that the IdP trusts back).
async fn setup(py: &std::path::Path, up: &Whoami, store: &str) -> (SamlIdp, Gateway) {
    let idp = SamlIdp::start(py);
    let gw = Gateway::start(&config(&idp, &up.url(), store));
    trust(&idp, &gw).await;
    (idp, gw)
}

/// Makes `idp` trust the SP metadata `gw` publishes.
async fn trust(idp: &SamlIdp, gw: &Gateway) {
    let md = Browser::new()
        .client
        .get(format!("{}/.portcullis/saml/metadata", gw.https()))
        .send()
        .await
        .expect("SP metadata");
    assert_eq!(md.status(), 200);
    idp.trust_sp(&md.text().await.expect("body"));
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
    // The pre-auth cookie travels with the IdP's cross-site POST: SameSite=None, Secure.
    let first = Browser::new()
        .walk_until(&format!("{}/app/", gw.https()), |_| true)
        .await;
    let pre = first.hops[0]
        .set_cookies
        .iter()
        .find(|c| c.starts_with("__Host-portcullis-saml="))
        .expect("SAML pre-auth cookie");
    assert!(
        pre.contains("SameSite=None") && pre.contains("Secure") && pre.contains("HttpOnly"),
        "{pre}"
    );
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

    // SAML providers are fixed at start: a reload that changes one says so and changes nothing.
    let text = std::fs::read_to_string(&gw.config).unwrap();
    std::fs::write(&gw.config, text.replace(SP, "https://changed.test/saml")).unwrap();
    gw.proc.signal("HUP");
    let warned = eventually(std::time::Duration::from_secs(10), || {
        gw.proc
            .logs()
            .contains("SAML providers take effect only after a restart")
    })
    .await;
    assert!(warned, "{}", gw.proc.logs());
    let md = Browser::new()
        .client
        .get(format!("{}/.portcullis/saml/metadata", gw.https()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(md.contains(&format!("entityID=\"{SP}\"")), "{md}");
}

/// A login started in a fresh browser: the browser, its AuthnRequest ID and RelayState.
async fn begin(gw_origin: &str, idp: &SamlIdp) -> (Browser, String, String) {
    let b = Browser::new();
    let w = b
        .walk_until(&format!("{gw_origin}/app/"), |u| u.starts_with(&idp.url()))
        .await;
    let to_idp = w.last().location.clone().expect("redirect to the IdP");
    (b, request_id(&to_idp), relay_state(&to_idp))
}

/// Posts `xml` to the ACS of `origin` as the IdP's form would, from browser `b`.
async fn post(b: &Browser, origin: &str, xml: &str, relay: &str) -> Walk {
    let fields = [
        ("SAMLResponse", b64(xml)),
        ("RelayState", relay.to_string()),
    ];
    b.walk_from(
        b.client
            .post(format!("{origin}/.portcullis/saml/acs"))
            .form(&fields),
        |_| false,
    )
    .await
}

fn refusals(gw: &Gateway) -> usize {
    gw.proc.logs().matches("audit auth.login_failed").count()
}

/// The walk opened no session, did not reach the app, and one more refusal naming `reason`
/// was audited.
async fn assert_refused(gw: &Gateway, case: &str, w: &Walk, before: usize, reason: &str) {
    assert!(
        w.session_set_cookie().is_none(),
        "{case}: session opened: {w:#?}"
    );
    assert_eq!(w.hops.len(), 1, "{case}: went on to {w:#?}");
    assert!(
        matches!(w.last().status, 400 | 401 | 403),
        "{case}: status {}",
        w.last().status
    );
    let seen = eventually(std::time::Duration::from_secs(10), || refusals(gw) > before).await;
    assert!(seen, "{case}: no auth.login_failed audit line");
    let logs = gw.proc.logs();
    let last = logs
        .lines()
        .rfind(|l| l.contains("audit auth.login_failed"))
        .unwrap_or_default()
        .to_string();
    assert!(
        last.contains(reason),
        "{case}: refused for another reason than {reason:?}: {last}"
    );
}

fn now() -> i64 {
    i64::try_from(portcullis_e2e::totp::now()).expect("now")
}

#[tokio::test(flavor = "multi_thread")]
async fn every_hostile_response_is_refused_without_a_session() {
    let Some(py) = python() else { return };
    let up = Whoami::start("app");
    let redis = Redis::start();
    let ports = Ports::fresh();
    let idp_peer = SamlIdp::start(&py);
    let idp = &idp_peer;
    let origin = format!("https://127.0.0.1:{}", ports.https);
    // Two replicas behind one external URL, sharing Redis (sessions and the replay cache).
    let acs = format!("    acs_url: {origin}/.portcullis/saml/acs\n");
    let gw = Gateway::start_on(ports, &config_with(idp, &up.url(), &redis.url(), &acs));
    let gw2 = Gateway::start(&config_with(idp, &up.url(), &redis.url(), &acs));
    let t = now();

    // Control: a response the harness forges and signs with the IdP's key is accepted.
    let (b, irt, relay) = begin(&origin, idp).await;
    let good = Forged::new(idp, &origin, SP, &irt, t);
    let good_xml = good.xml(idp, "idp");
    let pre_auth: Vec<String> = b
        .jar
        .cookies(&origin.parse().unwrap())
        .map(|v| v.to_str().unwrap().to_string())
        .into_iter()
        .collect();
    let w = post(&b, &origin, &good_xml, &relay).await;
    assert!(
        w.session_set_cookie().is_some(),
        "control: {w:#?}\n{}",
        gw.proc.logs()
    );
    assert_eq!(w.last().status, 200);

    // Replayed: the same response again, with the pre-auth cookie put back (an attacker who
    // captured both), at this replica and at the other one.
    for (case, target) in [("replay", &gw), ("replay at replica 2", &gw2)] {
        let thief = Browser::new();
        for c in pre_auth.iter().flat_map(|h| h.split("; ")) {
            let url: url::Url = origin.parse().unwrap();
            thief
                .jar
                .add_cookie_str(&format!("{c}; Secure; Path=/"), &url);
            let url2: url::Url = target.https().parse().unwrap();
            thief
                .jar
                .add_cookie_str(&format!("{c}; Secure; Path=/"), &url2);
        }
        let before = refusals(target);
        let w = post(&thief, &target.https(), &good_xml, &relay).await;
        assert_refused(target, case, &w, before, "replayed").await;
    }

    // Each case: a fresh login, then the forged answer to it.
    type Build<'a> = Box<dyn Fn(&Forged) -> String + 'a>;
    let signed = move |f: &Forged| f.signed_assertion(idp, "idp");
    let evil = move |f: &Forged| {
        Forged {
            assertion_id: "_evil".into(),
            name_id: "admin@example.com".into(),
            sign_assertion: false,
            ..f.clone()
        }
        .assertion()
    };
    let cases: Vec<(&str, Build<'_>, &str)> = vec![
        (
            "unsigned",
            Box::new(move |f: &Forged| {
                Forged {
                    sign_assertion: false,
                    ..f.clone()
                }
                .xml(idp, "idp")
            }),
            "not signed",
        ),
        (
            "signed with the wrong key",
            Box::new(move |f: &Forged| f.xml(idp, "attacker")),
            "invalid signature",
        ),
        (
            "XSW: signed assertion wrapped in Extensions, evil one used",
            Box::new(move |f: &Forged| {
                f.wrap(&format!(
                    "<samlp:Extensions>{}</samlp:Extensions>{}",
                    signed(f),
                    evil(f)
                ))
            }),
            "not signed",
        ),
        (
            "XSW: second assertion before the signed one",
            Box::new(move |f: &Forged| f.wrap(&format!("{}{}", evil(f), signed(f)))),
            "exactly one Assertion",
        ),
        (
            "XSW: second assertion after the signed one",
            Box::new(move |f: &Forged| f.wrap(&format!("{}{}", signed(f), evil(f)))),
            "exactly one Assertion",
        ),
        (
            "XSW: signed assertion moved into the evil one's signature",
            Box::new(move |f: &Forged| {
                let s = signed(f);
                let sig = &s[s.find("<ds:Signature").unwrap()..s.find("</ds:Signature>").unwrap()];
                let moved = format!("{sig}<ds:Object>{s}</ds:Object></ds:Signature>");
                f.wrap(&evil(f).replacen("</saml:Issuer>", &format!("</saml:Issuer>{moved}"), 1))
            }),
            "signature",
        ),
        (
            "XSW: evil Response wrapping the signed one",
            Box::new(move |f: &Forged| {
                let inner = f.xml(idp, "idp");
                Forged {
                    response_id: "_evilresp".into(),
                    ..f.clone()
                }
                .wrap(&format!(
                    "<samlp:Extensions>{inner}</samlp:Extensions>{}",
                    evil(f)
                ))
            }),
            "not signed",
        ),
        (
            "wrong audience",
            Box::new(move |f: &Forged| {
                Forged {
                    audience: "https://other-sp.test".into(),
                    ..f.clone()
                }
                .xml(idp, "idp")
            }),
            "Audience",
        ),
        (
            "wrong recipient",
            Box::new(move |f: &Forged| {
                Forged {
                    recipient: "https://evil.test/acs".into(),
                    ..f.clone()
                }
                .xml(idp, "idp")
            }),
            "Recipient",
        ),
        (
            "wrong destination",
            Box::new(move |f: &Forged| {
                Forged {
                    destination: "https://evil.test/acs".into(),
                    ..f.clone()
                }
                .xml(idp, "idp")
            }),
            "Destination",
        ),
        (
            "expired",
            Box::new(move |f: &Forged| {
                Forged {
                    not_before: t - 900,
                    not_on_or_after: t - 300,
                    ..f.clone()
                }
                .xml(idp, "idp")
            }),
            "expired",
        ),
        (
            "not yet valid",
            Box::new(move |f: &Forged| {
                Forged {
                    not_before: t + 600,
                    not_on_or_after: t + 900,
                    ..f.clone()
                }
                .xml(idp, "idp")
            }),
            "not yet valid",
        ),
        (
            "missing InResponseTo (unsolicited)",
            Box::new(move |f: &Forged| {
                Forged {
                    irt: None,
                    ..f.clone()
                }
                .xml(idp, "idp")
            }),
            "unsolicited",
        ),
        (
            "comment-injected NameID",
            Box::new(move |f: &Forged| {
                Forged {
                    name_id: "user@user.com.evil.com".into(),
                    ..f.clone()
                }
                .xml(idp, "idp")
                .replace("user@user.com.evil.com", "user@user.com<!---->.evil.com")
            }),
            "holds a comment",
        ),
        (
            "DOCTYPE with an external entity",
            Box::new(move |f: &Forged| {
                format!(
                    "<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>{}",
                    f.xml(idp, "idp").replace("mallory@example.com", "&x;")
                )
            }),
            "DOCTYPE",
        ),
        (
            "billion laughs",
            Box::new(move |_: &Forged| {
                let mut x = String::from("<?xml version=\"1.0\"?><!DOCTYPE l [<!ENTITY a \"lol\">");
                for i in 1..10 {
                    let prev = if i == 1 {
                        "a".to_string()
                    } else {
                        format!("a{}", i - 1)
                    };
                    x.push_str(&format!(
                        "<!ENTITY a{i} \"{}\">",
                        format!("&{prev};").repeat(10)
                    ));
                }
                x.push_str("]><samlp:Response xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\">&a9;</samlp:Response>");
                x
            }),
            "DOCTYPE",
        ),
        (
            "SHA-1 signature",
            Box::new(move |f: &Forged| {
                Forged {
                    sig_alg: RSA_SHA1.into(),
                    digest_alg: SHA1.into(),
                    ..f.clone()
                }
                .xml(idp, "idp")
            }),
            "is not accepted",
        ),
        (
            "status not Success",
            Box::new(move |f: &Forged| {
                Forged {
                    status: "urn:oasis:names:tc:SAML:2.0:status:Responder".into(),
                    ..f.clone()
                }
                .xml(idp, "idp")
            }),
            "status",
        ),
    ];
    for (case, build, reason) in cases {
        let (b, irt, relay) = begin(&origin, idp).await;
        let xml = build(&Forged::new(idp, &origin, SP, &irt, t));
        let before = refusals(&gw);
        let started = std::time::Instant::now();
        let w = post(&b, &origin, &xml, &relay).await;
        assert_refused(&gw, case, &w, before, reason).await;
        if reason == "DOCTYPE" {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(1),
                "{case} refused slowly"
            );
        }
    }

    // RelayState swapped for another URL (an open redirect attempt): refused; the return URL
    // only ever comes from the pre-auth cookie.
    let (b, irt, _) = begin(&origin, idp).await;
    let before = refusals(&gw);
    let w = post(
        &b,
        &origin,
        &Forged::new(idp, &origin, SP, &irt, t).xml(idp, "idp"),
        "https://evil.test/",
    )
    .await;
    assert_refused(&gw, "RelayState swapped", &w, before, "RelayState").await;

    // Foreign InResponseTo: a response made for browser A's request, posted by browser B.
    let (_a, irt_a, _) = begin(&origin, idp).await;
    let (b, _, relay_b) = begin(&origin, idp).await;
    let before = refusals(&gw);
    let w = post(
        &b,
        &origin,
        &Forged::new(idp, &origin, SP, &irt_a, t).xml(idp, "idp"),
        &relay_b,
    )
    .await;
    assert_refused(
        &gw,
        "foreign InResponseTo",
        &w,
        before,
        "InResponseTo is not the request this browser sent",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn single_logout_both_ways_and_forged_logout_requests_are_refused() {
    let Some(py) = python() else { return };
    let up = Whoami::start("app");
    let (idp, gw) = setup(&py, &up, "memory").await;
    let app = format!("{}/app/", gw.https());

    // SP-initiated: signing out here sends the browser to the IdP with our signed LogoutRequest
    // for its NameID and SessionIndex; the IdP's LogoutResponse brings it back.
    let b = Browser::new();
    assert_eq!(sign_in(&b, &idp, &app, "").await.last().status, 200);
    let out = b.logout(&gw.https()).await;
    assert_eq!(out.status(), 302);
    let to_idp = out.headers()["location"].to_str().unwrap().to_string();
    assert!(
        to_idp.starts_with(&format!("{}/slo?SAMLRequest=", idp.url())),
        "{to_idp}"
    );
    let w = b.walk(&to_idp).await;
    assert!(
        w.hops
            .iter()
            .any(|h| h.url.contains("/.portcullis/saml/slo?SAMLResponse=")),
        "{w:#?}"
    );
    assert_eq!(b.api_get(&app).await.status(), 401, "signed out");
    let reqs = idp.requests().await;
    let lr = reqs
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "LogoutRequest")
        .expect("the IdP got our LogoutRequest");
    assert_eq!(lr["name_id"], "alice@example.com");
    assert_eq!(lr["signed"], true);
    assert_eq!(lr["session_indexes"].as_array().map(Vec::len), Some(1));

    // A forged (unsigned) LogoutRequest naming alice: refused, her session lives on.
    let b1 = Browser::new();
    assert_eq!(sign_in(&b1, &idp, &app, "").await.last().status, 200);
    let forged = format!(
        "<samlp:LogoutRequest xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"_f1\" Version=\"2.0\" IssueInstant=\"2026-01-01T00:00:00Z\"><saml:Issuer>{}</saml:Issuer><saml:NameID>alice@example.com</saml:NameID></samlp:LogoutRequest>",
        idp.entity_id()
    );
    let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut z, forged.as_bytes()).unwrap();
    let q: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("SAMLRequest", &b64_bytes(&z.finish().unwrap()))
        .finish();
    let r = Browser::new()
        .client
        .get(format!("{}/.portcullis/saml/slo?{q}", gw.https()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        b1.api_get(&app).await.status(),
        200,
        "a forged logout ended nothing"
    );

    // IdP-initiated (signed, HTTP-Redirect): every session of that NameID ends, on this
    // browser and another one; the IdP gets a LogoutResponse.
    let b2 = Browser::new();
    assert_eq!(sign_in(&b2, &idp, &app, "").await.last().status, 200);
    let q: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("sp", SP)
        .append_pair("name_id", "alice@example.com")
        .finish();
    let w = b1.walk(&format!("{}/logout?{q}", idp.url())).await;
    assert_eq!(w.last().status, 200, "{w:#?}\n{}", gw.proc.logs());
    assert_eq!(b1.api_get(&app).await.status(), 401);
    assert_eq!(b2.api_get(&app).await.status(), 401);
    let reqs = idp.requests().await;
    assert!(
        reqs.as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "LogoutResponse" && r["signed"] == true),
        "{reqs}"
    );
    assert!(gw.proc.logs().contains("saml_logout"));
}

fn b64_bytes(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[tokio::test(flavor = "multi_thread")]
async fn idp_metadata_from_a_url_is_refreshed_and_its_signature_checked() {
    let Some(py) = python() else { return };
    let up = Whoami::start("app");
    let idp = SamlIdp::start(&py);
    let d = idp.dir.path().display().to_string();
    // Not served at first: the gateway starts without metadata and refuses to sign in.
    let signed = idp.path("idp-signed.xml");
    let hidden = idp.path("idp-signed.xml.hidden");
    std::fs::rename(&signed, &hidden).unwrap();
    let url_cfg = |cert: &str| {
        config(&idp, &up.url(), "memory").replace(
            &format!("    idp_metadata_file: {d}/idp.xml\n"),
            &format!(
                "    idp_metadata_url: {}/metadata-signed\n    idp_metadata_signing_cert: {d}/{cert}.crt\n    idp_metadata_refresh: 1s\n",
                idp.url()
            ),
        )
    };
    let gw = Gateway::start(&url_cfg("idp"));
    trust(&idp, &gw).await;
    let app = format!("{}/app/", gw.https());
    let w = Browser::new().walk(&app).await;
    assert_eq!(w.last().status, 502, "no metadata yet: {w:#?}");
    let named = eventually(std::time::Duration::from_secs(15), || {
        raw_request(gw.ports.admin, "GET /readyz HTTP/1.1", &[])
            .is_ok_and(|r| r.0 == 503 && r.2.contains("identity_provider:partner"))
    })
    .await;
    assert!(named, "/readyz names the SAML provider without metadata");
    // Served now: the next refresh (within the 1 s interval) picks it up.
    std::fs::rename(&hidden, &signed).unwrap();
    let logs_ok = eventually(std::time::Duration::from_secs(10), || {
        gw.proc.logs().contains("SAML IdP metadata loaded")
    })
    .await;
    assert!(logs_ok, "{}", gw.proc.logs());
    let ready = eventually(std::time::Duration::from_secs(15), || {
        raw_request(gw.ports.admin, "GET /readyz HTTP/1.1", &[]).is_ok_and(|r| r.0 == 200)
    })
    .await;
    assert!(ready, "/readyz recovers once the metadata is loaded");
    let b = Browser::new();
    assert_eq!(sign_in(&b, &idp, &app, "").await.last().status, 200);
    // Not served again: refreshes fail, the last good metadata stays in use.
    std::fs::rename(&signed, &hidden).unwrap();
    let failed = eventually(std::time::Duration::from_secs(10), || {
        gw.proc
            .logs()
            .contains("refresh failed (keeping the last good one)")
    })
    .await;
    assert!(failed, "{}", gw.proc.logs());
    let b = Browser::new();
    assert_eq!(sign_in(&b, &idp, &app, "").await.last().status, 200);
    std::fs::rename(&hidden, &signed).unwrap();

    // Signed metadata checked against another certificate: never loaded, no sign-in.
    let gw2 = Gateway::start(&url_cfg("attacker"));
    let refused = eventually(std::time::Duration::from_secs(10), || {
        gw2.proc.logs().contains("metadata signature")
    })
    .await;
    assert!(refused, "{}", gw2.proc.logs());
    let w = Browser::new().walk(&format!("{}/app/", gw2.https())).await;
    assert_eq!(w.last().status, 502);
    assert!(!gw2.proc.logs().contains("SAML IdP metadata loaded"));
}

#[tokio::test(flavor = "multi_thread")]
async fn saml_sign_ins_go_through_the_directory() {
    let Some(py) = python() else { return };
    let up = Whoami::start("app");
    let idp = SamlIdp::start(&py);
    let db = tempfile::tempdir().unwrap();
    let store = db.path().join("portcullis.db");
    let with_directory = |jit: bool| {
        config(&idp, &up.url(), "memory")
            .replace(
                "routes:",
                &format!(
                    "store: \"sqlite://{}\"\ndirectory: {{}}\nroutes:",
                    store.display()
                ),
            )
            .replace(
                "    sign_authn_requests: true\n",
                &format!("    sign_authn_requests: true\n    jit: {jit}\n"),
            )
    };
    for jit in [false, true] {
        let gw = Gateway::start(&with_directory(jit));
        trust(&idp, &gw).await;
        let b = Browser::new();
        let w = sign_in(&b, &idp, &format!("{}/app/", gw.https()), "").await;
        if jit {
            assert_eq!(w.last().status, 200, "{w:#?}\n{}", gw.proc.logs());
            assert!(
                gw.proc.logs().contains("directory.user_created"),
                "{}",
                gw.proc.logs()
            );
        } else {
            assert_ne!(w.last().status, 200, "unknown to the directory: refused");
            assert!(w.session_set_cookie().is_none());
            assert!(
                gw.proc.logs().contains("not in directory"),
                "{}",
                gw.proc.logs()
            );
        }
    }
}
