//! Configuration problems with key paths, so `portcullis check` can list every one at once.

use std::fmt;

/// One thing wrong with a policy config, located by its key path
/// (`routes[1].policy.allow[0].all[2].country`, `policies.office-hours.time.tz`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct Problem {
    /// Where in the config the problem is.
    pub path: String,
    /// What is wrong, for an operator.
    pub message: String,
}

impl Problem {
    /// Builds a problem; used by the compiler and the gateway's own validation alike.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Every problem found in one compile, in config order.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// Appends `.key` to a key path (no leading dot when the path is empty).
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Appends `[i]` to a key path.
pub(crate) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}
