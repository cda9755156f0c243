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

use super::index::SerialSetBuilder;
use super::parse::{ParseError, RevokedEntry, first_entry};
use super::prehash::{Hasher, Prehashed};

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
