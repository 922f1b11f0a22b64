//! Group membership of a signed-in user, read with the service account after the user's own
//! bind succeeded.
//!
//! - With `group_base`: groups whose `group_filter` matches the user's DN (default
//!   `(|(member={dn})(uniqueMember={dn}))`); the name is the group's `claims.groups`
//!   attribute (default `cn`).
//! - Without it: the user's `memberOf` values; the name is the value of each DN's first RDN
//!   (`cn=devs,ou=groups,…` → `devs`).
//! - `nested_groups: true`/`recursive`: the same question again for each group found, level by
//!   level, at most `max_group_depth` levels and [`MAX_GROUPS`] groups, each group visited once
//!   (a cycle `a ∋ b ∋ a` ends). `in_chain` (AD): one search with
//!   `LDAP_MATCHING_RULE_IN_CHAIN`, expanded by the domain controller.

use super::config::Nested;
use super::conn::DirectoryError;
use super::{filter, values, Directory};
use ldap3::{Scope, SearchEntry};
use std::collections::HashSet;

/// At most this many groups per user (a bound on the work one sign-in can cause).
pub const MAX_GROUPS: usize = 1000;

impl Directory {
    /// The names of `user`'s groups.
    pub(super) async fn groups_of(
        &self,
        user: &SearchEntry,
    ) -> Result<Vec<String>, DirectoryError> {
        let depth = match self.cfg.nested {
            Nested::Direct => 1,
            Nested::Recursive => self.cfg.max_group_depth,
            Nested::InChain => {
                let base = self.cfg.group_base.as_deref().unwrap_or_default();
                let found = self
                    .search(
                        base,
                        Scope::Subtree,
                        &filter::in_chain(&user.dn),
                        &[self.cfg.attributes.groups.as_str()],
                        MAX_GROUPS as i32,
                    )
                    .await?;
                return Ok(self.names(&found));
            }
        };
        let mut seen: HashSet<String> = HashSet::new();
        let mut names = Vec::new();
        let mut frontier = vec![user.clone()];
        for _ in 0..depth {
            let mut next = Vec::new();
            for member in &frontier {
                for g in self.direct_groups(member).await? {
                    if seen.len() >= MAX_GROUPS {
                        tracing::warn!(idp = %self.cfg.id, "more than {MAX_GROUPS} groups: the rest are ignored");
                        return Ok(names);
                    }
                    if seen.insert(g.dn.to_ascii_lowercase()) {
                        names.extend(self.name_of(&g));
                        next.push(g);
                    }
                }
            }
            if next.is_empty() {
                break;
            }
            frontier = next;
        }
        Ok(names)
    }

    /// The groups `member` (a user or a group entry) belongs to directly.
    async fn direct_groups(
        &self,
        member: &SearchEntry,
    ) -> Result<Vec<SearchEntry>, DirectoryError> {
        let groups_attr = self.cfg.attributes.groups.as_str();
        match &self.cfg.group_base {
            Some(base) => {
                let f = filter::fill(&self.cfg.group_filter, "{dn}", &member.dn);
                self.search(base, Scope::Subtree, &f, &[groups_attr], MAX_GROUPS as i32)
                    .await
            }
            None => {
                let mut out = Vec::new();
                let dns = values(member, "memberOf").to_vec();
                let nested = self.cfg.nested != Nested::Direct;
                for dn in dns {
                    if nested {
                        // Read the group itself for its own memberOf (the next level).
                        let found = self
                            .search(&dn, Scope::Base, "(objectClass=*)", &["memberOf"], 1)
                            .await?;
                        match found.into_iter().next() {
                            Some(g) => out.push(g),
                            None => out.push(bare(dn)),
                        }
                    } else {
                        out.push(bare(dn));
                    }
                }
                Ok(out)
            }
        }
    }

    /// A group's name: its `claims.groups` attribute, else its first RDN value.
    fn name_of(&self, g: &SearchEntry) -> Option<String> {
        values(g, &self.cfg.attributes.groups)
            .first()
            .cloned()
            .or_else(|| first_rdn_value(&g.dn))
    }

    fn names(&self, found: &[SearchEntry]) -> Vec<String> {
        found.iter().filter_map(|g| self.name_of(g)).collect()
    }
}

/// An entry known only by its DN.
fn bare(dn: String) -> SearchEntry {
    SearchEntry {
        dn,
        attrs: Default::default(),
        bin_attrs: Default::default(),
    }
}

/// The value of a DN's first RDN (`cn=Dev\2c Ops,ou=groups` → `Dev, Ops`), unescaped per
/// RFC 4514; `None` for something that is not a DN.
pub fn first_rdn_value(dn: &str) -> Option<String> {
    let (_, rest) = dn.split_once('=')?;
    let mut out: Vec<u8> = Vec::new();
    let b = rest.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b',' | b'+' => break,
            b'\\' if i + 1 < b.len() => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b[i + 1]);
                        i += 2;
                    }
                }
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    let v = String::from_utf8(out).ok()?;
    let v = v.trim().to_string();
    (!v.is_empty()).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_rdn_values_are_unescaped() {
        assert_eq!(
            first_rdn_value("cn=devs,ou=groups,dc=x").as_deref(),
            Some("devs")
        );
        assert_eq!(
            first_rdn_value("CN=Dev\\2c Ops,OU=G").as_deref(),
            Some("Dev, Ops")
        );
        assert_eq!(first_rdn_value("cn=a\\,b,dc=x").as_deref(), Some("a,b"));
        assert_eq!(
            first_rdn_value("cn=caf\\c3\\a9,dc=x").as_deref(),
            Some("café")
        );
        assert_eq!(first_rdn_value("cn=a+uid=b,dc=x").as_deref(), Some("a"));
        assert_eq!(first_rdn_value("nonsense"), None);
        assert_eq!(first_rdn_value("cn=,dc=x"), None);
    }
}
