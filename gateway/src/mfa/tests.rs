//! The store suite, run against SQLite always and PostgreSQL when `PORTCULLIS_TEST_POSTGRES`
//! names a server (as `tests/run` does): same cases, same expectations.

use super::store::{FactorRow, MfaStore, PgStore, SqliteStore};
use super::{totp, Mfa, MfaError};
use std::sync::Arc;

const KEY: [u8; 32] = [9; 32];
const SEED: &[u8] = b"12345678901234567890";
const NOW: u64 = 1_800_000_000;

/// Reads the raw `secret` column of every row (to prove it is sealed).
type RawSecrets =
    Box<dyn Fn() -> futures_util::future::BoxFuture<'static, Vec<Vec<u8>>> + Send + Sync>;

async fn suite(store: Arc<dyn MfaStore>, raw: RawSecrets) {
    let mfa = Mfa::new(store.clone(), &KEY).unwrap();
    let p = mfa.totp_params();
    assert!(mfa.factors("ann").await.unwrap().is_empty());

    // Enrolment needs a valid code; a wrong one stores nothing.
    assert!(matches!(
        mfa.enrol_totp("ann", "phone", SEED, "000000", NOW).await,
        Err(MfaError::WrongCode)
    ));
    assert!(mfa.factors("ann").await.unwrap().is_empty());
    let code = totp::totp(&p, SEED, NOW);
    let id = mfa
        .enrol_totp("ann", "phone", SEED, &code, NOW)
        .await
        .unwrap();
    let f = mfa.factors("ann").await.unwrap();
    assert_eq!(f.len(), 1);
    assert_eq!(
        (f[0].id.as_str(), f[0].kind.as_str(), f[0].label.as_str()),
        (id.as_str(), "totp", "phone")
    );
    assert!(
        mfa.factors("bob").await.unwrap().is_empty(),
        "factors are per user"
    );

    // Secrets are sealed at rest.
    let secrets = raw().await;
    assert_eq!(secrets.len(), 1);
    assert!(!secrets[0].windows(SEED.len()).any(|w| w == SEED));

    // The enrolment code cannot be replayed; the next step's code works once.
    assert!(matches!(
        mfa.verify_totp("ann", &code, NOW).await,
        Err(MfaError::Replayed)
    ));
    let next = totp::totp(&p, SEED, NOW + 30);
    assert_eq!(mfa.verify_totp("ann", &next, NOW + 30).await.unwrap(), id);
    assert!(matches!(
        mfa.verify_totp("ann", &next, NOW + 31).await,
        Err(MfaError::Replayed)
    ));
    // An older (still in-window) code after a newer one is refused too.
    assert!(matches!(
        mfa.verify_totp("ann", &code, NOW + 31).await,
        Err(MfaError::Replayed)
    ));
    assert!(matches!(
        mfa.verify_totp("ann", "123456", NOW + 60).await,
        Err(MfaError::WrongCode)
    ));
    assert!(matches!(
        mfa.verify_totp("bob", &totp::totp(&p, SEED, NOW + 60), NOW + 60)
            .await,
        Err(MfaError::WrongCode)
    ));

    // Concurrent use of one code: exactly one wins.
    let c = totp::totp(&p, SEED, NOW + 90);
    let (a, b) = tokio::join!(
        mfa.verify_totp("ann", &c, NOW + 90),
        mfa.verify_totp("ann", &c, NOW + 90)
    );
    assert_eq!(u8::from(a.is_ok()) + u8::from(b.is_ok()), 1, "{a:?} {b:?}");

    // A wrong key does not open the secret: fail closed, not "wrong code".
    let other = Mfa::new(store.clone(), &[1; 32]).unwrap();
    assert!(matches!(
        other
            .verify_totp("ann", &totp::totp(&p, SEED, NOW + 120), NOW + 120)
            .await,
        Err(MfaError::Seal(_))
    ));

    // A row moved to another user does not open for them.
    let mut rows = store.list("ann").await.unwrap();
    let mut moved: FactorRow = rows.remove(0);
    moved.user = "mallory".into();
    moved.id = "moved".into();
    store.add(&moved).await.unwrap();
    assert!(matches!(
        mfa.verify_totp("mallory", &totp::totp(&p, SEED, NOW + 150), NOW + 150)
            .await,
        Err(MfaError::Seal(_))
    ));

    // Recovery codes: hashed, single use, replaced on reissue.
    let codes = mfa.issue_recovery_codes("ann", 3, NOW).await.unwrap();
    assert_eq!(codes.len(), 3);
    let raw_now = raw().await;
    for c in &codes {
        assert!(
            !raw_now
                .iter()
                .any(|s| s.windows(c.len()).any(|w| w == c.as_bytes())),
            "code stored in clear"
        );
    }
    assert_eq!(
        mfa.use_recovery_code("ann", &codes[1].to_uppercase())
            .await
            .unwrap()
            .len(),
        32
    );
    assert!(
        matches!(
            mfa.use_recovery_code("ann", &codes[1]).await,
            Err(MfaError::WrongCode)
        ),
        "single use"
    );
    assert!(
        matches!(
            mfa.use_recovery_code("bob", &codes[0]).await,
            Err(MfaError::WrongCode)
        ),
        "per user"
    );
    assert!(matches!(
        mfa.use_recovery_code("ann", "nope").await,
        Err(MfaError::WrongCode)
    ));
    let again = mfa.issue_recovery_codes("ann", 2, NOW).await.unwrap();
    assert!(
        matches!(
            mfa.use_recovery_code("ann", &codes[0]).await,
            Err(MfaError::WrongCode)
        ),
        "old codes revoked by reissue"
    );
    assert!(mfa.use_recovery_code("ann", &again[0]).await.is_ok());
    let (a, b) = tokio::join!(
        mfa.use_recovery_code("ann", &again[1]),
        mfa.use_recovery_code("ann", &again[1])
    );
    assert_eq!(u8::from(a.is_ok()) + u8::from(b.is_ok()), 1, "{a:?} {b:?}");

    // Removal is per user.
    assert!(!mfa.remove("bob", &id).await.unwrap());
    assert!(mfa.remove("ann", &id).await.unwrap());
    assert!(mfa.factors("ann").await.unwrap().is_empty());
    assert!(!mfa.remove("ann", &id).await.unwrap());
}

#[tokio::test]
async fn sqlite_store_suite() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("sub/portcullis.db"))
        .await
        .unwrap();
    let pool = s.pool().clone();
    suite(
        Arc::new(s),
        Box::new(move || {
            let pool = pool.clone();
            Box::pin(async move {
                use sqlx::Row;
                sqlx::query("SELECT secret FROM mfa_factors")
                    .fetch_all(&pool)
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| r.get::<Vec<u8>, _>("secret"))
                    .collect()
            })
        }),
    )
    .await;
}

#[tokio::test]
async fn postgres_store_suite() {
    let Some(url) = crate::store::test_postgres_database("mfa").await else {
        return;
    };
    let s = PgStore::open(&url).await.unwrap();
    let pool = s.pool().clone();
    suite(
        Arc::new(s),
        Box::new(move || {
            let pool = pool.clone();
            Box::pin(async move {
                use sqlx::Row;
                sqlx::query("SELECT secret FROM mfa_factors")
                    .fetch_all(&pool)
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| r.get::<Vec<u8>, _>("secret"))
                    .collect()
            })
        }),
    )
    .await;
}
