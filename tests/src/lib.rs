#![forbid(unsafe_code)]
//! Test support: real components started on loopback in temporary directories.

pub mod cluster;
pub mod crl;
pub mod gate;
pub mod helm;
pub mod http;
pub mod kube;
pub mod slapd;
