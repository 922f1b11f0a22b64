//! `console:` — who may use the admin console and its JSON API.
//!
//! ```yaml
//! console:
//!   policy: { allow: [ { all: [ { roles: [portcullis-admin] }, { mfa: { max_age: 15m } } ] } ] }
//! ```
//!
//! The policy is written in the route rule language and compiled with the routes' library
//! (roles, SoD, named policies), so the same engine decides it. Absent `console:`, the console
//! and its API do not exist (404, like any unknown reserved path). `console:` without `policy`
//! means [`DEFAULT_POLICY`]: the `portcullis-admin` role and a second factor at most 15
//! minutes old. The role is declared implicitly whenever `console:` is present, so the default
//! compiles without a `roles:` entry.

use crate::config::problems::Problems;
use portcullis_policy::compile::{CompiledPolicy, Compiler};
use portcullis_policy::spec::PolicySpec;
use serde::Deserialize;

/// The role the default console policy asks for.
pub const ADMIN_ROLE: &str = "portcullis-admin";

/// The console policy when `console:` gives none (the contract's spelling).
pub const DEFAULT_POLICY: &str =
    "{ allow: [ { all: [ { roles: [portcullis-admin] }, { mfa: { max_age: 15m } } ] } ] }";

/// `console:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSpec {
    /// Who may use the console; absent: [`DEFAULT_POLICY`].
    #[serde(default)]
    pub policy: Option<PolicySpec>,
}

/// Validated `console:`.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// The compiled console policy, decided by the engine on every API call.
    pub policy: CompiledPolicy,
}

/// Compiles the console policy with the routes' `compiler` (problems under `console.policy`).
/// The console reads and changes the directory, so it needs one; the default policy asks for
/// a second factor, so it needs `mfa:` (otherwise nobody could ever pass it).
pub fn build(
    spec: ConsoleSpec,
    compiler: &mut Compiler,
    has_directory: bool,
    has_mfa: bool,
    problems: &mut Problems,
) -> Option<ConsoleConfig> {
    if !has_directory {
        problems.add(
            "console",
            "the console administers the directory: add a directory: section",
        );
    }
    let policy = match spec.policy {
        Some(p) => p,
        None => {
            if !has_mfa {
                problems.add(
                    "console",
                    "the default console policy requires a recent second factor: configure mfa: or give console.policy",
                );
            }
            match serde_yaml::from_str::<PolicySpec>(DEFAULT_POLICY) {
                Ok(p) => p,
                Err(e) => {
                    problems.add("console.policy", format!("default policy: {e}"));
                    return None;
                }
            }
        }
    };
    Some(ConsoleConfig {
        policy: compiler.policy(&policy, "console.policy"),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    fn load(yaml: &str) -> Result<crate::config::Config, crate::config::ConfigErrors> {
        crate::config::load_str(yaml, "t", &HashMap::<String, String>::new())
    }

    const BASE: &str = "store: \"sqlite:///tmp/x.db\"\nidentity_providers: [ { id: staff, type: local } ]\nroutes: [ { id: a, path: /, upstream: \"http://127.0.0.1:9\", policy: public } ]\n";

    #[test]
    fn absent_means_no_console_and_the_default_needs_directory_and_mfa() {
        let c = load(&format!("{BASE}directory: {{}}\n")).unwrap();
        assert!(c.console.is_none());
        let e = load(&format!("{BASE}console: {{}}\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("console: the console administers the directory"),
            "{e}"
        );
        assert!(
            e.contains("console: the default console policy requires"),
            "{e}"
        );
        let ok = load(&format!(
            "{BASE}directory: {{}}\nmfa: {{ encryption_key: \"CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=\", totp: {{}} }}\nconsole: {{}}\n"
        ));
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn a_given_policy_is_compiled_with_every_problem_at_its_key_path() {
        let e = load(&format!(
            "{BASE}directory: {{}}\nconsole: {{ policy: {{ allow: [ {{ roles: [ghost] }}, {{ source_ip: [nope] }} ] }}, colour: red }}\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("console.colour: unknown key `colour`"), "{e}");
        assert!(
            e.contains("console.policy.allow[0].roles[0]: unknown role `ghost`"),
            "{e}"
        );
        assert!(e.contains("console.policy.allow[1].source_ip[0]"), "{e}");
        // The admin role is known once the console is configured.
        let ok = load(&format!(
            "{BASE}directory: {{}}\nconsole: {{ policy: {{ allow: [ {{ roles: [portcullis-admin] }} ] }} }}\n"
        ));
        assert!(ok.is_ok(), "{ok:?}");
    }
}
