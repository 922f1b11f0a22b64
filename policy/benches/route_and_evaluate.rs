//! Route lookup + policy evaluation together, as the gateway does per request, for 10, 1,000
//! and 10,000 routes with realistic rules. The index must keep this flat as routes grow.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use portcullis_policy::compile::{CompiledPolicy, Compiler};
use portcullis_policy::engine::evaluate;
use portcullis_policy::input::Input;
use portcullis_policy::path::{normalise, ParamRule};
use portcullis_policy::routing::RouteTable;
use portcullis_policy::spec::{LibrarySpec, PolicySpec};

const LIBRARY: &str = r#"
roles:
  payroll-admin: { inherits: [payroll-viewer] }
  support-operator: {}
policies:
  office-hours: { time: { days: [mon, tue, wed, thu, fri], from: "07:00", to: "20:00", tz: Europe/Paris } }
"#;

/// Rule shapes cycled over the routes.
const POLICIES: [&str; 4] = [
    r#"{ allow: [ { all: [ { roles: [payroll-viewer] }, { country: [FR, DE] }, { policy: office-hours } ] } ], deny: [ { source_ip: [203.0.113.0/24] } ] }"#,
    r#"{ allow: [ { groups: [staff], methods: [GET, HEAD] }, { roles: [payroll-admin] } ] }"#,
    r#"{ allow: [ { email_domains: [example.com], tenant: same } ], deny: [ { not_country: [FR, DE, BE] } ] }"#,
    "authenticated",
];

const INPUT: &str = r#"
now: 2026-03-30T08:00:00Z
identity:
  user: alice
  email: alice@example.com
  email_verified: true
  groups: [staff, finance]
  roles: [payroll-admin]
  tenant: acme
request: { method: GET, path: /x, host: x, tenant: acme }
network: { client_ip: 192.0.2.10, country: FR, region: FR-IDF, asn: 3215 }
"#;

struct World {
    table: RouteTable,
    policies: Vec<CompiledPolicy>,
    /// A host and raw path that hit the last-inserted route's subtree.
    host: String,
    raw_path: String,
}

/// `n` (a multiple of 4) routes over `n / 10` hosts (plus any-host routes), 10 prefixes per host.
fn world(n: usize) -> World {
    let lib: LibrarySpec = serde_yaml::from_str(LIBRARY).unwrap();
    let mut c = Compiler::new(&lib);
    let specs: Vec<PolicySpec> = POLICIES
        .iter()
        .map(|p| serde_yaml::from_str(p).unwrap())
        .collect();
    let mut table = RouteTable::new(false);
    let mut policies = Vec::with_capacity(n);
    // The target is route n-4: it carries POLICIES[0], the heaviest rule shape.
    let target = n - 4;
    let mut last = (String::new(), String::new());
    for i in 0..n {
        let host = format!("svc{}.example.com", i / 10);
        let prefix = format!("/api/v{}/team{}", i % 3, i % 10);
        table.insert(Some(&host), &prefix, i).unwrap();
        policies.push(c.policy(&specs[i % specs.len()], "bench"));
        if i == target {
            last = (host, prefix);
        }
    }
    c.finish().unwrap();
    World {
        table,
        policies,
        host: format!("{}:443", last.0),
        raw_path: format!("{}/reports/2026/./q1//summary", last.1),
    }
}

fn bench(crit: &mut Criterion) {
    let input: Input = serde_yaml::from_str(INPUT).unwrap();
    let mut g = crit.benchmark_group("route_and_evaluate");
    for n in [12usize, 1_000, 10_000] {
        let w = world(n);
        // Sanity: the request routes to the target route and the payroll rule allows it.
        let p = normalise(&w.raw_path, ParamRule::Reject).unwrap();
        let idx = w.table.lookup(&w.host, p.decoded()).unwrap();
        assert_eq!(idx, n - 4);
        assert!(evaluate(&w.policies[idx], &input).is_allow());
        g.bench_with_input(BenchmarkId::new("route_evaluate", n), &w, |b, w| {
            let path = p.decoded().to_string();
            b.iter(|| {
                let idx = w
                    .table
                    .lookup(black_box(&w.host), black_box(&path))
                    .unwrap();
                evaluate(&w.policies[idx], black_box(&input))
            })
        });
        g.bench_with_input(
            BenchmarkId::new("normalise_route_evaluate", n),
            &w,
            |b, w| {
                b.iter(|| {
                    let p = normalise(black_box(&w.raw_path), ParamRule::Reject).unwrap();
                    let idx = w.table.lookup(black_box(&w.host), p.decoded()).unwrap();
                    evaluate(&w.policies[idx], black_box(&input))
                })
            },
        );
    }
    // Issue 10, H4: the longest path the default limits admit (8 KiB of one-letter segments
    // up to the 256-segment cap, then one long segment), under the deepest route. The lookup
    // must cost about what reading the path costs, not length x segments.
    let w = world(1_000);
    let long = format!("{}/{}{}", w.raw_path, "a/".repeat(240), "x".repeat(7_000));
    let p = normalise(&long, ParamRule::Reject).unwrap();
    g.bench_function("route_long_path", |b| {
        b.iter(|| w.table.lookup(black_box(&w.host), black_box(p.decoded())))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
