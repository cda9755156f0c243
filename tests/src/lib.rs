#![forbid(unsafe_code)]
//! Test support: real components started on loopback in temporary directories.

pub mod clients;
pub mod cluster;
pub mod crl;
pub mod cutproxy;
pub mod gate;
pub mod gateway;
pub mod helm;
pub mod http;
pub mod kube;
pub mod openssl_ca;
pub mod pki;
pub mod ports;
pub mod sink;
pub mod slapd;
