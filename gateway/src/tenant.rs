//! Which tenant a request addresses: from a host pattern (`{tenant}.apps.example.com`), a path
//! pattern (`/t/{tenant}/`), or a header set by a trusted proxy. The policy engine compares it
//! with the session's tenant; extraction is strict so that a request cannot name two tenants.

use portcullis_policy::routing::canonical_host;

/// A validated `tenants:` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantRule {
    /// `{tenant}` is the host label before `suffix` (`.apps.example.com`).
    Host {
        /// Lower-case suffix including the leading dot.
        suffix: String,
    },
    /// `{tenant}` is the path segment after `prefix` (`/t/`).
    Path {
        /// Prefix ending in `/`.
        prefix: String,
        /// `server.case_insensitive_paths`: the prefix matches in any ASCII case, as routes
        /// do. Security-relevant: otherwise `/T/other/` reaches the `/t` route with no tenant
        /// named, and tenant isolation never runs (issue 10, M3).
        fold_case: bool,
    },
    /// A header, believed only from trusted proxies.
    Header {
        /// Lower-case header name.
        name: String,
    },
}

impl TenantRule {
    /// Parses `from` + `pattern`/`header`; the error says what is wrong and under which key.
    pub fn parse(
        from: &str,
        pattern: Option<&str>,
        header: Option<&str>,
    ) -> Result<Self, (&'static str, String)> {
        match from {
            "host" => {
                let p = pattern.ok_or((
                    "pattern",
                    "from: host needs a pattern like \"{tenant}.apps.example.com\"".to_string(),
                ))?;
                match p.strip_prefix("{tenant}") {
                    Some(suffix)
                        if suffix.starts_with('.') && suffix.len() > 1 && !suffix.contains('{') =>
                    {
                        Ok(TenantRule::Host {
                            suffix: suffix.to_ascii_lowercase(),
                        })
                    }
                    _ => Err((
                        "pattern",
                        format!("{p:?} must look like \"{{tenant}}.apps.example.com\""),
                    )),
                }
            }
            "path" => {
                let p = pattern.ok_or((
                    "pattern",
                    "from: path needs a pattern like \"/t/{tenant}/\"".to_string(),
                ))?;
                match p.strip_suffix("{tenant}/") {
                    Some(prefix)
                        if prefix.starts_with('/')
                            && prefix.ends_with('/')
                            && !prefix.contains('{') =>
                    {
                        Ok(TenantRule::Path {
                            prefix: prefix.to_string(),
                            fold_case: false,
                        })
                    }
                    _ => Err((
                        "pattern",
                        format!("{p:?} must look like \"/t/{{tenant}}/\""),
                    )),
                }
            }
            "header" => {
                let h = header.ok_or(("header", "from: header needs a header name".to_string()))?;
                if h.is_empty() || !h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                    return Err(("header", format!("{h:?} is not a header name")));
                }
                Ok(TenantRule::Header {
                    name: h.to_ascii_lowercase(),
                })
            }
            other => Err((
                "from",
                format!("{other:?} is not one of host, path, header"),
            )),
        }
    }

    /// The rule for a gateway whose paths match ignoring ASCII case
    /// (`server.case_insensitive_paths`); only path rules change.
    pub fn case_insensitive_paths(self, on: bool) -> Self {
        match self {
            TenantRule::Path { prefix, .. } => TenantRule::Path {
                prefix,
                fold_case: on,
            },
            other => other,
        }
    }

    /// The tenant named by a request, if this rule applies to it. `header` is only consulted
    /// when the peer is a trusted proxy.
    pub fn extract(
        &self,
        host: &str,
        path: &str,
        header: impl FnOnce(&str) -> Option<String>,
        peer_trusted: bool,
    ) -> Option<String> {
        let valid = |t: &str| {
            !t.is_empty()
                && t.len() <= 63
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        match self {
            TenantRule::Host { suffix } => {
                let host = canonical_host(host);
                let label = host.strip_suffix(suffix.as_str())?;
                valid(label).then(|| label.to_string())
            }
            TenantRule::Path { prefix, fold_case } => {
                let head = path.get(..prefix.len())?;
                let same = if *fold_case {
                    head.eq_ignore_ascii_case(prefix)
                } else {
                    head == prefix
                };
                if !same {
                    return None;
                }
                let rest = &path[prefix.len()..];
                let seg = rest.split('/').next()?;
                valid(seg).then(|| seg.to_string())
            }
            TenantRule::Header { name } => {
                if !peer_trusted {
                    return None;
                }
                header(name).filter(|t| valid(t))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_path_patterns_extract_one_label() {
        let h = TenantRule::parse("host", Some("{tenant}.apps.example.com"), None).unwrap();
        assert_eq!(
            h.extract("Acme.Apps.Example.com:443", "/", |_| None, false)
                .as_deref(),
            Some("acme")
        );
        assert_eq!(
            h.extract("a.b.apps.example.com", "/", |_| None, false),
            None,
            "one label only"
        );
        assert_eq!(h.extract("apps.example.com", "/", |_| None, false), None);
        assert_eq!(
            h.extract("evilapps.example.com", "/", |_| None, false),
            None
        );
        let p = TenantRule::parse("path", Some("/t/{tenant}/"), None).unwrap();
        assert_eq!(
            p.extract("x", "/t/acme/orders", |_| None, false).as_deref(),
            Some("acme")
        );
        assert_eq!(
            p.extract("x", "/t/acme", |_| None, false).as_deref(),
            Some("acme")
        );
        assert_eq!(p.extract("x", "/t//x", |_| None, false), None);
        assert_eq!(p.extract("x", "/other", |_| None, false), None);
    }

    /// Issue 10, M3: with case-insensitive paths `/T/globex/` routes like `/t/globex/`, so it
    /// must name the tenant the same way (the value keeps its case: an exact comparison with
    /// the session's tenant then fails closed for `/t/GLOBEX/`).
    #[test]
    fn case_insensitive_paths_fold_the_tenant_prefix() {
        let p = TenantRule::parse("path", Some("/t/{tenant}/"), None).unwrap();
        assert_eq!(p.extract("x", "/T/globex/orders", |_| None, false), None);
        let p = p.case_insensitive_paths(true);
        assert_eq!(
            p.extract("x", "/T/globex/orders", |_| None, false)
                .as_deref(),
            Some("globex")
        );
        assert_eq!(
            p.extract("x", "/t/GLOBEX/", |_| None, false).as_deref(),
            Some("GLOBEX")
        );
        assert_eq!(
            p.extract("x", "/é/x", |_| None, false),
            None,
            "no panic on a char boundary"
        );
        let h = TenantRule::parse("host", Some("{tenant}.apps.example.com"), None).unwrap();
        assert_eq!(h.clone().case_insensitive_paths(true), h);
    }

    #[test]
    fn header_tenant_needs_a_trusted_peer() {
        let r = TenantRule::parse("header", None, Some("X-Tenant")).unwrap();
        assert_eq!(
            r.extract("x", "/", |_| Some("acme".into()), true)
                .as_deref(),
            Some("acme")
        );
        assert_eq!(r.extract("x", "/", |_| Some("acme".into()), false), None);
        assert!(TenantRule::parse("host", Some("apps.{tenant}.com"), None).is_err());
        assert!(TenantRule::parse("cookie", None, None).is_err());
    }
}
