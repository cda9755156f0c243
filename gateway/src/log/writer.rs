//! The log's writer: a quiet gateway writes each line as it is logged; a busy one
//! queues lines in memory for a thread of their own.
//!
//! A session never waits for the log's output (a slow disk, a pipe the container
//! runtime drains late). While the gateway logs fewer than [`BUSY_LINES_PER_SEC`] lines
//! and the output can take a line at once ([`Output::ready`]), the logging thread writes
//! its line itself: the line is in the log before the session's SMTP reply is sent,
//! which is what an operator (or a test) reading the log right after a session expects
//! (a refused TLS handshake's alert goes out before its line). Otherwise
//! the line is appended to a bounded queue and the session goes on; the writer thread
//! takes everything queued at once and writes it with one `write(2)`, and on a busy
//! gateway lets the next batch gather for [`LINGER`] before it looks again, so the
//! gateway makes a few hundred writes a second whatever its line rate: writing (or
//! waking a writer) for every line cost a busy gateway as much CPU as formatting the
//! lines. Lines keep their order across the two paths: a line is written inline only
//! when nothing is queued and no batch is being written.
//!
//! A line that finds the queue full, or that the output refuses (a full disk, a closed
//! pipe), is dropped and counted in `postern_log_lines_dropped_total`, which an alert
//! watches: the decision log is the audit trail, and a gap in it must show. Nothing is
//! reported on the output itself: it is the output that failed. The lines queued and
//! not yet written are `postern_log_lines_pending`: zero means every line logged so far
//! is in the output (what a reader of the log waits for on a busy gateway).
//!
//! An inline write waits for the output only where `poll(2)` cannot tell: a regular
//! file always polls writable, so a log redirected to a file on a stalled disk (a hung
//! NFS mount) holds the logging thread for that write. Pods log to a pipe, which the
//! poll covers.
//!
//! Written here rather than taken from `tracing-appender`, whose non-blocking writer
//! allocates and sends one message per line, writes each on its own, and does not count
//! the lines its output refused.

use std::io::{self, Write};
use std::os::fd::AsFd;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rustix::event::{PollFd, PollFlags, Timespec};
use tracing_subscriber::fmt::MakeWriter;

/// Bytes queued at most: a line that does not fit is dropped. At ~200 bytes a line,
/// tens of thousands of lines, a few seconds of a saturated gateway's log.
pub const QUEUE_BYTES: usize = 8 << 20;

/// A batch buffer larger than this is given back after its batch is written, so a burst
/// does not keep its memory.
const KEEP_BYTES: usize = 256 << 10;

/// How long the writer of a busy gateway lets lines gather after a write.
pub const LINGER: Duration = Duration::from_millis(2);

/// Above this many lines a second (a few hundred sessions a second), lines are queued
/// and the writer lingers.
pub const BUSY_LINES_PER_SEC: u64 = 2_000;

/// How long the line rate is measured over.
const RATE_WINDOW: Duration = Duration::from_millis(100);

/// How long [`LogGuard`] waits for the queue to be written at exit.
const DRAIN_WAIT: Duration = Duration::from_secs(5);

/// The longest line written inline: a pipe that polls writable has room for at least
/// this much (`PIPE_BUF`), so the write cannot wait.
const INLINE_MAX: usize = 4096;

/// What the writer counts.
#[derive(Clone, Debug, Default)]
pub struct LogMetrics {
    /// Lines that could not be written (queue full, output refused them, after exit).
    pub dropped: Counter,
    /// Lines queued and not yet written.
    pub pending: Gauge,
}

impl LogMetrics {
    /// Registers `postern_log_lines_dropped_total` and `postern_log_lines_pending`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "postern_log_lines_dropped",
            "Log lines (decision lines among them) that could not be written to stderr",
            self.dropped.clone(),
        );
        registry.register(
            "postern_log_lines_pending",
            "Log lines queued for the log's writer thread and not yet written",
            self.pending.clone(),
        );
    }
}

/// Where the lines go.
pub trait Output: Write + Send + 'static {
    /// Whether a line of up to [`INLINE_MAX`] bytes can be written now without waiting.
    fn ready(&self) -> bool;
}

impl Output for io::Stderr {
    fn ready(&self) -> bool {
        let fd = self.as_fd();
        let mut fds = [PollFd::new(&fd, PollFlags::OUT)];
        // An error or hang-up also polls ready: the write then fails at once, and the
        // line is counted lost.
        rustix::event::poll(&mut fds, Some(&Timespec::default())).is_ok_and(|n| n > 0)
    }
}

