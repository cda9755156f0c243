//! From a fetched body (or the disk cache's file) to CRLs in force, off the async
//! threads, and the disk cache written. A `format: Asn1` body is read as it downloads
//! ([`super::stream`]): its chunks go to the loading thread, which indexes the entries as
//! they come, hashes the file and writes it to the disk cache on the way, so the file is
//! never held whole. A `format: Zip` body is written to a file as it downloads
//! ([`super::archive_file`]) and then read member by member from there. A PEM body is
//! read whole first. Either way a file byte for byte the same as the one in force is not
//! put in force again, a refusal leaves the copy in force, and the cache only ever holds a
//! file that was put in force.

use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::archive_file::{ArchiveFile, ArchiveSpool};
use super::budget::{LoadBudget, Share};
use super::disk::{CacheMeta, DiskCache, Spool};
use super::fetch::{Body, FetchError, FetchSettings, HttpFetcher, Validators};
use super::load::{load, load_archive, load_streamed};
use super::loader::{Pace, Paced};
use super::store::{CrlStore, Install};
use super::stream::{StreamReader, Streamed};
use super::verify::Refusal;
use super::{rfc3339, unix_now};
use postern_config::protocol::ServedBy;
use postern_config::{CrlFormat, CrlSource};

/// Shared by every source task.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub store: Arc<CrlStore>,
    pub settings: FetchSettings,
    pub fetcher: HttpFetcher,
    pub cache: Option<DiskCache>,
    /// Bounds the CRL files loading at once.
    pub budget: LoadBudget,
}

/// Batches on their way from the download to the loading thread (back-pressure: the
/// download waits while the loader is behind).
const BATCHES_IN_FLIGHT: usize = 4;

/// The download's chunks (a few KiB to a few dozen each) go to the loading thread in
/// batches of at least this many bytes. Per chunk, the download task and the loading
/// thread would wake each other thousands of times for a big CRL, and every wake of the
/// low-priority thread is a chance for it to take a CPU from a session; per batch it wakes
/// a few hundred times, works through the batch, and gives the CPU back
/// ([`super::loader::Pace`]) before it waits for the next.
const BATCH_BYTES: usize = 256 * 1024;

/// Why a fetched body was not put in force.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The body could not be read (network, timeout, over the size cap).
    Fetch(FetchError),
    /// The file was refused.
    Refused(Refusal),
}

/// What the loading thread did.
struct Outcome {
    /// When the body had been read (Unix seconds).
    now: i64,
    /// The file's SHA-256 and whether it was installed (`None`: the same file as in
    /// force, not loaded again).
    result: Result<(String, Option<bool>), Failure>,
    /// The file to write to the disk cache.
    keep: Keep,
}

/// The file to write to the disk cache once it is in force.
enum Keep {
    Nothing,
    Bytes(Vec<u8>),
    Spool(Spool),
}

/// Load a fetched body off the async threads, put it in force and write the disk cache.
/// A file byte for byte the same as the one in force (`known`, its SHA-256) is not put in
/// force again. Returns when the body was read, and the file's SHA-256. `share` (of the
/// load budget) is given back once the file is loaded and written to the disk cache.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn accept(
    ctx: &Arc<Ctx>,
    name: &str,
    generation: u64,
    spec: &CrlSource,
    server: ServedBy,
    url: &str,
    body: Body,
    validators: Validators,
    known: Option<String>,
    share: Share,
) -> (i64, Result<String, Failure>) {
    let _share = share;
    let to = Target {
        ctx: Arc::clone(ctx),
        name: name.to_owned(),
        generation,
        spec: spec.clone(),
        server,
        url: url.to_owned(),
    };
    let outcome = match spec.format {
        CrlFormat::Asn1 => streamed(to, body, known).await,
        CrlFormat::Zip => archive(to, body, known).await,
        CrlFormat::Pem => whole(to, body, known).await,
    };
    let Outcome { now, result, keep } = outcome;
    let (sha256, installed) = match result {
        Ok(done) => done,
        Err(f) => return (now, Err(f)),
    };
    let Some(installed) = installed else {
        ctx.store.metrics.fetched(name, server, "identical");
        ctx.store.not_modified(name, generation, server, now);
        tracing::info!(source = name, url, server = server.as_str(), outcome = "identical", sha256 = %sha256, "CRL unchanged on the server (the same bytes again); not parsed again");
        return (now, Ok(sha256));
    };
    if installed && let Some(cache) = ctx.cache.clone() {
        let meta = CacheMeta {
            url: url.to_owned(),
            served_by: server,
            format: spec.format,
            validators,
            fetched_at: now,
            sha256: sha256.clone(),
        };
        let source = name.to_owned();
        let saved = tokio::task::spawn_blocking(move || match keep {
            Keep::Bytes(bytes) => cache.save(&source, &bytes, meta),
            Keep::Spool(spool) => cache.commit(&source, spool, meta),
            Keep::Nothing => Ok(()),
        })
        .await;
        match saved {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(source = name, error = %e, "cannot write the CRL disk cache")
            }
            Err(e) => tracing::warn!(source = name, error = %e, "cannot write the CRL disk cache"),
        }
    }
    (now, Ok(sha256))
}

