//! Fuzzes the request-path normaliser with untrusted bytes: it must never panic, and whatever it
//! accepts must be canonical (normalising the forwarded form again changes nothing) and free of
//! dot segments, empty segments, backslashes and NUL.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_policy::path::{normalise, normalise_with, ParamRule, PathLimits};

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    for rule in [ParamRule::Reject, ParamRule::Strip] {
        if let Ok(p) = normalise(raw, rule) {
            // Re-encoding can lengthen a path (raw UTF-8 becomes %XX), so no size limit here.
            let unlimited = PathLimits { max_bytes: usize::MAX, max_segments: usize::MAX };
            let again = normalise_with(p.encoded(), ParamRule::Reject, unlimited)
                .expect("canonical form re-parses");
            assert_eq!(again, p);
            let d = p.decoded();
            assert!(d.starts_with('/'));
            assert!(!d.contains("//") && !d.contains('\\') && !d.contains('\0'));
            assert!(d.split('/').all(|s| s != "." && s != ".."));
        }
    }
});