/// What is waiting to be written.
#[derive(Debug, Default)]
struct Queue {
    bytes: Vec<u8>,
    lines: u64,
    closed: bool,
    /// The writer thread is waiting for a line (and must be woken for one).
    idle: bool,
    rate: Rate,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    /// Held while a batch or an inline line is written: the lock that keeps lines in
    /// order. The writer thread takes it before it takes a batch from the queue.
    output: Mutex<Box<dyn Output>>,
    metrics: LogMetrics,
    capacity: usize,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("queue", &self.queue)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_output(&self) -> MutexGuard<'_, Box<dyn Output>> {
        self.output.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The output, if a line can go to it now without overtaking a queued one or
    /// waiting: nothing queued, no batch being written, a quiet gateway, an output
    /// ready to take it. Called with the queue locked.
    fn inline_output(&self, queue: &Queue, line: &[u8]) -> Option<MutexGuard<'_, Box<dyn Output>>> {
        if !queue.bytes.is_empty() || line.len() > INLINE_MAX || queue.rate.busy {
            return None;
        }
        let output = match self.output.try_lock() {
            Ok(output) => output,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        output.ready().then_some(output)
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
    /// Starts the writer thread on `out`, counting into `metrics`.
    pub fn start(out: impl Output, metrics: LogMetrics) -> io::Result<(Self, LogGuard)> {
        Self::with_capacity(out, metrics, QUEUE_BYTES)
    }

    /// [`LogWriter::start`] with a queue of `capacity` bytes (tests use small ones).
    pub fn with_capacity(
        out: impl Output,
        metrics: LogMetrics,
        capacity: usize,
    ) -> io::Result<(Self, LogGuard)> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
            output: Mutex::new(Box::new(out)),
            metrics,
            capacity,
        });
        let thread = std::thread::Builder::new()
            .name("postern-log".into())
            .spawn({
                let shared = shared.clone();
                move || write_batches(&shared)
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

    /// Writes one line now (a quiet gateway, an output ready for it) or queues it, or
    /// drops and counts it; never waits for the output.
    pub fn push(&self, line: &[u8]) {
        let mut queue = self.shared.lock();
        if queue.closed || queue.bytes.len() + line.len() > self.shared.capacity {
            drop(queue);
            self.shared.metrics.dropped.inc();
            return;
        }
        queue.rate.count(1);
        if let Some(mut output) = self.shared.inline_output(&queue, line) {
            drop(queue);
            if output
                .write_all(line)
                .and_then(|()| output.flush())
                .is_err()
            {
                self.shared.metrics.dropped.inc();
            }
            return;
        }
        queue.bytes.extend_from_slice(line);
        queue.lines += 1;
        // Under the queue's lock: the writer, which takes the line under it, counts it
        // written only after this.
        self.shared.metrics.pending.inc();
        let wake = std::mem::take(&mut queue.idle);
        drop(queue);
        if wake {
            self.shared.ready.notify_one();
        }
    }
}

/// The writer thread: waits for lines, takes them all, writes them in one go.
fn write_batches(shared: &Shared) {
    let mut batch = Vec::new();
    loop {
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
        // The output first, then the batch: a line written inline meanwhile went out
        // before every line of this batch (it found the queue empty).
        drop(queue);
        let mut output = shared.lock_output();
        let (lines, busy) = {
            let mut queue = shared.lock();
            std::mem::swap(&mut queue.bytes, &mut batch);
            (
                std::mem::take(&mut queue.lines),
                queue.rate.busy && !queue.closed,
            )
        };
        if output
            .write_all(&batch)
            .and_then(|()| output.flush())
            .is_err()
        {
            // Part of the batch may have been written; it is counted lost whole, as the
            // output does not say which lines it took.
            shared.metrics.dropped.inc_by(lines);
        }
        shared
            .metrics
            .pending
            .dec_by(i64::try_from(lines).unwrap_or(i64::MAX));
        drop(output);
        batch.clear();
        if batch.capacity() > KEEP_BYTES {
            batch.shrink_to(KEEP_BYTES);
        }
        if busy {
            std::thread::sleep(LINGER);
        }
    }
}

/// Lines logged per second, measured over [`RATE_WINDOW`].
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
    /// Counts `lines` logged and updates `busy`: whether the gateway logs more than
    /// [`BUSY_LINES_PER_SEC`] (as of the last full window, or already in this one).
    fn count(&mut self, lines: u64) {
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
        // The subscriber hands over a whole line in one call: written, queued (or
        // counted lost) as one.
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

    impl Output for Recorder {
        fn ready(&self) -> bool {
            true
        }
    }

    impl Output for io::Sink {
        fn ready(&self) -> bool {
            true
        }
    }

    struct Broken;

    impl Output for Broken {
        fn ready(&self) -> bool {
            true
        }
    }

    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from(io::ErrorKind::StorageFull))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// An output that blocks until told to go on (and polls so: never ready).
    struct Stalled(mpsc::Receiver<()>, Recorder);

    impl Output for Stalled {
        fn ready(&self) -> bool {
            false
        }
    }

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
        let metrics = LogMetrics::default();
        let (writer, guard) = LogWriter::start(out.clone(), metrics.clone()).unwrap();
        let mut expected = Vec::new();
        for i in 0..1000 {
            let line = format!("line {i}\n");
            writer.make_writer().write_all(line.as_bytes()).unwrap();
            expected.extend_from_slice(line.as_bytes());
        }
        drop(guard);
        assert_eq!(*out.0.lock().unwrap(), expected);
        assert_eq!(metrics.dropped.get(), 0);
        assert_eq!(metrics.pending.get(), 0);
    }

    #[test]
    fn a_quiet_gateways_line_is_written_before_push_returns() {
        let out = Recorder::default();
        let (writer, _guard) = LogWriter::start(out.clone(), LogMetrics::default()).unwrap();
        writer.push(b"at once\n");
        assert_eq!(*out.0.lock().unwrap(), b"at once\n");
    }

    #[test]
    fn a_busy_gateways_lines_are_queued_in_order_behind_the_inline_ones() {
        let out = Recorder::default();
        let (writer, guard) = LogWriter::start(out.clone(), LogMetrics::default()).unwrap();
        let window = (BUSY_LINES_PER_SEC * RATE_WINDOW.as_millis() as u64 / 1000) as usize;
        let lines: Vec<String> = (0..window * 3).map(|i| format!("line {i}\n")).collect();
        for line in &lines {
            writer.push(line.as_bytes());
        }
        // The window's worth was written inline; the rest waited for the writer thread.
        assert!(writer.shared.lock().rate.busy);
        drop(guard);
        assert_eq!(*out.0.lock().unwrap(), lines.concat().into_bytes());
    }

    #[test]
    fn lines_the_output_refuses_are_counted() {
        let metrics = LogMetrics::default();
        let (writer, guard) = LogWriter::start(Broken, metrics.clone()).unwrap();
        for _ in 0..3 {
            writer.push(b"lost\n");
        }
        drop(guard);
        assert_eq!(metrics.dropped.get(), 3);
        assert_eq!(metrics.pending.get(), 0);
    }

    #[test]
    fn a_stalled_output_fills_the_queue_and_the_rest_is_dropped_without_waiting() {
        let (go, wait) = mpsc::channel();
        let out = Recorder::default();
        let metrics = LogMetrics::default();
        let (writer, guard) =
            LogWriter::with_capacity(Stalled(wait, out.clone()), metrics.clone(), 10).unwrap();
        // The first line is taken by the writer thread, which then stalls in its write.
        writer.push(b"first\n");
        let taken = Instant::now();
        while writer.shared.lock().lines != 0 {
            assert!(taken.elapsed() < Duration::from_secs(10), "never taken");
            std::thread::yield_now();
        }
        writer.push(b"0123456\n"); // queued: 8 of 10 bytes
        writer.push(b"789\n"); // does not fit: dropped, and the push returned
        assert_eq!(metrics.dropped.get(), 1);
        // The stalled one and the queued one are not written yet.
        assert_eq!(metrics.pending.get(), 2);
        go.send(()).unwrap();
        go.send(()).unwrap();
        drop(guard);
        assert_eq!(*out.0.lock().unwrap(), b"first\n0123456\n");
        assert_eq!(metrics.dropped.get(), 1);
        assert_eq!(metrics.pending.get(), 0);
    }

    #[test]
    fn the_writer_lingers_only_on_a_busy_gateway() {
        let mut rate = Rate::default();
        rate.count(1);
        rate.count(10);
        assert!(!rate.busy);
        // More than a window's worth of lines at the busy rate, within the window.
        rate.count(BUSY_LINES_PER_SEC);
        assert!(rate.busy);
        // A quiet window after a busy one ends the lingering.
        rate.since = Instant::now() - RATE_WINDOW * 10;
        rate.lines = 0;
        rate.count(1);
        assert!(!rate.busy);
    }

    #[test]
    fn a_line_after_the_guard_is_gone_is_counted_lost() {
        let metrics = LogMetrics::default();
        let (writer, guard) = LogWriter::start(io::sink(), metrics.clone()).unwrap();
        drop(guard);
        writer.push(b"late\n");
        assert_eq!(metrics.dropped.get(), 1);
    }
}
