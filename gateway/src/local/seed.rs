//! `directory.users_file`: local accounts to create at start (the quick start's demo users, or
//! break-glass accounts an operator keeps in configuration management). Each entry names a
//! user and an Argon2id hash (`portcullis hash-password` prints one); never a clear password.
//! Every problem in the file is reported at once, with its key path.
//!
//! ```yaml
//! users:
//!   - user_name: alice
//!     password_hash: "$argon2id$v=19$m=19456,t=2,p=1$…"
//!     email: alice@example.com
//!     display_name: Alice Example
//!     groups: [admins]
//!     tenant: ""            # optional
//! groups:                   # optional: roles the file's groups grant
//!   - { name: admins, roles: [portcullis-admin] }
//! ```
//!
//! `groups:` is how the first console administrator is made without any other software: the
//! directory's group roles are otherwise written only by the directory's own writers.

use crate::config::problems::Problems;
use serde::Deserialize;

/// The file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersFile {
    /// Accounts.
    pub users: Vec<SeedUser>,
    /// Roles of groups (created when missing); the roles a listed group grants are replaced
    /// by the file's at every start.
    #[serde(default)]
    pub groups: Vec<SeedGroup>,
}

/// One group's roles.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SeedGroup {
    /// Group display name (unique per tenant, case-insensitive).
    pub name: String,
    /// Roles every member holds.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Tenant (`""` by default).
    #[serde(default)]
    pub tenant: String,
}

/// One account.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SeedUser {
    /// Sign-in name (unique per tenant, case-insensitive).
    pub user_name: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// Email address.
    #[serde(default)]
    pub email: Option<String>,
    /// Display name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Group names (created in the directory when missing).
    #[serde(default)]
    pub groups: Vec<String>,
    /// Tenant (`""` by default).
    #[serde(default)]
    pub tenant: String,
}

/// Parses and checks the file's text; `Err` lists every problem (`users[2].password_hash: …`).
pub fn parse(text: &str, file: &str) -> Result<UsersFile, Problems> {
    let mut p = Problems::default();
    let parsed: UsersFile = match serde_yaml::from_str(text) {
        Ok(f) => f,
        Err(e) => {
            p.add(file, e.to_string());
            return Err(p);
        }
    };
    let mut seen = std::collections::HashSet::new();
    for (i, u) in parsed.users.iter().enumerate() {
        let key = |k: &str| format!("users[{i}].{k}");
        if u.user_name.trim().is_empty() || u.user_name.chars().any(char::is_control) {
            p.add(
                key("user_name"),
                "must be a non-empty name without control characters",
            );
        }
        if !seen.insert((u.tenant.clone(), u.user_name.to_lowercase())) {
            p.add(
                key("user_name"),
                format!("{:?} appears twice in this tenant", u.user_name),
            );
        }
        if !crate::password::is_argon2id(&u.password_hash) {
            p.add(
                key("password_hash"),
                "must be an Argon2id PHC string ($argon2id$…; `portcullis hash-password` prints one)",
            );
        }
        for (j, g) in u.groups.iter().enumerate() {
            if g.trim().is_empty() {
                p.add(format!("users[{i}].groups[{j}]"), "must not be empty");
            }
        }
    }
    for (i, g) in parsed.groups.iter().enumerate() {
        if g.name.trim().is_empty() {
            p.add(format!("groups[{i}].name"), "must not be empty");
        }
        for (j, r) in g.roles.iter().enumerate() {
            if r.trim().is_empty() {
                p.add(format!("groups[{i}].roles[{j}]"), "must not be empty");
            }
        }
    }
    if p.0.is_empty() {
        Ok(parsed)
    } else {
        Err(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_named() {
        let good = crate::password::hash("a long enough password").unwrap();
        let text = format!(
            "users:\n  - {{ user_name: alice, password_hash: \"{good}\", groups: [admins] }}\n  - {{ user_name: ALICE, password_hash: \"{good}\" }}\n  - {{ user_name: \"\", password_hash: \"plain\" }}\n  - {{ user_name: bob, password_hash: \"{good}\", groups: [\"\"] }}\ngroups:\n  - {{ name: \"\", roles: [a, \"\"] }}\n"
        );
        let p = parse(&text, "users.yaml").unwrap_err();
        let paths: Vec<&str> = p.0.iter().map(|x| x.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "users[1].user_name",
                "users[2].user_name",
                "users[2].password_hash",
                "users[3].groups[0]",
                "groups[0].name",
                "groups[0].roles[1]"
            ],
            "{p:?}"
        );
        let ok = format!("users:\n  - {{ user_name: alice, password_hash: \"{good}\" }}\n");
        assert_eq!(parse(&ok, "f").unwrap().users[0].user_name, "alice");
        assert!(
            parse("users: [ { user_name: a, password: x } ]", "f").is_err(),
            "unknown key"
        );
    }
}
