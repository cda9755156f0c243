//! Postern's gateway: the SMTP/TLS data plane. Its configuration format is `postern_config`.
#![forbid(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod cli;
pub mod cluster;
pub mod config_gauges;
pub mod crl;
pub mod crypto;
pub mod demo;
pub(crate) mod demo_sink;
pub mod ldap;
pub mod log;
pub mod metrics;
pub(crate) mod net;
pub mod ocsp;
pub mod prestop;
pub mod proxy_header;
pub mod rate_limit;
pub mod relay;
pub mod reload;
pub mod runtime;
pub mod server;
pub mod smtp;
pub mod status_page;
pub mod tls;
pub(crate) mod wire;
