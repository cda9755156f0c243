//! The CRL loader's and checker's decisions: a sequence of loads (files of CRLs of two
//! issuers, two keys, three scopes and two partitions, numbered or dated, current or
//! stale, including replays of older files) into two sources, with revocation checks of
//! certificates in between. Checked at every step:
//! - a CRL in force is never replaced by an older one of the same issuer, key, scope and
//!   partition; a refused file changes nothing; a file that lacks a slot keeps it;
//! - there is never more than one CRL per slot in force;
//! - every check answers what a direct transcription of the rules (docs/crl.md, "What a
//!   handshake does") answers: revoked, good, stale, missing (and why) or no CRL.
#![no_main]

use std::collections::BTreeSet;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use postern_config::protocol::ServedBy;
use postern_config::{
    CrlFailurePolicy, CrlFormat, CrlScope, CrlSource, DEFAULT_CRL_MAX_SIZE, Duration, GatewayConfig,
};
use postern_gateway::crl::parse::IdpScope;
use postern_gateway::crl::verify::{Freshness, freshness};
use postern_gateway::crl::{
    Candidate, CrlIndex, CrlMeta, CrlStore, Install, Missing, merge, unix_now,
};
use postern_gateway::tls::{CheckedCertificate, DpName, RevocationChecker, RevocationStatus};

const ISSUERS: [&[u8]; 2] = [b"\x30\x03issuer-a", b"\x30\x03issuer-b"];
const KEYS: [&[u8]; 2] = [b"key-1", b"key-2"];
const PARTITIONS: [&str; 2] = ["URI:http://crl.test/p1.crl", "URI:http://crl.test/p2.crl"];
const SOURCES: [&str; 2] = ["a", "b"];
const SCOPES: [CrlScope; 2] = [CrlScope::InboundSmtpTls, CrlScope::OutboundSmtpTls];
const REMOVE_FROM_CRL: u8 = 8;

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*b)
    }
}

/// A source as the model sees it.
struct Source {
    enabled: bool,
    closed: bool,
    scopes: [bool; 2],
    /// Issuers it has had CRLs of in force.
    known: BTreeSet<&'static [u8]>,
}

fn config(sources: &[Source]) -> GatewayConfig {
    let mut c = GatewayConfig::default();
    for (name, s) in SOURCES.iter().zip(sources) {
        c.crl_sources.insert(
            (*name).to_owned(),
            CrlSource {
                enabled: s.enabled,
                format: CrlFormat::Pem,
                primary_url: Some(format!("http://127.0.0.1:1/{name}.crl")),
                secondary_url: None,
                discovery: None,
                interval: Duration::from_secs(3600),
                applies_to: SCOPES
                    .iter()
                    .zip(s.scopes)
                    .filter(|(_, on)| *on)
                    .map(|(s, _)| *s)
                    .collect(),
                failure_policy: if s.closed {
                    CrlFailurePolicy::Closed
                } else {
                    CrlFailurePolicy::Open
                },
                max_size: DEFAULT_CRL_MAX_SIZE,
            },
        );
    }
    c
}

fn partition(bits: u8) -> Option<Vec<DpName>> {
    match bits & 3 {
        0 => None,
        1 => Some(vec![DpName::new(PARTITIONS[0])]),
        2 => Some(vec![DpName::new(PARTITIONS[1])]),
        _ => Some(PARTITIONS.iter().map(|p| DpName::new(*p)).collect()),
    }
}

/// What the model knows of a CRL: its revoked entries (serial, reason).
type Entries = Vec<(u8, Option<u8>)>;

/// One CRL from 3 bytes (+ 1 per entry), with its entries.
fn crl(input: &mut Input<'_>) -> Option<(Arc<CrlIndex>, Entries)> {
    let a = input.byte()?;
    let b = input.byte()?;
    let c = input.byte()?;
    let issuer = ISSUERS[usize::from(a & 1)];
    let key = match (a >> 1) & 3 {
        0 => None,
        k => Some(KEYS[usize::from(k & 1)]),
    };
    let mut meta = CrlMeta::synthetic(issuer, key);
    meta.scope = match (a >> 3) & 3 {
        1 => IdpScope {
            only_user_certs: true,
            only_ca_certs: false,
        },
        2 => IdpScope {
            only_user_certs: false,
            only_ca_certs: true,
        },
        _ => IdpScope::default(),
    };
    meta.partition = partition(a >> 5);
    if b & 0x80 != 0 {
        meta.crl_number = Some(u64::from(b & 7).into());
    }
    meta.this_update = 1_000 + 100 * i64::from((b >> 3) & 7);
    meta.next_update = match (b >> 6) & 1 {
        0 => Some(unix_now() + 86_400),
        _ => Some(1),
    };
    let mut entries = Entries::new();
    for _ in 0..(c & 3) {
        let e = input.byte()?;
        let reason = match e >> 6 {
            0 => None,
            1 => Some(1),
            2 => Some(REMOVE_FROM_CRL),
            _ => Some(6),
        };
        entries.push(((e & 7) + 1, reason));
    }
    let serials: Vec<(Vec<u8>, Option<u8>)> = entries.iter().map(|(s, r)| (vec![*s], *r)).collect();
    Some((CrlIndex::from_serials(meta, &serials), entries))
}

