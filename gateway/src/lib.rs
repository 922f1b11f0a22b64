#![forbid(unsafe_code)]
//! Portcullis: an identity-aware access gateway on pingora. The binary (`main.rs`) is a thin
//! CLI over this library; each module owns one concern (see ARCHITECTURE.md).

pub mod adapter;
pub mod admin;
pub mod assertion;
pub mod audit;
pub mod auth_endpoints;
pub mod clock;
pub mod config;
pub mod console;
pub mod decisionlog;
pub mod directory;
pub mod errors;
pub mod forward_auth;
pub mod forwarded;
pub mod geoip;
pub mod health;
pub mod identity;
pub mod idp;
pub mod inject;
pub mod ldap;
pub mod local;
pub mod local_request;
pub mod logging;
pub mod metrics;
pub mod mfa;
pub mod password;
pub mod password_signin;
pub mod policy_cli;
pub mod policy_input;
pub mod provider_pin;
pub mod proxy;
pub mod realm;
pub mod request;
pub mod routes;
pub mod saml;
pub mod scim;
pub mod server;
pub mod session;
pub mod sso;
pub mod store;
pub mod tenant;
pub mod tls;
pub mod tunnel;
pub mod upstream;
pub mod whoami;
