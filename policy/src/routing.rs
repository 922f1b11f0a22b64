//! Route lookup by host and path prefix, without scanning the route list.
//!
//! Precedence (documented for operators): the most specific host table that has a matching
//! prefix wins — exact host, then wildcard hosts from the longest suffix, then routes without a
//! host — and inside a table the longest prefix on a segment boundary wins. A lookup costs one
//! hash probe per path segment per candidate host table, whatever the number of routes.

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

/// Path prefixes of one host table.
#[derive(Debug, Clone, Default)]
struct PrefixTable {
    by_prefix: HashMap<String, usize>,
}

impl PrefixTable {
    /// Candidate prefixes of `path`, longest first: the path itself, then for each `/` from the
    /// right the prefix including that slash and the prefix without it.
    fn lookup(&self, path: &str) -> Option<usize> {
        if let Some(v) = self.by_prefix.get(path) {
            return Some(*v);
        }
        let bytes = path.as_bytes();
        let mut end = path.len();
        while let Some(i) = bytes[..end].iter().rposition(|&b| b == b'/') {
            if i + 1 < path.len() {
                if let Some(v) = self.by_prefix.get(&path[..=i]) {
                    return Some(*v);
                }
            }
            if i > 0 {
                if let Some(v) = self.by_prefix.get(&path[..i]) {
                    return Some(*v);
                }
            }
            end = i;
        }
        None
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
        if let Some(existing) = table.by_prefix.get(&key) {
            return Err(RouteKeyError::Duplicate(*existing));
        }
        table.by_prefix.insert(key, value);
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
