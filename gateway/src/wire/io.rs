//! Buffered line I/O for one SMTP connection (either side).
//!
//! Replies are collected in a write buffer and flushed only before the connection would
//! wait for input, which is what makes PIPELINING cheap. The read buffer starts small
//! (idle connections must stay small) and grows only while message data streams through.

use std::io;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::net::Stream;

/// Read buffer size for an idle or command-phase connection.
pub(crate) const SMALL: usize = 1024;
/// Read size while message data streams through.
pub(crate) const DATA_CHUNK: usize = 16 * 1024;

/// A line, or why there is none.
#[derive(Debug)]
pub(crate) enum LineError {
    /// The line exceeded the limit; it was discarded up to its end.
    TooLong,
}

/// The connection and its buffers.
#[derive(Debug)]
pub(crate) struct LineIo {
    /// The stream.
    pub stream: Stream,
    /// Bytes read and not yet consumed.
    pub rbuf: BytesMut,
    /// Replies not yet sent.
    pub wbuf: Vec<u8>,
    discarding: bool,
}

impl LineIo {
    /// Wrap a stream. The read buffer is allocated by the first [`Self::fill`] (or handed
    /// in by a caller that already read bytes off the connection), not here.
    pub(crate) fn new(stream: Stream) -> Self {
        Self {
            stream,
            rbuf: BytesMut::new(),
            wbuf: Vec::new(),
            discarding: false,
        }
    }

    /// Take one complete line (without CRLF / LF) from the buffer, if there is one.
    /// `Some(Err(TooLong))` reports a discarded overlong line.
    pub(crate) fn take_line(&mut self, limit: usize) -> Option<Result<BytesMut, LineError>> {
        match memchr_lf(&self.rbuf) {
            Some(i) => {
                let mut line = self.rbuf.split_to(i + 1);
                if self.discarding {
                    self.discarding = false;
                    return Some(Err(LineError::TooLong));
                }
                line.truncate(i);
                if line.last() == Some(&b'\r') {
                    line.truncate(i - 1);
                }
                if line.len() > limit {
                    return Some(Err(LineError::TooLong));
                }
                Some(Ok(line))
            }
            None => {
                if self.rbuf.len() > limit {
                    // Drop what we have and keep dropping until the end of the line.
                    self.rbuf.clear();
                    self.discarding = true;
                }
                None
            }
        }
    }

    /// Read more bytes (at least one) into the buffer. `Ok(0)` is EOF.
    pub(crate) async fn fill(&mut self, chunk: usize) -> io::Result<usize> {
        if self.rbuf.capacity() - self.rbuf.len() < chunk.min(SMALL) {
            self.rbuf.reserve(chunk);
        }
        self.stream.read_buf(&mut self.rbuf).await
    }

    /// Give back memory after a large transfer, keeping unconsumed bytes.
    pub(crate) fn shrink(&mut self) {
        if self.rbuf.capacity() > 4 * SMALL {
            let mut small = BytesMut::with_capacity(SMALL.max(self.rbuf.len()));
            small.extend_from_slice(&self.rbuf);
            self.rbuf = small;
        }
        if self.wbuf.capacity() > 4 * SMALL {
            self.wbuf = Vec::new();
        }
    }

    /// Drop everything buffered for reading (after STARTTLS: no plaintext injection).
    pub(crate) fn discard_input(&mut self) -> usize {
        let n = self.rbuf.len();
        self.rbuf.clear();
        self.discarding = false;
        n
    }

    /// Consume `n` buffered bytes.
    pub(crate) fn consume(&mut self, n: usize) {
        self.rbuf.advance(n);
    }

    /// Send the write buffer.
    pub(crate) async fn flush(&mut self) -> io::Result<()> {
        if !self.wbuf.is_empty() {
            self.stream.write_all(&self.wbuf).await?;
            self.wbuf.clear();
        }
        self.stream.flush().await
    }

    /// Write bytes directly (bypassing the reply buffer), e.g. message data upstream.
    pub(crate) async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await
    }
}

fn memchr_lf(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|&b| b == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_and_overlong() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let mut io = LineIo::new(Stream::Plain(server));
        let mut c = client;
        c.write_all(b"NOOP\r\nQUIT\nxxxxxxxxxxxxxxxxxxxx")
            .await
            .unwrap();
        c.write_all(b"yyyy\r\nok\r\n").await.unwrap();
        let mut lines = Vec::new();
        while lines.len() < 4 {
            match io.take_line(10) {
                Some(Ok(l)) => lines.push(String::from_utf8(l.to_vec()).unwrap()),
                Some(Err(LineError::TooLong)) => lines.push("<too long>".into()),
                None => {
                    io.fill(64).await.unwrap();
                }
            }
        }
        assert_eq!(lines, ["NOOP", "QUIT", "<too long>", "ok"]);
    }
}
