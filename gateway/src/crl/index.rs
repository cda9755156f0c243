//! The revoked-serial index, built once per accepted CRL.
//!
//! Serials are grouped by length; each group is one byte arena of fixed-width serials
//! ordered by hash bucket, a byte of reason code per serial, and the `u32` start of each
//! bucket (2 to 4 serials a bucket on average). A handshake costs one hash, one read of the
//! bucket table and a comparison with the bucket's few adjacent serials, always against
//! the full serial (exact: no false hit, no miss); memory is the serial bytes plus 2 to 3
//! bytes per entry, well under the DER size.

use std::sync::Arc;

use x509_parser::num_bigint::BigUint;

use super::parse::{IdpScope, ParseError, ParsedCrl, REASON_REMOVE_FROM_CRL, RevokedEntry};
use super::verify::Signer;
use crate::tls::{CheckedCertificate, DpName};

/// No reason code in the entry.
const NO_REASON: u8 = 0xff;

/// Facts about an indexed CRL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrlMeta {
    /// Raw DER of the issuer Name.
    pub issuer_der: Box<[u8]>,
    /// Issuer as text.
    pub issuer: String,
    /// The CRL's Authority Key Identifier, else the signing CA's Subject Key Identifier.
    pub key_id: Option<Box<[u8]>>,
    /// `thisUpdate`, Unix seconds.
    pub this_update: i64,
    /// `nextUpdate`, Unix seconds.
    pub next_update: Option<i64>,
    /// CRL number.
    pub crl_number: Option<BigUint>,
    /// Fingerprint of the CA key that verified it.
    pub signer_fingerprint: String,
    /// Where the verifying CA came from.
    pub signer_origin: String,
    /// Issuing Distribution Point scope.
    pub scope: IdpScope,
    /// Issuing Distribution Point `distributionPoint` names (`None`: not partitioned).
    pub partition: Option<Vec<DpName>>,
    /// Revoked serials indexed.
    pub entries: usize,
    /// Size of the CRL's DER.
    pub der_len: usize,
    /// For a CRL of a `format: Zip` archive, the digest of the member it was read from
    /// ([`super::archive::Archive::member_digest`]): a later archive with the same member
    /// keeps this index without inflating the member again.
    pub archive_member: Option<[u8; 32]>,
}

impl CrlMeta {
    /// Facts of a CRL of `issuer_der` and `key_id`, for every certificate of the issuer,
    /// without number or dates (tests and fuzzing set the fields they need).
    pub fn synthetic(issuer_der: &[u8], key_id: Option<&[u8]>) -> Self {
        CrlMeta {
            issuer_der: issuer_der.into(),
            issuer: hex::encode(issuer_der),
            key_id: key_id.map(Into::into),
            this_update: 0,
            next_update: None,
            crl_number: None,
            signer_fingerprint: String::new(),
            signer_origin: String::new(),
            scope: IdpScope::default(),
            partition: None,
            entries: 0,
            der_len: 0,
            archive_member: None,
        }
    }

    /// The facts of a verified CRL (`entries` is 0 until it is indexed).
    pub fn of(crl: &ParsedCrl<'_>, signer: &Signer) -> Self {
        let key_id = crl
            .authority_key_id
            .map(<[u8]>::to_vec)
            .or_else(|| signer.key_id.clone())
            .map(Vec::into_boxed_slice);
        CrlMeta {
            issuer_der: crl.issuer_der.into(),
            issuer: crl.issuer.clone(),
            key_id,
            this_update: crl.this_update,
            next_update: crl.next_update,
            crl_number: crl.crl_number.clone(),
            signer_fingerprint: signer.key_fingerprint.clone(),
            signer_origin: signer.origin.clone(),
            scope: crl.scope,
            partition: crl.partition.clone(),
            entries: 0,
            der_len: crl.der.len(),
            archive_member: None,
        }
    }