/// The model's answer, as a comparable value.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    NoCrl,
    Good,
    Revoked,
    Stale,
    Missing(&'static str),
}

fn answer(status: &RevocationStatus) -> Answer {
    match status {
        RevocationStatus::NoCrl => Answer::NoCrl,
        RevocationStatus::Good => Answer::Good,
        RevocationStatus::Revoked { .. } => Answer::Revoked,
        RevocationStatus::Stale { .. } => Answer::Stale,
        RevocationStatus::Missing { why, .. } => Answer::Missing(why.code()),
    }
}

fn covers(m: &CrlMeta, cert: &CheckedCertificate<'_>) -> bool {
    let scope_ok = if cert.is_ca {
        !m.scope.only_user_certs
    } else {
        !m.scope.only_ca_certs
    };
    let partition_ok = match &m.partition {
        None => true,
        Some(names) => names.iter().any(|n| cert.distribution_points.contains(n)),
    };
    scope_ok && partition_ok
}

/// Listed as revoked: an entry for the serial other than `removeFromCRL`.
fn lists(serial: &[u8], entries: &Entries) -> bool {
    entries
        .iter()
        .any(|(s, r)| [*s] == serial && *r != Some(REMOVE_FROM_CRL))
}

/// The rules, written out plainly.
fn model(
    sources: &[Source],
    in_force: &[Vec<(Arc<CrlIndex>, Entries)>],
    scope: usize,
    cert: &CheckedCertificate<'_>,
    now: i64,
) -> Answer {
    let applies = |s: &Source| s.enabled && s.scopes[scope];
    let mut crls = Vec::new();
    for (s, held) in sources.iter().zip(in_force) {
        if applies(s) {
            for (ix, entries) in held {
                if *ix.meta.issuer_der == *cert.issuer_der {
                    crls.push((ix, entries));
                }
            }
        }
    }
    if crls.is_empty() {
        for (s, held) in sources.iter().zip(in_force) {
            if applies(s)
                && s.closed
                && s.known.contains(cert.issuer_der)
                && !held
                    .iter()
                    .any(|(ix, _)| *ix.meta.issuer_der == *cert.issuer_der)
            {
                return Answer::Missing("no_longer_in_force");
            }
        }
        if sources
            .iter()
            .any(|s| applies(s) && s.closed && s.known.is_empty())
        {
            return Answer::Missing("not_loaded");
        }
        return Answer::NoCrl;
    }
    let keyed = cert.authority_key_id.filter(|k| {
        crls.iter()
            .any(|(ix, _)| ix.meta.key_id.as_deref() == Some(*k))
    });
    let candidates: Vec<_> = crls
        .into_iter()
        .filter(|(ix, _)| keyed.is_none() || ix.meta.key_id.as_deref() == keyed)
        .collect();
    if candidates
        .iter()
        .any(|(_, entries)| lists(cert.serial, entries))
    {
        return Answer::Revoked;
    }
    let covering: Vec<_> = candidates
        .iter()
        .filter(|(ix, _)| covers(&ix.meta, cert))
        .collect();
    if covering.iter().any(|(ix, _)| !ix.meta.is_stale(now)) {
        Answer::Good
    } else if !covering.is_empty() {
        Answer::Stale
    } else {
        Answer::Missing("not_covered")
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let Some(setup) = input.byte() else { return };
    let mut sources: Vec<Source> = (0..2)
        .map(|i| {
            let bits = setup >> (4 * i);
            Source {
                enabled: bits & 1 == 0,
                closed: bits & 2 == 0,
                scopes: [bits & 4 == 0, bits & 8 == 0],
                known: BTreeSet::new(),
            }
        })
        .collect();
    let store = CrlStore::new();
    store.configure(&config(&sources));
    // What the model believes each source holds: the index and its entries.
    let mut held: Vec<Vec<(Arc<CrlIndex>, Entries)>> = vec![Vec::new(), Vec::new()];

    while let Some(op) = input.byte() {
        match op & 3 {
            // Load a file of 1 to 4 CRLs into a source.
            0 | 1 => {
                let source = usize::from((op >> 2) & 1);
                let name = SOURCES[source];
                let mut file = Vec::new();
                for _ in 0..=((op >> 3) & 3) {
                    let Some(one) = crl(&mut input) else { return };
                    file.push(one);
                }
                let (in_force, missing) = store.in_force(name);
                assert_eq!(missing, Missing::Retain);
                let candidates = file
                    .iter()
                    .map(|(ix, _)| Candidate::indexed(Arc::clone(ix)))
                    .collect();
                let Ok(loaded) = merge(candidates, &in_force, missing) else {
                    // Refused (a replay): nothing changes.
                    let (after, _) = store.in_force(name);
                    assert_eq!(after.len(), in_force.len());
                    continue;
                };
                // At most one CRL per slot, none older than the one it replaces, every
                // slot in force still there.
                for (i, a) in loaded.crls.iter().enumerate() {
                    for b in &loaded.crls[i + 1..] {
                        assert!(!a.meta.same_slot(&b.meta), "two CRLs of one slot");
                    }
                }
                for old in &in_force {
                    let new = loaded
                        .crls
                        .iter()
                        .find(|n| n.meta.same_slot(&old.meta))
                        .expect("a slot in force was dropped");
                    let f = freshness(
                        new.meta.crl_number.as_ref(),
                        new.meta.this_update,
                        old.meta.crl_number.as_ref(),
                        old.meta.this_update,
                    );
                    assert!(
                        !matches!(f, Freshness::Older(_)),
                        "an older CRL replaced a newer one"
                    );
                }
                // Each CRL in force came from this file or was in force before.
                let entries_of = |ix: &Arc<CrlIndex>| -> Entries {
                    file.iter()
                        .chain(held[source].iter())
                        .find(|(f, _)| Arc::ptr_eq(f, ix))
                        .map(|(_, e)| e.clone())
                        .expect("a CRL from nowhere is in force")
                };
                let (_, generation) = match store.spec(name) {
                    Some(s) => s,
                    None => {
                        // A disabled source takes no installs from its (stopped) fetcher.
                        continue;
                    }
                };
                let crls = loaded.crls.clone();
                let now_held: Vec<(Arc<CrlIndex>, Entries)> = crls
                    .iter()
                    .map(|ix| (Arc::clone(ix), entries_of(ix)))
                    .collect();
                assert!(store.install(
                    name,
                    generation,
                    Install {
                        loaded,
                        served_by: ServedBy::Primary,
                        url: "http://127.0.0.1:1/".into(),
                        from_disk: false,
                        at: 0,
                    },
                ));
                for ix in &crls {
                    let issuer = ISSUERS
                        .iter()
                        .find(|i| ***i == *ix.meta.issuer_der)
                        .expect("known issuer");
                    sources[source].known.insert(*issuer);
                }
                held[source] = now_held;
            }
            // A failed attempt: changes no answer.
            2 => {
                let name = SOURCES[usize::from((op >> 2) & 1)];
                if let Some((_, g)) = store.spec(name) {
                    store.attempt_failed(name, g);
                }
            }
            // Check a certificate.
            _ => {
                let Some(c) = input.byte() else { return };
                let scope = usize::from((op >> 2) & 1);
                let names: Vec<DpName> = match (c >> 5) & 3 {
                    0 => vec![],
                    1 => vec![DpName::new(PARTITIONS[0])],
                    2 => vec![DpName::new(PARTITIONS[1])],
                    _ => vec![DpName::new("URI:http://crl.test/other.crl")],
                };
                let serial = [(c & 7) + 1];
                let cert = CheckedCertificate {
                    issuer_der: ISSUERS[usize::from((op >> 3) & 1)],
                    authority_key_id: match (op >> 4) & 3 {
                        0 => None,
                        3 => Some(b"key-unknown".as_slice()),
                        k => Some(KEYS[usize::from(k - 1)]),
                    },
                    serial: &serial,
                    is_ca: c & 8 != 0,
                    distribution_points: names,
                };
                let got = store.check_certificate(SCOPES[scope], &cert);
                let want = model(&sources, &held, scope, &cert, unix_now());
                assert_eq!(answer(&got), want, "{cert:?}");
            }
        }
    }
});
