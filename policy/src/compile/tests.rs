use super::*;

fn problems(yaml: &str) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Doc {
        #[serde(flatten)]
        lib: LibrarySpec,
        #[serde(default)]
        routes: Vec<PolicySpec>,
    }
    let doc: Doc = match serde_yaml::from_str(yaml) {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    };
    let mut c = Compiler::new(&doc.lib);
    for (i, r) in doc.routes.iter().enumerate() {
        c.policy(r, &format!("routes[{i}].policy"));
    }
    match c.finish() {
        Ok(_) => Vec::new(),
        Err(p) => p.0.iter().map(ToString::to_string).collect(),
    }
}

/// Each row: a config and the exact problems it must report (all of them, with key paths).
#[test]
fn problems_have_key_paths() {
    let table: &[(&str, &[&str])] = &[
        (
            "routes: [ { allow: [ { all: [ {users: [a]}, {users: [b]}, { country: [FRA] } ] } ] } ]",
            &["routes[0].policy.allow[0].all[2].country[0]: `FRA` is not an ISO 3166-1 alpha-2 code"],
        ),
        (
            "policies: { office-hours: { time: { from: '07:00', to: '20:00', tz: Europe/Pariss } } }",
            &["policies.office-hours.time.tz: unknown time zone `Europe/Pariss` (IANA name such as Europe/Paris)"],
        ),
        (
            "routes: [ { allow: [ { roles: [ghost] } ] } ]",
            &["routes[0].policy.allow[0].roles[0]: unknown role `ghost` (declare it under `roles:`)"],
        ),
        (
            "routes: [ { allow: [ { source_ip: [10.0.0.1/8, 300.1.1.1, '2001:db8::/129'] } ] } ]",
            &[
                "routes[0].policy.allow[0].source_ip[0]: `10.0.0.1/8` has host bits set; did you mean 10.0.0.0/8?",
                "routes[0].policy.allow[0].source_ip[1]: `300.1.1.1` is not an IP address or CIDR",
                "routes[0].policy.allow[0].source_ip[2]: `2001:db8::/129` is not a CIDR",
            ],
        ),
        (
            "routes: [ nope ]",
            &["routes[0].policy: unknown policy `nope`: expected public, authenticated, or a name under `policies:`"],
        ),
        (
            "policies: { a: { policy: b }, b: { policy: a } }",
            &["policies.b.policy: named policy cycle: a -> b -> a"],
        ),
        (
            "roles: { a: { inherits: [b] }, b: { inherits: [c] }, c: { inherits: [a] } }",
            &["roles.c.inherits: role hierarchy cycle: a -> b -> c -> a"],
        ),
        (
            "roles: { a: { inherits: [a] } }",
            &["roles.a.inherits: role hierarchy cycle: a -> a"],
        ),
        (
            "roles: { pay: {}, approve: {} }\nsod: [ { name: pva, roles: [pay, approve] } ]\nroutes: [ { allow: [ { all: [ { roles: [pay] }, { roles: [approve] } ] } ] } ]",
            &["routes[0].policy.allow[0]: requires roles [pay, approve], which SoD `pva` allows at most 1 of"],
        ),
        (
            "roles: { boss: { inherits: [pay, approve] } }\nsod: [ { name: pva, roles: [pay, approve], max: 1 } ]",
            &["roles.boss: inherits [pay, approve], which SoD `pva` allows at most 1 of"],
        ),
        (
            "routes: [ { allow: [ { mfa: { max_age: 15 } }, { mfa: { max_age: 0s } } ] } ]",
            &[
                "routes[0].policy.allow[0].mfa.max_age: invalid duration `15`: expected e.g. 30s, 15m, 1h30m, 2d",
                "routes[0].policy.allow[1].mfa.max_age: must be greater than 0",
            ],
        ),
        (
            "routes: [ { allow: [ { time: { days: [funday], from: '25:00', to: '08:00' } } ] } ]",
            &[
                "routes[0].policy.allow[0].time.days[0]: `funday` is not a day (mon..sun)",
                "routes[0].policy.allow[0].time.from: `25:00` is not a time HH:MM (00:00..24:00)",
            ],
        ),
        (
            "routes: [ { allow: [ {} ] }, { deny: [ { paths: [admin] } ] } ]",
            &[
                "routes[0].policy.allow[0]: empty condition: add at least one test",
                "routes[1].policy.allow: no allow rule: every request would be denied",
                "routes[1].policy.deny[0].paths[0]: path glob `admin` must start with `/`",
            ],
        ),
        (
            "routes: [ { allow: [ { device: { platforms: [beos] }, region: [IDF] } ] } ]",
            &[
                "routes[0].policy.allow[0].region[0]: `IDF` is not an ISO 3166-2 code such as FR-IDF",
                "routes[0].policy.allow[0].device.platforms[0]: unknown platform `beos`; known: [windows, macos, linux, ios, android, chromeos]",
            ],
        ),
        (
            "roles: { op: {} }\nroutes: [ { allow: [ { tenant: same }, { tenant: { operator_roles: [op, ghost] } } ] } ]",
            &["routes[0].policy.allow[1].tenant.operator_roles[1]: unknown role `ghost` (declare it under `roles:`)"],
        ),
        (
            "roles: { a: { inherits: [b] } }\nsod: [ { name: s, roles: [a, b, c], max: 2 } ]\npolicies: { ok: { roles: [a], time: { dates: [ { from: 2026-01-01, to: 2026-12-31 } ] } } }\nroutes: [ ok, public, authenticated ]",
            &[],
        ),
    ];
    for (yaml, want) in table {
        let got = problems(yaml);
        assert_eq!(got, *want, "config:\n{yaml}");
    }
}

