//! Path building for X.509 version 1 client certificates (`tls::v1_path`) and the choice of
//! presented certificates a search considers (`tls::presented`): whatever certificates a
//! client sends, the search returns without panicking and within webpki's budget (each
//! candidate examined spends a path-building call, each signature check a signature,
//! and the counts of work done never exceed what was spent); a larger budget only
//! explores further, so a search that finished within a small budget gives the same
//! answer with the full one; and the considered certificates are some of those presented,
//! in order, at most three per subject.
//!
//! Input: byte 0 = number of trust anchors (0-3), bytes 1-4 = the time (Unix seconds,
//! big-endian), byte 5 = the small budget (path-building calls = 8 x its value), then
//! certificates as (u16 big-endian length, DER): the anchors, the end entity, and the
//! presented intermediates. The seeds in fuzz/seeds/v1_path (the flood of self-made CAs
//! of the attack, a flood named like the anchor, chains that verify, copies, constraints)
//! are written by `POSTERN_WRITE_FUZZ_SEEDS=1 cargo test -p postern-gateway write_v1_path_fuzz_seeds`.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use postern_gateway::tls::TrustAnchors;
use postern_gateway::tls::budget::{BUILD_CHAIN_CALLS, Budget, SIGNATURES, is_exhausted};
use postern_gateway::tls::presented::{MAX_PER_SUBJECT, considered};
use postern_gateway::tls::v1_path::verify_v1_path_within;
use rustls::pki_types::{CertificateDer, UnixTime};

fn certificates(mut data: &[u8]) -> Vec<CertificateDer<'_>> {
    let mut out = Vec::new();
    while let [hi, lo, rest @ ..] = data {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(rest.len());
        out.push(CertificateDer::from(&rest[..len]));
        data = &rest[len..];
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let [anchors, t0, t1, t2, t3, small, rest @ ..] = data else {
        return;
    };
    let now = UnixTime::since_unix_epoch(std::time::Duration::from_secs(u64::from(
        u32::from_be_bytes([*t0, *t1, *t2, *t3]),
    )));
    let certs = certificates(rest);
    let anchors = usize::from(anchors % 4);
    if certs.len() <= anchors {
        return;
    }
    let Ok(trust) = TrustAnchors::new(
        certs[..anchors]
            .iter()
            .map(|c| c.clone().into_owned())
            .collect(),
    ) else {
        return;
    };
    let end_entity = &certs[anchors];
    let presented = &certs[anchors + 1..];
    let algs = rustls::crypto::ring::default_provider()
        .signature_verification_algorithms
        .all;

    let mut budget = Budget::default();
    let (full, work) = verify_v1_path_within(algs, &trust, end_entity, presented, now, &mut budget);
    assert!(work.candidates <= BUILD_CHAIN_CALLS + 1, "{work:?}");
    assert!(work.calls <= work.candidates + 1, "{work:?}");
    assert!(work.signatures <= SIGNATURES, "{work:?}");
    assert_eq!(
        BUILD_CHAIN_CALLS - budget.build_chain_calls,
        work.candidates.min(BUILD_CHAIN_CALLS)
    );
    assert_eq!(SIGNATURES - budget.signatures, work.signatures);
    if let Ok(path) = &full {
        assert!(path.anchor < anchors);
        assert!(path.intermediates.iter().all(|&i| i < presented.len()));
        assert!(path.intermediates.len() <= 6);
    }

    let calls = 8 * usize::from(*small);
    let mut budget = Budget {
        build_chain_calls: calls,
        signatures: SIGNATURES,
    };
    let (limited, work) =
        verify_v1_path_within(algs, &trust, end_entity, presented, now, &mut budget);
    assert!(work.candidates <= calls + 1, "{work:?}");
    match &limited {
        Err(e) if is_exhausted(e) => {}
        finished => assert_eq!(finished, &full, "same answer within a smaller budget"),
    }

    // The certificates a search considers: some of those presented, in order, at most
    // MAX_PER_SUBJECT of one subject.
    let chosen = considered(end_entity, presented);
    let mut from = 0;
    let mut per_subject: HashMap<Vec<u8>, usize> = HashMap::new();
    for c in &chosen {
        let at = presented[from..]
            .iter()
            .position(|p| p.as_ref() == c.as_ref())
            .expect("a considered certificate was presented, in that order");
        from += at + 1;
        let (_, parsed) = x509_parser::parse_x509_certificate(c).expect("considered ones parse");
        let n = per_subject
            .entry(parsed.subject().as_raw().to_vec())
            .or_default();
        *n += 1;
        assert!(*n <= MAX_PER_SUBJECT);
    }
    let (_, _) = verify_v1_path_within(
        algs,
        &trust,
        end_entity,
        &chosen,
        now,
        &mut Budget::default(),
    );
});
