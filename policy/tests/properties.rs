//! Property tests of the engine's invariants (issue 4): deny overrides, default deny, adding an
//! allow rule never turns an allow into a deny, time windows around midnight and DST, CIDR edges,
//! role-hierarchy cycles rejected.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::IpAddr;

use chrono::{DateTime, Duration, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use portcullis_policy::compile::{CompiledPolicy, Compiler};
use portcullis_policy::engine::{evaluate, Outcome};
use portcullis_policy::input::{AuthEvent, Identity, Input, NetworkFacts, RequestFacts};
use portcullis_policy::spec::{ConditionSpec, LibrarySpec, PolicySpec, RoleSpec, RulesSpec};
use proptest::prelude::*;

const POOL: &[&str] = &[
    "{ country: [FR] }",
    "{ country: [US, DE] }",
    "{ not_country: [US] }",
    "{ groups: [staff] }",
    "{ groups: [interns] }",
    "{ roles: [admin] }",
    "{ roles: [viewer] }",
    "{ source_ip: [10.0.0.0/8] }",
    "{ mfa: { methods: [totp], max_age: 15m } }",
    "{ time: { from: '22:00', to: '06:00', tz: Europe/Paris } }",
    "{ methods: [GET] }",
    "{ not: { groups: [interns] } }",
    "{ any: [ { country: [FR] }, { groups: [staff] } ] }",
    "{ all: [ { roles: [viewer] }, { mfa: { methods: [totp] } } ] }",
    "{ tenant: same }",
    "{ authenticated: true }",
];

fn lib() -> LibrarySpec {
    let mut roles = BTreeMap::new();
    roles.insert(
        "admin".to_owned(),
        RoleSpec {
            inherits: vec!["viewer".to_owned()],
        },
    );
    LibrarySpec {
        roles,
        ..LibrarySpec::default()
    }
}

fn cond(i: usize) -> ConditionSpec {
    serde_yaml::from_str(POOL[i % POOL.len()]).unwrap()
}

/// Compiles rules even when the compiler objects (e.g. an empty allow list), to test the
/// engine's behaviour on whatever it is handed.
fn policy(allow: &[usize], deny: &[usize]) -> CompiledPolicy {
    let spec = PolicySpec::Rules(RulesSpec {
        allow: allow.iter().map(|&i| cond(i)).collect(),
        deny: deny.iter().map(|&i| cond(i)).collect(),
    });
    Compiler::new(&lib()).policy(&spec, "p")
}

prop_compose! {
    fn input()(
        signed_in in any::<bool>(),
        groups in proptest::sample::subsequence(vec!["staff", "interns"], 0..=2),
        roles in proptest::sample::subsequence(vec!["admin", "viewer"], 0..=2),
        mfa_age in proptest::option::of(0i64..3600),
        tenants in (0usize..3, 0usize..3),
        country in proptest::option::of(proptest::sample::select(vec!["FR", "US", "DE"])),
        ip in proptest::option::of(proptest::sample::select(vec!["10.1.2.3", "192.0.2.1", "::ffff:10.0.0.1"])),
        method in proptest::sample::select(vec!["GET", "POST"]),
        secs in 0i64..(366 * 86_400),
    ) -> Input {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + Duration::seconds(secs);
        let names = [None, Some("acme".to_owned()), Some("globex".to_owned())];
        Input {
            identity: signed_in.then(|| Identity {
                user: "u".into(),
                groups: groups.iter().map(|s| s.to_string()).collect(),
                roles: roles.iter().map(|s| s.to_string()).collect(),
                tenant: names[tenants.0].clone(),
                auth_methods: mfa_age
                    .map(|a| vec![AuthEvent { method: "totp".into(), at: now - Duration::seconds(a) }])
                    .unwrap_or_default(),
                ..Identity::default()
            }),
            request: RequestFacts { method: method.into(), path: "/".into(), tenant: names[tenants.1].clone(), ..RequestFacts::default() },
            network: NetworkFacts {
                client_ip: ip.map(|s| s.parse().unwrap()),
                country: country.map(str::to_owned),
                ..NetworkFacts::default()
            },
            device: Default::default(),
            now,
        }
    }
}

fn rules() -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(0..POOL.len(), 0..4)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// If any deny rule holds on its own, the request is denied, whatever the allow rules.
    #[test]
    fn deny_always_overrides(allow in rules(), deny in rules(), input in input()) {
        let any_deny_holds = deny.iter().any(|&d| evaluate(&policy(&[d], &[]), &input).is_allow()
            // Tenant isolation may refuse the probe itself; probe the bare condition instead.
            || evaluate(&policy(&[d], &[]), &Input { request: RequestFacts { tenant: None, ..input.request.clone() }, ..input.clone() }).is_allow());
        let got = evaluate(&policy(&allow, &deny), &input);
        if any_deny_holds {
            prop_assert_eq!(&got.outcome, &Outcome::Deny, "{:?}", got.explanation);
        }
        // Removing deny rules can only help.
        if got.is_allow() {
            prop_assert!(evaluate(&policy(&allow, &[]), &input).is_allow());
        }
    }

    /// Nothing matches → deny; an allow always comes from a rule that allows on its own.
    #[test]
    fn default_deny(allow in rules(), input in input()) {
        let got = evaluate(&policy(&allow, &[]), &input);
        if got.is_allow() {
            prop_assert!(allow.iter().any(|&a| evaluate(&policy(&[a], &[]), &input).is_allow()));
        }
        prop_assert!(!evaluate(&policy(&[], &[]), &input).is_allow());
    }

    /// Adding an allow rule (anywhere) never turns an allow into anything else.
    #[test]
    fn adding_allow_is_monotonic(allow in rules(), deny in rules(), extra in 0..POOL.len(), at in 0usize..5, input in input()) {
        let before = evaluate(&policy(&allow, &deny), &input);
        let mut more = allow.clone();
        more.insert(at.min(more.len()), extra);
        let after = evaluate(&policy(&more, &deny), &input);
        if before.is_allow() {
            prop_assert!(after.is_allow(), "{:?}", after.explanation);
        }
    }

    /// Time windows agree with an independent wall-clock oracle, including across midnight
    /// and on both 2026 DST change days in Paris and New York.
    #[test]
    fn time_windows(
        from in 0u32..(24 * 60), to in 0u32..(24 * 60),
        tz in proptest::sample::select(vec!["Europe/Paris", "America/New_York", "UTC", "Asia/Kolkata", "Australia/Lord_Howe"]),
        near in proptest::sample::select(vec!["2026-03-29T01:00:00Z", "2026-10-25T01:00:00Z", "2026-03-08T07:00:00Z", "2026-11-01T06:00:00Z", "2026-06-30T23:30:00Z"]),
        offset in -(2 * 86_400i64)..(2 * 86_400),
    ) {
        prop_assume!(from != to);
        let now = near.parse::<DateTime<Utc>>().unwrap() + Duration::seconds(offset);
        let hm = |m: u32| format!("{:02}:{:02}", m / 60, m % 60);
        let yaml = format!("{{ time: {{ from: '{}', to: '{}', tz: {} }} }}", hm(from), hm(to), tz);
        let spec = PolicySpec::Rules(RulesSpec { allow: vec![serde_yaml::from_str(&yaml).unwrap()], deny: vec![] });
        let mut c = Compiler::new(&LibrarySpec::default());
        let p = c.policy(&spec, "p");
        prop_assert!(c.finish().is_ok());
        let local = now.with_timezone(&tz.parse::<Tz>().unwrap());
        let m = local.hour() * 60 + local.minute();
        let want = if from < to { m >= from && m < to } else { m >= from || m < to };
        let input = Input { identity: None, request: Default::default(), network: Default::default(), device: Default::default(), now };
        prop_assert_eq!(evaluate(&p, &input).is_allow(), want, "{} local {}", yaml, local);
    }

    /// Network edges: first and last address inside, neighbours outside, v4 and v6.
    #[test]
    fn cidr_edges(v4 in any::<u32>(), v6 in any::<u128>(), p4 in 0u8..=32, p6 in 0u8..=128) {
        let m4 = if p4 == 0 { 0 } else { u32::MAX << (32 - p4) };
        let m6 = if p6 == 0 { 0 } else { u128::MAX << (128 - p6) };
        let (lo4, hi4) = (v4 & m4, v4 | !m4);
        let (lo6, hi6) = (v6 & m6, v6 | !m6);
        let net4 = format!("{}/{}", std::net::Ipv4Addr::from(lo4), p4);
        let net6 = format!("{}/{}", std::net::Ipv6Addr::from(lo6), p6);
        let yaml = format!("{{ source_ip: ['{net4}', '{net6}'] }}");
        let spec = PolicySpec::Rules(RulesSpec { allow: vec![serde_yaml::from_str(&yaml).unwrap()], deny: vec![] });
        let mut c = Compiler::new(&LibrarySpec::default());
        let p = c.policy(&spec, "p");
        prop_assert!(c.finish().is_ok(), "{}", yaml);
        let allowed = |ip: IpAddr| {
            let mut input = Input { identity: None, request: Default::default(), network: Default::default(), device: Default::default(), now: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() };
            input.network.client_ip = Some(ip);
            evaluate(&p, &input).is_allow()
        };
        let v4ip = |x: u32| IpAddr::from(std::net::Ipv4Addr::from(x));
        let v6ip = |x: u128| IpAddr::from(std::net::Ipv6Addr::from(x));
        prop_assert!(allowed(v4ip(lo4)) && allowed(v4ip(hi4)));
        prop_assert!(allowed(v6ip(lo6)));
        // IPv4-mapped v6 addresses (::ffff:0:0/96) are matched as v4, so skip those for v6.
        if hi6 >> 32 != 0xffff {
            prop_assert!(allowed(v6ip(hi6)));
        }
        if lo4 > 0 { prop_assert!(!allowed(v4ip(lo4 - 1))); }
        if hi4 < u32::MAX { prop_assert!(!allowed(v4ip(hi4 + 1))); }
        let mapped = |x: u128| x >> 32 == 0xffff;
        if lo6 > 0 && !mapped(lo6 - 1) { prop_assert!(!allowed(v6ip(lo6 - 1))); }
        if hi6 < u128::MAX && !mapped(hi6 + 1) { prop_assert!(!allowed(v6ip(hi6 + 1))); }
    }

    /// A role hierarchy is rejected exactly when it has a cycle.
    #[test]
    fn role_cycles_rejected(edges in proptest::collection::vec((0usize..6, 0usize..6), 0..10)) {
        let mut roles: BTreeMap<String, RoleSpec> = BTreeMap::new();
        for (a, b) in &edges {
            roles.entry(format!("r{a}")).or_default().inherits.push(format!("r{b}"));
        }
        // Oracle: repeatedly remove nodes without outgoing edges (Kahn).
        let mut live: Vec<(usize, usize)> = edges.clone();
        loop {
            let sinks: Vec<usize> = (0..6).filter(|n| !live.iter().any(|(a, _)| a == n)).collect();
            let before = live.len();
            live.retain(|(_, b)| !sinks.contains(b));
            if live.len() == before { break; }
        }
        let has_cycle = !live.is_empty();
        let c = Compiler::new(&LibrarySpec { roles, ..LibrarySpec::default() });
        let cycle_reported = c.problems().iter().any(|p| p.message.starts_with("role hierarchy cycle"));
        prop_assert_eq!(cycle_reported, has_cycle, "{:?} {:?}", edges, c.problems());
    }
}
