//! A large CRL written directly as DER and signed by the bench CA: a million entries in
//! well under a second, none of them the bench client's serial.

use anyhow::{Context, Result};
use rcgen::SigningKey;
use time::OffsetDateTime;

use crate::pki::{KeyKind, Pki};

const ECDSA_SHA256: [u8; 12] = [
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
];
const RSA_SHA256: [u8; 15] = [
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00,
];
/// crlEntryExtensions with reasonCode keyCompromise (on every 10th entry, as in real CRLs).
const REASON_EXT: [u8; 14] = [
    0x30, 0x0c, 0x30, 0x0a, 0x06, 0x03, 0x55, 0x1d, 0x15, 0x04, 0x03, 0x0a, 0x01, 0x01,
];
/// Serial length of the listed certificates (typical of commercial CAs).
const SERIAL_LEN: usize = 16;

fn push_len(out: &mut Vec<u8>, n: usize) {
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes = (n as u32).to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (4 - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    push_len(&mut out, content.len());
    out.extend_from_slice(content);
    out
}

fn ext(oid: &[u8], value: &[u8]) -> Vec<u8> {
    let mut e = der(0x06, oid);
    e.extend(der(0x04, value));
    der(0x30, &e)
}

fn utc_time(t: OffsetDateTime) -> Vec<u8> {
    let s = format!(
        "{:02}{:02}{:02}{:02}{:02}{:02}Z",
        t.year() % 100,
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    der(0x17, s.as_bytes())
}

/// Serial of entry `i`: 16 bytes, first byte 0x11 (positive, never the client's 0x7a),
/// pseudo-random middle, the index in the last four bytes so serials never collide.
fn serial(i: u64) -> [u8; SERIAL_LEN] {
    let mut s = [0u8; SERIAL_LEN];
    let mut z = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xbf58_476d_1ce4_e5b9;
    z = (z ^ (z >> 31)).wrapping_mul(0x94d0_49bb_1331_11eb);
    s[1..9].copy_from_slice(&z.to_be_bytes());
    let z2 = z.rotate_left(17).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    s[9..12].copy_from_slice(&z2.to_be_bytes()[..3]);
    s[12..16].copy_from_slice(&(i as u32).to_be_bytes());
    s[0] = 0x11;
    s
}

/// A CRL (DER) of `pki`'s CA with `count` entries, CRL number 1, valid for a day.
pub fn big_crl(pki: &Pki, count: usize) -> Result<Vec<u8>> {
    let now = OffsetDateTime::now_utc();
    let alg: &[u8] = match pki.kind {
        KeyKind::Ecdsa => &ECDSA_SHA256,
        KeyKind::Rsa2048 => &RSA_SHA256,
    };
    let date = utc_time(now - time::Duration::hours(1));
    let mut list = Vec::with_capacity(count * (SERIAL_LEN + 36));
    for i in 0..count {
        let with_reason = i % 10 == 0;
        let mut entry_len = 2 + SERIAL_LEN + date.len();
        if with_reason {
            entry_len += REASON_EXT.len();
        }
        list.push(0x30);
        push_len(&mut list, entry_len);
        list.push(0x02);
        list.push(SERIAL_LEN as u8);
        list.extend_from_slice(&serial(i as u64));
        list.extend_from_slice(&date);
        if with_reason {
            list.extend_from_slice(&REASON_EXT);
        }
    }
    let (_, ca) = x509_parser::parse_x509_certificate(&pki.ca_der).context("bench CA")?;
    let mut tbs_body = vec![0x02, 0x01, 0x01];
    tbs_body.extend_from_slice(alg);
    tbs_body.extend_from_slice(ca.subject().as_raw());
    tbs_body.extend(utc_time(now - time::Duration::minutes(1)));
    tbs_body.extend(utc_time(now + time::Duration::hours(24)));
    tbs_body.push(0x30);
    push_len(&mut tbs_body, list.len());
    tbs_body.extend_from_slice(&list);
    drop(list);
    // crlExtensions: authorityKeyIdentifier, cRLNumber 1.
    let aki = der(0x30, &der(0x80, &pki.ca_key_id()));
    let mut exts = ext(&[0x55, 0x1d, 35], &aki);
    exts.extend(ext(&[0x55, 0x1d, 20], &der(0x02, &[0x01])));
    tbs_body.extend(der(0xa0, &der(0x30, &exts)));
    let tbs = der(0x30, &tbs_body);
    drop(tbs_body);
    let sig = pki.ca_key.sign(&tbs).context("signing the CRL")?;
    let mut bits = vec![0u8];
    bits.extend(sig);
    let mut body = tbs;
    body.extend_from_slice(alg);
    body.extend(der(0x03, &bits));
    Ok(der(0x30, &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_are_distinct_and_never_the_client() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..100_000 {
            let s = serial(i);
            assert_ne!(s, crate::pki::CLIENT_SERIAL);
            assert!(seen.insert(s));
        }
    }
}