    /// Past `nextUpdate` at `now` (Unix seconds): answers from it are not to be trusted.
    pub fn is_stale(&self, now: i64) -> bool {
        self.next_update.is_some_and(|n| now > n)
    }

    /// Whether this CRL covers `cert` (RFC 5280 section 6.3.3 (b)(2)): its scope admits
    /// the kind of certificate (user or CA), and, when the CRL is a partition, one of the
    /// certificate's CRL distribution points names it. The issuer is matched elsewhere.
    pub fn covers(&self, cert: &CheckedCertificate<'_>) -> bool {
        self.scope.covers(cert.is_ca)
            && self
                .partition
                .as_ref()
                .is_none_or(|names| names.iter().any(|n| cert.distribution_points.contains(n)))
    }

    /// Whether `other` answers for the same certificates as this CRL: same issuer, key,
    /// scope and partition. Of two such CRLs only the newer is kept in force.
    pub fn same_slot(&self, other: &CrlMeta) -> bool {
        self.issuer_der == other.issuer_der
            && self.key_id == other.key_id
            && self.scope == other.scope
            && self.partition == other.partition
    }

    /// The partition as text (`None` when not partitioned), for logs.
    pub fn partition_text(&self) -> Option<String> {
        self.partition.as_ref().map(|names| {
            names
                .iter()
                .map(DpName::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
    }
}

/// An indexed CRL.
#[derive(Debug)]
pub struct CrlIndex {
    /// Its facts.
    pub meta: CrlMeta,
    serials: SerialSet,
}

/// A revoked serial found in the index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hit {
    /// RFC 5280 reason code, if the entry has one.
    pub reason: Option<u8>,
}

impl CrlIndex {
    /// Index a verified CRL.
    pub fn build(crl: &ParsedCrl<'_>, signer: &Signer) -> Result<Arc<Self>, ParseError> {
        Self::build_as(crl, CrlMeta::of(crl, signer))
    }

    /// Index a verified CRL whose facts are `meta` (`entries` is set from the CRL).
    pub(crate) fn build_as(crl: &ParsedCrl<'_>, meta: CrlMeta) -> Result<Arc<Self>, ParseError> {
        Ok(Self::from_parts(meta, SerialSet::build(crl.entries())?))
    }

    /// The index of a streamed CRL ([`super::stream`]): its facts and its serials.
    pub(crate) fn from_parts(mut meta: CrlMeta, serials: SerialSet) -> Arc<Self> {
        meta.entries = serials.len();
        Arc::new(CrlIndex { meta, serials })
    }

    /// An index of `serials` (raw DER INTEGER content, reason code) with the facts in
    /// `meta` (whose `entries` is set from the serials): for tests and fuzzing of the
    /// decisions made on indexes, without a signed CRL.
    pub fn from_serials(mut meta: CrlMeta, serials: &[(Vec<u8>, Option<u8>)]) -> Arc<Self> {
        let entries = serials.iter().map(|(s, reason)| {
            Ok::<_, ParseError>(RevokedEntry {
                serial: s.as_slice(),
                reason: *reason,
                revocation_date: &[],
            })
        });
        let serials = SerialSet::build(entries).unwrap_or_default();
        meta.entries = serials.len();
        Arc::new(CrlIndex { meta, serials })
    }

    /// Look a serial (raw DER INTEGER content) up.
    #[inline]
    pub fn lookup(&self, serial: &[u8]) -> Option<Hit> {
        self.serials.lookup(serial)
    }

    /// Heap bytes held by this index (serials, reasons, tables and metadata).
    pub fn heap_bytes(&self) -> usize {
        self.serials.heap_bytes()
            + self.meta.issuer_der.len()
            + self.meta.issuer.capacity()
            + self.meta.key_id.as_ref().map_or(0, |k| k.len())
            + self.meta.signer_fingerprint.capacity()
            + self.meta.signer_origin.capacity()
            + self.meta.partition.as_ref().map_or(0, |names| {
                names.iter().map(|n| n.as_str().len()).sum::<usize>()
            })
            + std::mem::size_of::<Self>()
    }
}

/// The same integer always has the same bytes: drop redundant sign-extension bytes that
/// non-strict encoders leave in front.
#[inline]
pub(crate) fn canonical_serial(mut s: &[u8]) -> &[u8] {
    while s.len() > 1 && ((s[0] == 0 && s[1] < 0x80) || (s[0] == 0xff && s[1] >= 0x80)) {
        s = &s[1..];
    }
    s
}

/// Serials grouped by length.
#[derive(Debug, Default)]
pub(crate) struct SerialSet {
    groups: Vec<Group>,
    len: usize,
}

#[derive(Debug)]
struct Group {
    width: usize,
    /// `count * width` bytes, sorted by bucket (a bucket's serials are adjacent).
    arena: Box<[u8]>,
    /// One reason code per serial, in arena order ([`NO_REASON`] when absent).
    reasons: Box<[u8]>,
    /// `starts[b]..starts[b + 1]` are the positions of bucket `b`'s serials; one more
    /// entry than there are buckets, and a power of two of buckets.
    starts: Box<[u32]>,
    /// `64 - log2(buckets)`: the hash's top bits pick the bucket.
    shift: u32,
}

impl SerialSet {
    /// Build from the entries, in one pass ([`SerialSetBuilder`]).
    pub(crate) fn build<'a>(
        entries: impl IntoIterator<Item = Result<RevokedEntry<'a>, ParseError>>,
    ) -> Result<Self, ParseError> {
        let mut builder = SerialSetBuilder::default();
        for e in entries {
            builder.push(&e?);
        }
        Ok(builder.finish())
    }

    /// Number of distinct serials.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[cfg(test)]
    /// Whether no serial is listed.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Look a serial up.
    #[inline]
    pub(crate) fn lookup(&self, serial: &[u8]) -> Option<Hit> {
        let s = canonical_serial(serial);
        let g = self.groups.iter().find(|g| g.width == s.len())?;
        g.find(s).map(|i| Hit {
            reason: match g.reasons[i] {
                NO_REASON => None,
                r => Some(r),
            },
        })
    }

    /// Heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.groups
            .iter()
            .map(|g| g.arena.len() + g.reasons.len() + g.starts.len() * 4)
            .sum::<usize>()
            + self.groups.capacity() * std::mem::size_of::<Group>()
    }
}

