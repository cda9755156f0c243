//! The stream reader ([`super::stream`]) against the in-memory path: a file read in
//! chunks of any size, truncated, forged or with unusable entries loads, or is refused,
//! exactly as the whole file is.

use std::sync::Arc;

use super::der::tag::{GENERALIZED_TIME, UTC_TIME};
use super::index::CrlIndex;
use super::load::{Loaded, Missing, load, load_streamed};
use super::parse::ParseError;
use super::stream::{StreamReader, Streamed};
use super::verify::{Refusal, TrustStore};
use crate::crl::der::Reader;
use postern_config::CrlFormat;
use postern_testkit::crl::RevokedSpec;
use postern_testkit::der::{ext, tlv, utc_time};
use postern_testkit::pki::{Ca, KeyKind};

use crate::crl::unix_now as now;

/// The CAs as listeners' client CAs would trust them.
fn trust(cas: &[&Ca]) -> TrustStore {
    let pem: String = cas.iter().map(|ca| ca.cert_pem()).collect();
    let mut t = TrustStore::default();
    t.add_pem(&pem, "a listener").unwrap();
    t
}

/// `der` with its entry of serial 0x42 changed to 0x41 (the signature no longer fits).
fn forge(der: &[u8]) -> Vec<u8> {
    let mut forged = der.to_vec();
    let pos = forged
        .windows(3)
        .position(|w| w == [0x02, 0x01, 0x42])
        .expect("an entry of serial 0x42");
    forged[pos + 2] = 0x41;
    forged
}

fn read(der: &[u8], chunk: usize) -> Streamed {
    let mut r = StreamReader::new();
    for c in der.chunks(chunk.max(1)) {
        r.feed(c);
    }
    r.finish()
}

/// What a load says: the refusal, or each CRL's facts and its answers for `probes`.
type Summary = Result<Vec<(crate::crl::CrlMeta, Vec<Option<crate::crl::index::Hit>>)>, Refusal>;

fn summary(r: Result<Loaded, Refusal>, probes: &[Vec<u8>]) -> Summary {
    r.map(|l| {
        l.crls
            .iter()
            .map(|ix| {
                let hits = probes.iter().map(|p| ix.lookup(p)).collect();
                (ix.meta.clone(), hits)
            })
            .collect()
    })
}

/// Load `der` in memory and streamed in chunks of `chunk` bytes (and in two pieces
/// split at `split`, when given): the outcomes must be the same.
fn same(
    der: &[u8],
    t: &TrustStore,
    in_force: &[Arc<CrlIndex>],
    probes: &[Vec<u8>],
    chunks: &[usize],
) -> Summary {
    let whole = summary(
        load(der, CrlFormat::Asn1, t, in_force, Missing::Retain, now()),
        probes,
    );
    for &chunk in chunks {
        let s = read(der, chunk);
        let streamed = summary(
            load_streamed(s, t, in_force, Missing::Retain, now()),
            probes,
        );
        assert_eq!(streamed, whole, "chunks of {chunk} bytes");
    }
    whole
}

fn probes(serials: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut p: Vec<Vec<u8>> = serials.iter().map(|s| s.to_vec()).collect();
    p.extend([vec![0x7e], vec![0x01, 0x02, 0x03], vec![0x55; 20]]);
    p
}

const CHUNKS: &[usize] = &[1, 2, 3, 7, 64, 1000, usize::MAX];

