//! From a fetched body to CRLs in force, off the async threads, and the disk cache
//! written. A `format: Asn1` body is read as it downloads ([`super::stream`]): its chunks
//! go to the loading thread, which indexes the entries as they come, hashes the file and
//! writes it to the disk cache on the way, so the file is never held whole. Other formats
//! (PEM, ZIP) are read whole first, as before. Either way a file byte for byte the same as
//! the one in force is not put in force again, a refusal leaves the copy in force, and the
//! cache only ever holds a file that was put in force.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::budget::Share;
use super::disk::{CacheMeta, Spool};
use super::fetch::{Body, FetchError, Validators};
use super::schedule::{Ctx, Input, load_and_install};
use super::stream::StreamReader;
use super::unix_now;
use super::verify::Refusal;
use postern_config::protocol::ServedBy;
use postern_config::{CrlFormat, CrlSource};

/// Chunks on their way from the download to the loading thread (back-pressure: the
/// download waits while the loader is behind).
const CHUNKS_IN_FLIGHT: usize = 8;

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
    let outcome = if spec.format == CrlFormat::Asn1 {
        streamed(ctx, name, generation, spec, server, url, body, known).await
    } else {
        whole(ctx, name, generation, spec, server, url, body, known).await
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

/// A PEM or ZIP file: read whole, then loaded.
#[allow(clippy::too_many_arguments)]
async fn whole(
    ctx: &Arc<Ctx>,
    name: &str,
    generation: u64,
    spec: &CrlSource,
    server: ServedBy,
    url: &str,
    body: Body,
    known: Option<String>,
) -> Outcome {
    let read = body.bytes().await;
    let now = unix_now();
    let bytes = match read {
        Ok(b) => b,
        Err(e) => {
            return Outcome {
                now,
                result: Err(Failure::Fetch(e)),
                keep: Keep::Nothing,
            };
        }
    };
    // Hashing, parsing and indexing a big CRL takes a CPU for a fraction of a second:
    // keep it off the threads that run SMTP sessions, at a lower priority.
    let job = {
        let ctx = Arc::clone(ctx);
        let (name, spec, url) = (name.to_owned(), spec.clone(), url.to_owned());
        move || {
            let sha256 = hex::encode(Sha256::digest(&bytes));
            let r = if known.as_deref() == Some(sha256.as_str()) {
                Ok(None)
            } else {
                load_and_install(
                    &ctx,
                    &name,
                    generation,
                    &spec,
                    server,
                    &url,
                    Input::Bytes(&bytes),
                    false,
                    now,
                )
                .map(Some)
            };
            Outcome {
                now,
                result: r.map(|i| (sha256, i)).map_err(Failure::Refused),
                keep: Keep::Bytes(bytes),
            }
        }
    };
    super::loader::run(job).await.unwrap_or_else(|e| Outcome {
        now,
        result: Err(crashed(e)),
        keep: Keep::Nothing,
    })
}

/// A `format: Asn1` file: read, hashed, indexed and spooled to the disk cache as it
/// downloads, then verified and put in force.
#[allow(clippy::too_many_arguments)]
async fn streamed(
    ctx: &Arc<Ctx>,
    name: &str,
    generation: u64,
    spec: &CrlSource,
    server: ServedBy,
    url: &str,
    mut body: Body,
    known: Option<String>,
) -> Outcome {
    let (tx, mut rx) =
        tokio::sync::mpsc::channel::<Result<bytes::Bytes, FetchError>>(CHUNKS_IN_FLIGHT);
    let spool = ctx.cache.as_ref().map(|c| c.spool(name));
    let job = {
        let ctx = Arc::clone(ctx);
        let (name, spec, url) = (name.to_owned(), spec.clone(), url.to_owned());
        move || {
            let mut reader = StreamReader::new();
            let mut sha = Sha256::new();
            let mut spool = spool;
            while let Some(item) = rx.blocking_recv() {
                let chunk = match item {
                    Ok(c) => c,
                    Err(e) => {
                        return Outcome {
                            now: unix_now(),
                            result: Err(Failure::Fetch(e)),
                            keep: Keep::Nothing,
                        };
                    }
                };
                sha.update(&chunk);
                if let Some(s) = &mut spool {
                    s.write(&chunk);
                }
                reader.feed(&chunk);
            }
            let now = unix_now();
            let sha256 = hex::encode(sha.finalize());
            if known.as_deref() == Some(sha256.as_str()) {
                return Outcome {
                    now,
                    result: Ok((sha256, None)),
                    keep: Keep::Nothing,
                };
            }
            let r = load_and_install(
                &ctx,
                &name,
                generation,
                &spec,
                server,
                &url,
                Input::Streamed(reader.finish()),
                false,
                now,
            );
            Outcome {
                now,
                result: r.map(|i| (sha256, Some(i))).map_err(Failure::Refused),
                keep: spool.map_or(Keep::Nothing, Keep::Spool),
            }
        }
    };
    let pump = async move {
        loop {
            let item = body.chunk().await;
            let last = !matches!(item, Ok(Some(_)));
            let item = match item {
                Ok(Some(c)) => Ok(c),
                Ok(None) => break,
                Err(e) => Err(e),
            };
            if tx.send(item).await.is_err() || last {
                break;
            }
        }
    };
    let (_, outcome) = tokio::join!(pump, super::loader::run(job));
    outcome.unwrap_or_else(|e| Outcome {
        now: unix_now(),
        result: Err(crashed(e)),
        keep: Keep::Nothing,
    })
}
