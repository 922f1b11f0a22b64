//! Route lookup by host and path prefix, without scanning the route list.
//!
//! Precedence (documented for operators): the most specific host table that has a matching
//! prefix wins — exact host, then wildcard hosts from the longest suffix, then routes without a
//! host — and inside a table the longest prefix on a segment boundary wins. A lookup costs one
//! hash of each path segment (at most as deep as the longest prefix)
//! per candidate host table, whatever the number of routes.

use std::collections::HashMap;
use thiserror::Error;

/// A route key that cannot be indexed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RouteKeyError {
    /// Two routes claim the same host and prefix, so one of them could never match.
    #[error("duplicate of route #{0} (same host and path)")]
    Duplicate(usize),
    /// Prefixes are absolute paths.
    #[error("path prefix must start with '/'")]
    PrefixNotAbsolute,
    /// Host patterns are a DNS name or `*.` followed by one.
    #[error("invalid host pattern (want a DNS name or *.domain)")]
    BadHost,
}

/// Path prefixes of one host table, as a trie of path segments.
///
/// Security-relevant: the cost of a lookup must grow linearly with the path. Hashing every
/// candidate prefix of the path (one `HashMap` probe per `/`, each hashing the whole prefix)
/// costs O(length × segments): a 65 KB path of short segments took 0.74 s of CPU before any
/// authentication (issue 10, H4). Here each segment is hashed once while walking down the
/// trie, and the walk stops at the deepest configured prefix.
#[derive(Debug, Clone, Default)]
struct PrefixTable {
    root: Node,
}

/// One trie node: the prefix made of the segments on the way here.
#[derive(Debug, Clone, Default)]
struct Node {
    children: HashMap<Box<str>, Node>,
    /// Route of the prefix without a trailing slash (`/api`).
    plain: Option<usize>,
    /// Route of the prefix with a trailing slash (`/api/`; at the root, `/`).
    slash: Option<usize>,
}

/// Where a prefix lives in the trie: its segments and whether it ends in `/`.
/// `/` is the root with a slash; `/a/b` is `[a, b]` plain; `/a/b/` is `[a, b]` with a slash.
fn prefix_key(prefix: &str) -> Option<(Vec<&str>, bool)> {
    let rest = prefix.strip_prefix('/')?;
    if rest.is_empty() {
        return Some((Vec::new(), true));
    }
    match rest.strip_suffix('/') {
        Some(inner) => Some((inner.split('/').collect(), true)),
        None => Some((rest.split('/').collect(), false)),
    }
}

impl PrefixTable {
    /// The slot for `prefix` (created on the way).
    fn slot(&mut self, prefix: &str) -> Option<&mut Option<usize>> {
        let (segments, slash) = prefix_key(prefix)?;
        let mut node = &mut self.root;
        for s in segments {
            node = node.children.entry(s.into()).or_default();
        }
        Some(if slash {
            &mut node.slash
        } else {
            &mut node.plain
        })
    }

    /// The longest prefix of `path` on a segment boundary: the path itself, then for each `/`
    /// from the right the prefix including that slash and the prefix without it. The same
    /// candidates, in the same order, as comparing every prefix string, at one hash per
    /// segment.
    fn lookup(&self, path: &str) -> Option<usize> {
        let rest = path.strip_prefix('/')?;
        // Depth 0: `/` matches every absolute path.
        let mut best = self.root.slash;
        let mut node = &self.root;
        let mut segments = rest.split('/').peekable();
        while let Some(seg) = segments.next() {
            let Some(child) = node.children.get(seg) else {
                break;
            };
            node = child;
            // Deeper is longer, so a match here replaces the previous best. At one depth,
            // `/a/` beats `/a`, but `/a/` needs a slash in the path after `a`.
            if let Some(v) = node.plain {
                best = Some(v);
            }
            if segments.peek().is_some() {
                if let Some(v) = node.slash {
                    best = Some(v);
                }
            }
        }
        best
    }
}

/// An index from `(host, path)` to a route's position in the config.
#[derive(Debug, Clone)]
pub struct RouteTable {
    exact: HashMap<String, PrefixTable>,
    wildcard: HashMap<String, PrefixTable>,
    any_host: PrefixTable,
    case_insensitive: bool,
}

impl RouteTable {
    /// An empty table. `case_insensitive` makes path matching ignore ASCII case, for upstreams
    /// (IIS, some Java stacks) that would otherwise serve `/ADMIN` for a rule written as `/admin`.
    pub fn new(case_insensitive: bool) -> Self {
        Self {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            any_host: PrefixTable::default(),
            case_insensitive,
        }
    }

    /// Adds a route; `host` is `None` for any host, `example.com` or `*.example.com`.
    /// On a duplicate the error carries the value already present.
    pub fn insert(
        &mut self,
        host: Option<&str>,
        prefix: &str,
        value: usize,
    ) -> Result<(), RouteKeyError> {
        if !prefix.starts_with('/') {
            return Err(RouteKeyError::PrefixNotAbsolute);
        }
        let table = match host {
            None => &mut self.any_host,
            Some(h) => {
                let h = h.to_ascii_lowercase();
                if let Some(suffix) = h.strip_prefix("*.") {
                    if !valid_dns_name(suffix) {
                        return Err(RouteKeyError::BadHost);
                    }
                    self.wildcard.entry(suffix.to_string()).or_default()
                } else {
                    if !valid_dns_name(&h) {
                        return Err(RouteKeyError::BadHost);
                    }
                    self.exact.entry(h).or_default()
                }
            }
        };
        let key = if self.case_insensitive {
            prefix.to_ascii_lowercase()
        } else {
            prefix.to_string()
        };
        let slot = table.slot(&key).ok_or(RouteKeyError::PrefixNotAbsolute)?;
        if let Some(existing) = slot {
            return Err(RouteKeyError::Duplicate(*existing));
        }
        *slot = Some(value);
        Ok(())
    }

    /// Finds the route for a request. `host` may carry a port and a trailing dot and any case;
    /// `path` is the decoded output of [`crate::path::normalise`].
    pub fn lookup(&self, host: &str, path: &str) -> Option<usize> {
        let host = canonical_host(host);
        let lowered;
        let path = if self.case_insensitive {
            lowered = path.to_ascii_lowercase();
            lowered.as_str()
        } else {
            path
        };
        if let Some(v) = self.exact.get(host.as_ref()).and_then(|t| t.lookup(path)) {
            return Some(v);
        }
        if !self.wildcard.is_empty() {
            let mut rest = host.as_ref();
            while let Some(dot) = rest.find('.') {
                rest = &rest[dot + 1..];
                if let Some(v) = self.wildcard.get(rest).and_then(|t| t.lookup(path)) {
                    return Some(v);
                }
            }
        }
        self.any_host.lookup(path)
    }
}

/// Lower-cases a Host header value and drops the port and a trailing dot, so that
/// `App.Example.com.:8443` and `app.example.com` select the same routes.
pub fn canonical_host(host: &str) -> std::borrow::Cow<'_, str> {
    let without_port = if host.starts_with('[') {
        // IPv6 literal: keep the brackets' content only up to the closing bracket.
        host.split_once(']').map_or(host, |(h, _)| h)
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    let trimmed = without_port.strip_suffix('.').unwrap_or(without_port);
    if trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(trimmed.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(trimmed)
    }
}

fn valid_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests;
