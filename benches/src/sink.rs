//! Postfix's `smtp-sink` as the shared next hop, with its running counters (`-c`) read
//! live so the harness knows when every relayed message has arrived.

use std::io::Read;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A running smtp-sink, killed on drop.
#[derive(Debug)]
pub struct Sink {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    messages: Arc<AtomicU64>,
}

impl Sink {
    /// Start on 127.0.0.1:`port` with a listen backlog of 1024.
    pub fn start(port: u16) -> Result<Self> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut cmd = Command::new("smtp-sink");
        cmd.arg("-c");
        if crate::procs::is_root() {
            // Root must name an unprivileged user to switch to.
            cmd.args(["-u", "nobody"]);
        }
        let mut child = cmd
            .arg(addr.to_string())
            .arg("1024")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting smtp-sink (Debian package postfix)")?;
        crate::cleanup::track_pid(child.id());
        let mut out = child.stdout.take().context("smtp-sink stdout")?;
        let messages = Arc::new(AtomicU64::new(0));
        let m = messages.clone();
        // The counters look like "sess=3 quit=3 mesg=7\r", one update per event.
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            let mut line = Vec::with_capacity(64);
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                for &b in &buf[..n] {
                    if b == b'\r' || b == b'\n' {
                        if let Some(v) = parse_mesg(&line) {
                            m.store(v, Ordering::Release);
                        }
                        line.clear();
                    } else {
                        line.push(b);
                    }
                }
            }
        });
        let sink = Self {
            child,
            addr,
            messages,
        };
        sink.wait_listening()?;
        Ok(sink)
    }

    fn wait_listening(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok()
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("smtp-sink is not listening on {} after 10 s", self.addr)
    }

    /// Messages received so far (each completed DATA).
    pub fn messages(&self) -> u64 {
        self.messages.load(Ordering::Acquire)
    }

    /// Wait until at least `target` messages arrived; the instant the last one did, or
    /// None after `timeout`.
    pub fn wait_for(&self, target: u64, timeout: Duration) -> Option<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.messages() >= target {
                return Some(Instant::now());
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

fn parse_mesg(line: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(line).ok()?;
    let v = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix("mesg="))?;
    v.parse().ok()
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        crate::cleanup::untrack_pid(self.child.id());
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_counters() {
        assert_eq!(super::parse_mesg(b"sess=3 quit=3 mesg=7"), Some(7));
        assert_eq!(super::parse_mesg(b"garbage"), None);
    }
}
