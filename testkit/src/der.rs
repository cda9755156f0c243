//! DER writing by hand, for the CRLs rcgen will not produce: very large ones, and ones
//! with extensions it does not know (delta, indirect, issuing distribution point,
//! critical ones).

use time::OffsetDateTime;

/// AlgorithmIdentifier ecdsa-with-SHA256 (rcgen's default key type).
pub const ECDSA_SHA256: [u8; 12] = [
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
];

/// AlgorithmIdentifier sha256WithRSAEncryption (with its NULL parameters).
pub const RSA_SHA256: [u8; 15] = [
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00,
];

/// Append a DER length.
pub fn push_len(out: &mut Vec<u8>, n: usize) {
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes = (n as u32).to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (4 - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// A DER element: tag, length, content.
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    push_len(&mut out, content.len());
    out.extend_from_slice(content);
    out
}

/// An Extension element for OID 2.5.29.`arc` (the id-ce arc of every CRL extension).
pub fn ext(arc: u8, critical: bool, value: &[u8]) -> Vec<u8> {
    let mut e = tlv(0x06, &[0x55, 0x1d, arc]);
    if critical {
        e.extend([0x01, 0x01, 0xff]);
    }
    e.extend(tlv(0x04, value));
    tlv(0x30, &e)
}

/// The content of a minimal, positive DER INTEGER holding `n`.
pub fn int_bytes(n: u64) -> Vec<u8> {
    let b = n.to_be_bytes();
    let skip = b.iter().take_while(|&&x| x == 0).count().min(7);
    let mut v = b[skip..].to_vec();
    if v[0] & 0x80 != 0 {
        v.insert(0, 0);
    }
    v
}

/// A UTCTime element (seconds resolution).
pub fn utc_time(t: OffsetDateTime) -> Vec<u8> {
    let s = format!(
        "{:02}{:02}{:02}{:02}{:02}{:02}Z",
        t.year() % 100,
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    tlv(0x17, s.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_short_and_long() {
        assert_eq!(tlv(0x04, &[1, 2]), [0x04, 2, 1, 2]);
        let long = tlv(0x04, &[0; 200]);
        assert_eq!(&long[..3], [0x04, 0x81, 200]);
        let longer = tlv(0x04, &[0; 70_000]);
        assert_eq!(&longer[..5], [0x04, 0x83, 0x01, 0x11, 0x70]);
    }

    #[test]
    fn integers_are_minimal_and_positive() {
        assert_eq!(int_bytes(0), [0]);
        assert_eq!(int_bytes(1), [1]);
        assert_eq!(int_bytes(0x80), [0, 0x80]);
        assert_eq!(int_bytes(0x1234), [0x12, 0x34]);
    }

    #[test]
    fn extensions_and_times() {
        assert_eq!(
            ext(20, true, &[2, 1, 5]),
            [
                0x30, 13, 0x06, 3, 0x55, 0x1d, 20, 0x01, 1, 0xff, 0x04, 3, 2, 1, 5
            ]
        );
        let t = time::macros::datetime!(2031-02-03 04:05:06 UTC);
        assert_eq!(utc_time(t), tlv(0x17, b"310203040506Z"));
    }
}
