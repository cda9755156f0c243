//! Reading a `format: Asn1` CRL while its body downloads, so the file is never held whole.
//!
//! The bytes are fed in as they arrive, in chunks of any size. Everything but the content
//! of `revokedCertificates` (a few hundred bytes: the header, the CRL extensions and the
//! signature) is kept, as a *skeleton*; the revoked entries are parsed one at a time
//! straight into the index builder and then dropped. The signed part (`tbsCertList`) is
//! hashed as it passes, for a signature check over the digest ([`super::prehash`]).
//!
//! Refusals stay exactly those of the in-memory path: the skeleton is the file with the
//! entries cut out and the lengths that enclosed them (CertificateList, tbsCertList,
//! revokedCertificates) shortened by the bytes cut, so every length check and every header
//! field reads the same in it as in the whole file, and [`super::parse::ParsedCrl`] parses
//! it with the same code and messages. The first error among the entries is kept and
//! reported where the in-memory path reports it: when the CRL is indexed.
//!
//! Files the streaming reader does not take apart are kept whole and loaded as before:
//! when the revoked list cannot be located with certainty from the header, the signature
//! algorithm has no digest-based check here (Ed25519, RSA-PSS, SHA-1), or the file is not
//! DER at all (PEM text given as `Asn1`).

use std::sync::Arc;

use super::index::{CrlIndex, CrlMeta, SerialSetBuilder};
use super::load::{Candidate, Loaded, Missing, check_time, load, merge};
use super::parse::{ParseError, ParsedCrl, RevokedEntry, first_entry, split};
use super::prehash::{Hasher, Prehashed};
use super::verify::{Refusal, TrustStore};
use postern_config::CrlFormat;

/// Stop looking for the revoked list once this much of a file is header.
const MAX_HEADER: usize = 1024 * 1024;

const SEQUENCE: u8 = 0x30;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// A DER length field: where it is in the file, its value and its size.
#[derive(Clone, Copy, Debug)]
struct Length {
    /// Offset of the first length byte.
    at: usize,
    /// Bytes of the length field (1 for the short form).
    size: usize,
    /// The value.
    value: usize,
}

/// Where a file is being read.
enum Phase {
    /// Reading the header; the revoked list not found yet.
    Header,
    /// Inside the revoked entries.
    Entries(Box<Cut>),
    /// After the revoked list (CRL extensions, signature): kept in the skeleton.
    Tail(Box<Cut>),
    /// Kept whole: loaded as before.
    Whole,
}

/// The revoked list being streamed.
struct Cut {
    /// Lengths of CertificateList, tbsCertList and revokedCertificates.
    lengths: [Length; 3],
    /// Offset in the file where the signed part ends.
    tbs_end: usize,
    /// Bytes of the revoked list's content left to read.
    left: usize,
    /// Bytes of it read (cut out of the skeleton).
    cut: usize,
    /// Hashes the signed part.
    hasher: Hasher,
    /// An entry split across chunks.
    partial: Vec<u8>,
    /// The index being built.
    builder: SerialSetBuilder,
    /// The first entry that did not parse (the rest of the list is then skipped).
    error: Option<ParseError>,
}

/// Feeds a CRL file through, chunk by chunk.
pub(crate) struct StreamReader {
    skeleton: Vec<u8>,
    /// Bytes fed so far.
    pos: usize,
    phase: Phase,
}

/// A file read through [`StreamReader`].
pub(crate) struct Streamed {
    /// The file, or its skeleton when the entries were streamed.
    pub bytes: Vec<u8>,
    /// When the entries were streamed: what was read of them.
    pub entries: Option<StreamedEntries>,
}

/// The streamed revoked entries of a [`Streamed`] file.
pub(crate) struct StreamedEntries {
    /// Size of the whole file.
    pub der_len: usize,
    /// Digest of the signed part.
    pub prehashed: Prehashed,
    /// The index builder, or the first entry that did not parse.
    pub serials: Result<SerialSetBuilder, ParseError>,
}

