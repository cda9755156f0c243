//! A tiny SMTP sink for the embedded demo only: it accepts every message and writes it
//! to a directory, one file per message. It is not a mail server (no queue, no delivery);
//! it exists so `postern-gateway` with no arguments works on a machine with nothing else
//! running. Real deployments relay to a real MTA.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::net::Stream;
use crate::smtp::data::{DataDecoder, Progress};
use crate::wire::io::{DATA_CHUNK, LineIo};

/// Start the sink on `addr` (port 0 for any); returns the bound address.
pub(crate) async fn start(addr: SocketAddr, dir: PathBuf) -> std::io::Result<SocketAddr> {
    std::fs::create_dir_all(&dir)?;
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        let seq = std::sync::Arc::new(AtomicU64::new(0));
        while let Ok((tcp, _)) = listener.accept().await {
            let dir = dir.clone();
            let seq = seq.clone();
            tokio::spawn(async move {
                if let Err(e) = session(tcp, dir, seq).await {
                    warn!(error = %e, "demo sink session failed");
                }
            });
        }
    });
    Ok(bound)
}

async fn session(
    tcp: tokio::net::TcpStream,
    dir: PathBuf,
    seq: std::sync::Arc<AtomicU64>,
) -> std::io::Result<()> {
    let mut io = LineIo::new(Stream::Plain(tcp));
    io.wbuf
        .extend_from_slice(b"220 demo-sink ESMTP (Postern demo sink, not a mail server)\r\n");
    loop {
        let line = loop {
            match io.take_line(4096) {
                Some(Ok(l)) => break l,
                Some(Err(_)) => {
                    io.wbuf.extend_from_slice(b"500 5.5.2 line too long\r\n");
                    continue;
                }
                None => {
                    io.flush().await?;
                    if io.fill(1024).await? == 0 {
                        return Ok(());
                    }
                }
            }
        };
        let verb = String::from_utf8_lossy(&line[..line.len().min(4)]).to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" => io.wbuf.extend_from_slice(
                b"250-demo-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 104857600\r\n",
            ),
            "QUIT" => {
                io.wbuf.extend_from_slice(b"221 2.0.0 bye\r\n");
                io.flush().await?;
                return Ok(());
            }
            "DATA" => {
                io.wbuf.extend_from_slice(b"354 go ahead\r\n");
                io.flush().await?;
                let mut decoder = DataDecoder::new(100 * 1024 * 1024);
                let mut message = Vec::new();
                loop {
                    let p = decoder.feed(&io.rbuf, &mut message);
                    match p {
                        Progress::End { consumed } => {
                            io.consume(consumed);
                            break;
                        }
                        Progress::BareNewline => return Ok(()),
                        Progress::NeedMore => {
                            let n = io.rbuf.len();
                            io.consume(n);
                            if io.fill(DATA_CHUNK).await? == 0 {
                                return Ok(());
                            }
                        }
                    }
                }
                let n = seq.fetch_add(1, Ordering::Relaxed);
                let path = dir.join(format!("message-{n:04}.eml"));
                tokio::fs::write(&path, &message).await?;
                info!(file = %path.display(), bytes = message.len(), "demo sink stored a message");
                io.wbuf.extend_from_slice(format!("250 2.0.0 stored as {}\r\n", path.display()).as_bytes());
            }
            _ => io.wbuf.extend_from_slice(b"250 2.0.0 ok\r\n"),
        }
    }
}
