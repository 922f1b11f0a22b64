//! A tiny path glob: `*` matches within one segment, `**` across segments, `?` one character.
//!
//! Written here rather than pulled from `globset` because path rules need exactly these
//! semantics (a `*` must never cross `/`, or `/admin/*` would grant `/admin/x/../secret`-style
//! deeper paths) and because matching runs on every request without allocating.

/// One piece of a compiled glob.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(Box<str>),
    Any,     // ?
    Star,    // *
    DblStar, // **
}

/// A compiled path glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    source: Box<str>,
    toks: Vec<Tok>,
}

impl Glob {
    /// Compiles a glob; it must start with `/` because it is matched against normalised paths.
    pub fn new(pattern: &str) -> Result<Self, String> {
        if !pattern.starts_with('/') {
            return Err(format!("path glob `{pattern}` must start with `/`"));
        }
        let mut toks = Vec::new();
        let mut lit = String::new();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            let t = match c {
                '*' if chars.peek() == Some(&'*') => {
                    chars.next();
                    Tok::DblStar
                }
                '*' => Tok::Star,
                '?' => Tok::Any,
                _ => {
                    lit.push(c);
                    continue;
                }
            };
            if !lit.is_empty() {
                toks.push(Tok::Lit(std::mem::take(&mut lit).into_boxed_str()));
            }
            toks.push(t);
        }
        if !lit.is_empty() {
            toks.push(Tok::Lit(lit.into_boxed_str()));
        }
        Ok(Glob {
            source: pattern.into(),
            toks,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether `path` matches the whole pattern.
    pub fn matches(&self, path: &str) -> bool {
        match_from(&self.toks, path.as_bytes())
    }
}

fn match_from(toks: &[Tok], s: &[u8]) -> bool {
    let Some((first, rest)) = toks.split_first() else {
        return s.is_empty();
    };
    match first {
        Tok::Lit(l) => s.starts_with(l.as_bytes()) && match_from(rest, &s[l.len()..]),
        Tok::Any => match s.first() {
            Some(b'/') | None => false,
            Some(_) => {
                // Skip one whole UTF-8 character.
                let n = utf8_len(s[0]);
                s.len() >= n && match_from(rest, &s[n..])
            }
        },
        Tok::Star => {
            let limit = s.iter().position(|&b| b == b'/').unwrap_or(s.len());
            (0..=limit).any(|i| match_from(rest, &s[i..]))
        }
        Tok::DblStar => (0..=s.len()).any(|i| match_from(rest, &s[i..])),
    }
}

fn utf8_len(b: u8) -> usize {
    match b {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases = [
            ("/admin/*", "/admin/users", true),
            ("/admin/*", "/admin/users/1", false),
            ("/admin/*", "/admin/", true),
            ("/admin/**", "/admin/users/1", true),
            ("/admin/**", "/admin", false),
            ("/api/v?/items", "/api/v1/items", true),
            ("/api/v?/items", "/api/v10/items", false),
            ("/api/*/items", "/api/x/y/items", false),
            ("/**/secret", "/a/b/secret", true),
            ("/exact", "/exact", true),
            ("/exact", "/exactly", false),
            ("/*.json", "/a.json", true),
            ("/*.json", "/a/b.json", false),
            ("/é?", "/éé", true),
        ];
        for (g, p, want) in cases {
            assert_eq!(Glob::new(g).map(|g| g.matches(p)), Ok(want), "{g} vs {p}");
        }
        assert!(Glob::new("admin/*").is_err());
    }
}
