//! The store suite (SQLite always; PostgreSQL when `PORTCULLIS_TEST_POSTGRES` names a server,
//! as `tests/run` does) and a tamper test for every kind of change `verify` must detect.

use super::chain::{self, record_hash, Event};
use super::store::{self, AuditStore};
use super::verify::{export, verify, Bound, ProblemKind, Report};
use crate::store::StoreUrl;
use ed25519_dalek::SigningKey;
use std::sync::Arc;

/// A store plus raw SQL access to tamper with it.
struct Db {
    store: Arc<dyn AuditStore>,
    db: crate::store::Db,
    _dir: Option<tempfile::TempDir>,
}

impl Db {
    async fn sql(&self, s: &str) {
        sqlx::query(sqlx::AssertSqlSafe(s.to_string()))
            .execute(self.db.pool())
            .await
            .unwrap();
    }

    async fn open(url: StoreUrl, dir: Option<tempfile::TempDir>) -> Db {
        let db = crate::store::Db::open(&url, &[&store::MIGRATIONS])
            .await
            .unwrap();
        Db {
            store: store::over(&db),
            db,
            _dir: dir,
        }
    }
}

async fn sqlite() -> Db {
    let dir = tempfile::tempdir().unwrap();
    Db::open(StoreUrl::Sqlite(dir.path().join("audit.db")), Some(dir)).await
}

async fn postgres() -> Option<Db> {
    let url = crate::store::test_postgres_database("audit").await?;
    Some(Db::open(StoreUrl::Postgres(url), None).await)
}

fn key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

fn t(i: i64) -> String {
    format!("2026-11-28T10:{:02}:{:02}.000Z", i / 60, i % 60)
}

/// 13 records, checkpoints after 10 and 13.
async fn fill(db: &Db) {
    let k = key();
    db.store
        .add_key(&chain::public_key(&k.verifying_key(), &t(0)))
        .await
        .unwrap();
    for i in 1..=13 {
        let ev = Event {
            kind: if i % 2 == 0 {
                "auth.login"
            } else {
                "config.loaded"
            }
            .into(),
            actor: (i % 3 != 0).then(|| format!("user{i}")),
            data: serde_json::json!({"n": i}),
        };
        let r = db.store.append(&ev, &t(i)).await.unwrap();
        assert_eq!(r.seq, i);
        if i == 10 || i == 13 {
            assert!(super::checkpoint(db.store.as_ref(), &k).await.unwrap());
        }
    }
    assert!(
        !super::checkpoint(db.store.as_ref(), &k).await.unwrap(),
        "nothing new"
    );
}

async fn report(db: &Db) -> Report {
    verify(db.store.as_ref(), None, None).await.unwrap()
}

fn kinds(r: &Report) -> Vec<(ProblemKind, Option<i64>)> {
    r.problems.iter().map(|p| (p.kind, p.seq)).collect()
}

async fn hash_of(db: &Db, seq: i64) -> String {
    db.store.records(seq - 1, 1).await.unwrap()[0].hash.clone()
}

/// Moves records with seq >= from by delta (two steps so unique keys never collide).
async fn shift(db: &Db, from: i64, delta: i64) {
    db.sql(&format!(
        "UPDATE audit_log SET seq = -seq WHERE seq >= {from}"
    ))
    .await;
    db.sql(&format!(
        "UPDATE audit_log SET seq = -seq + ({delta}) WHERE seq < 0"
    ))
    .await;
}

