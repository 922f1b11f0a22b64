//! A tiny path glob: `*` matches within one segment, `**` across segments, `?` one character.
//!
//! Written here rather than pulled from `globset` because path rules need exactly these
//! semantics (a `*` must never cross `/`, or `/admin/*` would grant `/admin/x/../secret`-style
//! deeper paths) and because matching runs on every request without allocating.

/// Longest glob accepted at config load, in characters.
pub const MAX_GLOB_CHARS: usize = 255;
/// Most wildcards (`*`, `**`, `?`) in one glob.
pub const MAX_GLOB_WILDCARDS: usize = 16;

/// One step of a compiled glob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Char(char),
    Any,     // ?
    Star,    // *
    DblStar, // **
}

/// The set of glob positions reached so far: bit `i` = "the first `i` steps have matched".
/// `MAX_GLOB_CHARS` steps need `MAX_GLOB_CHARS + 1` positions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct States([u64; 4]);

impl States {
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn get(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
    fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }
    fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().enumerate().flat_map(|(k, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                (w != 0).then(|| {
                    let b = w.trailing_zeros() as usize;
                    w &= w - 1;
                    k * 64 + b
                })
            })
        })
    }
}

/// A compiled path glob.
///
/// Matching simulates the glob as a set of positions (an NFA) over the path's characters, so
/// it costs O(path length × glob length) whatever the pattern: the old backtracking matcher
/// took 0.9 s for one 200-character segment against `/g/*-*-*-*.x` (issue 10, M5). With the
/// caps above, the worst case is a few hundred steps per path character, and no allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    source: Box<str>,
    toks: Vec<Tok>,
    /// Positions of `*` and `**`, which may match nothing (the NFA's empty moves).
    stars: Vec<usize>,
    fold_case: bool,
}

impl Glob {
    /// Compiles a case-sensitive glob; it must start with `/` because it is matched against
    /// normalised paths.
    pub fn new(pattern: &str) -> Result<Self, String> {
        Self::with_case(pattern, false)
    }

