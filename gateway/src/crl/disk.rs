//! The optional on-disk cache: the last good file of each source, so a restarted gateway
//! enforces its CRLs at once instead of waiting for the network. Files are written
//! atomically (temporary file + rename) and re-verified like a fetch when read back.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::fetch::Validators;
use postern_config::CrlFormat;
use postern_config::protocol::ServedBy;

/// What is known about a cached file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CacheMeta {
    /// The URL that served it.
    pub url: String,
    /// Primary or secondary.
    pub served_by: ServedBy,
    /// Its format.
    pub format: CrlFormat,
    /// HTTP validators for the next conditional request.
    #[serde(default)]
    pub validators: Validators,
    /// When it was fetched, Unix seconds.
    pub fetched_at: i64,
    /// SHA-256 of the file, hex (a torn or swapped file is ignored).
    pub sha256: String,
}

/// A directory of cached CRL files.
#[derive(Clone, Debug)]
pub(crate) struct DiskCache {
    dir: PathBuf,
}

impl DiskCache {
    /// Use (and create) `dir`.
    pub(crate) fn new(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    /// The directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn paths(&self, source: &str) -> (PathBuf, PathBuf) {
        // Source names are Kubernetes object names; anything else is made file-safe and
        // disambiguated by a hash of the real name.
        let safe: String = source
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let stem = if safe == source && !source.starts_with('.') {
            safe
        } else {
            format!(
                "{safe}-{}",
                &hex::encode(Sha256::digest(source.as_bytes()))[..12]
            )
        };
        (
            self.dir.join(format!("{stem}.crl")),
            self.dir.join(format!("{stem}.json")),
        )
    }

    /// Store the last good file of `source`.
    pub(crate) fn save(&self, source: &str, bytes: &[u8], mut meta: CacheMeta) -> io::Result<()> {
        let (data, info) = self.paths(source);
        meta.sha256 = hex::encode(Sha256::digest(bytes));
        write_atomic(&data, bytes)?;
        let json = serde_json::to_vec_pretty(&meta).map_err(io::Error::other)?;
        write_atomic(&info, &json)
    }

    /// Start writing the file of `source` as it downloads; [`DiskCache::commit`] puts it
    /// in place once it is in force, and dropping the spool unused removes it.
    pub(crate) fn spool(&self, source: &str) -> Spool {
        let (data, _) = self.paths(source);
        let tmp = tmp_path(&data);
        match std::fs::File::create(&tmp) {
            Ok(f) => Spool {
                file: Some(io::BufWriter::with_capacity(256 * 1024, f)),
                tmp: Some(tmp),
                error: None,
            },
            Err(e) => Spool {
                file: None,
                tmp: None,
                error: Some(e),
            },
        }
    }

    /// Put a spooled file in place as the last good file of `source` (`meta.sha256` is
    /// the file's, hashed as it downloaded).
    pub(crate) fn commit(&self, source: &str, mut spool: Spool, meta: CacheMeta) -> io::Result<()> {
        if let Some(e) = spool.error.take() {
            return Err(e);
        }
        let (data, info) = self.paths(source);
        let (Some(file), Some(tmp)) = (spool.file.take(), spool.tmp.take()) else {
            return Err(io::Error::other("the spool was not written"));
        };
        let file = file.into_inner().map_err(io::IntoInnerError::into_error)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &data)?;
        let json = serde_json::to_vec_pretty(&meta).map_err(io::Error::other)?;
        write_atomic(&info, &json)
    }

    /// The cached file of `source`, opened at its start, with its size, if there is a
    /// consistent one: its SHA-256 is checked by reading it through once, so a torn or
    /// swapped file is never handed out, and it is never held whole to check it.
    pub(crate) fn open(&self, source: &str) -> io::Result<Option<(std::fs::File, u64, CacheMeta)>> {
        use std::io::{Read, Seek};
        let (data, info) = self.paths(source);
        let json = match std::fs::read(&info) {
            Ok(j) => j,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let meta: CacheMeta = serde_json::from_slice(&json)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let mut file = match std::fs::File::open(&data) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut sha = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut len = 0u64;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            sha.update(&buf[..n]);
            len += n as u64;
        }
        if hex::encode(sha.finalize()) != meta.sha256 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "cached file does not match its recorded SHA-256",
            ));
        }
        file.seek(io::SeekFrom::Start(0))?;
        Ok(Some((file, len, meta)))
    }

    /// The cached file of `source`, whole, if there is a consistent one.
    #[cfg(test)]
    pub(crate) fn load(&self, source: &str) -> io::Result<Option<(Vec<u8>, CacheMeta)>> {
        use std::io::Read;
        let Some((mut file, len, meta)) = self.open(source)? else {
            return Ok(None);
        };
        let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        file.read_to_end(&mut bytes)?;
        Ok(Some((bytes, meta)))
    }

    /// Forget `source`.
    pub(crate) fn remove(&self, source: &str) {
        let (data, info) = self.paths(source);
        let _ = std::fs::remove_file(info);
        let _ = std::fs::remove_file(data);
    }
}

