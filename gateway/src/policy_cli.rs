//! `portcullis policy test|explain`: policy changes reviewed with evidence, like `opa test`.

use crate::config::{self, env::ProcessEnv};
use portcullis_policy::engine::evaluate;
use portcullis_policy::input::Input;
use portcullis_policy::routing::canonical_host;
use portcullis_policy::testcases::{run_cases, TestFile};
use std::collections::BTreeMap;

/// Runs a test file; cases run against the file's own routes, or — when the file has none — the
/// routes of `config`. Returns the report text and whether every case passed.
pub fn test(file: &str, config: Option<&str>) -> Result<(String, bool), String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
    let tf = TestFile::parse(&text).map_err(|e| format!("{file}: invalid test file: {e}"))?;
    let report = if tf.routes.is_empty() {
        let path = config.ok_or_else(|| {
            format!("{file} has no routes: pass --config to test against a gateway config")
        })?;
        let (cfg, _) = config::load_file(path, &ProcessEnv).map_err(|e| e.to_string())?;
        let by_id: BTreeMap<&str, _> = cfg
            .routes
            .iter()
            .map(|r| (r.id.as_str(), &r.policy))
            .collect();
        run_cases(&tf.cases, |id| by_id.get(id).copied())
    } else {
        let routes = tf
            .compile()
            .map_err(|p| format!("{file}: invalid policy:\n{p}"))?;
        run_cases(&tf.cases, |id| routes.get(id))
    };
    Ok((report.to_string(), report.failed() == 0))
}

/// Explains the decision for one input against a config: the route it matches (or `route`),
/// the outcome, the deciding rule and the failed condition.
pub fn explain(config: &str, input: &str, route: Option<&str>) -> Result<String, String> {
    let (cfg, _) = config::load_file(config, &ProcessEnv).map_err(|e| e.to_string())?;
    let text = std::fs::read_to_string(input).map_err(|e| format!("{input}: {e}"))?;
    let input: Input =
        serde_json::from_str(&text).map_err(|e| format!("{input}: invalid input: {e}"))?;
    let idx = match route {
        Some(id) => cfg
            .routes
            .iter()
            .position(|r| r.id == id)
            .ok_or_else(|| format!("no route with id {id:?}"))?,
        None => {
            let host = input.request.host.as_deref().unwrap_or("");
            cfg.table
                .lookup(&canonical_host(host), &input.request.path)
                .ok_or_else(|| {
                    format!(
                        "no route matches host {host:?} path {:?}: the gateway answers 404 (default deny)",
                        input.request.path
                    )
                })?
        }
    };
    let route = cfg.routes.get(idx).ok_or("route index out of range")?;
    let d = evaluate(&route.policy, &input);
    let out = serde_json::json!({
        "route": route.id,
        "decision": d.outcome.as_str(),
        "rule": d.explanation.rule.to_string(),
        "reason": d.explanation.reason(),
        "cross_tenant": d.explanation.cross_tenant,
        "sod_violations": d.explanation.sod_violations.iter().map(|v| format!("{v:?}")).collect::<Vec<_>>(),
    });
    serde_json::to_string_pretty(&out).map_err(|e| e.to_string())
}