/// Collects the entries of one CRL as they are read (from a file in memory or from a
/// body being downloaded), then orders them into a [`SerialSet`]. Serials are kept per
/// width in fixed-size blocks, so collecting never reallocates or overshoots: a
/// million-entry CRL costs its serial bytes and a reason byte per entry, and no more.
#[derive(Debug, Default)]
pub(crate) struct SerialSetBuilder {
    /// `widths[w]`: serials of `w` bytes and their reasons.
    widths: Vec<Option<(Blocks, Blocks)>>,
}

impl SerialSetBuilder {
    /// Add one entry (`removeFromCRL` entries are not revocations and are skipped).
    pub(crate) fn push(&mut self, e: &RevokedEntry<'_>) {
        if e.reason == Some(REASON_REMOVE_FROM_CRL) {
            return;
        }
        let s = canonical_serial(e.serial);
        if self.widths.len() <= s.len() {
            self.widths.resize_with(s.len() + 1, || None);
        }
        let (serials, reasons) =
            self.widths[s.len()].get_or_insert_with(|| (Blocks::new(s.len()), Blocks::new(1)));
        serials.push(s);
        reasons.push(&[e.reason.unwrap_or(NO_REASON)]);
    }

    /// Order the collected serials for lookups.
    pub(crate) fn finish(self) -> SerialSet {
        let mut set = SerialSet::default();
        for (width, slot) in self.widths.into_iter().enumerate() {
            if let Some((serials, reasons)) = slot {
                let group = Group::build(width, serials, reasons);
                set.len += group.reasons.len();
                set.groups.push(group);
            }
        }
        set
    }
}

