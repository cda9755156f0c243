#![forbid(unsafe_code)]
//! Test support: real components started on loopback in temporary directories. What the
//! benchmarks share with these tests (the gateway launcher, PKI and CRLs, slapd,
//! smtp-sink, the OCSP responder, ports, HTTP) is in `postern-testkit`; this crate adds
//! what needs the gateway's configuration types, the Kubernetes and Helm harness and the
//! SMTP clients.

pub mod cac;
pub mod cac_gateway;
pub mod clients;
pub mod cluster;
pub mod crl;
pub mod crl_service;
pub mod cutproxy;
pub mod front;
pub mod gate;
pub mod gateway;
pub mod helm;
pub mod kube;
pub mod node;
pub mod observability;
pub mod openssl_ca;
pub mod rendered;
pub mod session_load;
pub mod slapd;
