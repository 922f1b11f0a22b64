//! `portcullis check` and `portcullis run` on bad config: every problem, its key path and line,
//! and a non-zero exit.

use portcullis_e2e::*;
use std::process::Command;

fn check(text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.yaml");
    std::fs::write(&f, text).unwrap();
    let out = Command::new(bin())
        .args(["check", "--config"])
        .arg(&f)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr).replace(&f.display().to_string(), "c.yaml")
        + &String::from_utf8_lossy(&out.stdout);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn check_reports_every_problem_with_key_path_and_line() {
    let (code, out) = check(
        "server:
  admin: { listen: \"localhost\" }
routes:
  - id: ok
    upstream: http://127.0.0.1:1
    policy: public
  - id: bad
    upstream: \"htp://x\"
    path: /b
    timeouts: { read: forever }
    policy: public
  - id: also-bad
    path: /x
    upstream: http://127.0.0.1:1
    policy: { deny: [] }
",
    );
    assert_eq!(code, 1, "{out}");
    for want in [
        "c.yaml:2: server.admin.listen: \"localhost\" is not a socket address",
        "c.yaml:8: routes[1].upstream: \"htp://x\" has scheme \"htp\"",
        "c.yaml:10: routes[1].timeouts.read: \"forever\" is not a duration",
        "c.yaml:15: routes[2].policy.allow: no allow rule",
        "4 problem(s) found",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
}

#[test]
fn check_accepts_the_example_config() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../config.example.yaml");
    let out = Command::new(bin())
        .args(["check", "--config", example])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn run_refuses_to_start_on_a_bad_config_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.yaml");
    std::fs::write(&f, "routes:\n  - id: a\n    upstream: http://127.0.0.1:1\n    policy: public\n    colour: blue\n").unwrap();
    let out = Command::new(bin())
        .args(["run", "--config"])
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(":5: routes[0].colour: unknown key `colour`"),
        "{err}"
    );
}

/// `portcullis hash-password` reads the password from stdin (never argv) and prints an
/// Argon2id PHC string; a short one is refused.
#[test]
fn hash_password_reads_stdin_and_prints_argon2id() {
    use std::io::Write;
    let run = |input: &str| {
        let mut child = Command::new(bin())
            .arg("hash-password")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = run("correct horse battery staple\n");
    assert!(out.status.success());
    let phc = String::from_utf8(out.stdout).unwrap();
    assert!(phc.starts_with("$argon2id$v=19$"), "{phc}");
    assert!(!phc.contains("horse"));
    let out = run("short\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 12"));
}
