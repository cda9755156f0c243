//! From fetched bytes to indexes ready to go in force: parse, verify, compare with the copy
//! in force, index. Pure (no I/O); CPU-heavy for big CRLs, so callers run it off the
//! async executor.
//!
//! CRLs are kept per *slot*: issuer, key, scope (all certificates, user certificates only,
//! CA certificates only) and partition (the Issuing Distribution Point's
//! `distributionPoint`). A CRL only ever replaces the CRL of its own slot, and only with a
//! newer one (RFC 5280 section 5.2.3: CRL numbers increase per issuer and scope), so a user
//! CRL and its CA's ARL, or two partitions, in one file are both kept in force.

use std::io::{Cursor, Read, Seek};
use std::sync::Arc;

use super::archive::{Archive, ArchiveError, MAX_UNPACKED, PEM_START, is_pem, member_crls, no_crl};
use super::index::{CrlIndex, CrlMeta};
use super::parse::{ParseError, ParsedCrl, split};
use super::rfc3339;
use super::stream::{StreamReader, Streamed, StreamedEntries};
use super::verify::{Freshness, MAX_CLOCK_SKEW_SECS, Refusal, Signer, TrustStore, freshness};
use postern_config::CrlFormat;

/// The outcome of loading a file.
#[derive(Debug)]
pub struct Loaded {
    /// The CRLs to put in force for the source (new, kept-as-same, and retained ones).
    pub crls: Vec<Arc<CrlIndex>>,
    /// How many indexes were built (new or newer CRLs).
    pub rebuilt: usize,
    /// Whether the set differs from the one in force.
    pub changed: bool,
    /// CRLs in force that the file no longer has and that are kept in force (issuer, and
    /// partition if any, as text).
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

/// A verified CRL waiting to be compared with the copy in force: its facts, and how to
/// index it (only done when it is new or newer, so an unchanged million-entry CRL is not
/// indexed again at every fetch).
pub struct Candidate<'a> {
    /// Its facts (`entries` not yet known).
    pub meta: CrlMeta,
    build: Box<dyn FnOnce() -> Result<Arc<CrlIndex>, ParseError> + 'a>,
}

impl std::fmt::Debug for Candidate<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Candidate")
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

impl<'a> Candidate<'a> {
    /// A candidate indexed by `build` when needed.
    pub fn new(
        meta: CrlMeta,
        build: impl FnOnce() -> Result<Arc<CrlIndex>, ParseError> + 'a,
    ) -> Self {
        Self {
            meta,
            build: Box::new(build),
        }
    }

    /// A candidate that is already indexed (tests and fuzzing).
    pub fn indexed(index: Arc<CrlIndex>) -> Self {
        Self {
            meta: index.meta.clone(),
            build: Box::new(move || Ok(index)),
        }
    }
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
    if format == CrlFormat::Zip {
        return load_archive(Cursor::new(bytes), trust, in_force, missing, now);
    }
    let ders = split(bytes, format)?;
    let mut parsed = Vec::with_capacity(ders.len());
    for (i, der) in ders.iter().enumerate() {
        parsed.push(ParsedCrl::parse(der, i)?);
    }
    let mut candidates = Vec::with_capacity(parsed.len());
    for crl in &parsed {
        let signer = verified(crl, trust, now)?;
        let meta = CrlMeta::of(crl, &signer);
        candidates.push(Candidate::new(meta, move || CrlIndex::build(crl, &signer)));
    }
    merge(candidates, in_force, missing)
}

/// The CA that signed `crl`, if it is trusted, signed it, and `crl` is not from the future.
fn verified(crl: &ParsedCrl<'_>, trust: &TrustStore, now: i64) -> Result<Signer, Refusal> {
    let signer = trust.verify(crl)?;
    check_time(crl, now)?;
    Ok(signer)
}

/// `crl` is not from the future.
pub(crate) fn check_time(crl: &ParsedCrl<'_>, now: i64) -> Result<(), Refusal> {
    if crl.this_update > now + MAX_CLOCK_SKEW_SECS {
        return Err(Refusal::FromTheFuture {
            issuer: crl.issuer.clone(),
            this_update: rfc3339(crl.this_update),
        });
    }
    Ok(())
}