    /// Compiles a glob; with `fold_case`, ASCII letters match either case (for
    /// `server.case_insensitive_paths`, so a rule on `/admin/**` also covers `/ADMIN/x`, just
    /// as the route table does).
    pub fn with_case(pattern: &str, fold_case: bool) -> Result<Self, String> {
        if !pattern.starts_with('/') {
            return Err(format!("path glob `{pattern}` must start with `/`"));
        }
        if pattern.chars().count() > MAX_GLOB_CHARS {
            return Err(format!(
                "path glob is longer than {MAX_GLOB_CHARS} characters"
            ));
        }
        let mut toks = Vec::new();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            toks.push(match c {
                '*' if chars.peek() == Some(&'*') => {
                    chars.next();
                    Tok::DblStar
                }
                '*' => Tok::Star,
                '?' => Tok::Any,
                c if fold_case => Tok::Char(c.to_ascii_lowercase()),
                c => Tok::Char(c),
            });
        }
        let wildcards = toks.iter().filter(|t| !matches!(t, Tok::Char(_))).count();
        if wildcards > MAX_GLOB_WILDCARDS {
            return Err(format!(
                "path glob `{pattern}` has {wildcards} wildcards (at most {MAX_GLOB_WILDCARDS})"
            ));
        }
        let stars = toks
            .iter()
            .enumerate()
            .filter(|(_, t)| matches!(t, Tok::Star | Tok::DblStar))
            .map(|(i, _)| i)
            .collect();
        Ok(Glob {
            source: pattern.into(),
            toks,
            stars,
            fold_case,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether `path` matches the whole pattern.
    pub fn matches(&self, path: &str) -> bool {
        let m = self.toks.len();
        let mut cur = States::default();
        cur.set(0);
        self.skip_stars(&mut cur);
        for c in path.chars() {
            let c = if self.fold_case {
                c.to_ascii_lowercase()
            } else {
                c
            };
            let mut next = States::default();
            for i in cur.iter().filter(|&i| i < m) {
                match self.toks[i] {
                    Tok::Char(x) if x == c => next.set(i + 1),
                    Tok::Any if c != '/' => next.set(i + 1),
                    Tok::Star if c != '/' => next.set(i),
                    Tok::DblStar => next.set(i),
                    _ => {}
                }
            }
            if next.is_empty() {
                return false;
            }
            self.skip_stars(&mut next);
            cur = next;
        }
        cur.get(m)
    }

    /// Adds the positions reached by letting stars match nothing (in order, so a run of
    /// stars is skipped in one pass).
    fn skip_stars(&self, s: &mut States) {
        for &i in &self.stars {
            if s.get(i) {
                s.set(i + 1);
            }
        }
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
            ("/**", "/", true),
            ("/a/**/b", "/a/b", false),
            ("/a/**/b", "/a//b", true),
            ("/a**", "/a/b/c", true),
            ("/*/**", "/x/", true),
            ("/g/*-*-*-*.x", "/g/a-b-c-d.x", true),
            ("/g/*-*-*-*.x", "/g/a-b-c-d-e.x", true),
            ("/g/*-*-*-*.x", "/g/a-b-c.x", false),
            ("/g/*-*-*-*.x", "/g/a-b/c-d-e.x", false),
        ];
        for (g, p, want) in cases {
            assert_eq!(Glob::new(g).map(|g| g.matches(p)), Ok(want), "{g} vs {p}");
        }
        assert!(Glob::new("admin/*").is_err());
    }

    /// The old matcher: backtracking, exponential in the number of stars. Kept as the
    /// reference for the property test (on inputs small enough for it).
    fn reference(pattern: &str, path: &str) -> bool {
        fn go(p: &[char], s: &[char]) -> bool {
            match p {
                [] => s.is_empty(),
                ['*', '*', rest @ ..] => (0..=s.len()).any(|i| go(rest, &s[i..])),
                ['*', rest @ ..] => {
                    let limit = s.iter().position(|&c| c == '/').unwrap_or(s.len());
                    (0..=limit).any(|i| go(rest, &s[i..]))
                }
                ['?', rest @ ..] => s.first().is_some_and(|&c| c != '/') && go(rest, &s[1..]),
                [c, rest @ ..] => s.first() == Some(c) && go(rest, &s[1..]),
            }
        }
        let p: Vec<char> = pattern.chars().collect();
        let s: Vec<char> = path.chars().collect();
        go(&p, &s)
    }

    proptest::proptest! {
        #[test]
        fn agrees_with_the_backtracking_reference(
            pattern in "/[ab/*?-]{0,8}",
            path in "/[ab/-]{0,10}",
        ) {
            let g = Glob::new(&pattern).unwrap();
            proptest::prop_assert_eq!(g.matches(&path), reference(&pattern, &path));
        }

        #[test]
        fn folding_case_is_matching_the_lowercased_path(
            pattern in "/[aB/*?]{0,8}",
            path in "/[aAbB/]{0,10}",
        ) {
            let g = Glob::with_case(&pattern, true).unwrap();
            let want = reference(&pattern.to_ascii_lowercase(), &path.to_ascii_lowercase());
            proptest::prop_assert_eq!(g.matches(&path), want);
        }
    }

    /// Issue 10, M5: the backtracking matcher took 0.9 s for a 200-character segment against
    /// four stars, and grows with the fourth power; this input is 40 times longer (about 2.5
    /// million times the work for the old matcher). The NFA does 8,000 steps of at most 14
    /// positions; the bound is generous for a slow debug build.
    #[test]
    fn many_stars_against_a_long_segment_stay_linear() {
        let g = Glob::new("/g/*-*-*-*.x").unwrap();
        let segment = "-".repeat(8_000);
        let started = std::time::Instant::now();
        assert!(!g.matches(&format!("/g/{segment}.y")));
        assert!(g.matches(&format!("/g/{segment}.x")));
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn length_and_wildcards_are_bounded_at_load() {
        let long = format!("/{}", "a".repeat(MAX_GLOB_CHARS));
        assert!(Glob::new(&long).unwrap_err().contains("longer than 255"));
        assert!(Glob::new(&long[..MAX_GLOB_CHARS]).is_ok());
        let stars = format!("/{}", "*a".repeat(MAX_GLOB_WILDCARDS + 1));
        assert!(Glob::new(&stars).unwrap_err().contains("17 wildcards"));
        assert!(Glob::new(&format!("/{}", "*a".repeat(MAX_GLOB_WILDCARDS))).is_ok());
    }

    #[test]
    fn folded_globs_ignore_ascii_case_only() {
        let g = Glob::with_case("/App/Admin/**", true).unwrap();
        assert!(g.matches("/app/admin/x"));
        assert!(g.matches("/APP/ADMIN/x"));
        assert!(!Glob::new("/app/admin/**").unwrap().matches("/app/ADMIN/x"));
        assert!(!Glob::with_case("/é", true).unwrap().matches("/É"));
    }
}