impl Default for StreamReader {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamReader {
    /// Ready for the first byte.
    pub(crate) fn new() -> Self {
        Self {
            skeleton: Vec::new(),
            pos: 0,
            phase: Phase::Header,
        }
    }

    /// Read the next chunk of the file.
    pub(crate) fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match &mut self.phase {
                Phase::Whole => {
                    self.skeleton.extend_from_slice(data);
                    self.pos += data.len();
                    return;
                }
                Phase::Header => {
                    // Keep at most what completes the header, so the rest of the chunk
                    // goes to the entries once the revoked list is found.
                    self.skeleton.extend_from_slice(data);
                    self.pos += data.len();
                    let fed = data.len();
                    data = &[];
                    match locate(&self.skeleton) {
                        Located::NeedMore if self.skeleton.len() < MAX_HEADER => {}
                        Located::NeedMore | Located::NotStreamable => self.phase = Phase::Whole,
                        Located::At {
                            content,
                            lengths,
                            tbs_start,
                            tbs_end,
                            hasher,
                        } => {
                            // Give back what follows the revoked list's header.
                            let extra = self.skeleton.split_off(content);
                            self.pos -= extra.len();
                            let mut hasher = hasher;
                            hasher.update(&self.skeleton[tbs_start..]);
                            self.phase = Phase::Entries(Box::new(Cut {
                                lengths,
                                tbs_end,
                                left: lengths[2].value,
                                cut: 0,
                                hasher,
                                partial: Vec::new(),
                                builder: SerialSetBuilder::default(),
                                error: None,
                            }));
                            debug_assert!(extra.len() <= fed);
                            self.feed(&extra);
                        }
                    }
                }
                Phase::Entries(cut) => {
                    let n = data.len().min(cut.left);
                    let (mine, rest) = data.split_at(n);
                    cut.hasher.update(mine);
                    cut.entries(mine);
                    cut.left -= n;
                    cut.cut += n;
                    self.pos += n;
                    data = rest;
                    if cut.left == 0 {
                        cut.end_of_list();
                        let Phase::Entries(cut) = std::mem::replace(&mut self.phase, Phase::Whole)
                        else {
                            unreachable!("in the entries phase")
                        };
                        self.phase = Phase::Tail(cut);
                    }
                }
                Phase::Tail(cut) => {
                    let signed = cut.tbs_end.saturating_sub(self.pos).min(data.len());
                    cut.hasher.update(&data[..signed]);
                    self.skeleton.extend_from_slice(data);
                    self.pos += data.len();
                    return;
                }
            }
        }
    }

    /// The file has ended.
    pub(crate) fn finish(self) -> Streamed {
        let mut bytes = self.skeleton;
        let cut = match self.phase {
            Phase::Header | Phase::Whole => {
                return Streamed {
                    bytes,
                    entries: None,
                };
            }
            Phase::Entries(mut cut) => {
                // Cut short inside the list: the lengths no longer fit the file, and the
                // skeleton says so just as the whole file would.
                cut.end_of_list();
                cut
            }
            Phase::Tail(cut) => cut,
        };
        let cut = *cut;
        for l in cut.lengths {
            shorten(&mut bytes, l, cut.cut);
        }
        Streamed {
            bytes,
            entries: Some(StreamedEntries {
                der_len: self.pos,
                prehashed: cut.hasher.finish(),
                serials: match cut.error {
                    Some(e) => Err(e),
                    None => Ok(cut.builder),
                },
            }),
        }
    }
}

