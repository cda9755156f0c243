//! Signature checks over a digest of a CRL's signed part, for CRLs read as they download
//! ([`super::stream`]): the signed part is hashed as it passes and never held whole.
//!
//! The algorithms are those the in-memory check ([`x509_parser::verify::verify_signature`],
//! ring) accepts, with the same key and signature rules and the same errors: ECDSA with
//! SHA-256 or SHA-384 on P-256 or P-384 (RustCrypto's prehash verifiers), and RSA PKCS#1
//! v1.5 with SHA-256, SHA-384 or SHA-512 and a 2048 to 8192-bit key (public-key
//! arithmetic, no secret involved: written here because the `rsa` crate, the maintained
//! alternative, carries an open RustSec advisory that cargo-deny refuses). Ed25519 signs the message itself and cannot be
//! checked over a digest; it, RSA-PSS and SHA-1 keep the in-memory path.

use p256::ecdsa::signature::hazmat::PrehashVerifier;
use sha2::{Digest, Sha256, Sha384, Sha512};
use x509_parser::asn1_rs::BitString;
use x509_parser::error::X509Error;
use x509_parser::num_bigint::BigUint;
use x509_parser::oid_registry::{OID_EC_P256, OID_NIST_EC_P384};
use x509_parser::public_key::PublicKey;
use x509_parser::x509::{AlgorithmIdentifier, SubjectPublicKeyInfo};

use super::der::{Reader, tag};

// Signature algorithm OIDs as DER content bytes.
const ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
const ECDSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
const RSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
const RSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c];
const RSA_SHA512: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d];

/// DER of the DigestInfo before the digest (RFC 8017 section 9.2, note 1).
const DIGEST_INFO_SHA256: &[u8] = &[
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];
const DIGEST_INFO_SHA384: &[u8] = &[
    0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05,
    0x00, 0x04, 0x30,
];
const DIGEST_INFO_SHA512: &[u8] = &[
    0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05,
    0x00, 0x04, 0x40,
];

/// The signature algorithms checked over a digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scheme {
    Ecdsa,
    RsaPkcs1(&'static [u8]),
}

/// Hashes the signed part of a CRL for its signature algorithm.
pub(crate) struct Hasher {
    oid: &'static [u8],
    scheme: Scheme,
    state: State,
}

enum State {
    Sha256(Sha256),
    Sha384(Sha384),
    Sha512(Sha512),
}

/// The digest of a CRL's signed part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Prehashed {
    oid: &'static [u8],
    scheme: Scheme,
    digest: Vec<u8>,
}

impl Hasher {
    /// A hasher for the signature algorithm `alg` (a DER AlgorithmIdentifier), if it can be
    /// checked over a digest.
    pub(crate) fn for_algorithm(alg: &[u8]) -> Option<Self> {
        let seq = Reader::new(alg).expect(tag::SEQUENCE, "").ok()?;
        let oid = Reader::new(seq.content).expect(tag::OID, "").ok()?;
        let (oid, scheme, state): (&'static [u8], _, _) = match oid.content {
            ECDSA_SHA256 => (ECDSA_SHA256, Scheme::Ecdsa, State::Sha256(Sha256::new())),
            ECDSA_SHA384 => (ECDSA_SHA384, Scheme::Ecdsa, State::Sha384(Sha384::new())),
            RSA_SHA256 => (
                RSA_SHA256,
                Scheme::RsaPkcs1(DIGEST_INFO_SHA256),
                State::Sha256(Sha256::new()),
            ),
            RSA_SHA384 => (
                RSA_SHA384,
                Scheme::RsaPkcs1(DIGEST_INFO_SHA384),
                State::Sha384(Sha384::new()),
            ),
            RSA_SHA512 => (
                RSA_SHA512,
                Scheme::RsaPkcs1(DIGEST_INFO_SHA512),
                State::Sha512(Sha512::new()),
            ),
            _ => return None,
        };
        Some(Self { oid, scheme, state })
    }

