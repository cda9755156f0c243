//! From fetched bytes to indexes ready to go in force: parse, verify, compare with the copy
//! in force, index. Pure (no I/O); CPU-heavy for big CRLs, so callers run it off the
//! async executor.

use std::sync::Arc;

use super::index::CrlIndex;
use super::parse::{ParsedCrl, split};
use super::rfc3339;
use super::verify::{Freshness, MAX_CLOCK_SKEW_SECS, Refusal, TrustStore, freshness};
use crate::config::CrlFormat;

/// The outcome of loading a file.
#[derive(Debug)]
pub struct Loaded {
    /// The CRLs to put in force for the source (new, kept-as-same, and retained ones).
    pub crls: Vec<Arc<CrlIndex>>,
    /// How many indexes were built (new or newer CRLs).
    pub rebuilt: usize,
    /// Whether the set differs from the one in force.
    pub changed: bool,
    /// Issuers of CRLs in force that the file no longer has and that are kept in force.
    pub retained: Vec<String>,
}

/// What to do with CRLs in force that the new file does not have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missing {
    /// Keep them (a file that drops an issuer must not silently switch its checks off).
    Retain,
    /// Drop them (the source itself changed: a new URL or format).
    Drop,
}

/// Parse, verify and index `bytes`. Any refusal refuses the whole file.
pub fn load(
    bytes: &[u8],
    format: CrlFormat,
    trust: &TrustStore,
    in_force: &[Arc<CrlIndex>],
    missing: Missing,
    now: i64,
) -> Result<Loaded, Refusal> {
    let ders = split(bytes, format)?;
    let mut parsed = Vec::with_capacity(ders.len());
    for (i, der) in ders.iter().enumerate() {
        parsed.push(ParsedCrl::parse(der, i)?);
    }
    let mut out: Vec<Arc<CrlIndex>> = Vec::with_capacity(parsed.len());
    let mut rebuilt = 0;
    for crl in &parsed {
        let signer = trust.verify(crl)?;
        if crl.this_update > now + MAX_CLOCK_SKEW_SECS {
            return Err(Refusal::FromTheFuture {
                issuer: crl.issuer.clone(),
                this_update: rfc3339(crl.this_update),
            });
        }
        let key_id = crl.authority_key_id.or(signer.key_id.as_deref());
        let same_key = |ix: &CrlIndex| {
            *ix.meta.issuer_der == *crl.issuer_der && ix.meta.key_id.as_deref() == key_id
        };
        // Two CRLs for the same issuer and key in one file: keep the newer.
        if let Some(pos) = out.iter().position(|ix| same_key(ix)) {
            let m = &out[pos].meta;
            if freshness(
                crl.crl_number.as_ref(),
                crl.this_update,
                m.crl_number.as_ref(),
                m.this_update,
            ) != Freshness::Newer
            {
                continue;
            }
        }
        let current = in_force.iter().find(|ix| same_key(ix));
        let index = match current {
            Some(cur) => match freshness(
                crl.crl_number.as_ref(),
                crl.this_update,
                cur.meta.crl_number.as_ref(),
                cur.meta.this_update,
            ) {
                Freshness::Older(detail) => {
                    return Err(Refusal::Older {
                        issuer: crl.issuer.clone(),
                        detail,
                    });
                }
                Freshness::Same => Arc::clone(cur),
                Freshness::Newer => {
                    rebuilt += 1;
                    CrlIndex::build(crl, &signer)?
                }
            },
            None => {
                rebuilt += 1;
                CrlIndex::build(crl, &signer)?
            }
        };
        match out.iter().position(|ix| same_key(ix)) {
            Some(pos) => out[pos] = index,
            None => out.push(index),
        }
    }
    let mut retained = Vec::new();
    if missing == Missing::Retain {
        for old in in_force {
            let present = out.iter().any(|ix| {
                ix.meta.issuer_der == old.meta.issuer_der && ix.meta.key_id == old.meta.key_id
            });
            if !present {
                retained.push(old.meta.issuer.clone());
                out.push(Arc::clone(old));
            }
        }
    }
    let changed = out.len() != in_force.len()
        || out
            .iter()
            .any(|n| !in_force.iter().any(|o| Arc::ptr_eq(n, o)));
    Ok(Loaded {
        crls: out,
        rebuilt,
        changed,
        retained,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crl::testpki::{Ca, RevokedSpec, ext, tlv};

    fn now() -> i64 {
        crate::crl::unix_now()
    }

    fn trust(cas: &[&Ca]) -> TrustStore {
        let mut t = TrustStore::default();
        for ca in cas {
            t.add_pem(&ca.pem(), "test").unwrap();
        }
        t
    }

    #[test]
    fn loads_der_and_answers_lookups() {
        let ca = Ca::new("Load CA");
        let der = ca
            .crl(3, &[RevokedSpec::new(&[0x0a, 0x0b])], -60, 3600)
            .der()
            .to_vec();
        let l = load(
            &der,
            CrlFormat::Asn1,
            &trust(&[&ca]),
            &[],
            Missing::Retain,
            now(),
        )
        .unwrap();
        assert_eq!(l.crls.len(), 1);
        assert_eq!(l.rebuilt, 1);
        assert!(l.changed);
        let ix = &l.crls[0];
        assert_eq!(ix.meta.entries, 1);
        assert_eq!(ix.meta.key_id.as_deref(), Some(ca.key_id().as_slice()));
        assert!(ix.lookup(&[0x0a, 0x0b]).is_some());
        assert!(ix.lookup(&[0x0a]).is_none());
    }

    #[test]
    fn newer_replaces_same_is_kept_older_is_refused() {
        let ca = Ca::new("Seq CA");
        let t = trust(&[&ca]);
        let v5 = ca.crl(5, &[], -60, 3600).der().to_vec();
        let first = load(&v5, CrlFormat::Asn1, &t, &[], Missing::Retain, now()).unwrap();
        let again = load(
            &v5,
            CrlFormat::Asn1,
            &t,
            &first.crls,
            Missing::Retain,
            now(),
        )
        .unwrap();
        assert_eq!(again.rebuilt, 0);
        assert!(!again.changed);
        assert!(Arc::ptr_eq(&again.crls[0], &first.crls[0]));
        let v4 = ca.crl(4, &[], -30, 3600).der().to_vec();
        let e = load(
            &v4,
            CrlFormat::Asn1,
            &t,
            &first.crls,
            Missing::Retain,
            now(),
        )
        .unwrap_err();
        assert_eq!(e.code(), "older_than_in_force", "{e}");
        let v6 = ca
            .crl(6, &[RevokedSpec::new(&[1])], -30, 3600)
            .der()
            .to_vec();
        let newer = load(
            &v6,
            CrlFormat::Asn1,
            &t,
            &first.crls,
            Missing::Retain,
            now(),
        )
        .unwrap();
        assert_eq!(newer.rebuilt, 1);
        assert_eq!(newer.crls[0].meta.entries, 1);
    }

    #[test]
    fn pem_bundle_refused_whole_when_one_crl_is_bad() {
        let a = Ca::new("A");
        let b = Ca::new("B");
        let t = trust(&[&a, &b]);
        let good = format!(
            "{}{}",
            a.crl(1, &[], -60, 3600).pem().unwrap(),
            b.crl(1, &[], -60, 3600).pem().unwrap()
        );
        let l = load(
            good.as_bytes(),
            CrlFormat::Pem,
            &t,
            &[],
            Missing::Retain,
            now(),
        )
        .unwrap();
        assert_eq!(l.crls.len(), 2);
        let forged = format!(
            "{}{}",
            a.crl(2, &[], -60, 3600).pem().unwrap(),
            b.rekeyed().crl(2, &[], -60, 3600).pem().unwrap()
        );
        let e = load(
            forged.as_bytes(),
            CrlFormat::Pem,
            &t,
            &l.crls,
            Missing::Retain,
            now(),
        )
        .unwrap_err();
        assert_eq!(e.code(), "bad_signature");

        // A file that drops B keeps B's copy in force unless the source itself changed.
        let only_a = a.crl(3, &[], -60, 3600).pem().unwrap();
        let kept = load(
            only_a.as_bytes(),
            CrlFormat::Pem,
            &t,
            &l.crls,
            Missing::Retain,
            now(),
        )
        .unwrap();
        assert_eq!(kept.crls.len(), 2);
        assert_eq!(kept.retained, vec!["CN=B".to_string()]);
        let dropped = load(
            only_a.as_bytes(),
            CrlFormat::Pem,
            &t,
            &l.crls,
            Missing::Drop,
            now(),
        )
        .unwrap();
        assert_eq!(dropped.crls.len(), 1);
    }

    #[test]
    fn refuses_future_and_unsupported() {
        let ca = Ca::new("Future CA");
        let t = trust(&[&ca]);
        let der = ca.crl(1, &[], 3600, 7200).der().to_vec();
        let e = load(&der, CrlFormat::Asn1, &t, &[], Missing::Retain, now()).unwrap_err();
        assert_eq!(e.code(), "future_this_update");

        let delta = ca.raw_crl(&[], &[ext(27, true, &tlv(0x02, &[1]))]);
        let e = load(&delta, CrlFormat::Asn1, &t, &[], Missing::Retain, now()).unwrap_err();
        assert_eq!(e.code(), "unsupported");
        assert!(e.to_string().contains("delta CRL"), "{e}");

        let unknown_critical = ca.raw_crl(&[], &[ext(99, true, &[0x05, 0x00])]);
        let e = load(
            &unknown_critical,
            CrlFormat::Asn1,
            &t,
            &[],
            Missing::Retain,
            now(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("2.5.29.99"), "{e}");

        let indirect_entry = ca.raw_crl(&[(&[7], ext(29, true, &tlv(0x30, &[])))], &[]);
        let e = load(
            &indirect_entry,
            CrlFormat::Asn1,
            &t,
            &[],
            Missing::Retain,
            now(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("certificateIssuer"), "{e}");

        let critical_entry_ext = ca.raw_crl(&[(&[7], ext(98, true, &[0x05, 0x00]))], &[]);
        let e = load(
            &critical_entry_ext,
            CrlFormat::Asn1,
            &t,
            &[],
            Missing::Retain,
            now(),
        )
        .unwrap_err();
        assert_eq!(e.code(), "unsupported");

        // Non-critical unknown extensions are fine.
        let fine = ca.raw_crl(
            &[(&[7], ext(98, false, &[0x05, 0x00]))],
            &[ext(99, false, &[0x05, 0x00])],
        );
        let l = load(&fine, CrlFormat::Asn1, &t, &[], Missing::Retain, now()).unwrap();
        assert!(l.crls[0].lookup(&[7]).is_some());
        // Without an Authority Key Identifier the signer's key id is used.
        assert_eq!(
            l.crls[0].meta.key_id.as_deref(),
            Some(ca.key_id().as_slice())
        );
    }
}
