//! Reading the YAML tree into the serde schema while collecting *every* schema problem, not
//! just the first: an unknown key (`server.theads`) used to abort the parse and hide every
//! other problem in the file. Each problem at a map key is recorded and that key removed, and
//! the parse is tried again, so the semantic checks still run on what is left; unknown keys get
//! a "did you mean" from the keys serde expected.

use super::problems::Problem;
use serde_path_to_error::Segment;
use serde_yaml::Value;

/// At most this many schema problems are collected from one file.
const MAX_PROBLEMS: usize = 64;

/// The parsed file, if what remains after removing the offending keys parses, and every schema
/// problem found on the way.
pub fn deserialize_all<T: serde::de::DeserializeOwned>(
    mut value: Value,
) -> (Option<T>, Vec<Problem>) {
    let mut problems: Vec<Problem> = Vec::new();
    loop {
        let err = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(t) => return (Some(t), problems),
            Err(e) => e,
        };
        let segments: Vec<Segment> = err.path().iter().cloned().collect();
        let path = err.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let message = with_suggestion(&err.inner().to_string());
        // A "missing field" right after a removal is that removal's echo, not a new problem.
        let echo = problems.last().is_some_and(|p| {
            message.starts_with("missing field")
                && p.path.starts_with(&path)
                && message.contains(&format!("`{}`", last_key(&p.path)))
        });
        if !echo {
            problems.push(Problem { path, message });
        }
        let removable = matches!(segments.last(), Some(Segment::Map { .. }));
        if echo || !removable || problems.len() >= MAX_PROBLEMS || !remove(&mut value, &segments) {
            return (None, problems);
        }
    }
}

fn last_key(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

/// Removes the node at `segments` (whose last segment is a map key); false if it is not there.
fn remove(value: &mut Value, segments: &[Segment]) -> bool {
    let Some((Segment::Map { key }, parents)) = segments.split_last() else {
        return false;
    };
    let mut node = value;
    for s in parents {
        node = match (s, node) {
            (Segment::Map { key }, Value::Mapping(m)) => match m.get_mut(key.as_str()) {
                Some(v) => v,
                None => return false,
            },
            (Segment::Seq { index }, Value::Sequence(v)) => match v.get_mut(*index) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match node {
        Value::Mapping(m) => m.remove(key.as_str()).is_some(),
        _ => false,
    }
}

/// serde's "unknown field `theads`, expected one of `https`, `threads`, …" becomes
/// "unknown key `theads` (did you mean `threads`?)" when one expected key is close.
fn with_suggestion(message: &str) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message.to_string();
    };
    let Some((unknown, expected)) = rest.split_once('`') else {
        return message.to_string();
    };
    let best = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|k| (strsim::levenshtein(unknown, k), k))
        .min();
    match best {
        Some((d, k)) if d <= 2.max(unknown.len() / 3) => {
            format!("unknown key `{unknown}` (did you mean `{k}`?)")
        }
        _ => message.replacen("unknown field", "unknown key", 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_only_for_close_keys() {
        assert_eq!(
            with_suggestion("unknown field `theads`, expected one of `https`, `threads`"),
            "unknown key `theads` (did you mean `threads`?)"
        );
        assert_eq!(
            with_suggestion("unknown field `zzzzzz`, expected `threads`"),
            "unknown key `zzzzzz`, expected `threads`"
        );
        assert_eq!(with_suggestion("invalid type"), "invalid type");
    }
}
