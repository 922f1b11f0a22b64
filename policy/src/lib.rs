#![forbid(unsafe_code)]
//! Portcullis' pure decision code: path normalisation, route lookup and the policy engine.
//! Nothing here does I/O, awaits, or reads a clock, so all of it is tested exhaustively.

pub mod path;
pub mod routing;
