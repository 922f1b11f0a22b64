//! `${NAME}` expansion in string values. Expansion happens on parsed scalars, never on the raw
//! text, so a secret that contains YAML syntax cannot change the structure of the config.

use std::collections::HashMap;

/// Where variables come from. Tests pass a map; the binary passes the process environment.
pub trait EnvLookup {
    /// The value of `name`, if set.
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl EnvLookup for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl EnvLookup for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// Expands `${NAME}` in `input`; `$${` writes a literal `${`. Returns the name of the first
/// variable that is unset or malformed.
pub fn expand(input: &str, env: &dyn EnvLookup) -> Result<String, String> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let end = after
                .find('}')
                .ok_or_else(|| "unterminated ${...} reference".to_string())?;
            let name = &after[..end];
            let valid =
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !valid {
                return Err(format!("invalid environment variable name {name:?}"));
            }
            let value = env
                .var(name)
                .ok_or_else(|| format!("environment variable {name} is not set"))?;
            out.push_str(&value);
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_and_escapes() {
        let env: HashMap<String, String> = [("A".to_string(), "x: y".to_string())].into();
        assert_eq!(expand("k=${A}!", &env).as_deref(), Ok("k=x: y!"));
        assert_eq!(expand("$${A} $5", &env).as_deref(), Ok("${A} $5"));
        assert!(expand("${B}", &env).unwrap_err().contains("B is not set"));
        assert!(expand("${A", &env).is_err());
        assert!(expand("${A-B}", &env).is_err());
    }
}
