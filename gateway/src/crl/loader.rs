//! Where fetched CRL files are parsed, verified and indexed: a thread of their own per
//! load, at a lower CPU priority (niceness +10 over the gateway's). Indexing a 50 MB CRL
//! takes about a second of CPU; on a busy gateway that second would otherwise be taken
//! from the threads serving SMTP sessions and show up in their handshake latency. At a
//! lower priority the load takes what the sessions leave (all of it on an idle gateway,
//! so loading at start is as fast as before) while the CRL in force keeps answering. A
//! fresh thread per load, because a thread's priority can be lowered but not raised
//! again without privileges, and loads are rare (a few per source per refresh interval).

use std::io::{Read, Seek, SeekFrom};
use std::time::{Duration, Instant};

/// Niceness of the loading threads.
const NICE: i32 = 10;

/// How a loading thread shares the CPUs while it reads a download.
///
/// A lower priority alone does not keep a refresh out of the sessions' latency: the loader
/// streams through tens of MB, evicting what the handshakes had in the CPU caches, and a
/// waking session may still wait for it to be descheduled. So while a copy of the source
/// is in force (a refresh: nothing waits for the new one), the loader rests after each
/// piece of work [`REST_FACTOR`] times as long as the work took: a tenth of a CPU. On the
/// 49-CA estate benchmark the 53 MiB CRL then goes in force in about 2.5 s instead of 0.4,
/// and the handshakes during the refresh keep their idle p99 (1.13–1.16x, against 1.5x
/// unpaced and 1.26–1.29x at half a CPU). A first load, which the source's certificates
/// are waiting for, only yields.
#[derive(Debug)]
pub(crate) struct Pace {
    refresh: bool,
}

/// How much longer a refresh's loader rests than it worked.
const REST_FACTOR: u32 = 9;

/// Longest rest after one piece of work (a piece normally takes a few milliseconds; one
/// that took long because the machine was busy does not stall the load for long).
const MAX_REST: Duration = Duration::from_millis(100);

impl Pace {
    /// Pace a refresh (`refresh`), or only yield.
    pub(crate) fn new(refresh: bool) -> Self {
        Self { refresh }
    }

    /// After a piece of work that took `worked`: give the CPU back.
    pub(crate) fn rest(&self, worked: Duration) {
        if self.refresh {
            std::thread::sleep((worked * REST_FACTOR).min(MAX_REST));
        } else {
            std::thread::yield_now();
        }
    }
}

/// A file read by a loading thread, paced as [`Pace`] says: after every [`PACED_BYTES`]
/// read it rests for the work done since the last rest, which is the reading and whatever
/// the reader did with the bytes (inflating, parsing, indexing). So a `format: Zip`
/// archive, read member by member from its file after the download, is paced like a
/// download without the loading code knowing.
#[derive(Debug)]
pub(crate) struct Paced<R> {
    inner: R,
    pace: Pace,
    since: Instant,
    read: usize,
}

/// Bytes read between two rests of a [`Paced`] file.
const PACED_BYTES: usize = 256 * 1024;

impl<R> Paced<R> {
    /// Read `inner` at `pace`.
    pub(crate) fn new(inner: R, pace: Pace) -> Self {
        Self {
            inner,
            pace,
            since: Instant::now(),
            read: 0,
        }
    }
}

impl<R: Read> Read for Paced<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n;
        if self.read >= PACED_BYTES {
            self.pace.rest(self.since.elapsed());
            self.since = Instant::now();
            self.read = 0;
        }
        Ok(n)
    }
}

impl<R: Seek> Seek for Paced<R> {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(pos)
    }
}

/// Run `job` on a new low-priority thread and wait for its result (an error if the thread
/// could not start or panicked).
pub(crate) async fn run<T: Send + 'static>(
    job: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("crl-load".to_owned())
        .spawn(move || {
            // Best effort: where the system refuses, the load runs at the gateway's priority.
            let me = Some(rustix::thread::gettid());
            if let Ok(nice) = rustix::process::getpriority_process(me) {
                let _ = rustix::process::setpriority_process(me, (nice + NICE).min(19));
            }
            let _ = tx.send(job());
        })
        .map_err(|e| format!("cannot start a loading thread: {e}"))?;
    rx.await
        .map_err(|_| "the loading thread panicked".to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_refresh_rests_longer_than_it_worked_and_a_first_load_does_not() {
        use std::time::{Duration, Instant};
        let t = Instant::now();
        super::Pace::new(true).rest(Duration::from_millis(2));
        assert!(t.elapsed() >= Duration::from_millis(18));
        let t = Instant::now();
        super::Pace::new(true).rest(Duration::from_secs(5));
        assert!(t.elapsed() < Duration::from_secs(5), "the rest is capped");
        let t = Instant::now();
        super::Pace::new(false).rest(Duration::from_secs(5));
        assert!(t.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn runs_the_job_at_a_lower_priority() {
        let nice = super::run(|| {
            rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap()
        })
        .await
        .unwrap();
        let ours = rustix::process::getpriority_process(None).unwrap();
        assert_eq!(nice, (ours + super::NICE).min(19));
        let panicked = super::run(|| -> u8 { panic!("boom") }).await;
        assert!(panicked.unwrap_err().contains("panicked"));
    }
}
