//! The log's writer: stderr, counting the lines it could not write.
//!
//! A log line that cannot be written (full disk, a closed or blocked pipe) is dropped, as
//! `main` asks of the subscriber: reporting it would go to the same stderr. The decision
//! log is the audit trail, so each dropped line is counted in
//! `postern_log_lines_dropped_total`, which an alert watches.

use std::io::{self, Write};

use prometheus_client::metrics::counter::Counter;
use tracing_subscriber::fmt::MakeWriter;

/// Makes one [`CountingWriter`] per log line.
#[derive(Clone, Debug)]
pub struct CountingStderr<W = fn() -> io::Stderr> {
    make: W,
    dropped: Counter,
}

impl CountingStderr {
    /// Lines go to stderr; failures count into `dropped`.
    pub fn new(dropped: Counter) -> Self {
        Self::with(io::stderr, dropped)
    }
}

impl<W> CountingStderr<W> {
    /// Lines go to what `make` returns (tests use a failing writer).
    pub fn with(make: W, dropped: Counter) -> Self {
        Self { make, dropped }
    }
}

/// Writes one line; counts it as dropped when any write or flush of it fails.
#[derive(Debug)]
pub struct CountingWriter<I> {
    inner: I,
    dropped: Counter,
    failed: bool,
}

impl<I: Write> Write for CountingWriter<I> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf).inspect_err(|_| self.failed = true)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush().inspect_err(|_| self.failed = true)
    }
}

impl<I> Drop for CountingWriter<I> {
    fn drop(&mut self) {
        // The subscriber makes one writer per event: a failure anywhere in it is one
        // line lost.
        if self.failed {
            self.dropped.inc();
        }
    }
}

impl<'a, W, I> MakeWriter<'a> for CountingStderr<W>
where
    W: Fn() -> I + 'static,
    I: Write,
{
    type Writer = CountingWriter<I>;

    fn make_writer(&'a self) -> Self::Writer {
        CountingWriter {
            inner: (self.make)(),
            dropped: self.dropped.clone(),
            failed: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Broken;

    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failed_line_is_counted_once() {
        let dropped = Counter::default();
        let make = CountingStderr::with(|| Broken, dropped.clone());
        let mut w = make.make_writer();
        assert!(w.write_all(b"one line\n").is_err());
        assert!(w.write_all(b"more of it\n").is_err());
        drop(w);
        assert_eq!(dropped.get(), 1);
    }

    #[test]
    fn a_written_line_is_not_counted() {
        let dropped = Counter::default();
        let make = CountingStderr::with(io::sink, dropped.clone());
        let mut w = make.make_writer();
        w.write_all(b"fine\n").unwrap();
        drop(w);
        assert_eq!(dropped.get(), 0);
    }
}