/// `format: Zip`, member by member, read from `file` (the spooled download, the disk
/// cache's file, or bytes in memory), so neither the archive nor the unpacked CRLs
/// (hundreds of MB for a DoD-sized bundle) are ever held at once:
/// - a member whose stored bytes are those of a member loaded before (its digest is in the
///   `archive_member` of CRLs in force) is not inflated: those CRLs are kept as they are,
///   so a refresh of a bundle costs what its changed members cost;
/// - a DER member is inflated through the stream reader ([`super::stream`]), which indexes
///   its entries as they come and hashes the signed part, and is verified over that
///   digest; a PEM member, or a CRL the stream reader keeps whole, is read whole.
///
/// Refusals come in the order [`split`] + parse + verify would give them: an unusable
/// archive, then the first CRL that does not parse, then the first that does not verify.
pub(crate) fn load_archive<R: Read + Seek>(
    file: R,
    trust: &TrustStore,
    in_force: &[Arc<CrlIndex>],
    missing: Missing,
    now: i64,
) -> Result<Loaded, Refusal> {
    let zip_error = |e: ArchiveError| Refusal::Parse(ParseError::Zip(e.0));
    let mut archive = Archive::open(file).map_err(zip_error)?;
    let mut read = ArchiveRead::default();
    for member in 0..archive.len() {
        let Some(digest) = archive.member_digest(member).map_err(zip_error)? else {
            continue;
        };
        let kept: Vec<&Arc<CrlIndex>> = in_force
            .iter()
            .filter(|ix| ix.meta.archive_member == Some(digest))
            .collect();
        if !kept.is_empty() {
            for ix in kept {
                read.unpacked += ix.meta.der_len as u64;
                read.index += 1;
                read.candidates.push(Candidate::indexed(Arc::clone(ix)));
            }
            continue;
        }
        let Some(mut reader) = archive
            .open_member(member, read.unpacked, MAX_UNPACKED)
            .map_err(zip_error)?
        else {
            continue;
        };
        // Enough of the start to tell PEM text from DER.
        let mut buf = vec![0u8; 64 * 1024];
        let mut n = 0;
        while n < buf.len() && buf[..n].trim_ascii_start().len() < PEM_START.len() {
            match reader.read(&mut buf[n..]).map_err(zip_error)? {
                0 => break,
                got => n += got,
            }
        }
        if is_pem(&buf[..n]) {
            let mut data = buf[..n].to_vec();
            reader.read_to_end(&mut data).map_err(zip_error)?;
            read.unpacked += reader.unpacked;
            let name = reader.name.clone();
            for der in member_crls(&name, data).map_err(zip_error)? {
                read.whole(der, digest, trust, now);
            }
            continue;
        }
        let mut stream = StreamReader::new();
        while n > 0 {
            stream.feed(&buf[..n]);
            n = reader.read(&mut buf).map_err(zip_error)?;
        }
        read.unpacked += reader.unpacked;
        read.streamed(stream.finish(), digest, trust, now);
    }
    if read.index == 0 {
        return Err(zip_error(no_crl()));
    }
    read.finish(in_force, missing)
}

/// What [`load_archive`] (or [`load_streamed`]) has read so far.
#[derive(Default)]
struct ArchiveRead {
    /// Bytes unpacked (the unchanged members count their CRLs' size).
    unpacked: u64,
    /// CRLs seen, for the position in messages.
    index: usize,
    /// The first CRL that did not parse: after it, nothing more is parsed.
    parse_error: Option<ParseError>,
    /// The first CRL that did not verify: after it, CRLs are only parsed.
    refusal: Option<Refusal>,
    candidates: Vec<Candidate<'static>>,
}

impl ArchiveRead {
    /// The position of the next CRL, or `None` once one did not parse (nothing more is
    /// parsed then).
    fn next(&mut self) -> Option<usize> {
        let at = self.index;
        self.index += 1;
        self.parse_error.is_none().then_some(at)
    }

    /// A CRL read whole: parse and verify it; its index is built if [`merge`] takes it.
    fn whole(&mut self, der: Vec<u8>, digest: [u8; 32], trust: &TrustStore, now: i64) {
        let Some(at) = self.next() else { return };
        let crl = match ParsedCrl::parse(&der, at) {
            Ok(crl) => crl,
            Err(e) => return self.parse_error = Some(e),
        };
        if self.refusal.is_some() {
            return;
        }
        let signer = match verified(&crl, trust, now) {
            Ok(s) => s,
            Err(r) => return self.refusal = Some(r),
        };
        let mut meta = CrlMeta::of(&crl, &signer);
        meta.archive_member = Some(digest);
        self.candidates.push(Candidate::new(meta.clone(), move || {
            CrlIndex::build_as(&ParsedCrl::parse(&der, at)?, meta)
        }));
    }

    /// A DER CRL read by the stream reader: its entries are indexed already, and it is
    /// verified over the digest of its signed part.
    fn streamed(&mut self, streamed: Streamed, digest: [u8; 32], trust: &TrustStore, now: i64) {
        match streamed.entries {
            Some(entries) => {
                self.streamed_entries(&streamed.bytes, entries, Some(digest), trust, now)
            }
            // Kept whole by the stream reader (a signature it cannot check over a digest).
            None => self.whole(streamed.bytes, digest, trust, now),
        }
    }

