#![forbid(unsafe_code)]
//! Postern controller and offline CLI.

pub mod operator;
