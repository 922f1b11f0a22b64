//! The one-time code and remembered-device tables, run against SQLite always and PostgreSQL
//! when `PORTCULLIS_TEST_POSTGRES` names a server (as `tests/run` does): same cases.

use super::{DeviceRow, OtpStore};

const NOW: i64 = 1_800_000_000;

fn device(id: &str, user: &str, hash: &str, expires: i64) -> DeviceRow {
    DeviceRow {
        id: id.into(),
        user: user.into(),
        token_hash: hash.into(),
        method: "email".into(),
        label: "Firefox on Linux".into(),
        created: NOW,
        expires,
        last_used: NOW,
    }
}

async fn suite(s: &dyn OtpStore) {
    // A code nonce is accepted once, whoever asks; others are independent.
    assert!(s.claim_code("n1", NOW + 600, NOW).await.unwrap());
    assert!(!s.claim_code("n1", NOW + 600, NOW).await.unwrap(), "replay");
    assert!(s.claim_code("n2", NOW + 600, NOW).await.unwrap());
    // Concurrent claims: exactly one wins.
    let (a, b) = tokio::join!(
        s.claim_code("n3", NOW + 600, NOW),
        s.claim_code("n3", NOW + 600, NOW)
    );
    assert_eq!(u8::from(a.unwrap()) + u8::from(b.unwrap()), 1);
    // Expired nonces are forgotten (the code they belong to has expired too).
    assert!(s.claim_code("n4", NOW + 5, NOW).await.unwrap());
    assert!(s.claim_code("n5", NOW + 1000, NOW + 10).await.unwrap());
    assert!(
        s.claim_code("n4", NOW + 1000, NOW + 10).await.unwrap(),
        "purged after expiry"
    );
    assert!(
        !s.claim_code("n1", NOW + 600, NOW + 10).await.unwrap(),
        "not yet expired"
    );

    // Devices: found by token hash, listed per user while not expired, removed per user.
    assert!(s.device("h1").await.unwrap().is_none());
    s.add_device(&device("d1", "ann", "h1", NOW + 86_400))
        .await
        .unwrap();
    s.add_device(&device("d2", "ann", "h2", NOW + 10))
        .await
        .unwrap();
    s.add_device(&device("d3", "bob", "h3", NOW + 86_400))
        .await
        .unwrap();
    assert!(
        s.add_device(&device("d4", "bob", "h1", NOW + 86_400))
            .await
            .is_err(),
        "token hashes are unique"
    );
    assert_eq!(
        s.device("h1").await.unwrap().unwrap(),
        device("d1", "ann", "h1", NOW + 86_400)
    );
    let ids = |v: Vec<DeviceRow>| v.into_iter().map(|d| d.id).collect::<Vec<_>>();
    assert_eq!(ids(s.devices("ann", NOW).await.unwrap()), ["d1", "d2"]);
    assert_eq!(
        ids(s.devices("ann", NOW + 20).await.unwrap()),
        ["d1"],
        "expired not listed"
    );
    assert_eq!(ids(s.devices("bob", NOW).await.unwrap()), ["d3"]);
    s.touch_device("d1", NOW + 99).await.unwrap();
    assert_eq!(s.device("h1").await.unwrap().unwrap().last_used, NOW + 99);
    assert!(
        !s.remove_device("bob", "d1").await.unwrap(),
        "only the owner revokes"
    );
    assert!(s.remove_device("ann", "d1").await.unwrap());
    assert!(s.device("h1").await.unwrap().is_none(), "revoked at once");
    assert!(!s.remove_device("ann", "d1").await.unwrap());
}

/// The same suite on SQLite and (when available) PostgreSQL.
#[tokio::test]
async fn otp_store_suite() {
    for (name, db, _dir) in
        crate::store::test_databases("otp", &[&crate::mfa::store::MIGRATIONS]).await
    {
        eprintln!("{name}: otp store suite");
        suite(crate::mfa::store::over(&db).as_ref()).await;
    }
}
