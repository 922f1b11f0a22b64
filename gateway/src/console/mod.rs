//! The admin console (`/.portcullis/console/`, guarded by `console.policy`): for now its JSON
//! API under `/.portcullis/console/api/`, on which the console pages (issue 15) are built.
//!
//! - `config`: the `console:` key and its compiled policy.
//! - `api`: the endpoints, plain async functions over a [`crate::local_request::LocalRequest`]
//!   and the acting [`api::Admin`], testable without pingora. The gateway glue that decides the
//!   console policy and builds the admin is `request/console.rs`.

pub mod api;
pub mod config;

/// Every console path starts here.
pub const PREFIX: &str = "/.portcullis/console";

/// Whether `path` (normalised, decoded) belongs to the console.
pub fn is_console(path: &str) -> bool {
    path == PREFIX
        || path
            .strip_prefix(PREFIX)
            .is_some_and(|r| r.starts_with('/'))
}
