//! Reading the PROXY protocol header off an accepted connection from a trusted proxy,
//! before any SMTP or TLS: exactly the header's bytes are consumed (whatever follows, a
//! TLS ClientHello or nothing, stays in the socket for the session), within
//! [`HEADER_DEADLINE`] and [`proxy_header::MAX_HEADER`] bytes.

use std::time::Duration;

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

/// Read the header. Peeks until the header is complete, then consumes exactly its
/// length; a peek that shows nothing new waits a little before the next (the header
/// normally arrives in one segment, so this loop runs once).
pub(crate) async fn read_header(tcp: &mut TcpStream) -> Result<Header, ReadError> {
    tokio::time::timeout(HEADER_DEADLINE, async {
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
    })
    .await
    .unwrap_or(Err(ReadError::Timeout))
}
