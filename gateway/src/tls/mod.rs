//! TLS: server configurations and client certificate verification.

pub mod revocation;
pub mod server;
pub mod verifier;

pub use revocation::{NoRevocation, RevocationChecker, RevocationStatus};
pub use server::server_config;
pub use verifier::{ClientVerifier, VerifyFailure};
