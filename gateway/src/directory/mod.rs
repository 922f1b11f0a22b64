//! The directory: users, groups (nested), roles and provider links, kept in the shared store
//! (SQLite by default, PostgreSQL for several replicas). Sign-ins link to a directory user by
//! `(provider, subject)`; SCIM, directory sync, local accounts and the admin API write to it;
//! deprovisioning a user ends every session of theirs.

pub mod config;
pub mod deprovision;
pub mod model;
pub mod signin;
pub mod store;
pub mod sync;

pub use deprovision::{Lifecycle, Mode, Outcome, SessionRevoker};
pub use store::{DirectoryError, DirectoryStore, MIGRATIONS};
