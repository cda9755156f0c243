//! OCSP (RFC 6960): ask a responder whether a client certificate is revoked.
//!
//! - [`request`] builds the request (CertID with SHA-1, as RFC 5019 profiles it and every
//!   responder answers, plus a nonce);
//! - [`response`] decodes the answer and verifies it: signed by the issuing CA or by a
//!   delegated responder certificate with `id-kp-OCSPSigning` issued by that CA, for the
//!   CertID asked, inside `thisUpdate`/`nextUpdate` (5 minutes of clock skew), with the
//!   nonce sent when the responder echoes one;
//! - [`client`] posts it over HTTP with a per-request timeout, caches verified answers per
//!   (issuer, serial, responder) until `nextUpdate` or `cacheMaxAge`, whichever is
//!   sooner, in a bounded cache, and coalesces concurrent identical lookups;
//! - [`metrics`] counts per responder.
//!
//! The ASN.1 is read with asn1-rs (already here through x509-parser) and written by hand
//! (four small structures): RustCrypto's x509-ocsp would add a second ASN.1 and X.509
//! stack (der, x509-cert, spki) beside x509-parser for those few bytes, and the
//! signatures are checked with the same x509-parser code that checks CRLs.

pub(crate) mod client;
#[cfg(test)]
pub(crate) mod fixture;
pub(crate) mod metrics;
pub(crate) mod request;
pub(crate) mod response;

pub use client::{OcspClient, OcspQuery};
pub use metrics::OcspMetrics;
pub use response::{CertStatus, OcspAnswer, OcspError};
