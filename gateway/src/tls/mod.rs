//! TLS: server configurations and client certificate verification.

pub mod anchors;
pub mod budget;
pub mod offload;
pub mod presented;
pub mod revocation;
pub mod server;
pub mod v1_path;
pub mod verified;
pub mod verifier;

pub use anchors::{AnchorError, TrustAnchors};
pub use revocation::{
    CheckedCertificate, DpName, MissingCrl, NoRevocation, RevocationChecker, RevocationStatus,
    check_certificate,
};
pub use server::server_config;
pub use verifier::{ClientVerifier, VerifyFailure};
