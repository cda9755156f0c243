//! TLS: server configurations and client certificate verification.

pub(crate) mod anchors;
pub mod budget;
pub(crate) mod ocsp_check;
pub(crate) mod offload;
pub mod presented;
pub(crate) mod revocation;
pub mod revocation_mode;
pub(crate) mod server;
pub mod v1_path;
pub(crate) mod verified;
pub(crate) mod verifier;

pub use anchors::{AnchorError, TrustAnchors};
pub use ocsp_check::RevocationPolicy;
pub use revocation::{
    CheckedCertificate, DpName, MissingCrl, NoRevocation, RevocationChecker, RevocationStatus,
    check_certificate,
};
pub use server::server_config;
pub use verifier::{ClientVerifier, VerifyFailure};