#[test]
fn streamed_and_in_memory_loads_agree_on_valid_crls() {
    let ca = Ca::new("Stream CA");
    let t = trust(&[&ca]);
    let serials: [&[u8]; 6] = [
        &[0x05],
        &[0x00, 0x85],
        &[0x12, 0x34, 0x56, 0x78, 0x9a],
        &[0x3c; 16],
        &[0x4d; 20],
        &[
            0x00, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
        ],
    ];
    let specs: Vec<RevokedSpec> = serials
        .iter()
        .enumerate()
        .map(|(i, s)| match i % 3 {
            0 => RevokedSpec::new(s),
            1 => RevokedSpec::key_compromise(s),
            _ => RevokedSpec::new(s).reason(rcgen::RevocationReason::CessationOfOperation),
        })
        .collect();
    let der = ca.crl(7, &specs, -60, 3600).der().to_vec();
    assert!(read(&der, 64).entries.is_some(), "the entries are streamed");
    let out = same(&der, &t, &[], &probes(&serials), CHUNKS).unwrap();
    assert_eq!(out[0].0.entries, 6);
    assert_eq!(out[0].0.der_len, der.len());

    // Entry extensions (reason, invalidity date, a non-critical unknown one), CRL
    // extensions, removeFromCRL.
    let reason = |r: u8| ext(21, false, &tlv(0x0a, &[r]));
    let invalidity = ext(24, false, &tlv(0x18, b"20240101000000Z"));
    let entries: Vec<(&[u8], Vec<u8>)> = vec![
        (&[0x01], [reason(1), invalidity.clone()].concat()),
        (&[0x02, 0x02], ext(99, false, &[0x05, 0x00])),
        (&[0x03], reason(8)),
        (&[0x04; 9], vec![]),
    ];
    let der = ca.raw_crl(
        &entries,
        &[
            ext(20, false, &tlv(0x02, &[9])),
            ext(98, false, &[0x05, 0x00]),
        ],
    );
    assert!(read(&der, 64).entries.is_some());
    let p = probes(&[&[0x01], &[0x02, 0x02], &[0x03], &[0x04; 9]]);
    let out = same(&der, &t, &[], &p, CHUNKS).unwrap();
    assert_eq!(out[0].0.entries, 3, "removeFromCRL is no revocation");

    // No revoked list at all, and an empty one.
    same(ca.crl(8, &[], -60, 3600).der(), &t, &[], &p, CHUNKS).unwrap();
    let empty = ca.sign_tbs(tlv(
        0x30,
        &[tbs_of(&ca.raw_crl(&[], &[])), tlv(0x30, &[])].concat(),
    ));
    same(&empty, &t, &[], &p, CHUNKS).unwrap();

    // Many entries across many chunks.
    let big = ca.big_crl(9, 5000, 12, 3);
    assert!(read(&big, 4096).entries.is_some());
    let out = same(&big, &t, &[], &p, &[1, 13, 4096, 65_536]).unwrap();
    assert_eq!(out[0].0.entries, 5000);
}

/// The content of the tbsCertList of `der`.
fn tbs_of(der: &[u8]) -> Vec<u8> {
    let outer = Reader::new(der).read().unwrap();
    Reader::new(outer.content).read().unwrap().content.to_vec()
}

#[test]
fn absent_next_update_and_rsa_signatures() {
    let ca = Ca::new("No Next CA");
    let der = ca.raw_crl(&[(&[0x42], vec![])], &[]);
    // Drop nextUpdate (the second time) from the signed part and sign again.
    let content = tbs_of(&der);
    let mut r2 = Reader::new(&content);
    let mut kept = Vec::new();
    let mut times = 0;
    while !r2.is_empty() {
        let e = r2.read().unwrap();
        if matches!(e.raw[0], UTC_TIME | GENERALIZED_TIME) {
            times += 1;
            if times == 2 {
                continue;
            }
        }
        kept.extend_from_slice(e.raw);
    }
    let der = ca.sign_tbs(tlv(0x30, &kept));
    let t = trust(&[&ca]);
    assert!(read(&der, 5).entries.is_some());
    let out = same(&der, &t, &[], &probes(&[&[0x42]]), CHUNKS).unwrap();
    assert_eq!(out[0].0.next_update, None);

    let rsa = Ca::builder("RSA CA")
        .key(KeyKind::Rsa2048)
        .self_signed()
        .unwrap();
    let t = trust(&[&rsa]);
    let der = rsa.raw_crl(&[(&[0x42], vec![]), (&[0x43, 0x44], vec![])], &[]);
    assert!(
        read(&der, 5).entries.is_some(),
        "RSA PKCS#1 v1.5 is streamed"
    );
    same(&der, &t, &[], &probes(&[&[0x42], &[0x43, 0x44]]), CHUNKS).unwrap();
    let e = same(&forge(&der), &t, &[], &[], CHUNKS).unwrap_err();
    assert_eq!(e.code(), "bad_signature", "{e}");
}

#[test]
fn one_byte_chunks_and_every_split_point() {
    let ca = Ca::new("Split CA");
    let t = trust(&[&ca]);
    let serials: [&[u8]; 3] = [&[0x01], &[0x02, 0x03], &[0x7f; 20]];
    let specs: Vec<RevokedSpec> = serials
        .iter()
        .map(|s| RevokedSpec::key_compromise(s))
        .collect();
    let der = ca.crl(3, &specs, -60, 3600).der().to_vec();
    let p = probes(&serials);
    let whole = same(&der, &t, &[], &p, &[1]).unwrap();
    for at in 0..=der.len() {
        let mut r = StreamReader::new();
        r.feed(&der[..at]);
        r.feed(&der[at..]);
        let s = r.finish();
        assert!(s.entries.is_some(), "split at {at}");
        let got = summary(load_streamed(s, &t, &[], Missing::Retain, now()), &p);
        assert_eq!(got, Ok(whole.clone()), "split at {at}");
    }
}

