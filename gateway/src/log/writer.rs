//! The log's writer: lines are queued in memory and written by a thread of their own.
//!
//! A session never waits for the log's output (a slow disk, a pipe the container
//! runtime drains late): its formatted line is appended to a bounded queue and the
//! session goes on. The writer thread takes everything queued at once and writes it with
//! one `write(2)`. On a busy gateway (more than [`BUSY_LINES_PER_SEC`]) it then lets the
//! next batch gather for [`LINGER`] before it looks again, so the gateway makes a few
//! hundred writes a second whatever its line rate: waking the writer and writing for
//! every line cost a busy gateway as much CPU as formatting the lines. A quiet gateway's
//! line is written at once, and the writer is woken only when it had nothing to do.
//!
//! A line that finds the queue full, or that the output refuses (a full disk, a closed
//! pipe), is dropped and counted in `postern_log_lines_dropped_total`, which an alert
//! watches: the decision log is the audit trail, and a gap in it must show. Nothing is
//! reported on the output itself: it is the output that failed.
//!
//! Written here rather than taken from `tracing-appender`, whose non-blocking writer
//! allocates and sends one message per line, writes each on its own, and does not count
//! the lines its output refused.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use tracing_subscriber::fmt::MakeWriter;

/// Bytes queued at most: a line that does not fit is dropped. At ~200 bytes a line,
/// tens of thousands of lines, a few seconds of a saturated gateway's log.
pub const QUEUE_BYTES: usize = 8 << 20;

/// A batch buffer larger than this is given back after its batch is written, so a burst
/// does not keep its memory.
const KEEP_BYTES: usize = 256 << 10;

/// How long the writer of a busy gateway lets lines gather after a write.
pub const LINGER: Duration = Duration::from_millis(2);

/// Above this many lines a second (a few hundred sessions a second), the writer lingers.
pub const BUSY_LINES_PER_SEC: u64 = 2_000;

/// How long the line rate is measured over.
const RATE_WINDOW: Duration = Duration::from_millis(100);

/// How long [`LogGuard`] waits for the queue to be written at exit.
const DRAIN_WAIT: Duration = Duration::from_secs(5);

/// What is waiting to be written.
#[derive(Debug, Default)]
struct Queue {
    bytes: Vec<u8>,
    lines: u64,
    closed: bool,
    /// The writer thread is waiting for a line (and must be woken for one).
    idle: bool,
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    dropped: Counter,
    capacity: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Queues log lines for the writer thread; clones share the queue. The tracing
/// subscriber writes through it ([`MakeWriter`]).
#[derive(Clone, Debug)]
pub struct LogWriter {
    shared: Arc<Shared>,
}

/// Ends the writer thread when dropped, after it has written what was queued (waiting
/// [`DRAIN_WAIT`] at most for an output that does not take it). Kept by `main` for the
/// life of the process.
#[derive(Debug)]
#[must_use = "dropping the guard stops the log's writer"]
pub struct LogGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl LogWriter {
    /// Starts the writer thread on `out`; lines that are lost count into `dropped`.
    pub fn start<W: Write + Send + 'static>(
        out: W,
        dropped: Counter,
    ) -> io::Result<(Self, LogGuard)> {
        Self::with_capacity(out, dropped, QUEUE_BYTES)
    }

    /// [`LogWriter::start`] with a queue of `capacity` bytes (tests use small ones).
    pub fn with_capacity<W: Write + Send + 'static>(
        out: W,
        dropped: Counter,
        capacity: usize,
    ) -> io::Result<(Self, LogGuard)> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
            dropped,
            capacity,
        });
        let thread = std::thread::Builder::new()
            .name("postern-log".into())
            .spawn({
                let shared = shared.clone();
                move || write_batches(&shared, out)
            })?;
        Ok((
            Self {
                shared: shared.clone(),
            },
            LogGuard {
                shared,
                thread: Some(thread),
            },
        ))
    }

    /// Queues one line (or drops and counts it); never waits for the output.
    pub fn push(&self, line: &[u8]) {
        let mut queue = self.shared.lock();
        if queue.closed || queue.bytes.len() + line.len() > self.shared.capacity {
            drop(queue);
            self.shared.dropped.inc();
            return;
        }
        queue.bytes.extend_from_slice(line);
        queue.lines += 1;
        let wake = std::mem::take(&mut queue.idle);
        drop(queue);
        if wake {
            self.shared.ready.notify_one();
        }
    }
}

