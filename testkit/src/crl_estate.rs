//! CRLs shaped like those of a large PKI (the US DoD's: dozens of CAs, a few CRLs of tens
//! of MB and many small ones) for the estate benchmark: serials of 3 to 16 bytes, a
//! reasonCode on most entries, an invalidityDate on some. Written directly as DER from a
//! shared entry template and signed once, so hundreds of MB take seconds.

use time::{Duration, OffsetDateTime};

use crate::der::{ext, push_len, tlv, utc_time};
use crate::pki::Ca;

/// Reason codes used, in turn (no `removeFromCRL`, which is not a revocation).
const REASONS: [u8; 8] = [1, 4, 4, 5, 5, 3, 4, 1];

/// What an estate CRL looks like.
#[derive(Clone, Copy, Debug)]
pub struct EstateShape {
    /// Approximate DER size wanted (the CRL ends at the first entry past it).
    pub target_bytes: usize,
    /// The CA's usual serial length (3..=16); 15% of entries get another length.
    pub main_serial_len: usize,
    /// Seeds the choice of lengths, serials and extensions.
    pub seed: u64,
    /// `nextUpdate` this many days after now.
    pub valid_days: i64,
}

/// splitmix64: fast, well spread, reproducible.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The `n`-th serial of length `len` (3..=16) with random filler `r`: positive, minimal
/// (first byte 0x40..=0x7f), distinct per `(len, n)` for every `n` below 2^22.
fn serial(len: usize, n: u64, r: u64) -> [u8; 16] {
    let mut s = [0u8; 16];
    // An odd multiplier is a bijection modulo 2^k: distinct counters give distinct values.
    let v = n.wrapping_mul(0x9e37_79b9_7f4a_7c15 | 1);
    let low = len.min(8);
    let bits = if len <= 8 { 8 * len as u32 - 2 } else { 64 };
    let v = if bits < 64 {
        v & ((1u64 << bits) - 1)
    } else {
        v
    };
    s[len - low..len].copy_from_slice(&v.to_be_bytes()[8 - low..]);
    if len > 8 {
        s[..len - 8].copy_from_slice(&r.to_be_bytes()[..len - 8]);
    }
    s[0] = (s[0] & 0x3f) | 0x40;
    s
}

impl Ca {
    /// A CRL numbered `number` of about `shape.target_bytes` DER (see the module note),
    /// signed by this CA. Returns the DER and its number of entries.
    pub fn estate_crl(&self, number: u64, shape: EstateShape) -> (Vec<u8>, usize) {
        assert!(
            (3..=16).contains(&shape.main_serial_len),
            "serial length 3..=16"
        );
        let now = OffsetDateTime::now_utc();
        let revoked_at = utc_time(now - Duration::days(2));
        let invalid_since = tlv(0x18, b"20260101000000Z");
        let invalidity = ext(24, false, &invalid_since);
        let mut rng = shape.seed;
        let mut per_len = [0u64; 17];
        let mut list = Vec::with_capacity(shape.target_bytes + 64);
        let mut count = 0;
        // The header, extensions and signature take about 300 bytes.
        while list.len() + 300 < shape.target_bytes {
            let r = next(&mut rng);
            let len = if r % 100 < 85 {
                shape.main_serial_len
            } else {
                3 + (r >> 8) as usize % 14
            };
            let s = serial(len, per_len[len], next(&mut rng));
            per_len[len] += 1;
            let with_reason = !(r >> 20).is_multiple_of(10);
            let with_invalidity = (r >> 28).is_multiple_of(8);
            let mut exts_len = 0;
            if with_reason {
                exts_len += 12;
            }
            if with_invalidity {
                exts_len += invalidity.len();
            }
            let mut entry_len = 2 + len + revoked_at.len();
            if exts_len > 0 {
                entry_len += 2 + exts_len;
            }
            list.push(0x30);
            push_len(&mut list, entry_len);
            list.push(0x02);
            list.push(len as u8);
            list.extend_from_slice(&s[..len]);
            list.extend_from_slice(&revoked_at);
            if exts_len > 0 {
                list.push(0x30);
                list.push(exts_len as u8);
                if with_reason {
                    let reason = REASONS[(r >> 40) as usize % REASONS.len()];
                    list.extend_from_slice(&[
                        0x30, 0x0a, 0x06, 0x03, 0x55, 0x1d, 0x15, 0x04, 0x03, 0x0a, 0x01, reason,
                    ]);
                }
                if with_invalidity {
                    list.extend_from_slice(&invalidity);
                }
            }
            count += 1;
        }
        let crl = self.signed_list(
            number,
            now - Duration::minutes(10),
            now + Duration::days(shape.valid_days),
            list,
        );
        (crl, count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::{FromDer, X509Certificate};
    use x509_parser::revocation_list::CertificateRevocationList as ParsedCrl;

    fn shape(target_bytes: usize, main_serial_len: usize) -> EstateShape {
        EstateShape {
            target_bytes,
            main_serial_len,
            seed: 7,
            valid_days: 30,
        }
    }

    #[test]
    fn estate_crls_verify_and_have_the_shape_asked() {
        let ca = Ca::root("Estate CA");
        let (der, count) = ca.estate_crl(2, shape(200_000, 3));
        // "About" the target: the list stops within the ~300 bytes kept for the header,
        // extensions and signature, whose sizes depend on the CA.
        assert!((199_600..200_600).contains(&der.len()), "{}", der.len());
        let (rest, crl) = ParsedCrl::from_der(&der).unwrap();
        assert!(rest.is_empty());
        let (_, cert) = X509Certificate::from_der(ca.cert.der()).unwrap();
        crl.verify_signature(cert.public_key()).unwrap();
        let entries: Vec<_> = crl.iter_revoked_certificates().collect();
        assert_eq!(entries.len(), count);
        let mut seen = std::collections::HashSet::new();
        let (mut reasons, mut invalidity, mut lens) = (0, 0, [0usize; 17]);
        for e in &entries {
            let raw = e.raw_serial();
            assert!(seen.insert(raw.to_vec()), "duplicate serial");
            assert!(raw[0] >= 0x40 && raw[0] < 0x80);
            lens[raw.len()] += 1;
            reasons += usize::from(e.reason_code().is_some());
            invalidity += usize::from(e.invalidity_date().is_some());
        }
        assert!(lens[3] > count * 8 / 10, "{lens:?}");
        assert!(lens[3..=16].iter().all(|&n| n > 0), "{lens:?}");
        assert!(reasons > count * 8 / 10 && reasons < count);
        assert!(invalidity > count / 20 && invalidity < count / 5);
    }

    #[test]
    fn an_empty_estate_crl_is_still_a_crl() {
        let ca = Ca::root("Empty Estate CA");
        let (der, count) = ca.estate_crl(1, shape(100, 16));
        assert_eq!(count, 0);
        assert!(ParsedCrl::from_der(&der).is_ok());
    }
}
