//! Secrets in config: every secret key `x` may instead be written `x_file: /path`, so secrets can
//! come from mounted files (Kubernetes secrets, systemd credentials) rather than the YAML or the
//! environment. Exactly one of the two must be given where the secret is required.

use super::problems::Problems;

/// Resolves `key` / `key_file` under `base` (e.g. `identity_providers[0]`, `client_secret`).
/// Trailing newlines of files are dropped (editors and `echo` add them). Problems name the key.
pub fn resolve(
    inline: Option<&str>,
    file: Option<&str>,
    base: &str,
    key: &str,
    required: bool,
    problems: &mut Problems,
) -> Option<String> {
    let at = |k: &str| {
        if base.is_empty() {
            k.to_string()
        } else {
            format!("{base}.{k}")
        }
    };
    match (inline, file) {
        (Some(_), Some(_)) => {
            problems.add(at(key), format!("set {key} or {key}_file, not both"));
            None
        }
        (Some(v), None) => Some(v.to_string()),
        (None, Some(path)) => match std::fs::read_to_string(path) {
            Ok(v) => {
                let v = v.trim_end_matches(['\n', '\r']).to_string();
                if v.is_empty() {
                    problems.add(at(&format!("{key}_file")), format!("{path:?} is empty"));
                    None
                } else {
                    Some(v)
                }
            }
            Err(e) => {
                problems.add(
                    at(&format!("{key}_file")),
                    format!("{path:?}: cannot read: {e}"),
                );
                None
            }
        },
        (None, None) => {
            if required {
                problems.add(at(key), format!("missing: set {key} or {key}_file"));
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_file_both_and_neither() {
        let dir = std::env::temp_dir().join(format!("pc-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("s");
        std::fs::write(&f, "hunter2\n").unwrap();
        let f = f.to_str().unwrap();
        let mut p = Problems::default();
        assert_eq!(
            resolve(Some("x"), None, "idp[0]", "client_secret", true, &mut p).as_deref(),
            Some("x")
        );
        assert_eq!(
            resolve(None, Some(f), "idp[0]", "client_secret", true, &mut p).as_deref(),
            Some("hunter2")
        );
        assert!(p.0.is_empty());
        resolve(Some("x"), Some(f), "idp[0]", "client_secret", true, &mut p);
        resolve(None, None, "idp[0]", "client_secret", true, &mut p);
        resolve(
            None,
            Some("/nonexistent"),
            "idp[0]",
            "client_secret",
            true,
            &mut p,
        );
        let paths: Vec<_> = p.0.iter().map(|x| x.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "idp[0].client_secret",
                "idp[0].client_secret",
                "idp[0].client_secret_file"
            ]
        );
        std::fs::remove_dir_all(dir).ok();
    }
}