async fn suite(db: Db, tamper: &str) {
    fill(&db).await;
    match tamper {
        "none" => {
            let r = report(&db).await;
            assert!(r.ok, "{:?}", r.problems);
            assert_eq!(
                (r.records, r.checkpoints, r.checkpoints_verified),
                (13, 2, 2)
            );
            assert_eq!(r.head_hash, hash_of(&db, 13).await);
            assert_eq!(r.last_checkpoint.as_ref().unwrap().count, 13);
            // A report kept as evidence is accepted by the next verification.
            let again = verify(db.store.as_ref(), None, r.last_checkpoint.as_ref())
                .await
                .unwrap();
            assert!(again.ok);
        }
        "changed" => {
            db.sql("UPDATE audit_log SET data = '{\"n\":999}' WHERE seq = 4")
                .await;
            let r = report(&db).await;
            assert!(!r.ok);
            assert_eq!(kinds(&r), vec![(ProblemKind::Changed, Some(4))]);
        }
        "changed_actor" => {
            db.sql("UPDATE audit_log SET actor = 'mallory' WHERE seq = 7")
                .await;
            assert_eq!(
                kinds(&report(&db).await),
                vec![(ProblemKind::Changed, Some(7))]
            );
        }
        "deleted" => {
            db.sql("DELETE FROM audit_log WHERE seq = 5").await;
            let r = report(&db).await;
            assert!(!r.ok);
            assert_eq!(r.problems[0].kind, ProblemKind::Deleted);
            assert_eq!(r.problems[0].seq, Some(6));
        }
        "deleted_renumbered" => {
            db.sql("DELETE FROM audit_log WHERE seq = 5").await;
            shift(&db, 6, -1).await;
            let r = report(&db).await;
            assert_eq!(r.problems[0].kind, ProblemKind::Deleted, "{:?}", r.problems);
            assert_eq!(r.problems[0].seq, Some(5));
            assert!(r.problems.iter().all(|p| p.kind != ProblemKind::Changed));
        }
        "inserted" => {
            shift(&db, 4, 1).await;
            let prev = hash_of(&db, 3).await;
            let (time, data) = ("2026-11-28T10:00:03.500Z", "{\"n\":\"forged\"}");
            let h = record_hash(time, "auth.login", Some("mallory"), data, &prev);
            db.sql(&format!("INSERT INTO audit_log (seq, time, kind, actor, data, prev_hash, hash) VALUES (4, '{time}', 'auth.login', 'mallory', '{data}', '{prev}', '{h}')")).await;
            let r = report(&db).await;
            assert!(!r.ok);
            assert_eq!(
                r.problems[0].kind,
                ProblemKind::Inserted,
                "{:?}",
                r.problems
            );
            assert_eq!(r.problems[0].seq, Some(4));
        }
        "reordered" => {
            db.sql("UPDATE audit_log SET seq = -6 WHERE seq = 6").await;
            db.sql("UPDATE audit_log SET seq = 6 WHERE seq = 7").await;
            db.sql("UPDATE audit_log SET seq = 7 WHERE seq = -6").await;
            let r = report(&db).await;
            assert!(!r.ok);
            assert_eq!(
                r.problems[0].kind,
                ProblemKind::Reordered,
                "{:?}",
                r.problems
            );
            assert_eq!(r.problems[0].seq, Some(6));
            assert!(r
                .problems
                .iter()
                .all(|p| matches!(p.kind, ProblemKind::Reordered)));
        }
        "truncated" => {
            db.sql("DELETE FROM audit_log WHERE seq > 11").await;
            let r = report(&db).await;
            assert_eq!(kinds(&r), vec![(ProblemKind::Truncated, Some(12))]);
            assert_eq!(r.records, 11);
        }
        "truncated_with_checkpoints" => {
            let before = report(&db).await;
            db.sql("DELETE FROM audit_log WHERE seq > 11").await;
            db.sql("DELETE FROM audit_checkpoints WHERE count > 11")
                .await;
            assert!(report(&db).await.ok, "undetectable from the store alone");
            let r = verify(db.store.as_ref(), None, before.last_checkpoint.as_ref())
                .await
                .unwrap();
            assert!(!r.ok);
            assert!(r.problems.iter().any(|p| p.kind == ProblemKind::Truncated));
        }
        "rewritten" => {
            // Change record 2 and recompute every later hash: only checkpoints catch it.
            let recs = db.store.records(0, 100).await.unwrap();
            let mut prev = recs[0].hash.clone();
            for r in &recs[1..] {
                let data = if r.seq == 2 {
                    "{\"n\":-2}".to_string()
                } else {
                    r.data.clone()
                };
                let h = record_hash(&r.time, &r.kind, r.actor.as_deref(), &data, &prev);
                db.sql(&format!("UPDATE audit_log SET data = '{data}', prev_hash = '{prev}', hash = '{h}' WHERE seq = {}", r.seq)).await;
                prev = h;
            }
            let r = report(&db).await;
            assert_eq!(
                kinds(&r),
                vec![
                    (ProblemKind::CheckpointMismatch, Some(10)),
                    (ProblemKind::CheckpointMismatch, Some(13))
                ]
            );
        }
        "forged_checkpoint" => {
            db.sql("UPDATE audit_checkpoints SET count = 12 WHERE count = 13")
                .await;
            let r = report(&db).await;
            assert!(
                r.problems
                    .iter()
                    .any(|p| p.kind == ProblemKind::BadSignature),
                "{:?}",
                r.problems
            );
        }
        "foreign_key" => {
            // A checkpoint signed by a key the auditor does not trust.
            let other = SigningKey::from_bytes(&[9; 32]);
            db.store
                .add_key(&chain::public_key(&other.verifying_key(), &t(99)))
                .await
                .unwrap();
            let head = db.store.head().await.unwrap().unwrap();
            db.store
                .add_checkpoint(&chain::sign(&other, head.seq, &head.hash, &t(99)))
                .await
                .unwrap();
            assert!(report(&db).await.ok, "the store trusts every key it lists");
            let pinned = vec![chain::public_key(&key().verifying_key(), &t(0))];
            let r = verify(db.store.as_ref(), Some(pinned), None).await.unwrap();
            assert_eq!(kinds(&r), vec![(ProblemKind::BadSignature, Some(13))]);
        }
        "rotated" => {
            // A new key signs later checkpoints; old ones still verify with the old key.
            let new = SigningKey::from_bytes(&[11; 32]);
            db.store
                .add_key(&chain::public_key(&new.verifying_key(), &t(50)))
                .await
                .unwrap();
            let ev = Event {
                kind: "config.loaded".into(),
                actor: None,
                data: serde_json::json!({}),
            };
            db.store.append(&ev, &t(51)).await.unwrap();
            assert!(super::checkpoint(db.store.as_ref(), &new).await.unwrap());
            let r = report(&db).await;
            assert!(r.ok, "{:?}", r.problems);
            assert_eq!((r.checkpoints, r.checkpoints_verified), (3, 3));
            let both = vec![
                chain::public_key(&key().verifying_key(), &t(0)),
                chain::public_key(&new.verifying_key(), &t(50)),
            ];
            assert!(
                verify(db.store.as_ref(), Some(both), None)
                    .await
                    .unwrap()
                    .ok
            );
            let old_only = vec![chain::public_key(&key().verifying_key(), &t(0))];
            let r = verify(db.store.as_ref(), Some(old_only), None)
                .await
                .unwrap();
            assert_eq!(kinds(&r), vec![(ProblemKind::BadSignature, Some(14))]);
        }
        "export" => {
            let e = export(
                db.store.as_ref(),
                Some(&Bound::Seq(3)),
                Some(&Bound::Seq(7)),
            )
            .await
            .unwrap();
            assert_eq!(
                e.records.iter().map(|r| r.seq).collect::<Vec<_>>(),
                vec![3, 4, 5, 6, 7]
            );
            assert_eq!(
                e.checkpoints.iter().map(|c| c.count).collect::<Vec<_>>(),
                vec![10]
            );
            assert_eq!(e.keys.len(), 1);
            let from: Bound = t(11).parse().unwrap();
            let e = export(db.store.as_ref(), Some(&from), None).await.unwrap();
            assert_eq!(
                e.records.iter().map(|r| r.seq).collect::<Vec<_>>(),
                vec![11, 12, 13]
            );
            assert_eq!(
                e.checkpoints.iter().map(|c| c.count).collect::<Vec<_>>(),
                vec![13]
            );
        }
        other => panic!("unknown case {other}"),
    }
}

