//! The cryptography of every TLS connection the gateway makes or accepts: one rustls
//! provider for the process, chosen when the gateway is built.
//!
//! - feature `aws-lc-rs` (a default feature): rustls' AWS-LC provider, measured faster
//!   than `ring` for what a session costs (docs/benchmarks.md, "The crypto provider");
//! - without it (`--no-default-features`): rustls' `ring` provider;
//! - feature `fips`: AWS-LC's FIPS 140-3 module (rustls' `default_fips_provider`), whose
//!   build needs CMake and Go (docs/security.md, "Cryptography").
//!
//! Listener keys are loaded with this provider too, so the server's signature (most of
//! an RSA session) is made by it. The AWS-LC build's TLS 1.3 suites run their key
//! schedule on reused HMAC keys ([`hkdf`]).

#[cfg(all(feature = "aws-lc-rs", not(feature = "fips")))]
mod hkdf;

use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;

/// The provider, built once.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER.get_or_init(|| Arc::new(build())).clone()
}

/// Makes [`provider`] the process's default too, for the libraries that take their TLS
/// provider from there (the Kubernetes client of the in-cluster configuration source).
/// Without it, a process whose rustls has both providers compiled in (the gateway and any
/// crate beside it in one build) has no default, and such a library panics.
pub fn install_process_default() {
    // Already installed (by an earlier call): nothing to do.
    let _ = CryptoProvider::install_default(provider().as_ref().clone());
}

/// The provider's name, for the log.
pub const NAME: &str = if cfg!(feature = "fips") {
    "aws-lc-rs (FIPS)"
} else if cfg!(feature = "aws-lc-rs") {
    "aws-lc-rs"
} else {
    "ring"
};

#[cfg(feature = "fips")]
fn build() -> CryptoProvider {
    rustls::crypto::default_fips_provider()
}

#[cfg(all(feature = "aws-lc-rs", not(feature = "fips")))]
fn build() -> CryptoProvider {
    let stock = rustls::crypto::aws_lc_rs::default_provider();
    CryptoProvider {
        cipher_suites: hkdf::with_reused_hmac_keys(&stock.cipher_suites),
        ..stock
    }
}

#[cfg(not(feature = "aws-lc-rs"))]
fn build() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_provider_for_the_process() {
        assert!(Arc::ptr_eq(&provider(), &provider()));
        assert_eq!(provider().fips(), cfg!(feature = "fips"));
        install_process_default();
        install_process_default();
        let default = CryptoProvider::get_default().expect("installed");
        assert_eq!(default.fips(), provider().fips());
        assert_eq!(default.cipher_suites.len(), provider().cipher_suites.len());
    }
}
