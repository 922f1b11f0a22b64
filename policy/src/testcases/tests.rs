use super::*;

/// The engine's main table: every case of `tests/cases/engine.yaml` must pass.
#[test]
fn engine_table() {
    let report = match run_test_file(include_str!("../../tests/cases/engine.yaml")) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    assert!(report.results.len() >= 30, "{}", report.results.len());
    assert_eq!(report.failed(), 0, "\n{report}");
}

#[test]
fn failing_case_is_reported() {
    let yaml = r#"
routes: [ { id: r, policy: authenticated } ]
cases:
  - { name: anon, route: r, input: { now: 2026-01-01T00:00:00Z }, expect: allow }
  - { name: missing, route: nope, input: { now: 2026-01-01T00:00:00Z }, expect: deny }
"#;
    let report = match run_test_file(yaml) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    assert_eq!((report.passed(), report.failed()), (0, 2));
    let text = report.to_string();
    assert!(
        text.contains("FAIL anon: expected allow (got login"),
        "{text}"
    );
    assert!(text.ends_with("0 passed, 2 failed"), "{text}");
}

#[test]
fn unknown_keys_and_bad_policies_are_errors() {
    let bad_key = "cases: []\nroutez: []\n";
    assert!(matches!(
        run_test_file(bad_key),
        Err(TestFileError::Yaml(_))
    ));
    let bad_policy = "routes: [ { id: r, policy: nope } ]\ncases: []\n";
    match run_test_file(bad_policy) {
        Err(TestFileError::Invalid(p)) => assert_eq!(p.0[0].path, "routes[0].policy"),
        other => panic!("{other:?}"),
    }
}
