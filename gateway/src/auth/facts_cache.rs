//! The facts of client certificates already read, so that a client reconnecting with the
//! same certificate (a mail client opens a session per send or poll) does not pay for
//! reading it again.
//!
//! [`CertificateFacts::from_der`] parses the certificate and builds every value a filter
//! may use (both RFC 4514 DNs, the Active Directory strong-mapping strings, the
//! fingerprint): ~3 % of an ECDSA STARTTLS session's instructions. The facts are a pure
//! function of the certificate's bytes, so they are remembered by the SHA-256 of those
//! bytes (which the facts carry anyway as `{fp}`) and shared between sessions; nothing
//! about the certificate's validity or revocation is cached here (that is checked on every
//! use, see [`crate::tls::verified`]). Only verified certificates are looked up here (a
//! refused one is read without it), so a client cannot fill the cache with certificates of
//! its own making; certificates that cannot be read are not remembered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::metrics::gauge::Gauge;
use sha2::{Digest, Sha256};

use super::certificate::{CertificateFacts, CertificateFactsError};

/// How many distinct certificates are remembered; when full the cache starts over (a
/// burst of new certificates just refills it). At ~1.5 KiB each, 6 MiB at most.
const CAPACITY: usize = 4096;

/// Client certificates' facts by the SHA-256 of their DER; shared by the server's sessions.
pub struct CertificateFactsCache {
    facts: Mutex<HashMap<[u8; 32], Arc<CertificateFacts>>>,
    /// `postern_certificate_facts_cached`: how many certificates are remembered.
    cached: Gauge,
}

impl std::fmt::Debug for CertificateFactsCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateFactsCache")
            .field("len", &self.len())
            .finish()
    }
}

impl CertificateFactsCache {
    /// An empty cache that keeps `cached` at the number of certificates it remembers.
    pub fn new(cached: Gauge) -> Self {
        Self {
            facts: Mutex::default(),
            cached,
        }
    }

    /// The facts of the DER certificate `der`, read once per distinct certificate.
    pub fn facts(&self, der: &[u8]) -> Result<Arc<CertificateFacts>, CertificateFactsError> {
        let digest: [u8; 32] = Sha256::digest(der).into();
        if let Some(known) = self.lock().get(&digest) {
            return Ok(Arc::clone(known));
        }
        // Read outside the lock: two sessions presenting a new certificate at once both
        // read it, and the second insert replaces an equal value.
        let read = Arc::new(CertificateFacts::from_der_with_digest(der, &digest)?);
        let mut facts = self.lock();
        if facts.len() >= CAPACITY && !facts.contains_key(&digest) {
            facts.clear();
        }
        facts.insert(digest, Arc::clone(&read));
        self.cached.set(facts.len() as i64);
        Ok(read)
    }

    /// How many certificates are remembered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Arc<CertificateFacts>>> {
        // The map holds only complete entries: one left by a panicking holder is usable.
        self.facts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(cn: &str) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn a_certificate_is_read_once_and_its_facts_shared() {
        let cache = CertificateFactsCache::new(Gauge::default());
        let (a, b) = (cert("DOE.JOHN.1"), cert("ROE.JANE.2"));
        let first = cache.facts(&a).unwrap();
        let again = cache.facts(&a).unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(*first, CertificateFacts::from_der(&a).unwrap());
        let other = cache.facts(&b).unwrap();
        assert_eq!(other.common_name(), Some("ROE.JANE.2"));
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.cached.get(), 2);
    }

    #[test]
    fn an_unreadable_certificate_is_refused_every_time_and_not_remembered() {
        let cache = CertificateFactsCache::new(Gauge::default());
        let garbage = b"not a certificate";
        assert!(cache.facts(garbage).is_err());
        assert!(cache.facts(garbage).is_err());
        assert!(cache.is_empty());
    }

    #[test]
    fn a_full_cache_starts_over() {
        let cache = CertificateFactsCache::new(Gauge::default());
        let der = cert("DOE.JOHN.1");
        {
            let mut facts = cache.lock();
            let filler = Arc::new(CertificateFacts::default());
            for i in 0..CAPACITY {
                let mut key = [0u8; 32];
                key[..8].copy_from_slice(&(i as u64).to_le_bytes());
                facts.insert(key, Arc::clone(&filler));
            }
        }
        cache.facts(&der).unwrap();
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.cached.get(), 1);
    }
}
