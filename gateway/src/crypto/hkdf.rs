//! TLS 1.3's key schedule with one HMAC key set up per secret (the AWS-LC build without
//! FIPS).
//!
//! rustls' AWS-LC suites run every HKDF-Expand through AWS-LC's `HKDF_expand`, which
//! sets the HMAC key up again for each label: a TLS 1.3 handshake expands about twenty
//! labels from five secrets, and in the profile of an ECDSA session that setup was most
//! of the key schedule's 0.36 M instructions (docs/benchmarks.md). rustls' own
//! [`HkdfUsingHmac`] expands from one [`hmac::Key`] per secret instead, and AWS-LC's
//! HMAC key keeps its inner and outer states once computed: each label is then a copy of
//! those states and two compressions. This module is the small `Hmac` that plugs AWS-LC's
//! HMAC into it (rustls keeps its own AWS-LC HMAC private). The FIPS build keeps
//! AWS-LC's `HKDF_expand`, the KDF the module validates.

use aws_lc_rs::hmac as lc;
use rustls::crypto::hash::HashAlgorithm;
use rustls::crypto::hmac::{Hmac, Key, Tag};
use rustls::crypto::tls13::HkdfUsingHmac;
use rustls::{CipherSuiteCommon, SupportedCipherSuite, Tls13CipherSuite};

/// AWS-LC's HMAC with one hash.
struct AwsLcHmac(lc::Algorithm);

static HMAC_SHA256: AwsLcHmac = AwsLcHmac(lc::HMAC_SHA256);
static HMAC_SHA384: AwsLcHmac = AwsLcHmac(lc::HMAC_SHA384);
static HKDF_SHA256: HkdfUsingHmac<'static> = HkdfUsingHmac(&HMAC_SHA256);
static HKDF_SHA384: HkdfUsingHmac<'static> = HkdfUsingHmac(&HMAC_SHA384);

impl Hmac for AwsLcHmac {
    fn with_key(&self, key: &[u8]) -> Box<dyn Key> {
        Box::new(AwsLcKey(lc::Key::new(self.0, key)))
    }

    fn hash_output_len(&self) -> usize {
        self.0.digest_algorithm().output_len()
    }
}

/// A key whose inner and outer hash states AWS-LC computed once.
struct AwsLcKey(lc::Key);

impl Key for AwsLcKey {
    fn sign_concat(&self, first: &[u8], middle: &[&[u8]], last: &[u8]) -> Tag {
        let mut ctx = lc::Context::with_key(&self.0);
        ctx.update(first);
        for m in middle {
            ctx.update(m);
        }
        ctx.update(last);
        Tag::new(ctx.sign().as_ref())
    }

    fn tag_len(&self) -> usize {
        self.0.algorithm().digest_algorithm().output_len()
    }
}

/// `suites` with each TLS 1.3 suite's key schedule on [`HkdfUsingHmac`] over AWS-LC's
/// HMAC; everything else (the AEAD, the hash, TLS 1.2 suites) as given. Each new suite is
/// allocated once for the process (a suite is `'static` to rustls).
pub(super) fn with_reused_hmac_keys(suites: &[SupportedCipherSuite]) -> Vec<SupportedCipherSuite> {
    suites
        .iter()
        .map(|suite| {
            let SupportedCipherSuite::Tls13(base) = suite else {
                return *suite;
            };
            let hkdf_provider: &'static HkdfUsingHmac<'static> =
                match base.common.hash_provider.algorithm() {
                    HashAlgorithm::SHA256 => &HKDF_SHA256,
                    HashAlgorithm::SHA384 => &HKDF_SHA384,
                    _ => return *suite,
                };
            let ours: &'static Tls13CipherSuite = Box::leak(Box::new(Tls13CipherSuite {
                common: CipherSuiteCommon {
                    suite: base.common.suite,
                    hash_provider: base.common.hash_provider,
                    confidentiality_limit: base.common.confidentiality_limit,
                },
                hkdf_provider,
                aead_alg: base.aead_alg,
                quic: base.quic,
            }));
            SupportedCipherSuite::Tls13(ours)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::crypto::tls13::OkmBlock;

    /// The same secrets and labels through rustls' AWS-LC HKDF and through ours.
    #[test]
    fn the_key_schedule_is_unchanged() {
        let stock = rustls::crypto::aws_lc_rs::default_provider();
        let ours = with_reused_hmac_keys(&stock.cipher_suites);
        assert_eq!(ours.len(), stock.cipher_suites.len());
        let mut compared = 0;
        for (a, b) in stock.cipher_suites.iter().zip(&ours) {
            assert_eq!(a.suite(), b.suite());
            let (SupportedCipherSuite::Tls13(a), SupportedCipherSuite::Tls13(b)) = (a, b) else {
                continue;
            };
            let (a, b) = (a.hkdf_provider, b.hkdf_provider);
            let salt = [7u8; 48];
            for secret in [&b""[..], b"shared secret", &[0xa5; 100]] {
                let (ea, eb) = (
                    a.extract_from_secret(Some(&salt), secret),
                    b.extract_from_secret(Some(&salt), secret),
                );
                for info in [&[&b"tls13 "[..], b"c hs traffic"][..], &[&b"x"[..]; 5], &[]] {
                    assert_eq!(
                        ea.expand_block(info).as_ref(),
                        eb.expand_block(info).as_ref()
                    );
                    let (mut oa, mut ob) = ([0u8; 80], [0u8; 80]);
                    ea.expand_slice(info, &mut oa).unwrap();
                    eb.expand_slice(info, &mut ob).unwrap();
                    assert_eq!(oa, ob);
                }
            }
            let (za, zb) = (a.extract_from_zero_ikm(None), b.extract_from_zero_ikm(None));
            assert_eq!(
                za.expand_block(&[b"derived"]).as_ref(),
                zb.expand_block(&[b"derived"]).as_ref()
            );
            let okm = OkmBlock::new(&[3u8; 32]);
            assert_eq!(
                a.expander_for_okm(&okm)
                    .expand_block(&[b"finished"])
                    .as_ref(),
                b.expander_for_okm(&okm)
                    .expand_block(&[b"finished"])
                    .as_ref()
            );
            assert_eq!(
                a.hmac_sign(&okm, b"transcript").as_ref(),
                b.hmac_sign(&okm, b"transcript").as_ref()
            );
            compared += 1;
        }
        assert!(compared >= 2, "TLS 1.3 suites compared: {compared}");
    }
}
