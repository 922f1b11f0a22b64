//! Policy evaluation on its own (no route lookup): realistic rules from the architecture's
//! payroll example plus common shapes. Route index + evaluation together is benchmarked
//! separately once the routing bench lands; this isolates the engine's share.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use portcullis_policy::compile::{CompiledPolicy, Compiler};
use portcullis_policy::engine::evaluate;
use portcullis_policy::input::Input;
use portcullis_policy::spec::{LibrarySpec, PolicySpec};

const LIBRARY: &str = r#"
roles:
  payroll-admin: { inherits: [payroll-viewer] }
  payroll-approver: {}
  support-operator: {}
sod: [ { name: pay-vs-approve, roles: [payroll-admin, payroll-approver], max: 1 } ]
policies:
  office-hours: { time: { days: [mon, tue, wed, thu, fri], from: "07:00", to: "20:00", tz: Europe/Paris } }
"#;

const PAYROLL: &str = r#"
allow:
  - all:
      - roles: [payroll-admin]
      - country: [FR, DE]
      - policy: office-hours
      - mfa: { methods: [totp, webauthn], max_age: 15m }
deny:
  - source_ip: [203.0.113.0/24, "2001:db8:bad::/48"]
"#;

const TENANT_APP: &str = r#"
allow:
  - { groups: [contractors], methods: [GET], paths: ["/reports/**"] }
  - { email_domains: [example.com], tenant: { operator_roles: [support-operator] }, device: { managed: true } }
deny:
  - not_country: [FR, DE, BE, NL, IE]
  - { headers: { x-debug: "*" } }
"#;

const INPUT: &str = r#"
now: 2026-03-30T08:00:00Z
identity:
  user: alice
  email: alice@example.com
  email_verified: true
  groups: [staff, finance]
  roles: [payroll-admin]
  tenant: acme
  auth_methods: [ { method: pwd, at: 2026-03-30T07:00:00Z }, { method: totp, at: 2026-03-30T07:55:00Z } ]
request: { method: GET, path: /payroll/slips/2026-03, host: app.example.com, tenant: acme, headers: { accept: text/html } }
network: { client_ip: 192.0.2.10, country: FR, region: FR-IDF, asn: 3215 }
device: { client_cert_ca: corp-ca, platform: macos }
"#;

fn compile(c: &mut Compiler, yaml: &str) -> CompiledPolicy {
    let spec: PolicySpec = serde_yaml::from_str(yaml).unwrap();
    c.policy(&spec, "bench")
}

fn bench(crit: &mut Criterion) {
    let lib: LibrarySpec = serde_yaml::from_str(LIBRARY).unwrap();
    let mut c = Compiler::new(&lib);
    let public = compile(&mut c, "public");
    let authenticated = compile(&mut c, "authenticated");
    let payroll = compile(&mut c, PAYROLL);
    let tenant_app = compile(&mut c, TENANT_APP);
    c.finish().unwrap();

    let input: Input = serde_yaml::from_str(INPUT).unwrap();
    let mut from_us = input.clone();
    from_us.network.country = Some("US".into());
    let mut stale_mfa = input.clone();
    if let Some(id) = stale_mfa.identity.as_mut() {
        id.auth_methods.truncate(1);
    }
    let mut operator = input.clone();
    operator.request.tenant = Some("globex".into());
    if let Some(id) = operator.identity.as_mut() {
        id.roles.push("support-operator".into());
    }

    let mut g = crit.benchmark_group("policy_evaluate_only");
    let cases: [(&str, &CompiledPolicy, &Input, &str); 7] = [
        ("public", &public, &input, "allow"),
        ("authenticated", &authenticated, &input, "allow"),
        ("payroll_allow", &payroll, &input, "allow"),
        ("payroll_deny_country_explained", &payroll, &from_us, "deny"),
        ("payroll_step_up", &payroll, &stale_mfa, "step_up"),
        ("tenant_app_allow", &tenant_app, &input, "allow"),
        (
            "tenant_app_cross_tenant_operator",
            &tenant_app,
            &operator,
            "allow",
        ),
    ];
    for (name, policy, input, want) in cases {
        assert_eq!(evaluate(policy, input).outcome.as_str(), want, "{name}");
        g.bench_function(name, |b| {
            b.iter(|| evaluate(black_box(policy), black_box(input)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
