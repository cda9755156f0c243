//! `format: Zip`: the CRLs of a ZIP archive (DISA distributes its CRLs as such bundles),
//! each member DER or PEM. Members are inflated one at a time through a bounded reader, so
//! a zip bomb is refused as soon as it exceeds a limit, never after it has filled memory:
//! at most [`MAX_MEMBERS`] members, [`MAX_RATIO`]:1 compression per member, and at most
//! [`MAX_UNPACKED`] bytes unpacked in all (the download itself is bounded by `maxSize`).
//! [`Archive`] reads from any seekable source (the loader gives it the file the download
//! was spooled to) and hands out one member at a time, whole ([`Archive::member`]) or as a
//! stream ([`Archive::open_member`]), so a loader never holds the archive or the unpacked
//! estate (hundreds of MB) in memory. [`Archive::member_digest`] names a member's content
//! without inflating it, so a refresh can skip the members that did not change.

use std::io::{Cursor, Read, Seek};

use rustls_pki_types::CertificateRevocationListDer;
use rustls_pki_types::pem::PemObject;
use sha2::{Digest, Sha256};

/// Most members accepted in one archive.
pub(crate) const MAX_MEMBERS: usize = 10_000;
/// Highest compression ratio accepted for a member: DER CRLs compress about 2:1, so
/// anything near this is not a CRL.
pub(crate) const MAX_RATIO: u64 = 100;
/// Largest unpacked total of an archive (the default `maxSize`).
pub(crate) const MAX_UNPACKED: u64 = postern_config::DEFAULT_CRL_MAX_SIZE;

/// Why an archive is refused (the message names the member).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct ArchiveError(pub String);

/// An archive opened for reading member by member.
pub(crate) struct Archive<R> {
    zip: zip::ZipArchive<R>,
}

impl<R: Read + Seek> std::fmt::Debug for Archive<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive")
            .field("members", &self.zip.len())
            .finish()
    }
}

/// The CRLs of one member and how many bytes it unpacked to.
#[derive(Debug)]
pub(crate) struct Member {
    /// The DER of each CRL (a PEM member may hold several).
    pub ders: Vec<Vec<u8>>,
    /// Unpacked size.
    pub unpacked: u64,
}

/// A member being inflated ([`Archive::open_member`]): its bytes in order, refused as
/// soon as they pass the member's limit.
pub(crate) struct MemberReader<'a, R: Read> {
    file: zip::read::ZipFile<'a, R>,
    /// The member's name, for messages.
    pub name: String,
    compressed: u64,
    /// What the archive may still unpack in all when the member was opened.
    left: u64,
    /// What this member may unpack: `left`, or less for its compressed size.
    allowed: u64,
    /// What the whole archive may unpack.
    max_total: u64,
    /// Bytes unpacked so far.
    pub unpacked: u64,
}

impl<R: Read> MemberReader<'_, R> {
    /// The next unpacked bytes into `buf` (0 at the end of the member).
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> Result<usize, ArchiveError> {
        // One byte over the limit is enough to know it is over.
        let room = usize::try_from(self.allowed.saturating_add(1) - self.unpacked)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = self
            .file
            .read(&mut buf[..room])
            .map_err(|e| ArchiveError(format!("member {:?}: {e}", self.name)))?;
        self.unpacked += n as u64;
        if self.unpacked > self.allowed {
            return Err(ArchiveError(if self.allowed < self.left {
                format!(
                    "member {:?} inflates more than {MAX_RATIO}:1 ({} bytes compressed): refused as a zip bomb",
                    self.name, self.compressed
                )
            } else {
                format!("the archive unpacks to more than {} bytes", self.max_total)
            }));
        }
        Ok(n)
    }

    /// The rest of the member, appended to `data`.
    pub(crate) fn read_to_end(&mut self, data: &mut Vec<u8>) -> Result<(), ArchiveError> {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = self.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            data.extend_from_slice(&buf[..n]);
        }
    }
}

impl<'a> Archive<Cursor<&'a [u8]>> {
    /// An archive held in memory.
    pub(crate) fn in_memory(bytes: &'a [u8]) -> Result<Self, ArchiveError> {
        Self::open(Cursor::new(bytes))
    }
}

impl<R: Read + Seek> Archive<R> {
    /// Read the archive's directory (nothing is inflated yet).
    pub(crate) fn open(reader: R) -> Result<Self, ArchiveError> {
        let zip = zip::ZipArchive::new(reader).map_err(|e| {
            ArchiveError(format!(
                "not a ZIP archive (the source says format: Zip): {e}"
            ))
        })?;
        if zip.len() > MAX_MEMBERS {
            return Err(ArchiveError(format!(
                "{} members; at most {MAX_MEMBERS} are accepted",
                zip.len()
            )));
        }
        Ok(Self { zip })
    }

    /// Number of members, directories included.
    pub(crate) fn len(&self) -> usize {
        self.zip.len()
    }

