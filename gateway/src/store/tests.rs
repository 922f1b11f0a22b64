//! Migrations, on SQLite always and on PostgreSQL when `PORTCULLIS_TEST_POSTGRES` names a
//! server: the same bodies for both.

use super::migrate::{apply, Feature, Migration, Sql};
use super::{Db, StoreError, StoreUrl};
use sqlx::Row;

/// A feature with two versions, the second adding a column.
static DEMO: Feature = Feature {
    name: "demo",
    migrations: &[
        Migration {
            version: 1,
            statements: &[Sql::Both(
                "CREATE TABLE IF NOT EXISTS demo_items (id TEXT PRIMARY KEY)",
            )],
        },
        Migration {
            version: 2,
            statements: &[
                Sql::Sqlite("ALTER TABLE demo_items ADD COLUMN note TEXT"),
                Sql::Postgres("ALTER TABLE demo_items ADD COLUMN note TEXT"),
            ],
        },
    ],
};

/// The same feature as an older binary knows it.
static DEMO_V1: Feature = Feature {
    name: "demo",
    migrations: &[Migration {
        version: 1,
        statements: &[Sql::Both(
            "CREATE TABLE IF NOT EXISTS demo_items (id TEXT PRIMARY KEY)",
        )],
    }],
};

async fn versions(db: &Db, feature: &str) -> Vec<i64> {
    sqlx::query("SELECT version FROM schema_migrations WHERE feature = $1 ORDER BY version")
        .bind(feature)
        .fetch_all(db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<i64, _>("version"))
        .collect()
}

/// Each database to test: SQLite in a temp dir, and a fresh PostgreSQL database if any.
async fn urls(prefix: &str) -> Vec<(StoreUrl, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let mut v = vec![(StoreUrl::Sqlite(dir.path().join("p.db")), Some(dir))];
    if let Some(u) = super::test_postgres_database(prefix).await {
        v.push((StoreUrl::Postgres(u), None));
    }
    v
}

#[tokio::test]
async fn fresh_database_gets_every_version_once() {
    for (url, _dir) in urls("migrate").await {
        let db = Db::open(&url, &[&DEMO]).await.unwrap();
        assert_eq!(versions(&db, "demo").await, vec![1, 2], "{url:?}");
        // Version 2 really ran.
        sqlx::query("INSERT INTO demo_items (id, note) VALUES ($1, $2)")
            .bind("a")
            .bind("n")
            .execute(db.pool())
            .await
            .unwrap();
        // Reopening (a restart) applies nothing again.
        assert!(apply(&db, &DEMO).await.unwrap().is_empty(), "{url:?}");
        let again = Db::open(&url, &[&DEMO]).await.unwrap();
        assert_eq!(versions(&again, "demo").await, vec![1, 2], "{url:?}");
    }
}

#[tokio::test]
async fn an_older_database_is_brought_forward() {
    for (url, _dir) in urls("migrate_up").await {
        let db = Db::open(&url, &[&DEMO_V1]).await.unwrap();
        assert_eq!(versions(&db, "demo").await, vec![1]);
        assert_eq!(apply(&db, &DEMO).await.unwrap(), vec![2], "{url:?}");
    }
}

#[tokio::test]
async fn a_newer_database_is_refused_by_name_and_versions() {
    for (url, _dir) in urls("migrate_newer").await {
        Db::open(&url, &[&DEMO]).await.unwrap();
        let e = Db::open(&url, &[&DEMO_V1]).await.unwrap_err();
        assert!(
            matches!(
                e,
                StoreError::NewerSchema {
                    feature: "demo",
                    found: 2,
                    known: 1
                }
            ),
            "{e:?}"
        );
        let msg = e.to_string();
        assert!(
            msg.starts_with("demo store:") && msg.contains("version 2") && msg.contains("up to 1"),
            "{msg}"
        );
    }
}

#[tokio::test]
async fn replicas_starting_together_apply_each_version_once() {
    for (url, _dir) in urls("migrate_race").await {
        let opens = (0..4).map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                Db::open(
                    &url,
                    &[
                        &crate::audit::store::MIGRATIONS,
                        &crate::mfa::store::MIGRATIONS,
                    ],
                )
                .await
            })
        });
        for o in opens.collect::<Vec<_>>() {
            o.await.unwrap().unwrap();
        }
        let db = Db::open(&url, &[]).await.unwrap();
        assert_eq!(versions(&db, "audit").await, vec![1, 2], "{url:?}");
        assert_eq!(versions(&db, "mfa").await, vec![1], "{url:?}");
    }
}

#[tokio::test]
async fn migrations_out_of_order_are_a_start_error() {
    static BAD: Feature = Feature {
        name: "bad",
        migrations: &[
            Migration {
                version: 2,
                statements: &[],
            },
            Migration {
                version: 1,
                statements: &[],
            },
        ],
    };
    let dir = tempfile::tempdir().unwrap();
    let e = Db::open(&StoreUrl::Sqlite(dir.path().join("p.db")), &[&BAD])
        .await
        .unwrap_err();
    assert!(
        matches!(e, StoreError::BadMigrations { version: 2, .. }),
        "{e:?}"
    );
}