/// Items of one fixed width in blocks of [`BLOCK_BYTES`]: appending never moves what is
/// already there, and the only slack is the last block's free end.
#[derive(Debug)]
struct Blocks {
    width: usize,
    per_block: usize,
    blocks: Vec<Vec<u8>>,
    len: usize,
}

/// Bytes of a block.
const BLOCK_BYTES: usize = 64 * 1024;

impl Blocks {
    fn new(width: usize) -> Self {
        Self {
            width,
            per_block: (BLOCK_BYTES / width.max(1)).max(1),
            blocks: Vec::new(),
            len: 0,
        }
    }

    fn push(&mut self, item: &[u8]) {
        if self.len.is_multiple_of(self.per_block) {
            self.blocks
                .push(Vec::with_capacity(self.per_block * self.width));
        }
        if let Some(last) = self.blocks.last_mut() {
            last.extend_from_slice(item);
        }
        self.len += 1;
    }

    #[inline]
    fn get(&self, i: usize) -> &[u8] {
        let at = (i % self.per_block) * self.width;
        &self.blocks[i / self.per_block][at..at + self.width]
    }
}

/// Serials per bucket, on average at most (and more than half of it): a lookup compares
/// the key with a few adjacent serials, and the bucket table costs 1 to 2 bytes a serial.
const PER_BUCKET: usize = 4;

impl Group {
    fn build(width: usize, serials: Blocks, reasons: Blocks) -> Group {
        let buckets = reasons.len.div_ceil(PER_BUCKET).next_power_of_two().max(2);
        Self::build_with_buckets(width, serials, reasons, buckets)
    }

    /// Order the serials by bucket with a counting sort: one pass hashes each serial and
    /// counts its bucket, a second copies each serial to its bucket's next free place
    /// (in entry order, so of a serial listed twice the first entry comes first and is the
    /// one kept). The only scratch is a `u32` cursor per bucket (1 byte an entry) besides
    /// the new arena; no per-serial sort keys. The serials themselves confirm a match
    /// (exact lookups).
    fn build_with_buckets(width: usize, serials: Blocks, reasons: Blocks, buckets: usize) -> Group {
        let count = reasons.len;
        let bits = buckets.trailing_zeros();
        let shift = 64 - bits;
        let bucket = |s: &[u8]| (hash(s) >> shift) as usize;
        let mut starts = vec![0u32; buckets + 1];
        for i in 0..count {
            starts[bucket(serials.get(i)) + 1] += 1;
        }
        for b in 0..buckets {
            starts[b + 1] += starts[b];
        }
        let mut next: Vec<u32> = starts[..buckets].to_vec();
        let mut arena = vec![0u8; count * width];
        let mut sorted_reasons = vec![0u8; count];
        for i in 0..count {
            let s = serials.get(i);
            let b = bucket(s);
            let at = next[b] as usize;
            next[b] += 1;
            arena[at * width..(at + 1) * width].copy_from_slice(s);
            sorted_reasons[at] = reasons.get(i)[0];
        }
        drop((serials, reasons, next));
        // A serial listed twice: keep the first entry (equal serials share a bucket, in
        // entry order), closing the gaps in place.
        let mut kept = 0usize;
        let mut kept_starts = vec![0u32; buckets + 1];
        for b in 0..buckets {
            let first = kept;
            for j in starts[b] as usize..starts[b + 1] as usize {
                let dup = (first..kept).any(|k| {
                    arena[k * width..(k + 1) * width] == arena[j * width..(j + 1) * width]
                });
                if dup {
                    continue;
                }
                if kept != j {
                    arena.copy_within(j * width..(j + 1) * width, kept * width);
                    sorted_reasons[kept] = sorted_reasons[j];
                }
                kept += 1;
            }
            kept_starts[b + 1] = kept as u32;
        }
        arena.truncate(kept * width);
        sorted_reasons.truncate(kept);
        Group {
            width,
            arena: arena.into_boxed_slice(),
            reasons: sorted_reasons.into_boxed_slice(),
            starts: kept_starts.into_boxed_slice(),
            shift,
        }
    }

