//! Fuzzes route lookup with untrusted Host headers and paths: never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_policy::routing::RouteTable;

fuzz_target!(|data: (&str, &str)| {
    let mut t = RouteTable::new(false);
    let _ = t.insert(Some("app.example.com"), "/api", 0);
    let _ = t.insert(Some("*.example.com"), "/", 1);
    let _ = t.insert(None, "/", 2);
    let (host, path) = data;
    let _ = t.lookup(host, path);
});
