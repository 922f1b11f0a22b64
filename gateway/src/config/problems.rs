//! What every config section reports problems with, and the shared checks: a leaf module (it
//! imports nothing from the gateway), so each feature's spec can use it without an import loop
//! through `config::model`.

use std::time::Duration;

/// A problem found in the config, before line numbers are attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Key path such as `routes[1].upstream`.
    pub path: String,
    /// What is wrong, naming the offending value.
    pub message: String,
}

/// Collects problems while converting.
#[derive(Debug, Default)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    /// Records a problem at `path`.
    pub fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }
}

/// Whether `id` is a usable identifier: non-empty, only ASCII letters, digits, `-` and `_`.
/// Ids end up in metric labels, link sources (`sync:<id>`) and URLs, so none has `:` or `/`.
pub fn is_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Parses an optional duration at `path`, recording a problem (and using `default`) when it
/// is not one; shared by every config section so the message reads the same everywhere.
pub fn duration(
    value: Option<&str>,
    default: Duration,
    path: &str,
    problems: &mut Problems,
) -> Duration {
    match value {
        None => default,
        Some(v) => humantime::parse_duration(v).unwrap_or_else(|e| {
            problems.add(
                path,
                format!("{v:?} is not a duration like 30s or 5m ({e})"),
            );
            default
        }),
    }
}