impl Cut {
    /// Parse the entries in `data` (the next bytes of the list's content; `self.left`
    /// still counts them). An entry split across chunks waits in `partial`.
    fn entries(&mut self, mut data: &[u8]) {
        // Bytes of the list from the start of `data` on.
        let mut left = self.left;
        while self.error.is_none() {
            if self.partial.is_empty() {
                if data.is_empty() {
                    return;
                }
                match extent(data, left) {
                    Extent::Entry(n) if data.len() >= n => {
                        self.entry(&data[..n]);
                        data = &data[n..];
                        left -= n;
                    }
                    Extent::Bad => {
                        self.error = Some(framing_error(&data[..data.len().min(left)]));
                        return;
                    }
                    _ => {
                        self.partial.extend_from_slice(data);
                        return;
                    }
                }
            } else {
                match extent(&self.partial, left + self.partial.len()) {
                    Extent::Entry(n) if self.partial.len() >= n => {
                        let entry: Vec<u8> = self.partial.drain(..n).collect();
                        self.entry(&entry);
                    }
                    Extent::Bad => return self.bad(),
                    Extent::Entry(n) | Extent::Need(n) => {
                        if data.is_empty() {
                            return;
                        }
                        let take = (n - self.partial.len()).min(data.len());
                        self.partial.extend_from_slice(&data[..take]);
                        data = &data[take..];
                        left -= take;
                    }
                }
            }
        }
    }

    fn entry(&mut self, der: &[u8]) {
        match first_entry(der, 0) {
            Ok(e) => self.push(&e),
            Err(e) => self.error = Some(e),
        }
    }

    fn push(&mut self, e: &RevokedEntry<'_>) {
        self.builder.push(e);
    }

    /// The entry at the start of `partial` is not well framed: the in-memory reader, given
    /// the same first bytes, says why.
    fn bad(&mut self) {
        let partial = std::mem::take(&mut self.partial);
        self.error = Some(framing_error(&partial));
    }

    /// The list has ended (or the file has): an entry still incomplete is malformed.
    fn end_of_list(&mut self) {
        if self.error.is_none() && !self.partial.is_empty() {
            self.bad();
        }
    }
}

/// The in-memory reader's error for an entry starting with `head` (at most the rest of
/// the list): it reads the same bytes and stops at the same one.
fn framing_error(head: &[u8]) -> ParseError {
    let head = &head[..head.len().min(HEADER_MAX)];
    match first_entry(head, 0) {
        Err(e) => e,
        // Unreachable: `extent` only calls an entry bad where the reader fails too.
        Ok(_) => ParseError::Malformed {
            index: 0,
            reason: "revoked certificate entry: malformed DER: element longer than its container"
                .into(),
        },
    }
}

/// The longest tag and length of an entry (tag, 0x84, four length bytes).
const HEADER_MAX: usize = 6;

/// How much of an entry is known from its first bytes.
enum Extent {
    /// Read at least this many bytes before deciding.
    Need(usize),
    /// The entry is this many bytes, all inside the list.
    Entry(usize),
    /// Not a well-framed entry inside the list.
    Bad,
}

/// The extent of the entry starting at `buf`, `left` bytes before the list ends.
fn extent(buf: &[u8], left: usize) -> Extent {
    let need = HEADER_MAX.min(left);
    if buf.len() < need {
        return Extent::Need(need);
    }
    match header(buf) {
        Some((SEQUENCE, hdr, len)) if hdr <= left && len <= left - hdr => Extent::Entry(hdr + len),
        _ => Extent::Bad,
    }
}

/// Tag, header size and length of the element at the start of `buf`, if its header is
/// complete and valid DER as [`super::der::Reader`] reads it.
fn header(buf: &[u8]) -> Option<(u8, usize, usize)> {
    let (&tag, rest) = buf.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    if first < 0x80 {
        return Some((tag, 2, usize::from(first)));
    }
    let n = usize::from(first & 0x7f);
    if n == 0 || n > 4 || rest.len() < n {
        return None;
    }
    let len = rest[..n]
        .iter()
        .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
    Some((tag, 2 + n, len))
}

/// What the header of a file says about its revoked list.
enum Located {
    /// Not decided yet.
    NeedMore,
    /// Keep the file whole.
    NotStreamable,
    /// The list's content starts at `content`.
    At {
        content: usize,
        lengths: [Length; 3],
        tbs_start: usize,
        tbs_end: usize,
        hasher: Hasher,
    },
}

