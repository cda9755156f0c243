#![forbid(unsafe_code)]
//! Test support: real components started on loopback in temporary directories.

pub mod kube;
pub mod slapd;
