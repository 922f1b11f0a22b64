use super::*;
use proptest::prelude::*;

fn ok(raw: &str) -> (String, String) {
    let p = normalise(raw, ParamRule::Reject).unwrap_or_else(|e| panic!("{raw}: {e}"));
    (p.decoded().to_string(), p.encoded().to_string())
}

fn err(raw: &str) -> PathError {
    match normalise(raw, ParamRule::Reject) {
        Ok(p) => panic!("{raw} should be refused, got {p:?}"),
        Err(e) => e,
    }
}

#[test]
fn plain_paths_pass_unchanged() {
    for p in ["/", "/a", "/a/b/", "/a.b/c-d_e~f", "/x:y@z", "/a,b=c"] {
        assert_eq!(ok(p), (p.to_string(), p.to_string()));
    }
}

#[test]
fn dot_segments_and_double_slashes_resolve() {
    let cases = [
        ("/public/../admin", "/admin"),
        ("/public/%2e%2e/admin", "/admin"),
        ("/public/%2E%2E/admin", "/admin"),
        ("/public/.%2e/admin", "/admin"),
        ("/public/%2e./admin", "/admin"),
        ("/./admin", "/admin"),
        ("/%2e/admin", "/admin"),
        ("//admin", "/admin"),
        ("///admin//x", "/admin/x"),
        ("/a/b/..", "/a/"),
        ("/a/b/.", "/a/b/"),
        ("/a/./b/../../c", "/c"),
        ("/..a/...", "/..a/..."),
    ];
    for (raw, want) in cases {
        assert_eq!(ok(raw).0, want, "{raw}");
    }
}

#[test]
fn dangerous_encodings_are_refused() {
    let cases = [
        ("/admin%2fsecret", PathError::EncodedSlash),
        ("/admin%2Fsecret", PathError::EncodedSlash),
        ("/a%5c..%5cadmin", PathError::Backslash),
        ("/a\\admin", PathError::Backslash),
        ("/admin%00.html", PathError::NulByte),
        ("/a%0d%0aSet-Cookie:x", PathError::ControlChar),
        ("/public/..;/admin", PathError::Semicolon),
        ("/admin;x=1", PathError::Semicolon),
        ("/admin%3bx", PathError::Semicolon),
        ("/%c0%ae%c0%ae/admin", PathError::InvalidUtf8),
        ("/%u002e%u002e/admin", PathError::BadEscape),
        ("/%2", PathError::BadEscape),
        ("/%zz", PathError::BadEscape),
        ("/..", PathError::AboveRoot),
        ("/../admin", PathError::AboveRoot),
        ("/%2e%2e/%2e%2e/etc/passwd", PathError::AboveRoot),
        ("admin", PathError::NotAbsolute),
        ("", PathError::NotAbsolute),
        ("*", PathError::NotAbsolute),
        ("/a#b", PathError::Fragment),
    ];
    for (raw, want) in cases {
        assert_eq!(err(raw), want, "{raw}");
    }
}

#[test]
fn double_encoding_stays_literal() {
    // %252e decodes once to the literal text "%2e", which must not become ".." later.
    let (decoded, encoded) = ok("/public/%252e%252e/admin");
    assert_eq!(decoded, "/public/%2e%2e/admin");
    assert_eq!(encoded, "/public/%252e%252e/admin");
}

#[test]
fn non_ascii_is_reencoded_canonically() {
    let (decoded, encoded) = ok("/caf%c3%a9/%7euser/a b");
    assert_eq!(decoded, "/café/~user/a b");
    assert_eq!(encoded, "/caf%C3%A9/~user/a%20b");
}

#[test]
fn strip_rule_drops_parameters() {
    let p = normalise("/app;jsessionid=1/page;x", ParamRule::Strip).unwrap();
    assert_eq!(p.decoded(), "/app/page");
    let p = normalise("/public/..;/admin", ParamRule::Strip).unwrap();
    assert_eq!(
        p.decoded(),
        "/admin",
        "stripping happens before dot resolution"
    );
    assert_eq!(
        normalise("/a%3bb", ParamRule::Strip),
        Err(PathError::Semicolon)
    );
}