/// Why [`locate`] stopped short of the list.
#[derive(Clone, Copy)]
enum Stop {
    NeedMore,
    NotStreamable,
}

/// Find the revoked list in the first bytes of a file: the SEQUENCE right after a time in
/// `tbsCertList` (thisUpdate or nextUpdate; the in-memory parser reads the same element as
/// the list, or stops before it on the same bytes). Any doubt keeps the file whole.
fn locate(buf: &[u8]) -> Located {
    use Stop::{NeedMore, NotStreamable};
    let element = |at: usize| -> Result<(u8, usize, Length), Stop> {
        let rest = buf.get(at..).unwrap_or_default();
        match header(rest) {
            Some((tag, hdr, len)) => Ok((
                tag,
                hdr,
                Length {
                    at: at + 1,
                    size: hdr - 1,
                    value: len,
                },
            )),
            None if rest.len() >= HEADER_MAX => Err(NotStreamable),
            None => Err(NeedMore),
        }
    };
    let run = || -> Result<Located, Stop> {
        let (tag, hdr, outer) = element(0)?;
        if tag != SEQUENCE {
            return Err(NotStreamable);
        }
        let tbs_start = hdr;
        let (tag, hdr, tbs) = element(tbs_start)?;
        if tag != SEQUENCE || hdr + tbs.value > outer.value {
            return Err(NotStreamable);
        }
        let tbs_end = tbs_start + hdr + tbs.value;
        let mut at = tbs_start + hdr;
        let mut hasher = None;
        let mut previous = 0u8;
        while at < tbs_end {
            let (tag, hdr, len) = element(at)?;
            if hdr + len.value > tbs_end - at {
                return Err(NotStreamable);
            }
            if tag == SEQUENCE && matches!(previous, UTC_TIME | GENERALIZED_TIME) {
                let hasher = hasher.ok_or(NotStreamable)?;
                return Ok(Located::At {
                    content: at + hdr,
                    lengths: [outer, tbs, len],
                    tbs_start,
                    tbs_end,
                    hasher,
                });
            }
            if buf.len() < at + hdr + len.value {
                return Err(NeedMore);
            }
            if tag == SEQUENCE && hasher.is_none() {
                // The first SEQUENCE is the signature algorithm.
                hasher = Some(
                    Hasher::for_algorithm(&buf[at..at + hdr + len.value]).ok_or(NotStreamable)?,
                );
            }
            previous = tag;
            at += hdr + len.value;
        }
        // No revoked list: a small file, loaded as before.
        Err(NotStreamable)
    };
    run().unwrap_or_else(|stop| match stop {
        Stop::NeedMore => Located::NeedMore,
        Stop::NotStreamable => Located::NotStreamable,
    })
}

/// Lower a length field by `by`, in the same number of bytes.
fn shorten(bytes: &mut [u8], l: Length, by: usize) {
    let value = l.value - by;
    if l.size == 1 {
        bytes[l.at] = value as u8;
    } else {
        let n = l.size - 1;
        for i in 0..n {
            bytes[l.at + 1 + i] = (value >> (8 * (n - 1 - i))) as u8;
        }
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
    let ders = split(&streamed.bytes, CrlFormat::Asn1)?;
    let crl = ParsedCrl::parse(&ders[0], 0)?;
    let signer = trust.verify_prehashed(&crl, &entries.prehashed)?;
    check_time(&crl, now)?;
    let mut meta = CrlMeta::of(&crl, &signer);
    meta.der_len = entries.der_len;
    let serials = entries.serials;
    let index_meta = meta.clone();
    let candidate = Candidate::new(meta, move || {
        Ok(CrlIndex::from_parts(index_meta, serials?.finish()))
    });
    merge(vec![candidate], in_force, missing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crl::der::Reader;
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
}
