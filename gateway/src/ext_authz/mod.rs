//! Envoy gRPC external authorization v3 (`envoy.service.auth.v3.Authorization/Check`) on its
//! own listener, `server.ext_authz.listen`: Envoy's `envoy.filters.http.ext_authz` filter with a
//! `grpc_service` asks the gateway about each request and gets the same answer the HTTP
//! forward-auth endpoint gives (same policy, sign-in and step-up answers, identity headers and
//! assertion; see [`crate::request::forward_auth`]).
//!
//! - [`pb`]: the Envoy API messages, hand-written prost structs with the protos' field numbers.
//! - [`check`]: `CheckRequest` → the facts judged (from Envoy's attributes, never from
//!   client-controlled headers), and the answer → `CheckResponse`.
//! - [`grpc`]: the listener: h2c (gRPC over cleartext HTTP/2), callers limited to
//!   `server.trusted_proxies` (others get `PERMISSION_DENIED`), bounded messages and time,
//!   failing closed on every error.
//!
//! The listener speaks plain h2c: bind it to loopback or a private network between Envoy and
//! the gateway (like the admin listener), never to the internet.

pub mod check;
pub mod grpc;
pub mod pb;

/// The one method served.
pub const CHECK_PATH: &str = "/envoy.service.auth.v3.Authorization/Check";

/// Largest `CheckRequest` accepted (bytes): Envoy's default limit on a client's request headers
/// is 60 KiB, and the check carries them plus a little.
pub const MAX_REQUEST_BYTES: usize = 96 * 1024;

/// Longest a check may take, reading included, before it is refused (`DEADLINE_EXCEEDED`,
/// which Envoy with `failure_mode_allow: false` turns into a denial).
pub const CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