#[test]
fn refusals_are_the_same_truncated_trailing_forged_and_bad_entries() {
    let ca = Ca::new("Refuse CA");
    let t = trust(&[&ca]);
    let der = ca
        .crl(
            4,
            &[RevokedSpec::new(&[0x42]), RevokedSpec::new(&[0x43; 3])],
            -60,
            3600,
        )
        .der()
        .to_vec();
    // Truncated at every byte, and with a byte too many.
    for cut in 0..der.len() {
        let e = same(&der[..cut], &t, &[], &[], &[1, 5, usize::MAX]).unwrap_err();
        assert_eq!(e.code(), "parse_error", "cut at {cut}: {e}");
    }
    let mut trailing = der.clone();
    trailing.push(0);
    same(&trailing, &t, &[], &[], CHUNKS).unwrap_err();

    // A forged entry: the signature over the digest fails as over the bytes.
    assert_eq!(
        same(&forge(&der), &t, &[], &[], CHUNKS).unwrap_err().code(),
        "bad_signature"
    );
    let e = same(&der, &trust(&[&ca.rekeyed()]), &[], &[], CHUNKS).unwrap_err();
    assert_eq!(e.code(), "bad_signature");
    let e = same(&der, &trust(&[&Ca::new("Other")]), &[], &[], CHUNKS).unwrap_err();
    assert_eq!(e.code(), "untrusted_issuer");

    // Entries that do not parse: an empty serial, a critical unknown extension, a
    // certificateIssuer (indirect), an entry whose length runs past the list.
    let bad_entries: Vec<Vec<(&[u8], Vec<u8>)>> = vec![
        vec![(&[0x01], vec![]), (&[], vec![])],
        vec![(&[0x01], ext(99, true, &[0x05, 0x00]))],
        vec![(&[0x01], ext(29, false, &tlv(0x30, &[])))],
    ];
    for entries in &bad_entries {
        let der = ca.raw_crl(entries, &[]);
        assert!(read(&der, 7).entries.is_some());
        let e = same(&der, &t, &[], &[], CHUNKS).unwrap_err();
        assert!(matches!(e.code(), "parse_error" | "unsupported"), "{e}");
    }
    // Framing errors inside the list: a wrong tag, an indefinite length, a length
    // past the list's end; the list's and enclosing lengths stay consistent.
    for entry in [
        vec![0x31, 0x03, 0x02, 0x01, 0x01],
        vec![0x30, 0x80, 0x02, 0x01, 0x01],
        vec![0x30, 0x09, 0x02, 0x01, 0x01],
        vec![0x30, 0x85, 0x01, 0x00, 0x00, 0x00, 0x00],
        vec![0x30],
    ] {
        let head = tbs_of(&ca.raw_crl(&[], &[]));
        let good = tlv(
            0x30,
            &[tlv(0x02, &[1]), utc_time(time::OffsetDateTime::now_utc())].concat(),
        );
        let list = [good, entry].concat();
        let der = ca.sign_tbs(tlv(0x30, &[head, tlv(0x30, &list)].concat()));
        let e = same(&der, &t, &[], &[], CHUNKS).unwrap_err();
        assert_eq!(e.code(), "parse_error", "{e}");
    }

    // A bad entry in a CRL that is the one in force: kept, not indexed, as before.
    let good = ca.raw_crl(&[(&[0x01], vec![])], &[ext(20, false, &tlv(0x02, &[5]))]);
    let first = load(&good, CrlFormat::Asn1, &t, &[], Missing::Retain, now()).unwrap();
    let bad = ca.raw_crl(&[(&[], vec![])], &[ext(20, false, &tlv(0x02, &[5]))]);
    same(&bad, &t, &first.crls, &[], CHUNKS).unwrap();
    let newer_bad = ca.raw_crl(&[(&[], vec![])], &[ext(20, false, &tlv(0x02, &[6]))]);
    same(&newer_bad, &t, &first.crls, &[], CHUNKS).unwrap_err();
}

#[test]
fn unsupported_signatures_and_pem_are_kept_whole() {
    let ca = Ca::new("Whole CA");
    let crl = ca.crl(1, &[RevokedSpec::new(&[1])], -60, 3600);
    let (der, pem) = (crl.der().to_vec(), crl.pem().unwrap());
    let s = read(pem.as_bytes(), 10);
    assert!(s.entries.is_none());
    assert_eq!(s.bytes, pem.as_bytes());
    let e = load_streamed(s, &trust(&[&ca]), &[], Missing::Retain, now()).unwrap_err();
    assert_eq!(e, Refusal::Parse(ParseError::PemGivenAsDer));
    // An algorithm without a digest-based check here: the file is kept whole.
    let mut other_alg = der.clone();
    let at = other_alg
        .windows(8)
        .position(|w| w == [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02])
        .unwrap();
    other_alg[at + 7] = 0x04; // ecdsa-with-SHA512
    let s = read(&other_alg, 3);
    assert!(s.entries.is_none());
    assert_eq!(s.bytes, other_alg);
}
