//! SCIM list and filter over a directory of 100 000 users (README "Performance"): the
//! provisioning rate while the directory fills, then one SCIM request per iteration through
//! `ScimService::handle` (token check, filter parse, SQL, JSON) — first and last page, and the
//! filters provisioning clients send (`userName eq`, `externalId eq`, `emails[value eq]`) next
//! to the ones that cannot use an index (`co`, `active eq false`).
//!
//! ```sh
//! cargo bench -p portcullis --bench scim_directory                       # SQLite
//! PORTCULLIS_BENCH_POSTGRES=postgres://user@127.0.0.1:5432/postgres \
//!   cargo bench -p portcullis --bench scim_directory                     # and PostgreSQL
//! SCIM_BENCH_USERS=10000 cargo bench -p portcullis --bench scim_directory  # smaller
//! ```

#![allow(clippy::expect_used, clippy::unwrap_used)] // a benchmark: a failure should stop it loudly

use criterion::{criterion_group, criterion_main, Criterion};
use portcullis::directory::model::{Contact, User};
use portcullis::directory::{DirectoryStore, Lifecycle};
use portcullis::local_request::LocalRequest;
use portcullis::scim::service::{ScimService, PREFIX};
use portcullis::store::{Db, StoreUrl};
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-token-0123456789abcdef";

fn users() -> usize {
    std::env::var("SCIM_BENCH_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

fn user(i: usize) -> User {
    User {
        user_name: format!("user{i:06}"),
        display_name: Some(format!("User {i}")),
        given_name: Some("Given".into()),
        family_name: Some(format!("Family{}", i % 1000)),
        emails: vec![Contact {
            value: format!("user{i:06}@example.com"),
            kind: Some("work".into()),
            primary: Some(true),
        }],
        active: !i.is_multiple_of(10),
        external_id: Some(format!("ext-{i:06}")),
        source: "scim".into(),
        ..User::default()
    }
}

/// A migrated database: SQLite in a temp dir, or a fresh PostgreSQL database.
async fn open(pg: Option<&str>) -> (Db, Option<tempfile::TempDir>) {
    let features = [&portcullis::directory::MIGRATIONS];
    match pg {
        None => {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = StoreUrl::Sqlite(dir.path().join("bench.db"));
            (Db::open(&url, &features).await.expect("SQLite"), Some(dir))
        }
        Some(admin_url) => {
            use sqlx::Connection;
            let name = format!("scim_bench_{}", std::process::id());
            let mut admin = sqlx::PgConnection::connect(admin_url)
                .await
                .expect("connect to PORTCULLIS_BENCH_POSTGRES");
            for sql in [
                format!("DROP DATABASE IF EXISTS {name}"),
                format!("CREATE DATABASE {name}"),
            ] {
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&mut admin)
                    .await
                    .expect("create the bench database");
            }
            let mut u = url::Url::parse(admin_url).expect("URL");
            u.set_path(&format!("/{name}"));
            let url = StoreUrl::Postgres(u.to_string());
            (Db::open(&url, &features).await.expect("PostgreSQL"), None)
        }
    }
}

fn service(db: Db) -> (ScimService, DirectoryStore) {
    let store = DirectoryStore::new(db, portcullis::clock::Clock::system());
    let yaml = format!("scim: {{ tokens: [\"{TOKEN}\"] }}\n");
    let spec: portcullis::directory::config::DirectorySpec =
        serde_yaml::from_str(&yaml).expect("spec");
    let mut p = portcullis::config::problems::Problems::default();
    let cfg = portcullis::directory::config::build(spec, &mut p).expect("config");
    let lifecycle = Lifecycle {
        store: store.clone(),
        audit: portcullis::audit::Audit::disabled(),
        revoker: None,
        mfa: None,
        settings: Default::default(),
    };
    (ScimService::new(lifecycle, cfg.scim.expect("scim")), store)
}

/// Fills the directory, 16 creates in flight; prints users per second.
async fn fill(store: &DirectoryStore, n: usize, label: &str) {
    let t0 = Instant::now();
    let mut next = 0;
    while next < n {
        let batch: Vec<_> = (next..(next + 16).min(n))
            .map(|i| {
                let store = store.clone();
                async move { store.create_user("", &user(i)).await.map(|_| ()) }
            })
            .collect();
        for r in futures_util::future::join_all(batch).await {
            r.expect("create");
        }
        next += 16;
    }
    let s = t0.elapsed().as_secs_f64();
    println!(
        "{label}: {n} users created in {s:.1} s ({:.0} users/s)",
        n as f64 / s
    );
}

fn request(target: &str) -> LocalRequest {
    let target = target.replace(' ', "%20").replace('"', "%22");
    let mut r = LocalRequest::new(http::Method::GET, &format!("{PREFIX}{target}"));
    r.headers.insert(
        http::header::AUTHORIZATION,
        http::HeaderValue::from_str(&format!("Bearer {TOKEN}")).expect("header"),
    );
    r
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let n = users();
    let pg = std::env::var("PORTCULLIS_BENCH_POSTGRES").ok();
    let mut backends = vec![("sqlite", None)];
    if let Some(u) = pg.as_deref() {
        backends.push(("postgres", Some(u)));
    }
    let probe = n * 54 / 100;
    let cases = [
        ("list first page (200)", "/Users?count=200".to_string()),
        (
            "list last page (200)",
            format!("/Users?startIndex={}&count=200", n.saturating_sub(199)),
        ),
        (
            "filter userName eq",
            format!("/Users?filter=userName eq \"user{probe:06}\""),
        ),
        (
            "filter externalId eq",
            format!("/Users?filter=externalId eq \"ext-{probe:06}\""),
        ),
        (
            "filter emails[value eq]",
            format!("/Users?filter=emails[value eq \"user{probe:06}@example.com\"]"),
        ),
        (
            "filter userName sw (10 matches)",
            format!("/Users?filter=userName sw \"user{:05}\"", probe / 10),
        ),
        (
            "filter userName co (scan)",
            format!(
                "/Users?filter=userName co \"{:05}\"&count=10",
                probe % 100_000
            ),
        ),
        (
            "filter active eq false (scan, 200 of n/10)",
            "/Users?filter=active eq false&count=200".to_string(),
        ),
    ];
    for (label, url) in backends {
        let (db, _dir) = rt.block_on(open(url));
        let (svc, store) = service(db);
        rt.block_on(fill(&store, n, label));
        let mut g = c.benchmark_group(format!("scim_{label}_{n}_users"));
        g.sample_size(20)
            .measurement_time(Duration::from_secs(5))
            .warm_up_time(Duration::from_secs(1));
        for (name, target) in &cases {
            let req = request(target);
            let r = rt.block_on(svc.handle(&req));
            assert_eq!(r.status, 200, "{name}: {:?}", r.body);
            g.bench_function(*name, |b| {
                b.iter(|| rt.block_on(svc.handle(&req)));
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
