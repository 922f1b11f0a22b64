//! LDAP sign-in end to end, against a private OpenLDAP slapd (tests/src/ldap.rs): the password
//! form at `/.portcullis/login` checks names and passwords by a bind; identities, nested
//! groups and route policies; one answer for every wrong name or password; hostile names;
//! Active Directory's `userAccountControl`; the directory down; TLS with a private CA (LDAPS
//! and StartTLS) and a wrong CA; lockout per user and per address; home-realm discovery.

use portcullis_e2e::ldap::{Slapd, GROUPS, PEOPLE, SERVICE_DN, SERVICE_PW};
use portcullis_e2e::oidc::{Browser, Walk};
use portcullis_e2e::*;
use std::time::Instant;

const PASSWORD: &str = "alice's long passphrase";

/// alice ∈ devs ∈ staff (staff only through nesting); bob in no group; carol disabled
/// (`userAccountControl` 514 = NORMAL_ACCOUNT | ACCOUNTDISABLE); dave locked (528 = NORMAL |
/// LOCKOUT); erin a normal AD-style account (512); aliceanne shares alice's prefix.
fn seeded() -> Slapd {
    let s = Slapd::start();
    s.add_user("alice", PASSWORD, None);
    s.add_user("aliceanne", "anne's passphrase", None);
    s.add_user("bob", "bob's passphrase", None);
    s.add_user("carol", "carol's passphrase", Some(514));
    s.add_user("dave", "dave's passphrase", Some(528));
    s.add_user("erin", "erin's passphrase", Some(512));
    s.add_group("devs", &[Slapd::user_dn("alice")]);
    s.add_group("staff", &[Slapd::group_dn("devs")]);
    // A cycle: bob ∈ loop1 ∈ loop2 ∈ loop1.
    s.add_group("loop1", &[Slapd::user_dn("bob"), Slapd::group_dn("loop2")]);
    s.add_group("loop2", &[Slapd::group_dn("loop1")]);
    // An entry whose mail is "bobby": the name "bobby" then matches it and bobby's uid.
    s.add(&format!(
        "dn: uid=twin,{PEOPLE}\nobjectClass: inetOrgPerson\nuid: twin\ncn: twin\nsn: twin\nmail: bobby\nuserPassword: twin's passphrase\n"
    ));
    s.add_user("bobby", "bobby's passphrase", None);
    s
}

/// An LDAP provider entry over `url` with `extra` keys.
fn provider(id: &str, url: &str, extra: &str) -> String {
    format!(
        "  - {{ id: {id}, type: ldap, url: \"{url}\", bind_dn: \"{SERVICE_DN}\", bind_password: \"{SERVICE_PW}\", user_base: \"{PEOPLE}\", user_filter: \"(|(uid={{username}})(mail={{username}}))\", group_base: \"{GROUPS}\", {extra} }}\n"
    )
}

