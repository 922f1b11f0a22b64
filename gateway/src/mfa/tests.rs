//! The store suite, run against SQLite always and PostgreSQL when `PORTCULLIS_TEST_POSTGRES`
//! names a server (as `tests/run` does): same cases, same expectations.

use super::store::{FactorRow, MfaStore};
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
        store.legacy_owners().await.unwrap(),
        1,
        "a bare user name is a pre-provider:subject enrolment"
    );
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

    // Compare-and-swap of a factor's sealed secret and counter (WebAuthn signature counters):
    // a stale expectation, another user, or the loser of a race changes nothing.
    store
        .add(&FactorRow {
            id: "wa1".into(),
            user: "ann".into(),
            kind: "webauthn".into(),
            label: "key".into(),
            secret: b"v0".to_vec(),
            created: 1,
            last_step: None,
        })
        .await
        .unwrap();
    assert!(store
        .swap_secret("ann", "wa1", None, b"v1", 5)
        .await
        .unwrap());
    assert!(
        !store
            .swap_secret("ann", "wa1", None, b"v2", 6)
            .await
            .unwrap(),
        "stale"
    );
    assert!(
        !store
            .swap_secret("bob", "wa1", Some(5), b"v2", 6)
            .await
            .unwrap(),
        "per user"
    );
    assert!(!store
        .swap_secret("ann", "nope", Some(5), b"v2", 6)
        .await
        .unwrap());
    assert!(store
        .swap_secret("ann", "wa1", Some(5), b"v2", 6)
        .await
        .unwrap());
    let row = |rows: Vec<FactorRow>| rows.into_iter().find(|r| r.id == "wa1").unwrap();
    let r = row(store.list("ann").await.unwrap());
    assert_eq!((r.secret.as_slice(), r.last_step), (&b"v2"[..], Some(6)));
    let (a, b) = tokio::join!(
        store.swap_secret("ann", "wa1", Some(6), b"x", 7),
        store.swap_secret("ann", "wa1", Some(6), b"y", 7)
    );
    assert_eq!(
        u8::from(a.unwrap()) + u8::from(b.unwrap()),
        1,
        "one racer wins"
    );
    assert_eq!(row(store.list("ann").await.unwrap()).last_step, Some(7));
    assert!(store.remove("ann", "wa1").await.unwrap());

    webauthn_cases(&mfa, &store).await;

    // Removal is per user.
    assert!(!mfa.remove("bob", &id).await.unwrap());
    assert!(mfa.remove("ann", &id).await.unwrap());
    assert!(mfa.factors("ann").await.unwrap().is_empty());
    assert!(!mfa.remove("ann", &id).await.unwrap());
}