const CASES: &[&str] = &[
    "none",
    "changed",
    "changed_actor",
    "deleted",
    "deleted_renumbered",
    "inserted",
    "reordered",
    "truncated",
    "truncated_with_checkpoints",
    "rewritten",
    "forged_checkpoint",
    "foreign_key",
    "rotated",
    "export",
];

#[tokio::test]
async fn sqlite_store_suite() {
    for case in CASES {
        eprintln!("sqlite: {case}");
        suite(sqlite().await, case).await;
    }
}

#[tokio::test]
async fn postgres_store_suite() {
    for case in CASES {
        let Some(db) = postgres().await else { return };
        eprintln!("postgres: {case}");
        suite(db, case).await;
    }
}

#[tokio::test]
async fn concurrent_appends_keep_one_chain() {
    concurrent_appends(sqlite().await).await;
    if let Some(db) = postgres().await {
        concurrent_appends(db).await;
    }
}

async fn concurrent_appends(db: Db) {
    let mut tasks = Vec::new();
    for w in 0..4 {
        let s = db.store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                let ev = Event {
                    kind: "admin.action".into(),
                    actor: Some(format!("w{w}")),
                    data: serde_json::json!({"i": i}),
                };
                s.append(&ev, &t(i)).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let r = report(&db).await;
    assert!(r.ok, "{:?}", r.problems);
    assert_eq!(r.records, 100);
}

#[test]
fn generated_key_is_reloaded_and_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k/audit.pem");
    let a = super::load_or_generate_key(&path).unwrap();
    let b = super::load_or_generate_key(&path).unwrap();
    assert_eq!(a.to_bytes(), b.to_bytes());
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    std::fs::write(&path, "not a key").unwrap();
    assert!(matches!(
        super::load_or_generate_key(&path),
        Err(super::KeyError::Format(_))
    ));
}