/// The DDL older binaries ran on every start, with no `schema_migrations` table.
const OLD_SQLITE: &[&str] = &[
    "CREATE TABLE audit_log (seq BIGINT PRIMARY KEY, time TEXT NOT NULL, kind TEXT NOT NULL, actor TEXT, data TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL)",
    "CREATE TABLE audit_checkpoints (count BIGINT NOT NULL, head_hash TEXT NOT NULL, time TEXT NOT NULL, key_id TEXT NOT NULL, signature TEXT NOT NULL)",
    "CREATE TABLE audit_keys (key_id TEXT PRIMARY KEY, alg TEXT NOT NULL, public_key TEXT NOT NULL, created TEXT NOT NULL)",
    "CREATE TABLE mfa_factors (id TEXT PRIMARY KEY, user_id TEXT NOT NULL, kind TEXT NOT NULL, label TEXT NOT NULL, secret BLOB NOT NULL, created BIGINT NOT NULL, last_step BIGINT)",
    "CREATE INDEX mfa_factors_user ON mfa_factors (user_id)",
    "CREATE TABLE mfa_used_codes (nonce TEXT PRIMARY KEY, expires BIGINT NOT NULL)",
    "CREATE INDEX mfa_used_codes_expires ON mfa_used_codes (expires)",
    "CREATE TABLE mfa_devices (id TEXT PRIMARY KEY, user_id TEXT NOT NULL, token_hash TEXT NOT NULL UNIQUE, method TEXT NOT NULL, label TEXT NOT NULL, created BIGINT NOT NULL, expires BIGINT NOT NULL, last_used BIGINT NOT NULL)",
    "CREATE INDEX mfa_devices_user ON mfa_devices (user_id)",
    "INSERT INTO audit_checkpoints VALUES (1, 'h1', 't1', 'k', 's')",
    "INSERT INTO audit_checkpoints VALUES (2, 'h2', 't2', 'k', 's')",
    "INSERT INTO mfa_factors VALUES ('f1', 'corp:ann', 'totp', 'App', x'00', 1, NULL)",
];

#[tokio::test]
async fn a_database_from_before_migrations_opens_with_its_data() {
    for (url, _dir) in urls("migrate_old").await {
        // No features: nothing is created, not even `schema_migrations`.
        let bare = Db::open(&url, &[]).await.unwrap();
        for s in OLD_SQLITE {
            let s = match bare.backend() {
                super::Backend::Sqlite => s.to_string(),
                super::Backend::Postgres => s.replace("BLOB", "BYTEA").replace("x'00'", "'\\x00'"),
            };
            sqlx::query(sqlx::AssertSqlSafe(s))
                .execute(bare.pool())
                .await
                .unwrap();
        }
        if bare.backend() == super::Backend::Postgres {
            sqlx::query("ALTER TABLE audit_checkpoints ADD COLUMN IF NOT EXISTS id BIGSERIAL")
                .execute(bare.pool())
                .await
                .unwrap();
        }
        let db = Db::open(
            &url,
            &[
                &crate::audit::store::MIGRATIONS,
                &crate::mfa::store::MIGRATIONS,
            ],
        )
        .await
        .unwrap();
        assert_eq!(versions(&db, "audit").await, vec![1, 2]);
        let cps = crate::audit::store::over(&db).checkpoints().await.unwrap();
        assert_eq!(
            cps.iter().map(|c| c.count).collect::<Vec<_>>(),
            vec![1, 2],
            "{url:?}"
        );
        let f = crate::mfa::store::over(&db).list("corp:ann").await.unwrap();
        assert_eq!(f.len(), 1, "{url:?}");
        assert_eq!(f[0].secret, vec![0]);
    }
}

#[tokio::test]
async fn sqlite_settings_apply_to_every_connection() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&StoreUrl::Sqlite(dir.path().join("rel/p.db")), &[])
        .await
        .unwrap();
    // Several connections at once, so not only the first one is checked.
    let mut conns = Vec::new();
    for _ in 0..3 {
        conns.push(db.pool().acquire().await.unwrap());
    }
    for c in &mut conns {
        let mode: String = sqlx::query("PRAGMA journal_mode")
            .fetch_one(&mut **c)
            .await
            .unwrap()
            .get(0);
        assert_eq!(mode, "wal");
        let sync: i64 = sqlx::query("PRAGMA synchronous")
            .fetch_one(&mut **c)
            .await
            .unwrap()
            .get(0);
        assert_eq!(sync, 2, "FULL");
        let busy: i64 = sqlx::query("PRAGMA busy_timeout")
            .fetch_one(&mut **c)
            .await
            .unwrap()
            .get(0);
        assert_eq!(busy, 10_000);
    }
}

#[tokio::test]
async fn the_audit_reader_names_a_schema_it_does_not_read() {
    use crate::audit::store::{open_existing, MIGRATIONS};
    for (url, _dir) in urls("migrate_reader").await {
        let db = Db::open(&url, &[]).await.unwrap();
        sqlx::query("CREATE TABLE audit_log (seq BIGINT PRIMARY KEY, time TEXT NOT NULL, kind TEXT NOT NULL, actor TEXT, data TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL)")
            .execute(db.pool())
            .await
            .unwrap();
        let e = open_existing(&url).await.err().unwrap().to_string();
        assert!(e.contains("audit store") && e.contains("version 0"), "{e}");
        Db::open(&url, &[&MIGRATIONS]).await.unwrap();
        open_existing(&url).await.unwrap();
    }
}

#[tokio::test]
async fn reading_a_missing_sqlite_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.db");
    assert!(Db::open_existing(&StoreUrl::Sqlite(path.clone()))
        .await
        .is_err());
    assert!(!path.exists(), "not created");
}