/// A cache file being written as its body downloads ([`DiskCache::spool`]). A write
/// error is kept for [`DiskCache::commit`] to report (the load itself goes on).
#[derive(Debug)]
pub(crate) struct Spool {
    file: Option<io::BufWriter<std::fs::File>>,
    tmp: Option<PathBuf>,
    error: Option<io::Error>,
}

impl Spool {
    /// Whether the file could be created (else every write is dropped and the commit
    /// reports why).
    pub(crate) fn is_open(&self) -> bool {
        self.file.is_some()
    }

    /// The file as written so far, opened for reading (it stays to be committed).
    pub(crate) fn read_back(&mut self) -> io::Result<std::fs::File> {
        use std::io::Write;
        if let Some(e) = &self.error {
            return Err(io::Error::new(e.kind(), e.to_string()));
        }
        let (Some(file), Some(tmp)) = (&mut self.file, &self.tmp) else {
            return Err(io::Error::other("the spool was not written"));
        };
        file.flush()?;
        std::fs::File::open(tmp)
    }

    /// Append the next bytes of the file.
    pub(crate) fn write(&mut self, bytes: &[u8]) {
        use std::io::Write;
        if let Some(f) = &mut self.file
            && let Err(e) = f.write_all(bytes)
        {
            self.error = Some(e);
            self.file = None;
        }
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            self.file = None;
            let _ = std::fs::remove_file(tmp);
        }
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    path.with_extension(format!(
        "{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or("")
    ))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = tmp_path(path);
    std::fs::write(&tmp, bytes)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> CacheMeta {
        CacheMeta {
            url: "http://crl.example/a.crl".into(),
            served_by: ServedBy::Secondary,
            format: CrlFormat::Asn1,
            validators: Validators {
                etag: Some("\"v1\"".into()),
                last_modified: None,
            },
            fetched_at: 1_700_000_000,
            sha256: String::new(),
        }
    }

    #[test]
    fn round_trip_and_integrity() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::new(&dir.path().join("crls")).unwrap();
        assert_eq!(cache.load("a").unwrap(), None);
        cache.save("a", b"crl bytes", meta()).unwrap();
        let (bytes, m) = cache.load("a").unwrap().unwrap();
        assert_eq!(bytes, b"crl bytes");
        assert_eq!(m.served_by, ServedBy::Secondary);
        assert_eq!(m.validators.etag.as_deref(), Some("\"v1\""));

        std::fs::write(dir.path().join("crls/a.crl"), b"torn").unwrap();
        assert_eq!(
            cache.load("a").unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        cache.remove("a");
        assert_eq!(cache.load("a").unwrap(), None);
    }

    #[test]
    fn a_spooled_file_is_in_place_only_once_committed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::new(dir.path()).unwrap();
        cache.save("a", b"old", meta()).unwrap();
        let mut spool = cache.spool("a");
        spool.write(b"new ");
        spool.write(b"crl");
        drop(spool);
        assert_eq!(cache.load("a").unwrap().unwrap().0, b"old");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            2,
            "no temporary left"
        );
        let mut spool = cache.spool("a");
        spool.write(b"new ");
        spool.write(b"crl");
        let mut m = meta();
        m.sha256 = hex::encode(Sha256::digest(b"new crl"));
        cache.commit("a", spool, m).unwrap();
        assert_eq!(cache.load("a").unwrap().unwrap().0, b"new crl");
    }

    #[test]
    fn odd_names_stay_inside_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::new(dir.path()).unwrap();
        cache.save("../../etc/x", b"1", meta()).unwrap();
        cache.save("__.._.._etc_x", b"2", meta()).unwrap();
        assert_eq!(cache.load("../../etc/x").unwrap().unwrap().0, b"1");
        assert_eq!(cache.load("__.._.._etc_x").unwrap().unwrap().0, b"2");
        for e in std::fs::read_dir(dir.path()).unwrap() {
            let name = e.unwrap().file_name().into_string().unwrap();
            assert!(!name.contains('/'), "{name}");
        }
    }
}
