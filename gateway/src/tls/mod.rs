//! TLS: server configurations and client certificate verification.

pub mod revocation;

pub use revocation::{RevocationChecker, RevocationStatus};
