#![forbid(unsafe_code)]
//! Portcullis' pure decision code: path normalisation, route lookup and the policy engine.
//! Nothing here does I/O, awaits, or reads a clock, so all of it is tested exhaustively.

pub mod path;
pub mod routing;

// Policy engine (issue 4): schema → compile → evaluate, plus SoD, least privilege and tests.
pub mod compile;
mod conditions;
pub mod duration;
pub mod engine;
pub mod explain;
pub mod glob;
pub mod input;
pub mod least_privilege;
pub mod problem;
pub mod roles;
pub mod sod;
pub mod spec;
pub mod testcases;