/// The writer thread: waits for lines, takes them all, writes them in one go.
fn write_batches<W: Write>(shared: &Shared, mut out: W) {
    let mut batch = Vec::new();
    let mut rate = Rate::default();
    loop {
        let lines = {
            let mut queue = shared.lock();
            while queue.bytes.is_empty() && !queue.closed {
                queue.idle = true;
                queue = shared
                    .ready
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            queue.idle = false;
            if queue.bytes.is_empty() {
                return;
            }
            std::mem::swap(&mut queue.bytes, &mut batch);
            std::mem::take(&mut queue.lines)
        };
        if out.write_all(&batch).and_then(|()| out.flush()).is_err() {
            // Part of the batch may have been written; it is counted lost whole, as the
            // output does not say which lines it took.
            shared.dropped.inc_by(lines);
        }
        batch.clear();
        if batch.capacity() > KEEP_BYTES {
            batch.shrink_to(KEEP_BYTES);
        }
        if rate.busy_after(lines) && !shared.lock().closed {
            std::thread::sleep(LINGER);
        }
    }
}

/// Lines written per second, measured over [`RATE_WINDOW`].
#[derive(Debug)]
struct Rate {
    since: Instant,
    lines: u64,
    busy: bool,
}

impl Default for Rate {
    fn default() -> Self {
        Self {
            since: Instant::now(),
            lines: 0,
            busy: false,
        }
    }
}

impl Rate {
    /// Counts `lines` written; whether the gateway logs more than [`BUSY_LINES_PER_SEC`]
    /// (as of the last full window, or already in this one).
    fn busy_after(&mut self, lines: u64) -> bool {
        self.lines += lines;
        let elapsed = self.since.elapsed();
        let window_lines = BUSY_LINES_PER_SEC * RATE_WINDOW.as_millis() as u64 / 1000;
        if elapsed >= RATE_WINDOW {
            self.busy = self.lines as f64 / elapsed.as_secs_f64() > BUSY_LINES_PER_SEC as f64;
            self.since = Instant::now();
            self.lines = 0;
        } else if self.lines > window_lines {
            self.busy = true;
        }
        self.busy
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        let mut queue = self.shared.lock();
        queue.closed = true;
        queue.idle = false;
        drop(queue);
        self.shared.ready.notify_one();
        let Some(thread) = self.thread.take() else {
            return;
        };
        // An output that never takes the queue (a pipe nobody reads) must not keep the
        // process from exiting: wait a while, then leave the thread behind.
        let deadline = Instant::now() + DRAIN_WAIT;
        while !thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        if thread.is_finished() {
            let _ = thread.join();
        }
    }
}

/// What the subscriber writes one event's line into.
#[derive(Debug)]
pub struct LineWriter<'a> {
    writer: &'a LogWriter,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // The subscriber hands over a whole line in one call: queued (or counted lost)
        // as one.
        self.writer.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter { writer: self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// An output that records what it was given, in one shared buffer.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<u8>>>);

    impl Write for Recorder {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    struct Broken;

    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from(io::ErrorKind::StorageFull))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// An output that blocks until told to go on.
    struct Stalled(mpsc::Receiver<()>, Recorder);

    impl Write for Stalled {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let _ = self.0.recv();
            self.1.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_is_written_in_order_by_the_time_the_guard_is_dropped() {
        let out = Recorder::default();
        let dropped = Counter::default();
        let (writer, guard) = LogWriter::start(out.clone(), dropped.clone()).unwrap();
        let mut expected = Vec::new();
        for i in 0..1000 {
            let line = format!("line {i}\n");
            writer.make_writer().write_all(line.as_bytes()).unwrap();
            expected.extend_from_slice(line.as_bytes());
        }
        drop(guard);
        assert_eq!(*out.0.lock().unwrap(), expected);
        assert_eq!(dropped.get(), 0);
    }

    #[test]
    fn lines_the_output_refuses_are_counted() {
        let dropped = Counter::default();
        let (writer, guard) = LogWriter::start(Broken, dropped.clone()).unwrap();
        for _ in 0..3 {
            writer.push(b"lost\n");
        }
        drop(guard);
        assert_eq!(dropped.get(), 3);
    }

    #[test]
    fn a_stalled_output_fills_the_queue_and_the_rest_is_dropped_without_waiting() {
        let (go, wait) = mpsc::channel();
        let out = Recorder::default();
        let dropped = Counter::default();
        let (writer, guard) =
            LogWriter::with_capacity(Stalled(wait, out.clone()), dropped.clone(), 10).unwrap();
        // The first line is taken by the writer thread, which then stalls in its write.
        writer.push(b"first\n");
        let taken = Instant::now();
        while writer.shared.lock().lines != 0 {
            assert!(taken.elapsed() < Duration::from_secs(10), "never taken");
            std::thread::yield_now();
        }
        writer.push(b"0123456\n"); // queued: 8 of 10 bytes
        writer.push(b"789\n"); // does not fit: dropped, and the push returned
        assert_eq!(dropped.get(), 1);
        go.send(()).unwrap();
        go.send(()).unwrap();
        drop(guard);
        assert_eq!(*out.0.lock().unwrap(), b"first\n0123456\n");
        assert_eq!(dropped.get(), 1);
    }

    #[test]
    fn the_writer_lingers_only_on_a_busy_gateway() {
        let mut rate = Rate::default();
        assert!(!rate.busy_after(1));
        assert!(!rate.busy_after(10));
        // More than a window's worth of lines at the busy rate, within the window.
        assert!(rate.busy_after(BUSY_LINES_PER_SEC));
        // A quiet window after a busy one ends the lingering.
        rate.since = Instant::now() - RATE_WINDOW * 10;
        rate.lines = 0;
        assert!(!rate.busy_after(1));
    }

    #[test]
    fn a_line_after_the_guard_is_gone_is_counted_lost() {
        let dropped = Counter::default();
        let (writer, guard) = LogWriter::start(io::sink(), dropped.clone()).unwrap();
        drop(guard);
        writer.push(b"late\n");
        assert_eq!(dropped.get(), 1);
    }
}
