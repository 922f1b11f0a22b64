//! Pure parts of WebAuthn: ceremony sealing, binding, expiry; counter rule; the relying party
//! built from config (real webauthn-rs `begin` states, no authenticator needed).

use super::*;
use crate::mfa::config::Webauthn as Cfg;

fn rp(uv: &str) -> RelyingParty {
    RelyingParty::new(
        &Cfg {
            rp_id: "localhost".into(),
            rp_origin: url::Url::parse("https://localhost:8443").unwrap(),
            user_verification: uv.into(),
        },
        "Acme",
    )
    .unwrap()
}

fn codec(k: u8) -> CookieCodec {
    CookieCodec::new(&[[k; 32]]).unwrap()
}

fn registration(rp: &RelyingParty) -> Step {
    let (_, state) = rp.start_registration("ann", &[]).unwrap();
    Step::Register {
        label: "key".into(),
        state,
    }
}

#[test]
fn ceremony_opens_only_for_its_user_session_and_time() {
    let rp = rp("required");
    let c = codec(1);
    let now = 1_800_000_000;
    let sealed = Ceremony::new("ann", "sid-1", now, registration(&rp))
        .seal(&c)
        .unwrap();
    assert!(sealed.len() < 4096, "fits a cookie: {}", sealed.len());
    let ok = Ceremony::open(&c, &[&sealed], "ann", "sid-1", now + 10).unwrap();
    assert!(
        matches!(ok.step, Step::Register { ref label, state: Registration::Passkey(_) } if label == "key")
    );
    assert_eq!(
        Ceremony::open(&c, &[&sealed], "bob", "sid-1", now).unwrap_err(),
        CeremonyError::Unbound,
        "another user"
    );
    assert_eq!(
        Ceremony::open(&c, &[&sealed], "ann", "sid-2", now).unwrap_err(),
        CeremonyError::Unbound,
        "another (or a rotated) session: single use"
    );
    assert_eq!(
        Ceremony::open(&c, &[&sealed], "ann", "sid-1", now + CEREMONY_TTL).unwrap_err(),
        CeremonyError::Expired
    );
    assert_eq!(
        Ceremony::open(&codec(2), &[&sealed], "ann", "sid-1", now).unwrap_err(),
        CeremonyError::Missing,
        "other keys"
    );
    let mut tampered = sealed.clone().into_bytes();
    let i = tampered.len() / 2;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    assert_eq!(
        Ceremony::open(&c, &[&tampered], "ann", "sid-1", now).unwrap_err(),
        CeremonyError::Missing
    );
    assert_eq!(
        Ceremony::open(&c, &[], "ann", "sid-1", now).unwrap_err(),
        CeremonyError::Missing
    );
    // A value sealed for another cookie (same keys) does not open as a ceremony.
    let other = c.seal("__Host-portcullis-mfa", &"x").unwrap();
    assert_eq!(
        Ceremony::open(&c, &[&other], "ann", "sid-1", now).unwrap_err(),
        CeremonyError::Missing
    );
    // Of several cookies (h2 sends each), the valid one wins.
    assert!(Ceremony::open(&c, &[&tampered, &sealed], "ann", "sid-1", now).is_ok());
}

#[test]
fn counter_must_advance_unless_the_authenticator_has_none() {
    assert!(counter_advances(None, 0));
    assert!(counter_advances(None, 7));
    assert!(counter_advances(Some(3), 4));
    assert!(
        !counter_advances(Some(3), 3),
        "same counter: replay or clone"
    );
    assert!(!counter_advances(Some(3), 2), "went backwards: clone");
    assert!(
        !counter_advances(Some(3), 0),
        "reset to 0 after counting: clone"
    );
    assert!(
        counter_advances(Some(0), 0),
        "no counter at all (synced passkey)"
    );
    assert!(counter_advances(Some(0), 1));
}

#[test]
fn user_verification_picks_the_webauthn_rs_api() {
    for (uv, passkey) in [
        ("required", true),
        ("preferred", false),
        ("discouraged", false),
    ] {
        let rp = rp(uv);
        let (ccr, state) = rp.start_registration("ann", &[]).unwrap();
        assert_eq!(matches!(state, Registration::Passkey(_)), passkey, "{uv}");
        let opts = serde_json::to_value(&ccr).unwrap();
        let want = if uv == "discouraged" {
            "discouraged"
        } else {
            uv
        };
        assert_eq!(
            opts["publicKey"]["authenticatorSelection"]["userVerification"], want,
            "{opts}"
        );
        assert_eq!(opts["publicKey"]["rp"]["id"], "localhost");
    }
    // Stable, opaque user handle.
    assert_eq!(user_handle("ann"), user_handle("ann"));
    assert_ne!(user_handle("ann"), user_handle("bob"));
    // A relying party whose id does not cover the origin is refused.
    assert!(RelyingParty::new(
        &Cfg {
            rp_id: "example.com".into(),
            rp_origin: url::Url::parse("https://localhost").unwrap(),
            user_verification: "required".into(),
        },
        "x"
    )
    .is_err());
}

#[test]
fn authentication_state_for_the_most_credentials_fits_one_cookie() {
    use super::soft::SoftKey;
    for uv in ["required", "preferred"] {
        let rp = rp(uv);
        let keys: Vec<Passkey> = (0..MAX_CREDENTIALS)
            .map(|_| {
                let mut k = SoftKey::new("localhost", "https://localhost:8443");
                let (ccr, st) = rp.start_registration("ann", &[]).unwrap();
                rp.finish_registration(&k.register(&ccr), &st).unwrap()
            })
            .collect();
        let (_, state) = rp.start_authentication(&keys).unwrap();
        let sealed = Ceremony::new("ann", "sid", 0, Step::Authenticate(state))
            .seal(&codec(1))
            .unwrap();
        eprintln!(
            "{uv}: {MAX_CREDENTIALS} credentials -> {} byte cookie",
            sealed.len()
        );
        // Browsers keep cookies up to 4096 bytes including name and attributes.
        assert!(sealed.len() < 3900, "{uv}: {} bytes", sealed.len());
        assert!(Ceremony::open(&codec(1), &[&sealed], "ann", "sid", 1).is_ok());
    }
}
