//! Postern's gateway: the SMTP/TLS data plane and the owner of its configuration format.
#![forbid(unsafe_code)]

pub mod auth;
pub mod cluster;
pub mod config;
pub mod crl;
pub mod ldap;
pub mod tls;
