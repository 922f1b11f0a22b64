//! SCIM 2.0 (RFC 7643 resources, RFC 7644 protocol): the provisioning interface at
//! `/.portcullis/scim/v2`. This module holds the protocol pieces that do not touch storage —
//! filters, PATCH paths, errors — so they can be tested (and fuzzed) on their own.

pub mod discovery;
pub mod error;
pub mod eval;
pub mod filter;
pub mod patch;
pub mod resource;
pub mod service;
