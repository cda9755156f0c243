//! Where a downloaded `format: Zip` archive is kept while its members are read: a ZIP is
//! read from its end (the central directory) and then member by member, so it has to be
//! somewhere seekable, and in memory it would weigh as much as all its CRLs together. It
//! goes to the disk cache's spool when there is a disk cache (renamed into the cache once
//! the archive is in force), else to an anonymous temporary file, and only where no file
//! can be created, to memory.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Cursor, Read, Seek, SeekFrom, Write};

use super::disk::{DiskCache, Spool};

/// An archive being written as it downloads.
#[derive(Debug)]
pub(crate) enum ArchiveSpool {
    /// The disk cache's spool of the source.
    Cache(Spool),
    /// An unnamed temporary file, gone once closed; a write error is kept for
    /// [`ArchiveSpool::finish`].
    Temp(BufWriter<File>, Option<io::Error>),
    /// Memory: no file could be created.
    Memory(Vec<u8>),
}

/// A written archive, to read.
#[derive(Debug)]
pub(crate) enum ArchiveFile {
    /// On disk.
    File(BufReader<File>),
    /// In memory.
    Memory(Cursor<Vec<u8>>),
}

impl ArchiveSpool {
    /// Where `source`'s archive goes: see the module's description.
    pub(crate) fn new(cache: Option<&DiskCache>, source: &str) -> Self {
        if let Some(cache) = cache {
            let spool = cache.spool(source);
            if spool.is_open() {
                return Self::Cache(spool);
            }
        }
        match tempfile::tempfile() {
            Ok(f) => Self::Temp(BufWriter::with_capacity(256 * 1024, f), None),
            Err(e) => {
                tracing::warn!(source, error = %e, "cannot create a temporary file for the CRL archive; it is read from memory");
                Self::Memory(Vec::new())
            }
        }
    }

    /// Append the next bytes.
    pub(crate) fn write(&mut self, bytes: &[u8]) {
        match self {
            Self::Cache(spool) => spool.write(bytes),
            Self::Temp(file, error) => {
                if error.is_none()
                    && let Err(e) = file.write_all(bytes)
                {
                    *error = Some(e);
                }
            }
            Self::Memory(data) => data.extend_from_slice(bytes),
        }
    }

    /// The whole archive, to read, and the spool to commit to the disk cache (if any).
    pub(crate) fn finish(self) -> io::Result<(ArchiveFile, Option<Spool>)> {
        match self {
            Self::Cache(mut spool) => {
                let file = spool.read_back()?;
                Ok((ArchiveFile::File(BufReader::new(file)), Some(spool)))
            }
            Self::Temp(_, Some(e)) => Err(e),
            Self::Temp(file, None) => {
                let mut file = file.into_inner().map_err(io::IntoInnerError::into_error)?;
                file.seek(SeekFrom::Start(0))?;
                Ok((ArchiveFile::File(BufReader::new(file)), None))
            }
            Self::Memory(data) => Ok((ArchiveFile::Memory(Cursor::new(data)), None)),
        }
    }
}

impl Read for ArchiveFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::File(f) => f.read(buf),
            Self::Memory(m) => m.read(buf),
        }
    }
}

impl Seek for ArchiveFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        match self {
            Self::File(f) => f.seek(pos),
            Self::Memory(m) => m.seek(pos),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(spool: ArchiveSpool) -> (Vec<u8>, bool) {
        let (mut file, keep) = spool.finish().unwrap();
        file.seek(SeekFrom::Start(2)).unwrap();
        let mut out = Vec::new();
        file.read_to_end(&mut out).unwrap();
        (out, keep.is_some())
    }

    #[test]
    fn every_place_gives_back_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::new(dir.path()).unwrap();
        for (spool, kept) in [
            (ArchiveSpool::new(Some(&cache), "src"), true),
            (ArchiveSpool::new(None, "src"), false),
            (ArchiveSpool::Memory(Vec::new()), false),
        ] {
            let mut spool = spool;
            spool.write(b"0123");
            spool.write(&[b'x'; 300_000]);
            let (out, keep) = read_all(spool);
            assert_eq!(out.len(), 2 + 300_000);
            assert_eq!(&out[..2], b"23");
            assert_eq!(keep, kept);
        }
    }
}
