use super::*;
use std::collections::HashMap;

fn env() -> HashMap<String, String> {
    [("UP".to_string(), "http://127.0.0.1:9000".to_string())].into()
}

fn errors(text: &str) -> Vec<String> {
    match load_str(text, "c.yaml", &env()) {
        Ok(_) => panic!("config should be rejected"),
        Err(e) => e.to_string().lines().map(str::to_string).collect(),
    }
}

#[test]
fn minimal_config_loads_with_defaults() {
    let c = load_str(
        "routes:\n  - id: app\n    upstream: ${UP}\n    policy: public\n",
        "c.yaml",
        &env(),
    )
    .unwrap();
    assert_eq!(c.routes[0].path, "/");
    assert_eq!(c.routes[0].endpoints[0].addr.port(), 9000);
    assert_eq!(c.server.admin_listen.to_string(), "127.0.0.1:9090");
    assert!(c.server.https.is_some());
    assert!(
        c.server.access_log,
        "the access log is on unless switched off"
    );
}

#[test]
fn every_problem_is_reported_with_path_and_line() {
    let text = "\
server:
  http: { listen: \"nope\" }
  trusted_proxies: [10.0.0.0/33]
routes:
  - id: a
    upstream: htp://x
    policy: public
  - id: a
    path: admin
    upstream: [\"http://127.0.0.1:1\", \"http://127.0.0.1:1/x\"]
    policy: sometimes
    timeouts: { connect: soon }
";
    let e = errors(text);
    let want = [
        "c.yaml:2: server.http.listen: \"nope\" is not a socket address",
        "c.yaml:3: server.trusted_proxies[0]: \"10.0.0.0/33\" is not a CIDR",
        "c.yaml:6: routes[0].upstream: \"htp://x\" has scheme \"htp\"",
        "c.yaml:8: routes[1].id: \"a\" is already the id of routes[0]",
        "c.yaml:9: routes[1].path: \"admin\" must start with '/'",
        "c.yaml:10: routes[1].upstream[1]: \"http://127.0.0.1:1/x\" must not have a path",
        "c.yaml:11: routes[1].policy: unknown policy `sometimes`",
        "c.yaml:12: routes[1].timeouts.connect: \"soon\" is not a duration",
    ];
    for w in want {
        assert!(
            e.iter().any(|l| l.starts_with(w)),
            "missing {w:?} in {e:#?}"
        );
    }
    assert_eq!(e.len(), want.len(), "{e:#?}");
}

#[test]
fn unknown_keys_and_missing_env_are_named() {
    let e = errors("routes:\n  - id: a\n    upstream: http://127.0.0.1:1\n    policy: public\n    upstrem_tls: {}\n");
    assert!(
        e[0].starts_with("c.yaml:5: routes[0].upstrem_tls: unknown key `upstrem_tls` (did you mean `upstream_tls`?)"),
        "{e:?}"
    );
    let e = errors("routes:\n  - id: a\n    upstream: ${NOPE}\n    policy: public\n");
    assert_eq!(
        e[0],
        "c.yaml:3: routes[0].upstream: environment variable NOPE is not set"
    );
    let e = errors("routes: [\n");
    assert!(e[0].contains("invalid YAML"), "{e:?}");
}

#[test]
fn duplicate_routes_and_unnormalised_prefixes_are_refused() {
    let e = errors("routes:\n  - { id: a, path: /x, upstream: \"http://127.0.0.1:1\", policy: public }\n  - { id: b, path: /x, upstream: \"http://127.0.0.1:1\", policy: public }\n  - { id: c, path: /a/../b, upstream: \"http://127.0.0.1:1\", policy: public }\n");
    assert!(
        e.iter()
            .any(|l| l.contains("routes[1].path: same host and path as routes[0]")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|l| l.contains("routes[2].path: \"/a/../b\" is not in normalised form")),
        "{e:?}"
    );
}

#[test]
fn tls_files_are_checked_at_load() {
    let e = errors("server:\n  https: { listen: \"127.0.0.1:0\", cert: /nonexistent.crt, key: /nonexistent.key }\n");
    assert!(
        e[0].starts_with("c.yaml:2: server.https.cert: \"/nonexistent.crt\": cannot read"),
        "{e:?}"
    );
}

#[test]
fn private_key_jwt_needs_a_usable_key_and_no_secret() {
    let idp = |extra: &str| {
        format!(
            "identity_providers:\n  - {{ id: corp, type: oidc, issuer: \"https://op.example\", client_id: c{extra} }}\nroutes:\n  - {{ id: app, upstream: \"${{UP}}\", policy: public }}\n"
        )
    };
    let e = errors(&idp(", token_auth: private_key_jwt")).join("\n");
    assert!(
        e.contains("identity_providers[0].client_key_file: missing"),
        "{e}"
    );
    assert!(!e.contains("client_secret"), "no secret needed: {e}");
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(
        &junk,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let e = errors(&idp(&format!(
        ", token_auth: private_key_jwt, client_key_file: \"{}\"",
        junk.display()
    )))
    .join("\n");
    assert!(
        e.contains("identity_providers[0].client_key_file: holds no PEM private key"),
        "{e}"
    );
    let e = errors(&idp(", client_secret: s, client_key_file: /x.pem")).join("\n");
    assert!(
        e.contains("client_key_file: is used only with token_auth: private_key_jwt"),
        "{e}"
    );
    let good = dir.path().join("k.pem");
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    std::fs::write(&good, kp.serialize_pem()).unwrap();
    let c = load_str(
        &idp(&format!(
            ", token_auth: private_key_jwt, client_key_file: \"{}\", client_key_id: k1",
            good.display()
        )),
        "c.yaml",
        &env(),
    )
    .unwrap();
    let p = &c.identity_providers[0];
    assert_eq!(p.token_auth, auth_model::TokenAuth::PrivateKeyJwt);
    assert_eq!(p.client_key.as_ref().unwrap().alg(), "ES256");
    assert!(p.client_secret.is_none());
}

#[test]
fn an_unknown_key_does_not_hide_the_other_problems() {
    let text = "\
server:
  theads: 2
  http: { listen: \"127.0.0.1:8080\", redirect: true }
routes:
  - id: a
    upstream: htp://x
    policy: public
  - id: b
    path: /b
    upstream: http://127.0.0.1:1
    policy: public
    timeout: { connect: 1s }
  - id: b
    path: /c
    upstream: http://127.0.0.1:1
    policy: public
";
    let e = errors(text);
    let want = [
        "c.yaml:2: server.theads: unknown key `theads` (did you mean `threads`?)",
        "c.yaml:3: server.http.redirect: unknown key `redirect`",
        "c.yaml:6: routes[0].upstream: \"htp://x\" has scheme \"htp\"",
        "c.yaml:12: routes[1].timeout: unknown key `timeout` (did you mean `timeouts`?)",
        "c.yaml:13: routes[2].id: \"b\" is already the id of routes[1]",
    ];
    for w in want {
        assert!(
            e.iter().any(|l| l.starts_with(w)),
            "missing {w:?} in {e:#?}"
        );
    }
    assert_eq!(e.len(), want.len(), "{e:#?}");
}

/// Issue 10, H4: the path caps default to safe values and refuse nonsense with their key path.
#[test]
fn path_limits_default_safe_and_are_validated() {
    let route = "routes:\n  - { id: a, upstream: \"http://127.0.0.1:1\", policy: public }\n";
    let c = load_str(route, "c.yaml", &env()).unwrap();
    assert_eq!(
        c.server.path_limits,
        portcullis_policy::path::PathLimits::default()
    );
    let c = load_str(
        &format!("server:\n  max_path_bytes: 1024\n  max_path_segments: 16\n{route}"),
        "c.yaml",
        &env(),
    )
    .unwrap();
    assert_eq!(c.server.path_limits.max_bytes, 1024);
    assert_eq!(c.server.path_limits.max_segments, 16);
    let e = errors(&format!(
        "server:\n  max_path_bytes: 0\n  max_path_segments: 100000\n{route}"
    ));
    assert!(
        e.iter()
            .any(|l| l.contains("server.max_path_bytes: 0 is not between 1 and 65536")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|l| l.contains("server.max_path_segments: 100000 is not between 1 and 4096")),
        "{e:?}"
    );
}

#[test]
fn directory_section_and_jit_need_each_other() {
    let idp = "identity_providers:\n  - { id: corp, type: oidc, issuer: \"https://idp.example.com\", client_id: c, client_secret: s, jit: true }\n";
    let routes = "routes:\n  - { id: a, upstream: \"http://127.0.0.1:1\", policy: public }\n";
    let e = errors(&format!("{idp}{routes}"));
    assert!(
        e.iter()
            .any(|l| l.contains("identity_providers[0].jit: creates directory users")),
        "{e:?}"
    );
    let e = errors(&format!(
        "{idp}{routes}directory:\n  deprovision: {{ revoke_session: true }}\n"
    ));
    assert!(
        e.iter().any(|l| l.contains(
            "directory.deprovision.revoke_session: unknown key `revoke_session` (did you mean `revoke_sessions`?)"
        )),
        "{e:?}"
    );
    let c = load_str(
        &format!("{idp}{routes}directory:\n  deprovision: {{ remove_mfa: true }}\n"),
        "c.yaml",
        &env(),
    )
    .unwrap();
    assert!(c.identity_providers[0].jit);
    assert!(c.directory.unwrap().deprovision.remove_mfa);
}

#[test]
fn without_resolving_validates_a_config_for_another_network_and_nothing_else() {
    let text = "routes:\n  - { id: app, upstream: \"http://app.apps.svc.cluster.invalid:8080\", policy: public }\n";
    let errs = errors(text);
    assert!(
        errs.iter()
            .any(|e| e.contains("routes[0].upstream") && e.contains("does not resolve")),
        "{errs:?}"
    );
    let c = without_resolving(|| load_str(text, "c.yaml", &env())).unwrap();
    assert_eq!(c.routes[0].endpoints[0].addr.to_string(), "0.0.0.0:8080");
    // Other problems are still reported, and the next load on this thread resolves again.
    assert!(without_resolving(|| load_str("routes: [ { id: app } ]\n", "c.yaml", &env())).is_err());
    assert!(load_str(text, "c.yaml", &env()).is_err());
}

#[test]
fn ext_authz_needs_trusted_proxies_and_a_socket_address() {
    let route = "routes:\n  - id: app\n    upstream: ${UP}\n    policy: public\n";
    let c = load_str(
        &format!("server:\n  trusted_proxies: [127.0.0.1/32]\n  ext_authz: {{ listen: \"127.0.0.1:9191\" }}\n{route}"),
        "c.yaml",
        &env(),
    )
    .unwrap();
    assert_eq!(
        c.server.ext_authz_listen.map(|a| a.to_string()).as_deref(),
        Some("127.0.0.1:9191")
    );
    let off = load_str(route, "c.yaml", &env()).unwrap();
    assert!(
        off.server.ext_authz_listen.is_none(),
        "off unless configured"
    );
    let errs = errors(&format!(
        "server:\n  ext_authz: {{ listen: \"127.0.0.1:9191\" }}\n{route}"
    ))
    .join("\n");
    assert!(
        errs.contains("server.ext_authz") && errs.contains("trusted_proxies"),
        "{errs}"
    );
    let errs = errors(&format!(
        "server:\n  trusted_proxies: [127.0.0.1/32]\n  ext_authz: {{ listen: nope }}\n{route}"
    ))
    .join("\n");
    assert!(errs.contains("server.ext_authz.listen"), "{errs}");
    let errs = errors(&format!(
        "server:\n  trusted_proxies: [127.0.0.1/32]\n  ext_authz: {{ listen: \"127.0.0.1:9191\", tls: true }}\n{route}"
    ))
    .join("\n");
    assert!(errs.contains("tls"), "{errs}");
}
