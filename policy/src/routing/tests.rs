use super::*;
use proptest::prelude::*;

fn table(routes: &[(Option<&str>, &str)]) -> RouteTable {
    let mut t = RouteTable::new(false);
    for (i, (h, p)) in routes.iter().enumerate() {
        t.insert(*h, p, i).unwrap();
    }
    t
}

#[test]
fn longest_prefix_on_segment_boundary_wins() {
    let t = table(&[(None, "/"), (None, "/api"), (None, "/api/admin/")]);
    assert_eq!(t.lookup("x", "/"), Some(0));
    assert_eq!(
        t.lookup("x", "/apix"),
        Some(0),
        "prefix must end on a segment boundary"
    );
    assert_eq!(t.lookup("x", "/api"), Some(1));
    assert_eq!(t.lookup("x", "/api/"), Some(1));
    assert_eq!(t.lookup("x", "/api/users"), Some(1));
    assert_eq!(
        t.lookup("x", "/api/admin"),
        Some(1),
        "'/api/admin/' needs the slash"
    );
    assert_eq!(t.lookup("x", "/api/admin/"), Some(2));
    assert_eq!(t.lookup("x", "/api/admin/x/y"), Some(2));
}

#[test]
fn no_route_means_none() {
    let t = table(&[(None, "/api")]);
    assert_eq!(t.lookup("x", "/"), None);
    assert_eq!(t.lookup("x", "/ap"), None);
}

#[test]
fn host_precedence_exact_then_wildcard_then_any() {
    let t = table(&[
        (None, "/"),
        (Some("*.example.com"), "/"),
        (Some("*.eu.example.com"), "/"),
        (Some("app.example.com"), "/app"),
    ]);
    assert_eq!(t.lookup("app.example.com", "/app/x"), Some(3));
    assert_eq!(t.lookup("APP.Example.COM.:8443", "/app"), Some(3));
    assert_eq!(
        t.lookup("app.example.com", "/other"),
        Some(1),
        "falls back to wildcard"
    );
    assert_eq!(
        t.lookup("a.eu.example.com", "/"),
        Some(2),
        "longest suffix first"
    );
    assert_eq!(t.lookup("a.b.example.com", "/"), Some(1));
    assert_eq!(
        t.lookup("example.com", "/"),
        Some(0),
        "wildcard needs a label"
    );
    assert_eq!(t.lookup("evil-example.com", "/"), Some(0));
    assert_eq!(t.lookup("[::1]:8443", "/"), Some(0));
}

#[test]
fn duplicates_and_bad_keys_are_refused() {
    let mut t = RouteTable::new(false);
    t.insert(Some("a.com"), "/x", 0).unwrap();
    assert_eq!(
        t.insert(Some("A.com"), "/x", 1),
        Err(RouteKeyError::Duplicate(0))
    );
    assert_eq!(
        t.insert(None, "x", 2),
        Err(RouteKeyError::PrefixNotAbsolute)
    );
    assert_eq!(
        t.insert(Some("a..com"), "/", 3),
        Err(RouteKeyError::BadHost)
    );
    assert_eq!(
        t.insert(Some("*.*.com"), "/", 3),
        Err(RouteKeyError::BadHost)
    );
}

#[test]
fn case_insensitive_tables_fold_ascii_case() {
    let mut t = RouteTable::new(true);
    t.insert(None, "/Admin", 0).unwrap();
    assert_eq!(t.lookup("h", "/ADMIN/x"), Some(0));
    let t = table(&[(None, "/admin")]);
    assert_eq!(t.lookup("h", "/ADMIN"), None);
}

proptest! {
    /// Whatever route the index picks must be the one a full scan would pick: the longest
    /// matching prefix among the any-host routes.
    #[test]
    fn index_agrees_with_linear_scan(
        prefixes in prop::collection::hash_set("(/[a-c]{1,2}){1,3}/?", 1..12),
        path in "(/[a-c]{0,2}){1,5}",
    ) {
        let prefixes: Vec<String> = prefixes.into_iter().collect();
        let mut t = RouteTable::new(false);
        for (i, p) in prefixes.iter().enumerate() {
            t.insert(None, p, i).unwrap();
        }
        let matches = |p: &str| {
            if p.ends_with('/') { path.starts_with(p) }
            else { path == p || path.starts_with(&format!("{p}/")) }
        };
        let want = prefixes.iter().enumerate().filter(|(_, p)| matches(p)).max_by_key(|(_, p)| p.len()).map(|(i, _)| i);
        prop_assert_eq!(t.lookup("h", &path), want);
    }
}

/// Issue 10, H4: the old index hashed every prefix of the path, O(length × segments) — a
/// 2 MB path of one-letter segments would hash about 10^12 bytes. The trie hashes each segment
/// once and stops at the deepest configured prefix. The bound is a thousand times what the
/// linear walk needs and a thousandth of what the quadratic one needed.
#[test]
fn a_huge_many_segment_path_is_looked_up_in_linear_time() {
    let t = table(&[(None, "/"), (None, "/a/a/a"), (None, "/a/a/a/b/")]);
    let path = "/a".repeat(1 << 17);
    let started = std::time::Instant::now();
    assert_eq!(t.lookup("h", &path), Some(1));
    assert_eq!(t.lookup("h", &format!("{path}/")), Some(1));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(1),
        "lookup took {:?}",
        started.elapsed()
    );
}
