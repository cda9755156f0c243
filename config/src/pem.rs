//! PEM and certificate helpers shared by validation and the TLS setup.
//!
//! A listener's key is loaded with rustls' own key loader ([`certified_key`]), the one the
//! gateway serves with, so validation refuses exactly the keys the TLS stack could not
//! use (a second key parser here would be a second definition of "usable").

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

/// Why PEM material was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PemError {
    /// No `CERTIFICATE` block was found.
    #[error("no PEM CERTIFICATE block found")]
    NoCertificate,
    /// A block could not be decoded.
    #[error("malformed PEM: {0}")]
    Malformed(String),
    /// A certificate's DER does not parse as X.509.
    #[error("certificate #{index} is not valid X.509: {reason}")]
    BadCertificate {
        /// Position in the bundle, from 0.
        index: usize,
        /// Parser error.
        reason: String,
    },
    /// No private key block was found.
    #[error("no PEM private key found (expected PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)")]
    NoKey,
    /// The key is of a type or encoding the TLS stack cannot use.
    #[error("unusable private key: {0}")]
    UnusableKey(String),
    /// The key does not belong to the certificate.
    #[error("the private key does not match the certificate's public key")]
    KeyMismatch,
}

/// How many distinct bundles [`certificates`] remembers per thread.
const MEMO_ENTRIES: usize = 8;

type Parsed = Result<Vec<CertificateDer<'static>>, PemError>;

thread_local! {
    /// The last bundles parsed on this thread, by content digest: a namespace's
    /// Listeners usually share one client CA bundle, and compiling, validating and
    /// building a configuration of a thousand of them would otherwise parse it a
    /// thousand times over at each step.
    static MEMO: std::cell::RefCell<Vec<([u8; 32], std::sync::Arc<Parsed>)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Parse every `CERTIFICATE` block, checking each is X.509. The same text parses once
/// per thread while it is among the last few distinct ones.
pub fn certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, PemError> {
    use sha2::{Digest, Sha256};
    let key: [u8; 32] = Sha256::digest(pem.as_bytes()).into();
    let hit = MEMO.with_borrow(|m| m.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone()));
    let parsed = match hit {
        Some(p) => p,
        None => {
            let p = std::sync::Arc::new(parse_certificates(pem));
            MEMO.with_borrow_mut(|m| {
                if m.len() == MEMO_ENTRIES {
                    m.remove(0);
                }
                m.push((key, p.clone()));
            });
            p
        }
    };
    (*parsed).clone()
}

fn parse_certificates(pem: &str) -> Parsed {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PemError::Malformed(e.to_string()))?;
    if certs.is_empty() {
        return Err(PemError::NoCertificate);
    }
    for (index, der) in certs.iter().enumerate() {
        x509_parser::parse_x509_certificate(der).map_err(|e| PemError::BadCertificate {
            index,
            reason: e.to_string(),
        })?;
    }
    Ok(certs)
}

/// Parse the first private key.
pub fn private_key(pem: &str) -> Result<PrivateKeyDer<'static>, PemError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => PemError::NoKey,
        other => PemError::Malformed(other.to_string()),
    })
}

/// Parse every `X509 CRL` block.
pub fn crls(pem: &str) -> Result<Vec<CertificateRevocationListDer<'static>>, PemError> {
    CertificateRevocationListDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PemError::Malformed(e.to_string()))
}

/// Load a certificate chain and key as rustls would with `provider` (the one that will
/// sign with it), and check they belong together.
pub fn certified_key(
    chain_pem: &str,
    key_pem: &str,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<rustls::sign::CertifiedKey, PemError> {
    let chain = certificates(chain_pem)?;
    let key = private_key(key_pem)?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| PemError::UnusableKey(e.to_string()))?;
    let certified = rustls::sign::CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(PemError::KeyMismatch)
        }
        // The key type cannot report its public key; the handshake itself will tell.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(certified),
        Err(e) => Err(PemError::UnusableKey(e.to_string())),
    }
}