fn crashed(e: String) -> Failure {
    Failure::Refused(Refusal::Parse(super::parse::ParseError::Malformed {
        index: 0,
        reason: format!("the loader crashed: {e}"),
    }))
}

/// The source a body is loaded for.
struct Target {
    ctx: Arc<Ctx>,
    name: String,
    generation: u64,
    spec: CrlSource,
    server: ServedBy,
    url: String,
}

impl Target {
    /// How the loading thread paces itself: a refresh (a copy of the source is in force)
    /// leaves the CPUs to the sessions.
    fn pace(&self) -> Pace {
        Pace::new(!self.ctx.store.in_force(&self.name).0.is_empty())
    }

    /// Load `input` and put it in force (blocking).
    fn install(&self, input: Input<'_>, now: i64) -> Result<bool, Refusal> {
        load_and_install(
            &self.ctx,
            &self.name,
            self.generation,
            &self.spec,
            self.server,
            &self.url,
            input,
            false,
            now,
        )
    }
}

/// A PEM file: read whole, then loaded.
async fn whole(to: Target, body: Body, known: Option<String>) -> Outcome {
    let read = body.bytes().await;
    let now = unix_now();
    let bytes = match read {
        Ok(b) => b,
        Err(e) => return failed(now, Failure::Fetch(e)),
    };
    // Hashing, parsing and indexing a big CRL takes a CPU for a fraction of a second:
    // keep it off the threads that run SMTP sessions, at a lower priority.
    let job = move || {
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let r = if known.as_deref() == Some(sha256.as_str()) {
            Ok(None)
        } else {
            to.install(Input::Bytes(&bytes), now).map(Some)
        };
        Outcome {
            now,
            result: r.map(|i| (sha256, i)).map_err(Failure::Refused),
            keep: Keep::Bytes(bytes),
        }
    };
    super::loader::run(job)
        .await
        .unwrap_or_else(|e| failed(now, crashed(e)))
}

/// A `format: Asn1` file: read, hashed, indexed and spooled to the disk cache as it
/// downloads, then verified and put in force.
async fn streamed(to: Target, body: Body, known: Option<String>) -> Outcome {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Batch>(BATCHES_IN_FLIGHT);
    let job = move || {
        let mut spool = to.ctx.cache.as_ref().map(|c| c.spool(&to.name));
        let mut reader = StreamReader::new();
        let read = receive(&mut rx, &to.pace(), |chunk| {
            if let Some(s) = &mut spool {
                s.write(chunk);
            }
            reader.feed(chunk);
        });
        let (now, sha256) = match read {
            Ok(sha256) => (unix_now(), sha256),
            Err(e) => return failed(unix_now(), Failure::Fetch(e)),
        };
        if known.as_deref() == Some(sha256.as_str()) {
            return unchanged(now, sha256);
        }
        let r = to.install(Input::Streamed(reader.finish()), now);
        Outcome {
            now,
            result: r.map(|i| (sha256, Some(i))).map_err(Failure::Refused),
            keep: spool.map_or(Keep::Nothing, Keep::Spool),
        }
    };
    let (_, outcome) = tokio::join!(pump(body, tx), super::loader::run(job));
    outcome.unwrap_or_else(|e| failed(unix_now(), crashed(e)))
}

/// A `format: Zip` file: hashed and written to a file as it downloads, then read member
/// by member from that file, verified and put in force.
async fn archive(to: Target, body: Body, known: Option<String>) -> Outcome {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Batch>(BATCHES_IN_FLIGHT);
    let job = move || {
        let mut spool = ArchiveSpool::new(to.ctx.cache.as_ref(), &to.name);
        let (now, sha256) = match receive(&mut rx, &to.pace(), |chunk| spool.write(chunk)) {
            Ok(sha256) => (unix_now(), sha256),
            Err(e) => return failed(unix_now(), Failure::Fetch(e)),
        };
        if known.as_deref() == Some(sha256.as_str()) {
            return unchanged(now, sha256);
        }
        let (file, cached) = match spool.finish() {
            Ok(done) => done,
            Err(e) => return failed(now, Failure::Fetch(FetchError::Spool(e.to_string()))),
        };
        let r = to.install(Input::Archive(Paced::new(file, to.pace())), now);
        Outcome {
            now,
            result: r.map(|i| (sha256, Some(i))).map_err(Failure::Refused),
            keep: cached.map_or(Keep::Nothing, Keep::Spool),
        }
    };
    let (_, outcome) = tokio::join!(pump(body, tx), super::loader::run(job));
    outcome.unwrap_or_else(|e| failed(unix_now(), crashed(e)))
}

/// What goes from the download to the loading thread: a batch of chunks, or why the
/// download failed.
type Batch = Result<Vec<bytes::Bytes>, FetchError>;

