//! Reading the PROXY protocol header off an accepted connection from a trusted proxy,
//! before any SMTP or TLS, within [`HEADER_DEADLINE`] and [`proxy_header::MAX_HEADER`]
//! bytes. Where the bytes after the header go depends on what the listener speaks first
//! ([`After`]).

use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::proxy_header::{self, Header, HeaderError};

/// How long a trusted proxy has to send the whole header. Proxies send it at once, on
/// connect; this is short so that a connection that does not costs little.
pub(crate) const HEADER_DEADLINE: Duration = Duration::from_secs(5);

/// Why no header was read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    /// The bytes are not a valid header.
    #[error("{0}")]
    Header(#[from] HeaderError),
    /// The peer sent nothing (or not all of a header) in time.
    #[error("no complete PROXY header within {HEADER_DEADLINE:?}")]
    Timeout,
    /// The peer closed the connection before a complete header.
    #[error("connection closed before a complete PROXY header")]
    Closed,
    /// Reading failed.
    #[error("reading the PROXY header failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Where the bytes that follow the header go.
#[derive(Debug)]
pub(crate) enum After<'a> {
    /// They stay in the socket: exactly the header's bytes are consumed (peek, then read
    /// its length). For implicit TLS, whose ClientHello must reach the TLS stack as sent.
    InSocket,
    /// Into this buffer, which becomes the session's SMTP read buffer: the header is read
    /// with plain reads (normally one) and whatever the client sent after it stays there.
    /// Saves the peek, a system call per connection, on the plaintext start of a session.
    Buffer(&'a mut BytesMut),
}

/// Read the header.
pub(crate) async fn read_header(
    tcp: &mut TcpStream,
    after: After<'_>,
) -> Result<Header, ReadError> {
    tokio::time::timeout(HEADER_DEADLINE, async {
        match after {
            After::InSocket => peek_then_read(tcp).await,
            After::Buffer(buf) => read_into(tcp, buf).await,
        }
    })
    .await
    .unwrap_or(Err(ReadError::Timeout))
}

/// Read until `buf` starts with a complete header, then drop the header's bytes from it.
/// A header is at most [`proxy_header::MAX_HEADER`] bytes, so the loop ends: `parse`
/// refuses a longer one.
async fn read_into(tcp: &mut TcpStream, buf: &mut BytesMut) -> Result<Header, ReadError> {
    loop {
        if tcp.read_buf(buf).await? == 0 {
            return Err(ReadError::Closed);
        }
        if let Some((header, len)) = proxy_header::parse(buf)? {
            buf.advance(len);
            return Ok(header);
        }
    }
}

/// Peek until the header is complete, then consume exactly its length; a peek that shows
/// nothing new waits a little before the next (the header normally arrives in one
/// segment, so this loop runs once).
async fn peek_then_read(tcp: &mut TcpStream) -> Result<Header, ReadError> {
    // On the heap: a buffer inline would make every proxied connection's task larger.
    let mut buf = vec![0u8; proxy_header::MAX_HEADER];
    let mut seen = 0;
    let mut pause = Duration::from_millis(1);
    loop {
        let n = tcp.peek(&mut buf).await?;
        if n == 0 {
            return Err(ReadError::Closed);
        }
        if let Some((header, len)) = proxy_header::parse(&buf[..n])? {
            tcp.read_exact(&mut buf[..len]).await?;
            return Ok(header);
        }
        if n == seen {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
        seen = n;
    }
}
