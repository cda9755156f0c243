//! Certificate paths that webpki has already verified, so that a client reconnecting
//! with the same certificate does not pay for the chain's signature checks again (on
//! P-256 they are a quarter of a whole STARTTLS + client certificate session).
//!
//! What is remembered is exactly what does not change while the bytes do not: the key
//! is the SHA-256 of the presented end-entity certificate and intermediates, and an
//! entry holds the certificates whose revocation the path depends on (its intermediates
//! and the bundle certificates above its trust anchor) and the window in which every
//! certificate on it is valid. A cached path is used only inside that window (outside
//! it the full verification runs and reports expiry as usual); revocation is checked on
//! every use, and the proof that the client holds the key (CertificateVerify) is never
//! cached. Each verifier has its own cache, so a new CA bundle or configuration starts
//! empty. Only successes are stored, so failures always get webpki's exact reason.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rustls::pki_types::{CertificateDer, UnixTime};
use sha2::{Digest, Sha256};

/// How many distinct chains are remembered; when full the cache starts over (a burst
/// of new certificates just refills it).
const CAPACITY: usize = 4096;

/// The cache key of a presented chain.
pub(crate) type ChainKey = [u8; 32];

/// A verified path: what its revocation checks need, and when it is valid.
#[derive(Clone, Debug)]
pub(crate) struct VerifiedPath {
    /// The certificates above the end entity whose revocation is checked on every use:
    /// the intermediates of the path webpki built, then the bundle certificates above
    /// its trust anchor.
    pub above: Arc<[CertificateDer<'static>]>,
    /// The end entity's issuer (an intermediate or the trust anchor's certificate), which
    /// an OCSP request names.
    pub issuer: CertificateDer<'static>,
    /// The latest `notBefore` on the path (Unix seconds).
    pub not_before: u64,
    /// The earliest `notAfter` on the path (Unix seconds).
    pub not_after: u64,
}

/// The verified paths of one verifier.
#[derive(Default)]
pub(crate) struct VerifiedPaths {
    paths: Mutex<HashMap<ChainKey, VerifiedPath>>,
}

impl std::fmt::Debug for VerifiedPaths {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedPaths")
            .field("len", &self.paths.lock().map(|p| p.len()).unwrap_or(0))
            .finish()
    }
}

/// The key of `end_entity` with `intermediates` (each DER length-prefixed, so two
/// different chains never concatenate to the same bytes).
pub(crate) fn chain_key(end_entity: &[u8], intermediates: &[CertificateDer<'_>]) -> ChainKey {
    let mut h = Sha256::new();
    for der in std::iter::once(end_entity).chain(intermediates.iter().map(|c| c.as_ref())) {
        h.update((der.len() as u64).to_be_bytes());
        h.update(der);
    }
    h.finalize().into()
}

impl VerifiedPaths {
    /// The path verified for `key`, if `now` is inside its validity window.
    pub(crate) fn get(&self, key: &ChainKey, now: UnixTime) -> Option<VerifiedPath> {
        let paths = self.paths.lock().ok()?;
        let p = paths.get(key)?;
        let t = now.as_secs();
        (p.not_before <= t && t <= p.not_after).then(|| p.clone())
    }

    /// Remember a path webpki verified.
    pub(crate) fn insert(&self, key: ChainKey, path: VerifiedPath) {
        if let Ok(mut paths) = self.paths.lock() {
            if paths.len() >= CAPACITY && !paths.contains_key(&key) {
                paths.clear();
            }
            paths.insert(key, path);
        }
    }

    #[cfg(test)]
    /// Number of remembered paths.
    pub(crate) fn len(&self) -> usize {
        self.paths.lock().map(|p| p.len()).unwrap_or(0)
    }

    #[cfg(test)]
    /// Whether nothing is remembered.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> UnixTime {
        UnixTime::since_unix_epoch(Duration::from_secs(secs))
    }

    fn path(not_before: u64, not_after: u64) -> VerifiedPath {
        VerifiedPath {
            above: Arc::from(Vec::new()),
            issuer: CertificateDer::from(Vec::new()),
            not_before,
            not_after,
        }
    }

    #[test]
    fn keys_separate_chains_and_their_split() {
        let a = CertificateDer::from(vec![1u8, 2]);
        let b = CertificateDer::from(vec![3u8]);
        let ab = chain_key(&[1, 2], std::slice::from_ref(&b));
        assert_eq!(ab, chain_key(&[1, 2], &[CertificateDer::from(vec![3u8])]));
        assert_ne!(ab, chain_key(&[1, 2], &[]));
        assert_ne!(ab, chain_key(&[1], &[CertificateDer::from(vec![2u8, 3])]));
        assert_ne!(ab, chain_key(&[3], std::slice::from_ref(&a)));
    }

    #[test]
    fn used_only_inside_the_window() {
        let c = VerifiedPaths::default();
        let k = chain_key(b"leaf", &[]);
        c.insert(k, path(100, 200));
        assert!(c.get(&k, at(99)).is_none());
        assert!(c.get(&k, at(100)).is_some());
        assert!(c.get(&k, at(200)).is_some());
        assert!(c.get(&k, at(201)).is_none());
        assert!(c.get(&chain_key(b"other", &[]), at(150)).is_none());
    }

    #[test]
    fn bounded() {
        let c = VerifiedPaths::default();
        for i in 0..CAPACITY + 10 {
            c.insert(chain_key(&i.to_be_bytes(), &[]), path(0, u64::MAX));
        }
        assert!(c.len() <= CAPACITY);
        assert!(!c.is_empty());
    }
}