/// WebAuthn through the store with a software authenticator: registration, use, counters
/// moved by compare-and-swap, clones refused both by webauthn-rs and by the store check.
async fn webauthn_cases(mfa: &Mfa, store: &Arc<dyn MfaStore>) {
    use super::webauthn::{soft::SoftKey, RelyingParty};
    let origin = "https://localhost:8443";
    let rp = RelyingParty::new(
        &super::config::Webauthn {
            rp_id: "localhost".into(),
            rp_origin: url::Url::parse(origin).unwrap(),
            user_verification: "required".into(),
        },
        "Acme",
    )
    .unwrap();
    let mut key = SoftKey::new("localhost", origin);
    let (ccr, state) = rp.start_registration("cat", &[]).unwrap();
    let passkey = rp.finish_registration(&key.register(&ccr), &state).unwrap();
    let id = mfa
        .enrol_webauthn("cat", "Laptop", &passkey, NOW)
        .await
        .unwrap();
    assert!(
        matches!(
            mfa.enrol_webauthn("cat", "Again", &passkey, NOW).await,
            Err(MfaError::Replayed)
        ),
        "one credential once"
    );
    let keys = mfa.webauthn_keys("cat").await.unwrap();
    assert_eq!(
        (keys.len(), keys[0].label.as_str(), keys[0].counter),
        (1, "Laptop", None)
    );
    let raw = store.list("cat").await.unwrap();
    assert!(!raw[0].secret.windows(7).any(|w| w == b"cred_id"), "sealed");

    // A good assertion is accepted and moves the stored counter.
    let begin = |keys: &[super::webauthn::StoredKey]| {
        let pk: Vec<_> = keys.iter().map(|k| k.key.clone()).collect();
        rp.start_authentication(&pk).unwrap()
    };
    let (rcr, state) = begin(&keys);
    let res = rp.finish_authentication(&key.assert(&rcr), &state).unwrap();
    assert_eq!(mfa.use_webauthn("cat", &res).await.unwrap(), id);
    assert!(matches!(
        mfa.use_webauthn("bob", &res).await,
        Err(MfaError::WrongCode)
    ));
    let keys = mfa.webauthn_keys("cat").await.unwrap();
    assert_eq!(keys[0].counter, Some(1));

    // A tampered signature, or an assertion for another challenge, does not verify.
    let (rcr, state) = begin(&keys);
    let (rcr2, _) = begin(&keys);
    let mut forged = serde_json::to_value(key.assert(&rcr)).unwrap();
    forged["response"]["signature"] = serde_json::json!("MEUCIQ");
    let forged = serde_json::from_value(forged).unwrap();
    assert!(matches!(
        rp.finish_authentication(&forged, &state),
        Err(MfaError::Webauthn(_))
    ));
    assert!(matches!(
        rp.finish_authentication(&key.assert(&rcr2), &state),
        Err(MfaError::Webauthn(_))
    ));

    // A clone whose counter is behind the stored one: webauthn-rs refuses it.
    let mut clone = key.clone_with_counter(0);
    let (rcr, state) = begin(&keys);
    assert!(matches!(
        rp.finish_authentication(&clone.assert(&rcr), &state),
        Err(MfaError::CounterRegressed)
    ));

    // Two ceremonies begun from the same stored counter (two replicas), the key and its
    // clone both showing the next counter: the first wins, the store check refuses the other.
    let keys = mfa.webauthn_keys("cat").await.unwrap();
    let mut clone = key.clone_with_counter(key.counter);
    let (r1, s1) = begin(&keys);
    let (r2, s2) = begin(&keys);
    let a = rp.finish_authentication(&key.assert(&r1), &s1).unwrap();
    let b = rp.finish_authentication(&clone.assert(&r2), &s2).unwrap();
    assert_eq!(mfa.use_webauthn("cat", &a).await.unwrap(), id);
    assert!(matches!(
        mfa.use_webauthn("cat", &b).await,
        Err(MfaError::CounterRegressed)
    ));
    let keys = mfa.webauthn_keys("cat").await.unwrap();
    assert_eq!(keys[0].counter, Some(i64::from(key.counter)));
    // The stored record carries the counter too: the next ceremony refuses a copy that shows
    // the counter already used (a clone that runs ahead cannot be told apart: a known limit).
    let mut behind = key.clone_with_counter(key.counter - 1);
    let (rcr, state) = begin(&keys);
    assert!(matches!(
        rp.finish_authentication(&behind.assert(&rcr), &state),
        Err(MfaError::CounterRegressed)
    ));
    let (rcr, state) = begin(&keys);
    let ok = rp.finish_authentication(&key.assert(&rcr), &state).unwrap();
    assert_eq!(mfa.use_webauthn("cat", &ok).await.unwrap(), id);
    assert!(mfa.remove("cat", &id).await.unwrap());
}

/// The same suite on SQLite and (when available) PostgreSQL.
#[tokio::test]
async fn store_suite() {
    for (name, db, _dir) in crate::store::test_databases("mfa", &[&super::store::MIGRATIONS]).await
    {
        eprintln!("{name}: mfa store suite");
        let raw_db = db.clone();
        suite(
            super::store::over(&db),
            Box::new(move || {
                let db = raw_db.clone();
                Box::pin(async move {
                    use sqlx::Row;
                    sqlx::query("SELECT secret FROM mfa_factors")
                        .fetch_all(db.pool())
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
}
