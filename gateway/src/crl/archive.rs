//! `format: Zip`: the CRLs of a ZIP archive (DISA distributes its CRLs as such bundles),
//! each member DER or PEM. Members are inflated one at a time through a bounded reader, so
//! a zip bomb is refused as soon as it exceeds a limit, never after it has filled memory:
//! at most [`MAX_MEMBERS`] members, [`MAX_RATIO`]:1 compression per member, and at most
//! [`MAX_UNPACKED`] bytes unpacked in all (the download itself is bounded by `maxSize`).
//! [`Archive`] hands out one member at a time, so a loader can verify and index member by
//! member and never hold the whole unpacked estate (hundreds of MB) at once.

use std::io::{Cursor, Read};

use rustls_pki_types::CertificateRevocationListDer;
use rustls_pki_types::pem::PemObject;

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
pub(crate) struct Archive<'a> {
    zip: zip::ZipArchive<Cursor<&'a [u8]>>,
}

impl std::fmt::Debug for Archive<'_> {
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

impl<'a> Archive<'a> {
    /// Read the archive's directory (nothing is inflated yet).
    pub(crate) fn open(bytes: &'a [u8]) -> Result<Self, ArchiveError> {
        let zip = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| {
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

    /// Inflate member `i` (`None` for a directory), given that `unpacked` bytes of the
    /// archive were unpacked before it and `max_total` may be in all.
    pub(crate) fn member(
        &mut self,
        i: usize,
        unpacked: u64,
        max_total: u64,
    ) -> Result<Option<Member>, ArchiveError> {
        let mut member = self
            .zip
            .by_index(i)
            .map_err(|e| ArchiveError(format!("member #{i}: {e}")))?;
        if member.is_dir() {
            return Ok(None);
        }
        let name = member
            .name()
            .map_or_else(|_| format!("#{i}"), |n| n.into_owned());
        let compressed = member.compressed_size().max(1);
        let left = max_total.saturating_sub(unpacked);
        // The declared size is only a hint (a bomb lies about it): the reader below is
        // bounded by what is still allowed, whatever the header says.
        let allowed = left.min(compressed.saturating_mul(MAX_RATIO));
        let mut data = Vec::with_capacity(usize::try_from(member.size().min(allowed)).unwrap_or(0));
        (&mut member)
            .take(allowed + 1)
            .read_to_end(&mut data)
            .map_err(|e| ArchiveError(format!("member {name:?}: {e}")))?;
        let len = data.len() as u64;
        if len > allowed {
            return Err(ArchiveError(if allowed < left {
                format!(
                    "member {name:?} inflates more than {MAX_RATIO}:1 ({compressed} bytes compressed): refused as a zip bomb"
                )
            } else {
                format!("the archive unpacks to more than {max_total} bytes")
            }));
        }
        let ders = if data.trim_ascii_start().starts_with(b"-----BEGIN") {
            let mut ders = Vec::new();
            for der in CertificateRevocationListDer::pem_slice_iter(&data) {
                let der =
                    der.map_err(|e| ArchiveError(format!("member {name:?}: malformed PEM: {e}")))?;
                ders.push(der.as_ref().to_vec());
            }
            if ders.is_empty() {
                return Err(ArchiveError(format!(
                    "member {name:?}: no PEM `X509 CRL` block"
                )));
            }
            ders
        } else {
            vec![data]
        };
        Ok(Some(Member {
            ders,
            unpacked: len,
        }))
    }
}

/// Refusal of an archive without any CRL.
pub(crate) fn no_crl() -> ArchiveError {
    ArchiveError("the archive holds no CRL".to_owned())
}

/// The DER of every CRL in the archive `bytes`, members in archive order (directories
/// skipped; PEM members may hold several CRLs). `max_total` bounds the unpacked size.
/// Holds every CRL at once: for `crl inspect`; the loader goes member by member.
pub(crate) fn crls(bytes: &[u8], max_total: u64) -> Result<Vec<Vec<u8>>, ArchiveError> {
    let mut archive = Archive::open(bytes)?;
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
#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn archive(members: &[(&str, &[u8])]) -> Vec<u8> {
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