    /// Hash the next bytes.
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        match &mut self.state {
            State::Sha256(h) => h.update(bytes),
            State::Sha384(h) => h.update(bytes),
            State::Sha512(h) => h.update(bytes),
        }
    }

    /// The digest.
    pub(crate) fn finish(self) -> Prehashed {
        let digest = match self.state {
            State::Sha256(h) => h.finalize().to_vec(),
            State::Sha384(h) => h.finalize().to_vec(),
            State::Sha512(h) => h.finalize().to_vec(),
        };
        Prehashed {
            oid: self.oid,
            scheme: self.scheme,
            digest,
        }
    }
}

/// Check `signature` of the data hashed into `pre` with `key`, as
/// [`x509_parser::verify::verify_signature`] checks it over the data itself.
pub(crate) fn verify(
    key: &SubjectPublicKeyInfo<'_>,
    algorithm: &AlgorithmIdentifier<'_>,
    signature: &BitString<'_>,
    pre: &Prehashed,
) -> Result<(), X509Error> {
    if algorithm.algorithm.as_bytes() != pre.oid {
        // The digest was made for the algorithm inside the signed part, which the parser
        // checks is the outer one: a mismatch is not a CRL that could verify.
        return Err(X509Error::SignatureUnsupportedAlgorithm);
    }
    let bad = |_| X509Error::SignatureVerificationError;
    let sig = signature.data.as_ref();
    let public = key.subject_public_key.data.as_ref();
    match pre.scheme {
        Scheme::Ecdsa => {
            let curve = key
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .ok_or(X509Error::SignatureUnsupportedAlgorithm)?;
            if curve == OID_EC_P256 {
                let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(public).map_err(bad)?;
                let sig = p256::ecdsa::Signature::from_der(sig).map_err(bad)?;
                key.verify_prehash(&pre.digest, &sig).map_err(bad)
            } else if curve == OID_NIST_EC_P384 {
                let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(public).map_err(bad)?;
                let sig = p384::ecdsa::Signature::from_der(sig).map_err(bad)?;
                key.verify_prehash(&pre.digest, &sig).map_err(bad)
            } else {
                Err(X509Error::SignatureUnsupportedAlgorithm)
            }
        }
        Scheme::RsaPkcs1(digest_info) => match key.parsed() {
            Ok(PublicKey::RSA(rsa)) => {
                rsa_pkcs1(rsa.modulus, rsa.exponent, sig, digest_info, &pre.digest)
                    .then_some(())
                    .ok_or(X509Error::SignatureVerificationError)
            }
            _ => Err(X509Error::SignatureVerificationError),
        },
    }
}

/// RSASSA-PKCS1-v1_5 verification (RFC 8017 section 8.2.2) with ring's key rules: a
/// modulus of 2048 to 8192 bits, an odd exponent from 3 to 2^33 - 1, a signature as long
/// as the modulus and smaller than it. The whole encoded message is compared, never
/// parsed, so no padding trick can pass.
fn rsa_pkcs1(
    modulus: &[u8],
    exponent: &[u8],
    sig: &[u8],
    digest_info: &[u8],
    digest: &[u8],
) -> bool {
    let strip = |b: &[u8]| -> Vec<u8> {
        let start = b.iter().position(|&x| x != 0).unwrap_or(b.len());
        b[start..].to_vec()
    };
    let n_bytes = strip(modulus);
    let n = BigUint::from_bytes_be(&n_bytes);
    let e = BigUint::from_bytes_be(&strip(exponent));
    let bits = n.bits();
    if !(2048..=8192).contains(&bits) || !n.bit(0) {
        return false;
    }
    if e < BigUint::from(3u32) || !e.bit(0) || e.bits() > 33 {
        return false;
    }
    let k = n_bytes.len();
    if sig.len() != k {
        return false;
    }
    let s = BigUint::from_bytes_be(sig);
    if s >= n {
        return false;
    }
    let m = s.modpow(&e, &n).to_bytes_be();
    let t_len = digest_info.len() + digest.len();
    if k < t_len + 11 {
        return false;
    }
    let mut expected = Vec::with_capacity(k);
    expected.extend([0x00, 0x01]);
    expected.resize(k - t_len - 1, 0xff);
    expected.push(0x00);
    expected.extend_from_slice(digest_info);
    expected.extend_from_slice(digest);
    // `m` has no leading zero bytes; the encoded message starts with 0x00 0x01.
    m.len() + 1 == k && expected[1..] == m[..]
}
