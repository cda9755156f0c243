//! The revocation hook of client certificate verification.
//!
//! The verifier asks a [`RevocationChecker`] about every certificate of the presented
//! chain. The checker answers from an index built once per CRL: a handshake costs a
//! lookup, never a signature check or a scan of the list.

use std::fmt::Debug;

use x509_parser::error::X509Error;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::config::CrlScope;

/// What a CRL says about one certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RevocationStatus {
    /// No CRL in force covers the certificate's issuer.
    NoCrl,
    /// The issuer's CRL is in force and does not list the certificate.
    Good,
    /// The issuer's CRL lists the certificate.
    Revoked {
        /// The CRL source that listed it.
        source: String,
        /// Revocation reason, if the CRL gives one.
        reason: Option<String>,
    },
    /// The issuer's CRL is past its `nextUpdate`: the certificate cannot be checked and is
    /// treated as unverifiable (fail closed).
    Stale {
        /// The CRL source.
        source: String,
        /// The CRL's `nextUpdate`, RFC 3339.
        next_update: String,
    },
}

/// Answers revocation questions from the CRLs in force.
pub trait RevocationChecker: Send + Sync + Debug {
    /// Look up `serial` (the raw DER INTEGER content) of a certificate issued by the CA whose
    /// subject name is `issuer_der` (raw DER of the Name, SEQUENCE tag included, as
    /// x509-parser's `X509Name::as_raw()` gives it) and, when the certificate has one,
    /// whose key id is `authority_key_id`. `scope` says which TLS check is asking.
    fn check(
        &self,
        scope: CrlScope,
        issuer_der: &[u8],
        authority_key_id: Option<&[u8]>,
        serial: &[u8],
    ) -> RevocationStatus;
}

/// A checker with no CRLs (revocation not configured).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoRevocation;

impl RevocationChecker for NoRevocation {
    fn check(&self, _: CrlScope, _: &[u8], _: Option<&[u8]>, _: &[u8]) -> RevocationStatus {
        RevocationStatus::NoCrl
    }
}

/// Ask `checker` about one certificate (DER), returning the parsed certificate (for the
/// caller's messages) with the answer. The issuer's key id comes from the certificate's
/// Authority Key Identifier, when it has one.
pub fn check_certificate<'a>(
    checker: &dyn RevocationChecker,
    scope: CrlScope,
    der: &'a [u8],
) -> Result<(X509Certificate<'a>, RevocationStatus), x509_parser::nom::Err<X509Error>> {
    let (_, cert) = X509Certificate::from_der(der)?;
    let aki = cert
        .iter_extensions()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => a.key_identifier.as_ref().map(|k| k.0),
            _ => None,
        });
    let status = checker.check(scope, cert.issuer().as_raw(), aki, cert.raw_serial());
    Ok((cert, status))
}