    /// The CRL of a file whose entries were streamed: `skeleton` is the file without
    /// them; `member`, the digest of the archive member it came from (if it did).
    fn streamed_entries(
        &mut self,
        skeleton: &[u8],
        entries: StreamedEntries,
        member: Option<[u8; 32]>,
        trust: &TrustStore,
        now: i64,
    ) {
        let Some(at) = self.next() else { return };
        let ders = match split(skeleton, CrlFormat::Asn1) {
            Ok(ders) => ders,
            Err(e) => return self.parse_error = Some(e),
        };
        let crl = match ParsedCrl::parse(&ders[0], at) {
            Ok(crl) => crl,
            Err(e) => return self.parse_error = Some(e),
        };
        if self.refusal.is_some() {
            return;
        }
        let verified = trust
            .verify_prehashed(&crl, &entries.prehashed)
            .and_then(|signer| check_time(&crl, now).map(|()| signer));
        let signer = match verified {
            Ok(s) => s,
            Err(r) => return self.refusal = Some(r),
        };
        let mut meta = CrlMeta::of(&crl, &signer);
        meta.der_len = entries.der_len;
        meta.archive_member = member;
        let serials = entries.serials;
        self.candidates.push(Candidate::new(meta.clone(), move || {
            Ok(CrlIndex::from_parts(meta, serials?.finish()))
        }));
    }

    /// The outcome of the whole read: its first parse error, else its first refusal,
    /// else what [`merge`] makes of its CRLs.
    fn finish(self, in_force: &[Arc<CrlIndex>], missing: Missing) -> Result<Loaded, Refusal> {
        if let Some(e) = self.parse_error {
            return Err(e.into());
        }
        if let Some(r) = self.refusal {
            return Err(r);
        }
        merge(self.candidates, in_force, missing)
    }
}

/// [`load`] for a `format: Asn1` file read as it downloaded ([`super::stream`]): the same
/// checks in the same order with the same refusals, over the skeleton and the digest of
/// the signed part, and the index built while the body streamed in (kept only if the CRL
/// verifies and is new or newer). A file the stream reader kept whole loads as before.
pub(crate) fn load_streamed(
    streamed: Streamed,
    trust: &TrustStore,
    in_force: &[Arc<CrlIndex>],
    missing: Missing,
    now: i64,
) -> Result<Loaded, Refusal> {
    let Some(entries) = streamed.entries else {
        return load(
            &streamed.bytes,
            CrlFormat::Asn1,
            trust,
            in_force,
            missing,
            now,
        );
    };
    let mut read = ArchiveRead::default();
    read.streamed_entries(&streamed.bytes, entries, None, trust, now);
    read.finish(in_force, missing)
}

