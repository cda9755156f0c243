#![forbid(unsafe_code)]
//! What the end-to-end tests (`postern-tests`), the benchmarks (`postern-bench`) and the
//! gateway's own unit tests share: one way to run the gateway binary, one PKI and CRL
//! builder, the real components they run it against (slapd, smtp-sink, a CRL file
//! server, an `openssl ocsp` responder), free loopback ports and a raw HTTP GET. It
//! depends on no Postern crate, so every one of them may use it.

pub mod crl;
pub mod crl_estate;
pub mod der;
pub mod file_server;
pub mod gateway;
pub mod http;
pub mod ocsp_responder;
pub mod pki;
pub mod ports;
pub mod postfix;
pub mod process;
pub mod prometheus;
pub mod sink;
pub mod slapd;
pub mod workspace;
