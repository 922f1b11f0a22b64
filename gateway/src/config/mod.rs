//! Configuration: YAML text → serde schema → validated model, with every problem reported at
//! once with its key path and line; plus hot reload.

pub mod auth_model;
pub mod auth_schema;
pub mod env;
pub mod locate;
pub mod model;
pub mod problems;
pub mod reload;
pub mod schema;
pub mod schema_pass;
pub mod secret;

pub use model::{without_resolving, Config};

use env::EnvLookup;
use locate::LineIndex;
use problems::Problems;
use std::fmt;

/// The quick-start config, compiled in so `portcullis run` works with no file at all.
pub const EMBEDDED_EXAMPLE: &str = include_str!("../../../config.example.yaml");

/// One problem, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Key path (`routes[1].upstream`); empty for whole-file problems.
    pub path: String,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

/// Every problem found in one config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    /// The file name used in messages.
    pub source: String,
    /// The problems, in file order.
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match e.line {
                Some(l) => write!(f, "{}:{l}: ", self.source)?,
                None => write!(f, "{}: ", self.source)?,
            }
            if e.path.is_empty() {
                write!(f, "{}", e.message)?;
            } else {
                write!(f, "{}: {}", e.path, e.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads and validates a config file.
pub fn load_file(path: &str, env: &dyn EnvLookup) -> Result<(Config, String), ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
        source: path.to_string(),
        errors: vec![ConfigError {
            path: String::new(),
            line: None,
            message: format!("cannot read config file: {e}"),
        }],
    })?;
    let config = load_str(&text, path, env)?;
    Ok((config, text))
}

/// Validates config text; `source` names it in messages.
pub fn load_str(text: &str, source: &str, env: &dyn EnvLookup) -> Result<Config, ConfigErrors> {
    let index = LineIndex::new(text);
    let fail = |problems: Vec<problems::Problem>| {
        let mut errors: Vec<ConfigError> = problems
            .into_iter()
            .map(|p| ConfigError {
                line: index.line_of(&p.path),
                path: p.path,
                message: p.message,
            })
            .collect();
        errors.sort_by_key(|e| e.line.unwrap_or(0));
        ConfigErrors {
            source: source.to_string(),
            errors,
        }
    };
    let mut value: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| ConfigErrors {
        source: source.to_string(),
        errors: vec![ConfigError {
            path: String::new(),
            line: e.location().map(|l| l.line()),
            message: format!("invalid YAML: {e}"),
        }],
    })?;
    if value.is_null() {
        value = serde_yaml::Value::Mapping(Default::default());
    }
    let mut problems = Problems::default();
    expand_env(&mut value, "", env, &mut problems);
    if !problems.0.is_empty() {
        return Err(fail(problems.0));
    }
    let (file, schema_problems) = schema_pass::deserialize_all::<schema::ConfigFile>(value);
    problems.0.extend(schema_problems);
    let config = file.and_then(|f| model::build(f, &mut problems));
    match config {
        Some(c) if problems.0.is_empty() => Ok(c),
        _ => Err(fail(problems.0)),
    }
}

fn expand_env(v: &mut serde_yaml::Value, path: &str, env: &dyn EnvLookup, p: &mut Problems) {
    use serde_yaml::Value;
    match v {
        Value::String(s) if s.contains('$') => match env::expand(s, env) {
            Ok(x) => *s = x,
            Err(msg) => p.add(path, msg),
        },
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_env(item, &format!("{path}[{i}]"), env, p);
            }
        }
        Value::Mapping(map) => {
            for (k, item) in map.iter_mut() {
                let key = k.as_str().unwrap_or("?");
                let child = if path.is_empty() {
                    key.to_string()
                } else {
                    format!("{path}.{key}")
                };
                expand_env(item, &child, env, p);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests;