fn config(providers: &str, up: &str, extra: &str) -> String {
    format!(
        "{SERVER}session: {{ keys: [\"AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=\"] }}
identity_providers:
{providers}{extra}routes:
  - {{ id: app, path: /app, upstream: \"{up}\", policy: {{ allow: [ {{ groups: [staff] }} ] }} }}
  - {{ id: any, path: /any, upstream: \"{up}\", policy: authenticated }}
"
    )
}

/// The usual gateway: LDAPS with the private CA, nested groups by recursive search.
fn ldaps(s: &Slapd, nested: &str) -> String {
    provider(
        "corp",
        &s.ldaps_url(),
        &format!("ca_file: \"{}\", nested_groups: {nested}", s.ca_file),
    )
}

async fn sign_in(b: &Browser, url: &str, user: &str, password: &str) -> Walk {
    b.password_sign_in(url, user, password).await
}

fn seen(w: &Walk) -> serde_json::Value {
    whoami_json(&w.body)
}

/// The groups the upstream was told, sorted.
fn groups(w: &Walk) -> Vec<String> {
    let v = seen(w);
    let mut g: Vec<String> = v["headers"]["x-portcullis-groups"][0]
        .as_str()
        .unwrap_or_default()
        .split(',')
        .filter(|g| !g.is_empty())
        .map(str::to_string)
        .collect();
    g.sort();
    g
}

#[tokio::test(flavor = "multi_thread")]
async fn a_right_password_reaches_the_app_with_identity_and_nested_groups() {
    let s = seeded();
    let up = Whoami::start("app");
    let gw = Gateway::start(&config(&ldaps(&s, "true"), &up.url(), ""));

    let b = Browser::new();
    let w = sign_in(&b, &format!("{}/app/x", gw.https()), "alice", PASSWORD).await;
    assert_eq!(w.last().status, 200, "{w:#?}\n{}", w.body);
    let v = seen(&w);
    let h = &v["headers"];
    assert_eq!(h["x-portcullis-user"][0], "alice", "{v}");
    assert_eq!(h["x-portcullis-email"][0], "alice@example.com", "{v}");
    assert_eq!(groups(&w), ["devs", "staff"], "direct and nested: {v}");
    let logs = gw.proc.logs();
    assert!(logs.contains("audit auth.login "), "{logs}");
    assert!(!logs.contains(PASSWORD), "the password is never logged");

    // bob signs in, but is not in staff: denied by the route's policy. (His groups form a
    // cycle, which ends: see below.)
    let b2 = Browser::new();
    let w = sign_in(
        &b2,
        &format!("{}/app/x", gw.https()),
        "bob",
        "bob's passphrase",
    )
    .await;
    assert_eq!(w.last().status, 403, "{w:#?}");

    // At the server: both sign-ins searched over ONE pooled service connection (one service
    // bind), and each user's bind ran on a connection of its own that never searched.
    let logs = s.peer.logs();
    let conns = |what: &str| -> std::collections::HashSet<String> {
        logs.lines()
            .filter(|l| l.contains(what))
            .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("conn=")))
            .map(str::to_string)
            .collect()
    };
    let service = conns(&format!("BIND dn=\"{SERVICE_DN}\""));
    assert_eq!(service.len(), 1, "one pooled service connection: {logs}");
    let searches = conns(" SRCH base=");
    for user in ["alice", "bob"] {
        let binds = conns(&format!("BIND dn=\"uid={user},{PEOPLE}\""));
        assert_eq!(binds.len(), 1, "{user}: {logs}");
        assert!(
            binds.is_disjoint(&searches),
            "{user}'s connection searched: {logs}"
        );
        assert!(binds.is_disjoint(&service), "{logs}");
    }

    // Without nested groups, alice is only in devs: the same route denies her.
    let gw2 = Gateway::start(&config(&ldaps(&s, "false"), &up.url(), ""));
    let b3 = Browser::new();
    let w = sign_in(&b3, &format!("{}/app/x", gw2.https()), "alice", PASSWORD).await;
    assert_eq!(
        w.last().status,
        403,
        "staff is reached only by nesting: {w:#?}"
    );
    let w = b3.walk(&format!("{}/any/x", gw2.https())).await;
    assert_eq!(groups(&w), ["devs"], "{}", w.body);
    let w = b2.walk(&format!("{}/any/x", gw.https())).await;
    assert_eq!(groups(&w), ["loop1", "loop2"], "{}", w.body);
    // Recursive, but bounded to one level: alice stops at devs.
    let one_level = "type: ldap, max_group_depth: 1,";
    let bounded = ldaps(&s, "recursive").replace("type: ldap,", one_level);
    let gw3 = Gateway::start(&config(&bounded, &up.url(), ""));
    let w = sign_in(
        &Browser::new(),
        &format!("{}/app/x", gw3.https()),
        "alice",
        PASSWORD,
    )
    .await;
    assert_eq!(
        w.last().status,
        403,
        "max_group_depth 1 stops at devs: {w:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_empty_unknown_and_hostile_names_get_one_answer_and_never_sign_in() {
    let s = seeded();
    let up = Whoami::start("app");
    let gw = Gateway::start(&config(&ldaps(&s, "true"), &up.url(), ""));
    let url = format!("{}/any/x", gw.https());
    let invalid = |w: &Walk| {
        w.last().status == 401
            && w.body.contains("Invalid username or password")
            && w.session_cookie().is_none()
    };

    let b = Browser::new();
    let wrong = sign_in(&b, &url, "alice", "not it").await;
    let unknown = sign_in(&b, &url, "mallory", PASSWORD).await;
    assert!(invalid(&wrong), "{wrong:#?}");
    assert!(invalid(&unknown), "{unknown:#?}");

    // An empty password is refused before any network: slapd sees no bind for alice.
    let binds = |logs: &str| {
        logs.matches(&format!("BIND dn=\"uid=alice,{PEOPLE}\""))
            .count()
    };
    let before = binds(&s.peer.logs());
    assert!(
        before >= 1,
        "the wrong password above was a bind: {}",
        s.peer.logs()
    );
    let empty = sign_in(&b, &url, "alice", "").await;
    assert!(invalid(&empty), "{empty:#?}");
    assert_eq!(
        binds(&s.peer.logs()),
        before,
        "no bind with an empty password"
    );

    // Hostile names with alice's password: none widens the filter onto alice (or anyone).
    for name in [
        "*",
        "al*",
        "alice*",
        "*)(uid=*",
        "admin)(|(uid=*",
        "alice)(|(uid=*",
        "\\2a",
        "al\\2a",
        "alice\0",
        "\0",
        "(uid=alice)",
        "alice)(objectClass=*",
        // Unescaped, these would match alice alone and sign her in.
        "*ce",
        "alice)(uid=alice",
    ] {
        let w = sign_in(&Browser::new(), &url, name, PASSWORD).await;
        assert!(invalid(&w), "{name:?}: {w:#?}");
    }
    // An oversized name is nobody's (same answer; not looked up).
    let w = sign_in(&Browser::new(), &url, &"a".repeat(5000), PASSWORD).await;
    assert!(invalid(&w), "oversized: {w:#?}");
    // A POST without this browser's form (login CSRF) is refused before any check.
    let r = Browser::new()
        .client
        .post(format!("{}/.portcullis/login", gw.https()))
        .form(&[
            ("state", "forged"),
            ("username", "alice"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // A name that matches two entries signs in nobody, even with one's password.
    let w = sign_in(&Browser::new(), &url, "bobby", "bobby's passphrase").await;
    assert!(invalid(&w), "ambiguous: {w:#?}");
    // At the server, the wildcard arrived as a literal.
    let logs = s.peer.logs();
    assert!(
        logs.contains("(uid=al\\2A)") || logs.contains("(uid=al\\2a)"),
        "{logs}"
    );
    assert!(
        !gw.proc.logs().contains("audit auth.login "),
        "nobody signed in"
    );

    // The same answer takes about the same time: an unknown name costs a bind too. (Each
    // name once, so no name reaches its lockout.)
    let time = |users: [&'static str; 5]| {
        let url = url.clone();
        async move {
            let mut v = Vec::new();
            for user in users {
                let b = Browser::new();
                let form = b.walk(&url).await;
                let f = portcullis_e2e::oidc::Form::parse(&form.last().url, &form.body);
                let mut fields = f.fields;
                fields.push(("username".into(), user.into()));
                fields.push(("password".into(), "wrong password".into()));
                let t = Instant::now();
                let r = b.client.post(&f.action).form(&fields).send().await.unwrap();
                v.push(t.elapsed());
                assert_eq!(r.status(), 401, "{user}");
            }
            v.sort();
            v[v.len() / 2]
        }
    };
    let known = time(["bob", "carol", "dave", "erin", "aliceanne"]).await;
    let unknown = time(["nobody1", "nobody2", "nobody3", "nobody4", "nobody5"]).await;
    eprintln!("median wrong password: {known:?}; median unknown user: {unknown:?}");
    assert!(
        unknown * 3 > known && known * 3 > unknown,
        "known {known:?} vs unknown {unknown:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn active_directory_account_control_is_told_only_after_the_right_password() {
    let s = seeded();
    let up = Whoami::start("app");
    let p = provider(
        "corp",
        &s.ldaps_url(),
        &format!(
            "ca_file: \"{}\", claims: {{ user: sAMAccountName, tenant: o }}",
            s.ca_file
        ),
    )
    .replace(
        "(|(uid={username})(mail={username}))",
        "(sAMAccountName={username})",
    );
    let gw = Gateway::start(&config(&p, &up.url(), ""));
    let url = format!("{}/any/x", gw.https());

    let w = sign_in(&Browser::new(), &url, "carol", "carol's passphrase").await;
    assert_eq!(w.last().status, 403, "{w:#?}");
    assert!(w.body.contains("Your account is disabled"), "{}", w.body);
    assert!(w.session_cookie().is_none());
    let w = sign_in(&Browser::new(), &url, "dave", "dave's passphrase").await;
    assert_eq!(w.last().status, 403, "{w:#?}");
    assert!(w.body.contains("Your account is locked"), "{}", w.body);
    // A wrong password for a disabled account reads like any wrong password.
    let w = sign_in(&Browser::new(), &url, "carol", "guess").await;
    assert_eq!(w.last().status, 401, "{w:#?}");
    assert!(w.body.contains("Invalid username or password"));
    // A normal account (512) signs in, named by sAMAccountName.
    let w = sign_in(&Browser::new(), &url, "erin", "erin's passphrase").await;
    assert_eq!(w.last().status, 200, "{w:#?}");
    let v = seen(&w);
    assert_eq!(v["headers"]["x-portcullis-user"][0], "erin", "{v}");
    assert_eq!(
        v["headers"]["x-portcullis-tenant"][0], "acme",
        "claims.tenant: {v}"
    );
    let logs = gw.proc.logs();
    assert!(
        logs.contains("audit auth.login_failed") && logs.contains("account disabled"),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_directory_down_fails_closed_with_a_page_and_no_session() {
    let mut s = Some(seeded());
    let up = Whoami::start("app");
    let p = ldaps(s.as_ref().unwrap(), "true").replace(
        "type: ldap,",
        "type: ldap, timeout: 1s, connect_timeout: 1s,",
    );
    let gw = Gateway::start(&config(&p, &up.url(), ""));
    let url = format!("{}/app/x", gw.https());
    // Once up (a pooled service connection now exists), then hanging: the timeouts answer.
    let w = sign_in(&Browser::new(), &url, "alice", PASSWORD).await;
    assert_eq!(w.last().status, 200, "{w:#?}");
    s.as_ref().unwrap().peer.signal("STOP");
    let t = Instant::now();
    let w = sign_in(&Browser::new(), &url, "alice", PASSWORD).await;
    let took = t.elapsed();
    s.as_ref().unwrap().peer.signal("CONT");
    assert_eq!(w.last().status, 503, "{w:#?}");
    assert!(w.session_cookie().is_none(), "{w:#?}");
    assert!(took < std::time::Duration::from_secs(5), "{took:?}");
    // Then down.
    drop(s.take());
    for _ in 0..2 {
        let w = sign_in(&Browser::new(), &url, "alice", PASSWORD).await;
        assert_eq!(w.last().status, 503, "{w:#?}");
        assert!(w.body.contains("Directory unavailable"), "{}", w.body);
        assert!(w.session_cookie().is_none(), "{w:#?}");
    }
    assert!(gw.proc.logs().contains("audit auth.login_unavailable"));
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_with_the_private_ca_over_ldaps_and_starttls_and_a_wrong_ca_is_refused() {
    let s = seeded();
    let up = Whoami::start("app");
    let other_ca = portcullis_e2e::pki::TestCa::named("Some Other CA");
    let wrong = other_ca.write_as(s.dir(), "wrong-ca.crt");
    let providers = [
        provider(
            "ldaps",
            &s.ldaps_url(),
            &format!("ca_file: \"{}\"", s.ca_file),
        ),
        provider(
            "starttls",
            &s.url(),
            &format!("start_tls: true, ca_file: \"{}\"", s.ca_file),
        ),
        provider("wrongca", &s.ldaps_url(), &format!("ca_file: \"{wrong}\"")),
        provider(
            "wrongstarttls",
            &s.url(),
            &format!("start_tls: true, ca_file: \"{wrong}\""),
        ),
        provider("plain", &s.url(), "allow_insecure: true"),
    ]
    .concat();
    let gw = Gateway::start(&config(&providers, &up.url(), ""));
    let login = |idp: &str| format!("{}/.portcullis/login?idp={idp}&rd=/any/x", gw.https());
    for idp in ["ldaps", "starttls", "plain"] {
        let w = sign_in(&Browser::new(), &login(idp), "alice", PASSWORD).await;
        assert_eq!(w.last().status, 200, "{idp}: {w:#?}");
        assert_eq!(seen(&w)["headers"]["x-portcullis-user"][0], "alice");
    }
    for idp in ["wrongca", "wrongstarttls"] {
        let w = sign_in(&Browser::new(), &login(idp), "alice", PASSWORD).await;
        assert_eq!(w.last().status, 503, "{idp}: {w:#?}");
        assert!(w.session_cookie().is_none());
    }
    // The opt-in is loud.
    assert!(
        gw.proc.logs().contains("DANGER: allow_insecure"),
        "{}",
        gw.proc.logs()
    );
    // StartTLS really was used: slapd logged the extended operation.
    assert!(
        s.peer.logs().contains("1.3.6.1.4.1.1466.20037"),
        "{}",
        s.peer.logs()
    );
}

#[test]
fn plain_ldap_is_refused_without_the_explicit_opt_in() {
    let dir = tempfile::tempdir().unwrap();
    let check = |p: &str| {
        let f = dir.path().join("c.yaml");
        std::fs::write(
            &f,
            Ports::fresh().fill(&config(p, "http://127.0.0.1:9", "")),
        )
        .unwrap();
        let out = std::process::Command::new(bin())
            .args(["check", "--config"])
            .arg(&f)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr).to_string()
            + &String::from_utf8_lossy(&out.stdout);
        (out.status.success(), text)
    };
    let (ok, text) = check(&provider(
        "corp",
        "ldap://127.0.0.1:389",
        "nested_groups: false",
    ));
    assert!(!ok, "{text}");
    assert!(
        text.contains("identity_providers[0].url") && text.contains("in clear"),
        "{text}"
    );
    let (ok, text) = check(&provider(
        "corp",
        "ldap://127.0.0.1:389",
        "allow_insecure: true",
    ));
    assert!(ok, "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_passwords_lock_per_user_name_and_per_address() {
    let s = seeded();
    let up = Whoami::start("app");
    let gw = Gateway::start(&config(&ldaps(&s, "true"), &up.url(), ""));
    let url = format!("{}/any/x", gw.https());
    // Five wrong passwords for alice: then even the right one is refused.
    for _ in 0..5 {
        let w = sign_in(&Browser::new(), &url, "alice", "guess").await;
        assert_eq!(w.last().status, 401);
    }
    let w = sign_in(&Browser::new(), &url, "alice", PASSWORD).await;
    assert_eq!(w.last().status, 429, "{w:#?}");
    assert!(w.body.contains("Too many attempts"));
    // bob is not locked by alice's failures...
    let w = sign_in(&Browser::new(), &url, "bob", "bob's passphrase").await;
    assert_eq!(w.last().status, 200, "{w:#?}");
    // ...until this address has failed fifty times (over many names): then it is locked.
    for i in 0..45 {
        let w = sign_in(&Browser::new(), &url, &format!("nobody{i}"), "guess").await;
        assert_eq!(w.last().status, 401, "{i}");
    }
    let w = sign_in(&Browser::new(), &url, "erin", "erin's passphrase").await;
    assert_eq!(w.last().status, 429, "the address is locked: {w:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn home_realm_discovery_sends_an_address_to_its_provider() {
    let s = seeded();
    let up = Whoami::start("app");
    let ports = Ports::fresh();
    let op = portcullis_e2e::oidc::OpenIdProvider::start(&[ports.https], None, 3600);
    let oidc = op.sso_config();
    let oidc_entry = oidc
        .lines()
        .find(|l| l.contains("type: oidc"))
        .expect("the OIDC provider entry");
    let providers = format!("{}{oidc_entry}\n", ldaps(&s, "true"));
    let cfg = |domains: &str| {
        config(&providers, &up.url(), domains)
            .replace("id: corp, type: oidc", "id: corp-oidc, type: oidc")
    };
    let gw = Gateway::start_on(
        ports,
        &cfg("login: { domains: { example.com: corp, partner.org: corp-oidc } }\n"),
    );

    // Several providers: the chooser asks for an address first.
    let b = Browser::new();
    let w = b.walk(&format!("{}/any/x", gw.https())).await;
    assert_eq!(w.last().status, 200, "{w:#?}");
    assert!(w.body.contains("name=\"email\""), "{}", w.body);

    // example.com → the LDAP provider's password form, the address filled in.
    let login = |email: &str| {
        format!(
            "{}/.portcullis/login?rd=/any/x&email={}",
            gw.https(),
            email.replace('@', "%40")
        )
    };
    let w = b.walk(&login("alice@example.com")).await;
    assert_eq!(w.last().status, 200, "{w:#?}");
    assert!(w.body.contains("value=\"alice@example.com\""), "{}", w.body);
    // The prefilled address signs in (the filter accepts uid or mail).
    let w = sign_in(
        &b,
        &login("alice@example.com"),
        "alice@example.com",
        PASSWORD,
    )
    .await;
    assert_eq!(w.last().status, 200, "{w:#?}");
    assert_eq!(seen(&w)["headers"]["x-portcullis-user"][0], "alice");

    // partner.org → a redirect to the OpenID Provider.
    let r = Browser::new()
        .client
        .get(login("zoe@PARTNER.org"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let to = r.headers()["location"].to_str().unwrap().to_string();
    assert!(to.starts_with(&op.issuer), "{to}");

    // The address is echoed escaped.
    let w = Browser::new()
        .walk(&format!(
            "{}/.portcullis/login?email=%3Cscript%3E%40evil.net",
            gw.https()
        ))
        .await;
    assert!(
        w.body.contains("&lt;script&gt;@evil.net") && !w.body.contains("<script>"),
        "{}",
        w.body
    );
    // An unknown domain: the list of providers.
    let w = Browser::new().walk(&login("eve@elsewhere.net")).await;
    assert_eq!(w.last().status, 200);
    assert!(w.body.contains("No sign-in is set up for"), "{}", w.body);
    assert!(
        w.body.contains("idp=corp&amp;") && w.body.contains("idp=corp-oidc"),
        "{}",
        w.body
    );

    // login.domains follows a config reload.
    gw.write_config(&cfg("login: { domains: { example.com: corp-oidc } }\n"));
    assert!(
        portcullis_e2e::oidc::eventually(std::time::Duration::from_secs(10), || gw
            .metric("portcullis_config_reloads_total{result=\"success\"}")
            .is_some_and(|n| n >= 1.0))
        .await,
        "{}",
        gw.proc.logs()
    );
    let r = Browser::new()
        .client
        .get(login("alice@example.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "example.com now goes to the OIDC provider");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_group_base_groups_come_from_member_of_nested_too() {
    let s = seeded();
    let up = Whoami::start("app");
    let p = provider(
        "corp",
        &s.ldaps_url(),
        &format!("ca_file: \"{}\", nested_groups: recursive", s.ca_file),
    )
    .replace(&format!("group_base: \"{GROUPS}\", "), "");
    let gw = Gateway::start(&config(&p, &up.url(), ""));
    let w = sign_in(
        &Browser::new(),
        &format!("{}/app/x", gw.https()),
        "alice",
        PASSWORD,
    )
    .await;
    assert_eq!(w.last().status, 200, "staff through devs' memberOf: {w:#?}");
    assert_eq!(groups(&w), ["devs", "staff"], "{}", w.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_share_the_lockout_through_redis() {
    let s = seeded();
    let up = Whoami::start("app");
    let redis = portcullis_e2e::oidc::Redis::start();
    let cfg = config(&ldaps(&s, "true"), &up.url(), "").replace(
        "session: { keys: [\"AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=\"] }",
        &format!(
            "session: {{ keys: [\"AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=\"], store: \"{}\" }}",
            redis.url()
        ),
    );
    let (a, b) = (Gateway::start(&cfg), Gateway::start(&cfg));
    // Three wrong passwords on one replica, two on the other: alice is locked on both.
    for gw in [&a, &a, &a, &b, &b] {
        let w = sign_in(
            &Browser::new(),
            &format!("{}/any/x", gw.https()),
            "alice",
            "guess",
        )
        .await;
        assert_eq!(w.last().status, 401);
    }
    for gw in [&a, &b] {
        let w = sign_in(
            &Browser::new(),
            &format!("{}/any/x", gw.https()),
            "alice",
            PASSWORD,
        )
        .await;
        assert_eq!(w.last().status, 429, "{w:#?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_directory_admits_ldap_users_adds_its_groups_and_refuses_deactivated_ones() {
    const SCIM_TOKEN: &str = "scim-token-ldap-admission-0123";
    let s = seeded();
    let up = Whoami::start("app");
    let dir = tempfile::tempdir().unwrap();
    let p = ldaps(&s, "true").replace("type: ldap,", "type: ldap, jit: true,");
    let extra = format!(
        "store: \"sqlite://{}/portcullis.db\"\ndirectory:\n  scim: {{ tokens: [\"{SCIM_TOKEN}\"] }}\n",
        dir.path().display()
    );
    let gw = Gateway::start(&config(&p, &up.url(), &extra));
    let url = format!("{}/any/x", gw.https());
    // First sign-in: a directory user is created just in time.
    let w = sign_in(&Browser::new(), &url, "alice", PASSWORD).await;
    assert_eq!(w.last().status, 200, "{w:#?}");
    let c = client(None);
    let scim = format!("{}/.portcullis/scim/v2", gw.https());
    let id = scim_user_id(&gw, SCIM_TOKEN, "alice").await;
    // A directory group joins the identity at the next sign-in.
    let r = c
        .post(format!("{scim}/Groups"))
        .bearer_auth(SCIM_TOKEN)
        .header("content-type", "application/scim+json")
        .body(
            serde_json::json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": "auditors",
                "members": [{"value": id}]
            })
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    let w = sign_in(&Browser::new(), &url, "alice", PASSWORD).await;
    assert_eq!(w.last().status, 200, "{w:#?}");
    assert_eq!(groups(&w), ["auditors", "devs", "staff"], "{}", w.body);
    // Deactivated in the directory: the right LDAP password no longer opens a session.
    let r = c
        .patch(format!("{scim}/Users/{id}"))
        .bearer_auth(SCIM_TOKEN)
        .header("content-type", "application/scim+json")
        .body(r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Replace","path":"active","value":false}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let w = sign_in(&Browser::new(), &url, "alice", PASSWORD).await;
    assert_eq!(w.last().status, 403, "{w:#?}");
    assert!(w.session_cookie().is_none());
    assert!(gw.proc.logs().contains("deactivated"));
}
