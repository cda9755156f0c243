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
//! an RSA session) is made by it.

use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;

/// The provider, built once.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER.get_or_init(|| Arc::new(build())).clone()
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
    rustls::crypto::aws_lc_rs::default_provider()
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
    }
}