    #[inline]
    fn serial(&self, i: usize) -> &[u8] {
        &self.arena[i * self.width..(i + 1) * self.width]
    }

    #[inline]
    fn find(&self, key: &[u8]) -> Option<usize> {
        let b = (hash(key) >> self.shift) as usize;
        (self.starts[b] as usize..self.starts[b + 1] as usize).find(|&i| self.serial(i) == key)
    }
}

/// A fast multiplicative hash. CRL content is signed by a trusted CA, so there is no
/// adversary choosing colliding keys; what matters is spreading sequential serials.
#[inline]
fn hash(key: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = (key.len() as u64).wrapping_mul(K);
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        h = (h ^ w).wrapping_mul(K);
        h ^= h >> 32;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    // Final avalanche so the top bits depend on every input bit.
    h ^= h >> 29;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^ (h >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(serial: &[u8], reason: Option<u8>) -> RevokedEntry<'_> {
        RevokedEntry {
            serial,
            reason,
            revocation_date: &[],
        }
    }

    fn set(entries: &[RevokedEntry<'_>]) -> SerialSet {
        SerialSet::build(entries.iter().copied().map(Ok)).unwrap()
    }

    #[test]
    fn finds_listed_serials_only() {
        let serials: Vec<Vec<u8>> = (0u32..5000)
            .map(|i| {
                let mut v = i.to_be_bytes().to_vec();
                v.extend([0xab; 12]);
                v
            })
            .collect();
        let entries: Vec<_> = serials
            .iter()
            .enumerate()
            .map(|(i, s)| entry(s, (i % 7 == 0).then_some(1)))
            .collect();
        let s = set(&entries);
        assert_eq!(s.len(), 5000);
        for (i, serial) in serials.iter().enumerate() {
            let hit = s
                .lookup(serial)
                .unwrap_or_else(|| panic!("serial {i} missing"));
            assert_eq!(hit.reason, (i % 7 == 0).then_some(1));
        }
        let mut absent = serials[17].clone();
        absent[15] ^= 1;
        assert_eq!(s.lookup(&absent), None);
        assert_eq!(s.lookup(&[1]), None);
        assert_eq!(s.lookup(&[0; 40]), None);
    }

    #[test]
    fn mixed_widths_duplicates_and_redundant_sign_bytes() {
        let entries = [
            entry(&[0x05], None),
            entry(&[0x00, 0x85], Some(4)),
            entry(&[0x00, 0x85], Some(1)),
            entry(&[0x00, 0x00, 0x07], None),
            entry(&[0x12, 0x34, 0x56], None),
            entry(&[0x99], Some(REASON_REMOVE_FROM_CRL)),
        ];
        let s = set(&entries);
        assert_eq!(s.len(), 4);
        assert_eq!(s.lookup(&[0x05]), Some(Hit { reason: None }));
        assert_eq!(s.lookup(&[0x00, 0x85]), Some(Hit { reason: Some(4) }));
        assert_eq!(
            s.lookup(&[0x85]),
            None,
            "a negative serial is another number"
        );
        assert_eq!(s.lookup(&[0x07]), Some(Hit { reason: None }));
        assert_eq!(s.lookup(&[0x00, 0x07]), Some(Hit { reason: None }));
        assert_eq!(s.lookup(&[0x12, 0x34, 0x56]), Some(Hit { reason: None }));
        assert_eq!(s.lookup(&[0x99]), None, "removeFromCRL is not a revocation");
        assert_eq!(canonical_serial(&[0xff, 0x80]), &[0x80]);
        assert_eq!(canonical_serial(&[0xff, 0x7f]), &[0xff, 0x7f]);
        assert_eq!(canonical_serial(&[0x00]), &[0x00]);
    }

    #[test]
    fn crowded_buckets_find_members_only_and_keep_the_first_of_duplicates() {
        for round in 0u32..50 {
            // Values below 100 repeat: some serials are listed twice with other reasons.
            let serials: Vec<[u8; 4]> = (0..120u32)
                .map(|i| {
                    ((i % 100).wrapping_mul(2_654_435_761) ^ round.wrapping_mul(40_503))
                        .to_be_bytes()
                })
                .collect();
            let blocks = || {
                let (mut arena, mut reasons) = (Blocks::new(4), Blocks::new(1));
                for (n, s) in serials.iter().enumerate() {
                    arena.push(s);
                    reasons.push(&[n as u8]);
                }
                (arena, reasons)
            };
            // 120 serials in 2, 8 and 64 buckets: long and short runs alike.
            for buckets in [2, 8, 64] {
                let (arena, reasons) = blocks();
                let g = Group::build_with_buckets(4, arena, reasons, buckets);
                let distinct: std::collections::HashSet<_> = serials.iter().collect();
                assert_eq!(g.reasons.len(), distinct.len());
                assert_eq!(g.starts[buckets] as usize, distinct.len());
                for (n, s) in serials.iter().enumerate() {
                    let i = g.find(s).expect("every serial is found");
                    assert_eq!(g.serial(i), s);
                    let first = serials.iter().position(|x| x == s).unwrap();
                    assert_eq!(
                        g.reasons[i] as usize, first,
                        "serial #{n}: the first entry wins"
                    );
                }
                for x in 0u32..200 {
                    let probe = (x.wrapping_mul(97) ^ 0xdead_beef).to_be_bytes();
                    assert_eq!(g.find(&probe).is_some(), distinct.contains(&probe));
                }
            }
        }
    }

    #[test]
    fn counting_sort_puts_each_serial_in_its_bucket_in_entry_order() {
        // Blocks of 3-byte items: 21,845 a block, so 50,000 serials span three blocks.
        let (mut arena, mut reasons) = (Blocks::new(3), Blocks::new(1));
        let serials: Vec<[u8; 3]> = (0u32..50_000)
            .map(|i| {
                let b = i.to_be_bytes();
                [b[1], b[2], b[3]]
            })
            .collect();
        for (n, s) in serials.iter().enumerate() {
            arena.push(s);
            reasons.push(&[(n % 251) as u8]);
        }
        assert_eq!(arena.blocks.len(), 3);
        assert_eq!(arena.get(30_000), &serials[30_000]);
        let g = Group::build(3, arena, reasons);
        let buckets = g.starts.len() - 1;
        let mut seen = 0;
        for b in 0..buckets {
            let mut last = None;
            for i in g.starts[b] as usize..g.starts[b + 1] as usize {
                let s = g.serial(i);
                assert_eq!((hash(s) >> g.shift) as usize, b);
                let n = serials.iter().position(|x| x == s).unwrap();
                assert!(last.is_none_or(|l| l < n), "entry order within a bucket");
                assert_eq!(g.reasons[i] as usize, n % 251);
                last = Some(n);
                seen += 1;
            }
        }
        assert_eq!(seen, serials.len());
    }

    #[test]
    fn empty_and_memory_is_compact() {
        let s = set(&[]);
        assert!(s.is_empty());
        assert_eq!(s.lookup(&[1]), None);

        let serials: Vec<[u8; 20]> = (0u32..100_000)
            .map(|i| {
                let mut v = [0x3c; 20];
                v[16..].copy_from_slice(&i.to_be_bytes());
                v
            })
            .collect();
        let entries: Vec<_> = serials.iter().map(|s| entry(s, None)).collect();
        let s = set(&entries);
        assert_eq!(s.len(), 100_000);
        // 20 serial bytes + 1 reason byte + at most 2 bytes of bucket table per entry.
        let per_entry = s.heap_bytes() as f64 / 100_000.0;
        assert!(per_entry < 23.1, "{per_entry} bytes per entry");
        assert!(serials.iter().all(|x| s.lookup(x).is_some()));
    }
}
