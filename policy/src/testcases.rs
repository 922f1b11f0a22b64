//! Table-driven policy tests, like `opa test`: inputs with their expected decisions, so policy
//! changes are reviewed with evidence. Backs `portcullis policy test FILE`.
//!
//! # File format (YAML, unknown keys are errors)
//!
//! ```yaml
//! # Optional: the same keys as in the gateway config. When a file has no `routes`, the CLI
//! # runs the cases against the routes of `--config` instead.
//! roles: { payroll-admin: { inherits: [payroll-viewer] } }
//! sod: [ { name: pay-vs-approve, roles: [payroll-admin, payroll-approver], max: 1 } ]
//! policies:
//!   office-hours: { time: { days: [mon, tue, wed, thu, fri], from: "07:00", to: "20:00", tz: Europe/Paris } }
//! routes:
//!   - id: payroll
//!     policy:
//!       allow:
//!         - all: [ { roles: [payroll-viewer] }, { country: [FR, DE] }, { policy: office-hours } ]
//!
//! cases:
//!   - name: viewer in Paris on a Monday morning     # required, unique is best
//!     route: payroll                                # required: a route id
//!     input:                                        # the engine input (see `input::Input`)
//!       now: 2026-03-30T08:00:00Z                   # required, UTC
//!       identity: { user: alice, roles: [payroll-admin], tenant: acme,
//!                   auth_methods: [ { method: totp, at: 2026-03-30T07:55:00Z } ] }
//!       request: { method: GET, path: /payroll/slips, host: app.example.com, tenant: acme,
//!                  headers: { x-env: prod }, query: { year: "2026" } }
//!       network: { client_ip: 192.0.2.10, country: FR, region: FR-IDF, asn: 3215 }
//!       device: { client_cert_ca: corp-ca, registered_device: laptop-42, platform: macos }
//!     expect: allow                                 # allow | deny | login | step_up
//!     rule: allow[0]                                # optional: deciding rule
//!     reason_contains: country                      # optional: substring of the reason
//!     cross_tenant: false                           # optional
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

use crate::compile::{CompiledPolicy, Compiler};
use crate::engine::evaluate;
use crate::input::Input;
use crate::problem::{index, join, Problems};
use crate::spec::{ConditionSpec, LibrarySpec, PolicySpec, RoleSpec, SodSpec};

/// A policy test file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// Role hierarchy (optional).
    #[serde(default)]
    pub roles: BTreeMap<String, RoleSpec>,
    /// SoD rules (optional).
    #[serde(default)]
    pub sod: Vec<SodSpec>,
    /// Named policies (optional).
    #[serde(default)]
    pub policies: BTreeMap<String, ConditionSpec>,
    /// Routes under test (optional when the CLI supplies a config).
    #[serde(default)]
    pub routes: Vec<TestRoute>,
    /// The cases.
    pub cases: Vec<TestCase>,
}

/// A route of a test file: only its id and policy matter to the engine.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestRoute {
    /// Route id, referenced by cases.
    pub id: String,
    /// The route's policy.
    pub policy: PolicySpec,
}

/// Expected outcome, spelled as in the decision log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// `allow`
    Allow,
    /// `deny`
    Deny,
    /// `login`
    Login,
    /// `step_up`
    StepUp,
}

impl Expect {
    fn as_str(self) -> &'static str {
        match self {
            Expect::Allow => "allow",
            Expect::Deny => "deny",
            Expect::Login => "login",
            Expect::StepUp => "step_up",
        }
    }
}

/// One case: an input and what the engine must answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    /// Shown in reports.
    pub name: String,
    /// Route id.
    pub route: String,
    /// Engine input.
    pub input: Input,
    /// Expected outcome.
    pub expect: Expect,
    /// Expected deciding rule (`allow[0]`, `deny[1]`, `default`, `tenant-isolation`...).
    #[serde(default)]
    pub rule: Option<String>,
    /// Substring the reason must contain.
    #[serde(default)]
    pub reason_contains: Option<String>,
    /// Expected cross-tenant flag.
    #[serde(default)]
    pub cross_tenant: Option<bool>,
}

/// Result of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    /// Case name.
    pub name: String,
    /// `None` if it passed, else what differed.
    pub failure: Option<String>,
    /// The decision-log spelling of the outcome.
    pub outcome: &'static str,
    /// Deciding rule.
    pub rule: String,
    /// The explanation's reason.
    pub reason: String,
}