#[test]
fn unknown_keys_are_rejected_by_the_schema() {
    for yaml in [
        "allow: [ { contry: [FR] } ]",
        "allow: [ { mfa: { method: [totp] } } ]",
        "alow: []",
        "allow: [ { tenant: other } ]",
    ] {
        assert!(serde_yaml::from_str::<PolicySpec>(yaml).is_err(), "{yaml}");
    }
    assert_eq!(
        serde_yaml::from_str::<PolicySpec>("office-hours").ok(),
        Some(PolicySpec::Named("office-hours".into()))
    );
}

/// Issue 10, M3: with `case_insensitive_paths` the route table folds case, so `paths:` globs
/// must too — in route policies and in named policies — or `/app/ADMIN/x` slips past a deny on
/// `/app/admin/**` to an upstream that serves it as `/app/admin/x`.
#[test]
fn case_insensitive_option_folds_path_globs_everywhere() {
    let lib: LibrarySpec =
        serde_yaml::from_str("policies: { admin-area: { paths: [/app/admin/**] } }").unwrap();
    let route: PolicySpec = serde_yaml::from_str(
        "{ allow: [ { paths: [/app/**] } ], deny: [ { paths: [/app/Admin/**] }, { policy: admin-area } ] }",
    )
    .unwrap();
    let input = |path: &str| -> crate::input::Input {
        serde_yaml::from_str(&format!(
            "{{ now: 2026-03-30T08:00:00Z, request: {{ path: \"{path}\" }} }}"
        ))
        .unwrap()
    };
    let opts = CompileOptions {
        case_insensitive_paths: true,
    };
    let mut c = Compiler::with_options(&lib, opts);
    let folded = c.policy(&route, "routes[0].policy");
    c.finish().unwrap();
    for path in ["/app/admin/x", "/app/ADMIN/x", "/APP/aDmIn/users"] {
        assert!(
            !crate::engine::evaluate(&folded, &input(path)).is_allow(),
            "{path}"
        );
    }
    assert!(crate::engine::evaluate(&folded, &input("/APP/public")).is_allow());
    // Without the option, matching stays exact (and the route table does not fold either).
    let mut c = Compiler::new(&lib);
    let exact = c.policy(&route, "routes[0].policy");
    c.finish().unwrap();
    assert!(!crate::engine::evaluate(&exact, &input("/app/admin/x")).is_allow());
    assert!(crate::engine::evaluate(&exact, &input("/app/ADMIN/x")).is_allow());
}

/// Issue 10, M2: configured addresses are parsed as strictly as the identity's.
#[test]
fn configured_emails_must_have_exactly_one_at() {
    assert_eq!(
        problems("routes: [ { allow: [ { emails: [a@evil.com@corp.example, '@corp.example', ok@corp.example] } ] } ]"),
        vec![
            "routes[0].policy.allow[0].emails[0]: `a@evil.com@corp.example` is not an email address (want local@domain, one `@`)",
            "routes[0].policy.allow[0].emails[1]: `@corp.example` is not an email address (want local@domain, one `@`)",
        ]
    );
}

/// Issue 10, M5: glob size is bounded at load, reported under the glob's key path.
#[test]
fn oversized_globs_are_refused_with_their_key_path() {
    let stars = format!("/{}", "*-".repeat(17));
    let got = problems(&format!(
        "routes: [ {{ allow: [ {{ paths: [/ok/**, \"{stars}\", /{}] }} ] }} ]",
        "a".repeat(300)
    ));
    assert_eq!(
        got,
        vec![
            format!("routes[0].policy.allow[0].paths[1]: path glob `{stars}` has 17 wildcards (at most 16)"),
            "routes[0].policy.allow[0].paths[2]: path glob is longer than 255 characters".to_string(),
        ]
    );
}