/// On the loading thread: every chunk of the download to `each`, in order, resting after
/// each batch as `pace` says. Returns the file's SHA-256 (hex), or the download's error.
fn receive(
    rx: &mut tokio::sync::mpsc::Receiver<Batch>,
    pace: &Pace,
    mut each: impl FnMut(&[u8]),
) -> Result<String, FetchError> {
    let mut sha = Sha256::new();
    while let Some(batch) = rx.blocking_recv() {
        let started = Instant::now();
        for chunk in &batch? {
            sha.update(chunk);
            each(chunk);
        }
        pace.rest(started.elapsed());
    }
    Ok(hex::encode(sha.finalize()))
}

/// The outcome of a file byte for byte the same as the one in force: not loaded again.
fn unchanged(now: i64, sha256: String) -> Outcome {
    Outcome {
        now,
        result: Ok((sha256, None)),
        keep: Keep::Nothing,
    }
}

/// Read `body` and send it on in batches of at least [`BATCH_BYTES`] (the last may be
/// smaller), then a download error if there is one. Ends early when the loading thread
/// has stopped taking batches.
async fn pump(mut body: Body, tx: tokio::sync::mpsc::Sender<Batch>) {
    let mut batch = Vec::new();
    let mut bytes = 0;
    loop {
        match body.chunk().await {
            Ok(Some(c)) => {
                bytes += c.len();
                batch.push(c);
                if bytes < BATCH_BYTES {
                    continue;
                }
            }
            Ok(None) => {
                if !batch.is_empty() {
                    let _ = tx.send(Ok(batch)).await;
                }
                return;
            }
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        }
        bytes = 0;
        if tx.send(Ok(std::mem::take(&mut batch))).await.is_err() {
            return;
        }
    }
}

/// An outcome without a file.
fn failed(now: i64, f: Failure) -> Outcome {
    Outcome {
        now,
        result: Err(f),
        keep: Keep::Nothing,
    }
}

/// A file to load: whole in memory, or read as it downloaded.
pub(crate) enum Input<'a> {
    /// The whole file.
    Bytes(&'a [u8]),
    /// A `format: Asn1` file read by [`super::stream::StreamReader`].
    Streamed(Streamed),
    /// A `format: Zip` archive, read member by member.
    Archive(Paced<ArchiveFile>),
}

/// The disk cache's file of a source (`file`, opened at its start) as an [`Input`], read
/// as a download of its format is, so that a restart does not hold a big CRL or archive
/// whole either: DER through the stream reader, an archive from the file itself, PEM
/// whole (into `pem`).
pub(crate) fn cached_input(
    mut file: std::fs::File,
    format: CrlFormat,
    pem: &mut Vec<u8>,
) -> std::io::Result<Input<'_>> {
    use std::io::Read;
    match format {
        CrlFormat::Asn1 => {
            let mut reader = StreamReader::new();
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    return Ok(Input::Streamed(reader.finish()));
                }
                reader.feed(&buf[..n]);
            }
        }
        CrlFormat::Zip => Ok(Input::Archive(Paced::new(
            ArchiveFile::File(std::io::BufReader::new(file)),
            Pace::new(false),
        ))),
        CrlFormat::Pem => {
            file.read_to_end(pem)?;
            Ok(Input::Bytes(pem))
        }
    }
}

/// Parse, verify, index and put in force (blocking). Returns whether it was installed
/// (false when the source changed meanwhile).
#[allow(clippy::too_many_arguments)]
pub(crate) fn load_and_install(
    ctx: &Ctx,
    name: &str,
    generation: u64,
    spec: &CrlSource,
    server: ServedBy,
    url: &str,
    input: Input<'_>,
    from_disk: bool,
    now: i64,
) -> Result<bool, Refusal> {
    let trust = ctx.store.trust();
    let (current, missing) = ctx.store.in_force(name);
    let started = std::time::Instant::now();
    let loaded = match input {
        Input::Bytes(bytes) => load(bytes, spec.format, &trust, &current, missing, now)?,
        Input::Streamed(streamed) => load_streamed(streamed, &trust, &current, missing, now)?,
        Input::Archive(file) => load_archive(file, &trust, &current, missing, now)?,
    };
    let took = started.elapsed();
    let outcome = if loaded.changed {
        "updated"
    } else {
        "unchanged"
    };
    for issuer in &loaded.retained {
        tracing::warn!(source = name, url, issuer = %issuer, "the file no longer has a CRL for this issuer; the copy in force is kept");
    }
    for ix in &loaded.crls {
        let m = &ix.meta;
        tracing::info!(
            source = name,
            url,
            server = server.as_str(),
            outcome,
            from_disk,
            issuer = %m.issuer,
            crl_number = %m.crl_number.as_ref().map(ToString::to_string).unwrap_or_default(),
            this_update = %rfc3339(m.this_update),
            next_update = %m.next_update.map(rfc3339).unwrap_or_default(),
            stale = m.is_stale(now),
            entries = m.entries,
            index_bytes = ix.heap_bytes(),
            load_ms = took.as_millis() as u64,
            "CRL in force"
        );
    }
    if !from_disk {
        ctx.store.metrics.fetched(name, server, outcome);
    }
    Ok(ctx.store.install(
        name,
        generation,
        Install {
            loaded,
            served_by: server,
            url: url.to_owned(),
            from_disk,
            at: now,
        },
    ))
}