/// Compare verified CRLs with those in force, slot by slot (issuer, key, scope,
/// partition): of several CRLs of one slot in the file the newest counts; it replaces the
/// one in force only if it is newer, is the same one (kept, not re-indexed), or refuses
/// the whole file if it is older (a replay). Slots the file lacks are kept or dropped as
/// `missing` says.
pub fn merge(
    candidates: Vec<Candidate<'_>>,
    in_force: &[Arc<CrlIndex>],
    missing: Missing,
) -> Result<Loaded, Refusal> {
    // The newest CRL of each slot in the file, whatever their order.
    let mut newest: Vec<Candidate<'_>> = Vec::with_capacity(candidates.len());
    for c in candidates {
        match newest.iter().position(|n| n.meta.same_slot(&c.meta)) {
            Some(pos) => {
                let n = &newest[pos].meta;
                if freshness(
                    c.meta.crl_number.as_ref(),
                    c.meta.this_update,
                    n.crl_number.as_ref(),
                    n.this_update,
                ) == Freshness::Newer
                {
                    newest[pos] = c;
                }
            }
            None => newest.push(c),
        }
    }
    let mut out: Vec<Arc<CrlIndex>> = Vec::with_capacity(newest.len() + in_force.len());
    let mut rebuilt = 0;
    for c in newest {
        let current = in_force.iter().find(|ix| ix.meta.same_slot(&c.meta));
        let index = match current {
            Some(cur) => match freshness(
                c.meta.crl_number.as_ref(),
                c.meta.this_update,
                cur.meta.crl_number.as_ref(),
                cur.meta.this_update,
            ) {
                Freshness::Older(detail) => {
                    return Err(Refusal::Older {
                        issuer: slot_text(&c.meta),
                        detail,
                    });
                }
                Freshness::Same => Arc::clone(cur),
                Freshness::Newer => {
                    rebuilt += 1;
                    (c.build)()?
                }
            },
            None => {
                rebuilt += 1;
                (c.build)()?
            }
        };
        out.push(index);
    }
    let mut retained = Vec::new();
    if missing == Missing::Retain {
        for old in in_force {
            if !out.iter().any(|ix| ix.meta.same_slot(&old.meta)) {
                retained.push(slot_text(&old.meta));
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

/// The issuer, with the scope and partition when the CRL has them, for messages.
pub(crate) fn slot_text(meta: &CrlMeta) -> String {
    let mut s = meta.issuer.clone();
    match meta.scope.name() {
        "all" => {}
        scope => s.push_str(&format!(" ({scope} only)")),
    }
    if let Some(p) = meta.partition_text() {
        s.push_str(&format!(" (partition {p})"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_testkit::crl::RevokedSpec;
    use postern_testkit::der::{ext, tlv};
    use postern_testkit::pki::Ca;

    fn now() -> i64 {
        crate::crl::unix_now()
    }

    fn trust(cas: &[&Ca]) -> TrustStore {
        let mut t = TrustStore::default();
        for ca in cas {
            t.add_pem(&ca.cert_pem(), "test").unwrap();
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

    #[test]
    fn archive_members_streamed_and_unchanged_members_kept_without_reading() {
        use crate::crl::archive::test_archive as zip;
        let (a, b, c) = (Ca::new("Zip A"), Ca::new("Zip B"), Ca::new("Zip C"));
        let t = trust(&[&a, &b, &c]);
        let many: Vec<Vec<u8>> = (0u32..5000)
            .map(|i| (i + 1).to_be_bytes().to_vec())
            .collect();
        let many: Vec<&[u8]> = many.iter().map(Vec::as_slice).collect();
        let a1 = a.current_crl(1, &many);
        let b1 = b.current_crl(4, &[&[0x0b]]);
        let c1 = postern_testkit::crl::crl_pem(&c.current_crl(9, &[&[0x0c, 0x01]]));
        let first = zip(&[("a.crl", &a1), ("b.crl", &b1), ("c.pem", c1.as_bytes())]);
        let l = load(&first, CrlFormat::Zip, &t, &[], Missing::Retain, now()).unwrap();
        assert_eq!((l.crls.len(), l.rebuilt), (3, 3));
        // The streamed member answers as the same CRL loaded on its own does.
        let alone = load(&a1, CrlFormat::Asn1, &t, &[], Missing::Retain, now()).unwrap();
        let streamed = l
            .crls
            .iter()
            .find(|ix| ix.meta.issuer == alone.crls[0].meta.issuer)
            .unwrap();
        assert_eq!(streamed.meta.entries, 5000);
        assert_eq!(streamed.meta.der_len, a1.len());
        for probe in [
            &[0u8, 0, 0, 1][..],
            &[0, 0, 0x13, 0x88],
            &[0, 0, 0x13, 0x89],
            &[0x0b],
        ] {
            assert_eq!(
                streamed.lookup(probe),
                alone.crls[0].lookup(probe),
                "{probe:?}"
            );
        }
        assert!(l.crls.iter().all(|ix| ix.meta.archive_member.is_some()));

        // A new archive in which only B's member changed: A's and C's indexes are the
        // ones in force (not read again), B's is new.
        let b2 = b.current_crl(5, &[&[0x0b], &[0x0b, 0x02]]);
        let second = zip(&[("a.crl", &a1), ("b.crl", &b2), ("c.pem", c1.as_bytes())]);
        let m = load(&second, CrlFormat::Zip, &t, &l.crls, Missing::Retain, now()).unwrap();
        assert_eq!((m.crls.len(), m.rebuilt, m.changed), (3, 1, true));
        for old in &l.crls {
            let kept = m.crls.iter().any(|ix| Arc::ptr_eq(ix, old));
            let was_b = old.meta.crl_number == Some(4u32.into());
            assert_eq!(kept, !was_b, "{}", old.meta.issuer);
        }
        let new_b = m
            .crls
            .iter()
            .find(|ix| ix.meta.crl_number == Some(5u32.into()))
            .unwrap();
        assert!(new_b.lookup(&[0x0b, 0x02]).is_some());

        // The same archive again changes nothing and builds nothing.
        let n = load(&second, CrlFormat::Zip, &t, &m.crls, Missing::Retain, now()).unwrap();
        assert_eq!((n.rebuilt, n.changed), (0, false));

        // A member whose bytes changed is read again and checked: a forged one is
        // refused even though its name is the same.
        let mut forged = a1.clone();
        let at = forged.len() - 10;
        forged[at] ^= 1;
        let bad = zip(&[("a.crl", &forged), ("b.crl", &b2), ("c.pem", c1.as_bytes())]);
        let e = load(&bad, CrlFormat::Zip, &t, &m.crls, Missing::Retain, now()).unwrap_err();
        assert_eq!(e.code(), "bad_signature", "{e}");
    }
}
