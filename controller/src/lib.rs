#![forbid(unsafe_code)]
//! Postern controller and offline CLI.

pub mod cli;
pub mod compile;
pub(crate) mod diff;
pub mod operator;
pub(crate) mod serde_kind;