/// Results of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestReport {
    /// One per case, in file order.
    pub results: Vec<CaseResult>,
}

impl TestReport {
    /// Number of passing cases.
    pub fn passed(&self) -> usize {
        self.results.iter().filter(|r| r.failure.is_none()).count()
    }

    /// Number of failing cases; the CLI exits non-zero when this is not 0.
    pub fn failed(&self) -> usize {
        self.results.len() - self.passed()
    }
}

impl fmt::Display for TestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.results {
            match &r.failure {
                None => writeln!(f, "PASS {}", r.name)?,
                Some(why) => writeln!(
                    f,
                    "FAIL {}: {why} (got {} by {}: {})",
                    r.name, r.outcome, r.rule, r.reason
                )?,
            }
        }
        write!(f, "{} passed, {} failed", self.passed(), self.failed())
    }
}

/// Why a test file could not be run.
#[derive(Debug, thiserror::Error)]
pub enum TestFileError {
    /// Not valid YAML, or keys the format does not know.
    #[error("invalid test file: {0}")]
    Yaml(#[from] serde_yaml::Error),
    /// The policies in the file do not compile.
    #[error("invalid policy:\n{0}")]
    Invalid(Problems),
}

impl TestFile {
    /// Parses a test file.
    pub fn parse(yaml: &str) -> Result<Self, serde_yaml::Error> {
        serde_yaml::from_str(yaml)
    }

    /// Compiles the file's routes (key paths `routes[i].policy`) into id → policy.
    pub fn compile(&self) -> Result<BTreeMap<String, CompiledPolicy>, Problems> {
        let lib = LibrarySpec {
            roles: self.roles.clone(),
            sod: self.sod.clone(),
            policies: self.policies.clone(),
        };
        let mut c = Compiler::new(&lib);
        let mut out = BTreeMap::new();
        let mut dup = Vec::new();
        for (i, r) in self.routes.iter().enumerate() {
            let p = c.policy(&r.policy, &join(&index("routes", i), "policy"));
            if out.insert(r.id.clone(), p).is_some() {
                dup.push(crate::problem::Problem::new(
                    join(&index("routes", i), "id"),
                    format!("duplicate route id `{}`", r.id),
                ));
            }
        }
        match c.finish() {
            Ok(_) if dup.is_empty() => Ok(out),
            Ok(_) => Err(Problems(dup)),
            Err(mut p) => {
                p.0.extend(dup);
                Err(p)
            }
        }
    }
}

/// Runs cases against policies looked up by route id (the CLI passes the config's routes or the
/// file's own). A case naming an unknown route fails.
pub fn run_cases<'p>(
    cases: &[TestCase],
    policy_for: impl Fn(&str) -> Option<&'p CompiledPolicy>,
) -> TestReport {
    let results = cases
        .iter()
        .map(|case| {
            let Some(policy) = policy_for(&case.route) else {
                return CaseResult {
                    name: case.name.clone(),
                    failure: Some(format!("unknown route `{}`", case.route)),
                    outcome: "none",
                    rule: String::new(),
                    reason: String::new(),
                };
            };
            let d = evaluate(policy, &case.input);
            let outcome = d.outcome.as_str();
            let rule = d.explanation.rule.to_string();
            let reason = d.explanation.reason();
            let mut why = Vec::new();
            if outcome != case.expect.as_str() {
                why.push(format!("expected {}", case.expect.as_str()));
            }
            if let Some(r) = case.rule.as_deref().filter(|r| *r != rule) {
                why.push(format!("expected rule {r}"));
            }
            if let Some(s) = case
                .reason_contains
                .as_deref()
                .filter(|s| !reason.contains(s))
            {
                why.push(format!("expected reason containing `{s}`"));
            }
            if let Some(x) = case
                .cross_tenant
                .filter(|x| *x != d.explanation.cross_tenant)
            {
                why.push(format!("expected cross_tenant {x}"));
            }
            CaseResult {
                name: case.name.clone(),
                failure: (!why.is_empty()).then(|| why.join("; ")),
                outcome,
                rule,
                reason,
            }
        })
        .collect();
    TestReport { results }
}

/// Parses, compiles and runs a self-contained test file.
pub fn run_test_file(yaml: &str) -> Result<TestReport, TestFileError> {
    let file = TestFile::parse(yaml)?;
    let routes = file.compile().map_err(TestFileError::Invalid)?;
    Ok(run_cases(&file.cases, |id| routes.get(id)))
}

#[cfg(test)]
mod tests;