    /// A digest of member `i`'s content as stored (compression method and compressed
    /// bytes), read without inflating it; `None` for a directory. Equal digests mean the
    /// same unpacked bytes.
    pub(crate) fn member_digest(&mut self, i: usize) -> Result<Option<[u8; 32]>, ArchiveError> {
        let mut raw = self
            .zip
            .by_index_raw(i)
            .map_err(|e| ArchiveError(format!("member #{i}: {e}")))?;
        if raw.is_dir() {
            return Ok(None);
        }
        let mut sha = Sha256::new();
        // Compared only within this process: the method's debug name is enough.
        sha.update(format!("{:?}\0", raw.compression()).as_bytes());
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = raw
                .read(&mut buf)
                .map_err(|e| ArchiveError(format!("member #{i}: {e}")))?;
            if n == 0 {
                return Ok(Some(sha.finalize().into()));
            }
            sha.update(&buf[..n]);
        }
    }

    /// Start inflating member `i` (`None` for a directory), given that `unpacked` bytes of
    /// the archive were unpacked before it and `max_total` may be in all.
    pub(crate) fn open_member(
        &mut self,
        i: usize,
        unpacked: u64,
        max_total: u64,
    ) -> Result<Option<MemberReader<'_, R>>, ArchiveError> {
        let file = self
            .zip
            .by_index(i)
            .map_err(|e| ArchiveError(format!("member #{i}: {e}")))?;
        if file.is_dir() {
            return Ok(None);
        }
        let name = file
            .name()
            .map_or_else(|_| format!("#{i}"), |n| n.into_owned());
        let compressed = file.compressed_size().max(1);
        let left = max_total.saturating_sub(unpacked);
        // The declared size is only a hint (a bomb lies about it): the reader is bounded
        // by what is still allowed, whatever the header says.
        let allowed = left.min(compressed.saturating_mul(MAX_RATIO));
        Ok(Some(MemberReader {
            file,
            name,
            compressed,
            left,
            allowed,
            max_total,
            unpacked: 0,
        }))
    }

    /// Inflate member `i` whole (`None` for a directory); see [`Self::open_member`].
    pub(crate) fn member(
        &mut self,
        i: usize,
        unpacked: u64,
        max_total: u64,
    ) -> Result<Option<Member>, ArchiveError> {
        let Some(mut reader) = self.open_member(i, unpacked, max_total)? else {
            return Ok(None);
        };
        let mut data = Vec::new();
        reader.read_to_end(&mut data)?;
        let ders = member_crls(&reader.name, data)?;
        Ok(Some(Member {
            ders,
            unpacked: reader.unpacked,
        }))
    }
}

/// How PEM text starts (after any white space).
pub(crate) const PEM_START: &[u8] = b"-----BEGIN";

/// Whether a member's first bytes are PEM text rather than DER.
pub(crate) fn is_pem(start: &[u8]) -> bool {
    start.trim_ascii_start().starts_with(PEM_START)
}

/// The DER CRLs of a whole member: itself, or each `X509 CRL` block of a PEM member.
pub(crate) fn member_crls(name: &str, data: Vec<u8>) -> Result<Vec<Vec<u8>>, ArchiveError> {
    if !is_pem(&data) {
        return Ok(vec![data]);
    }
    let mut ders = Vec::new();
    for der in CertificateRevocationListDer::pem_slice_iter(&data) {
        let der = der.map_err(|e| ArchiveError(format!("member {name:?}: malformed PEM: {e}")))?;
        ders.push(der.as_ref().to_vec());
    }
    if ders.is_empty() {
        return Err(ArchiveError(format!(
            "member {name:?}: no PEM `X509 CRL` block"
        )));
    }
    Ok(ders)
}

/// Refusal of an archive without any CRL.
pub(crate) fn no_crl() -> ArchiveError {
    ArchiveError("the archive holds no CRL".to_owned())
}

/// The DER of every CRL in the archive `bytes`, members in archive order (directories
/// skipped; PEM members may hold several CRLs). `max_total` bounds the unpacked size.
/// Holds every CRL at once: for `crl inspect`; the loader goes member by member.
pub(crate) fn crls(bytes: &[u8], max_total: u64) -> Result<Vec<Vec<u8>>, ArchiveError> {
    let mut archive = Archive::in_memory(bytes)?;
    let mut out = Vec::new();
    let mut total = 0u64;
    for i in 0..archive.len() {
        if let Some(m) = archive.member(i, total, max_total)? {
            total += m.unpacked;
            out.extend(m.ders);
        }
    }
    if out.is_empty() {
        return Err(no_crl());
    }
    Ok(out)
}
/// A deflated ZIP archive of a `crls/` directory and `members` (name, content), for tests.
#[cfg(test)]
pub(crate) fn test_archive(members: &[(&str, &[u8])]) -> Vec<u8> {
    use std::io::Write;
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    w.add_directory("crls/", opts).unwrap();
    for (name, data) in members {
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

#[cfg(test)]
mod tests {
    use super::test_archive as archive;
    use super::*;

    #[test]
    fn der_and_pem_members_in_order() {
        let pem = b"-----BEGIN X509 CRL-----\nMAMCAQE=\n-----END X509 CRL-----\n-----BEGIN X509 CRL-----\nMAMCAQI=\n-----END X509 CRL-----\n";
        let z = archive(&[("crls/a.crl", &[0x30, 0x00]), ("crls/b.pem", pem)]);
        let got = crls(&z, 1 << 20).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(&*got[0], &[0x30, 0x00]);
        assert_eq!(&*got[1], &[0x30, 0x03, 0x02, 0x01, 0x01]);
        assert_eq!(&*got[2], &[0x30, 0x03, 0x02, 0x01, 0x02]);
    }

    #[test]
    fn bombs_oversize_and_garbage_are_refused() {
        let zeros = vec![0u8; 10 << 20];
        let e = crls(&archive(&[("bomb.crl", &zeros)]), 1 << 30).unwrap_err();
        assert!(e.to_string().contains("zip bomb"), "{e}");
        let big: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let e = crls(&archive(&[("a.crl", &big)]), 100_000).unwrap_err();
        assert!(e.to_string().contains("more than 100000 bytes"), "{e}");
        let e = crls(b"not a zip", 1 << 20).unwrap_err();
        assert!(e.to_string().contains("not a ZIP archive"), "{e}");
        let e = crls(&archive(&[]), 1 << 20).unwrap_err();
        assert!(e.to_string().contains("no CRL"), "{e}");
    }
}