fn arb_segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just(".".to_string()),
        Just("..".to_string()),
        Just("%2e".to_string()),
        Just("%2E%2e".to_string()),
        Just("%2f".to_string()),
        Just(";".to_string()),
        Just("%25".to_string()),
        "[a-zA-Z0-9._~%-]{0,6}",
        "\\PC{0,4}",
    ]
}

fn arb_path() -> impl Strategy<Value = String> {
    prop::collection::vec(arb_segment(), 0..8).prop_map(|s| format!("/{}", s.join("/")))
}

proptest! {
    #[test]
    fn normalising_twice_changes_nothing(raw in arb_path()) {
        if let Ok(p) = normalise(&raw, ParamRule::Reject) {
            let again = normalise(p.encoded(), ParamRule::Reject).expect("canonical form re-parses");
            prop_assert_eq!(again, p);
        }
    }

    #[test]
    fn output_has_no_dot_or_empty_segments(raw in arb_path()) {
        if let Ok(p) = normalise(&raw, ParamRule::Strip) {
            let d = p.decoded();
            prop_assert!(d.starts_with('/'));
            prop_assert!(!d.contains("//"));
            for seg in d.split('/') {
                prop_assert!(seg != "." && seg != "..", "{d}");
            }
            prop_assert!(!d.contains('\\') && !d.contains('\0'));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(raw in "\\PC*") {
        let _ = normalise(&raw, ParamRule::Reject);
        let _ = normalise(&raw, ParamRule::Strip);
    }

    #[test]
    fn a_normalised_path_outside_a_prefix_never_decodes_into_it(
        raw in arb_path(),
    ) {
        // Whatever the client sends, the upstream decodes `encoded` to exactly `decoded`.
        if let Ok(p) = normalise(&raw, ParamRule::Reject) {
            let round = decode_segment_path(p.encoded());
            prop_assert_eq!(round, p.decoded().to_string());
        }
    }
}

fn decode_segment_path(encoded: &str) -> String {
    encoded
        .split('/')
        .map(|s| decode_segment(s).expect("canonical segment decodes"))
        .collect::<Vec<_>>()
        .join("/")
}

/// Issue 10, H4: size is checked before anything else, so oversized paths cost one pass.
#[test]
fn oversized_paths_are_refused_before_any_work() {
    let limits = PathLimits {
        max_bytes: 64,
        max_segments: 4,
    };
    let n = |raw: &str| normalise_with(raw, ParamRule::Reject, limits);
    assert!(n("/a/b/c/d").is_ok());
    assert_eq!(n("/a/b/c/d/e"), Err(PathError::TooManySegments(4)));
    assert_eq!(
        n("/////"),
        Err(PathError::TooManySegments(4)),
        "empty segments count"
    );
    assert_eq!(
        n(&format!("/{}", "x".repeat(64))),
        Err(PathError::TooLong(64))
    );
    assert!(n(&format!("/{}", "x".repeat(63))).is_ok());
    // The default limits apply to plain `normalise` too.
    let many = "/a".repeat(PathLimits::DEFAULT_MAX_SEGMENTS + 1);
    assert_eq!(
        normalise(&many, ParamRule::Reject),
        Err(PathError::TooManySegments(PathLimits::DEFAULT_MAX_SEGMENTS))
    );
    let long = format!("/{}", "x".repeat(PathLimits::DEFAULT_MAX_BYTES));
    assert_eq!(
        normalise(&long, ParamRule::Reject),
        Err(PathError::TooLong(PathLimits::DEFAULT_MAX_BYTES))
    );
    assert!(PathError::TooLong(1).is_too_long() && !PathError::Fragment.is_too_long());
}
