//! Postfix's `smtp-sink` as the next hop: started on a free loopback port, killed on drop.
//! It can keep one dump file per message in a temporary directory (the tests read what
//! the gateway relayed), and report its running counters (`-c`), read live, so that the
//! benchmark knows when every relayed message has arrived.

use std::collections::HashSet;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::ports::free_port;
use crate::process;

/// A running smtp-sink.
#[derive(Debug)]
pub struct Sink {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: tempfile::TempDir,
    count: Arc<AtomicU64>,
}

/// One message as smtp-sink dumped it.
#[derive(Debug, Clone)]
pub struct Dumped {
    /// The file.
    pub path: PathBuf,
    /// `X-Mail-Args` (the MAIL FROM argument as sent to the sink).
    pub mail_from: String,
    /// `X-Rcpt-Args` values.
    pub rcpts: Vec<String>,
    /// The message as the gateway sent it (after smtp-sink's own trace lines), LF endings.
    pub message: String,
}

/// How to start smtp-sink: [`Sink::builder`].
#[derive(Debug, Clone)]
pub struct SinkBuilder {
    extra: Vec<String>,
    backlog: u32,
    dump: bool,
    count: bool,
}

impl SinkBuilder {
    /// More smtp-sink options (e.g. `["-f", "RCPT"]` to refuse RCPT with 5xx).
    pub fn args(mut self, extra: &[&str]) -> Self {
        self.extra.extend(extra.iter().map(|s| (*s).to_owned()));
        self
    }

    /// Listen backlog (default 256).
    pub fn backlog(mut self, n: u32) -> Self {
        self.backlog = n;
        self
    }

    /// Whether to dump every message to a file (default yes; see [`Sink::messages`]).
    pub fn dump(mut self, dump: bool) -> Self {
        self.dump = dump;
        self
    }

    /// Read smtp-sink's counters (default no; see [`Sink::count`]).
    pub fn count(mut self, count: bool) -> Self {
        self.count = count;
        self
    }

    /// Start on a free port and wait until it accepts connections.
    pub fn start(self) -> Result<Sink> {
        let bin = process::system_tool("smtp-sink").context(
            "smtp-sink not found: install Debian's postfix package (tests/support/install-deps.sh does)",
        )?;
        // A port picked as free can be taken by someone else before smtp-sink binds it.
        for _ in 0..5 {
            let dir = tempfile::Builder::new().prefix("postern-sink-").tempdir()?;
            let mut cmd = Command::new(&bin);
            if process::is_root() {
                // Root must name an unprivileged user to switch to.
                cmd.args(["-u", "nobody"]);
            }
            if self.dump {
                let dump = dir.path().join("dump");
                std::fs::create_dir(&dump)?;
                // smtp-sink runs as nobody (-u) when started as root: the dump dir must be
                // writable.
                Command::new("chmod").arg("777").arg(&dump).status()?;
                cmd.arg("-d").arg(format!("{}/%H%M%S.", dump.display()));
            }
            if self.count {
                cmd.arg("-c");
            }
            let port = free_port();
            let mut child = cmd
                .args(&self.extra)
                .arg(format!("127.0.0.1:{port}"))
                .arg(self.backlog.to_string())
                .stdin(Stdio::null())
                .stdout(if self.count {
                    Stdio::piped()
                } else {
                    Stdio::null()
                })
                .stderr(Stdio::null())
                .spawn()
                .context("starting smtp-sink (Debian package postfix)")?;
            process::track(child.id());
            let count = Arc::new(AtomicU64::new(0));
            if let Some(out) = child.stdout.take() {
                read_counters(out, count.clone());
            }
            let mut sink = Sink {
                child: Some(child),
                port,
                dir,
                count,
            };
            if sink.wait_ready() {
                return Ok(sink);
            }
        }
        bail!("smtp-sink did not start")
    }
}

/// smtp-sink's counters look like "sess=3 quit=3 mesg=7\r", one update per event.
fn read_counters(mut out: impl Read + Send + 'static, messages: Arc<AtomicU64>) {
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
                        messages.store(v, Ordering::Release);
                    }
                    line.clear();
                } else {
                    line.push(b);
                }
            }
        }
    });
}

fn parse_mesg(line: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(line).ok()?;
    let v = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix("mesg="))?;
    v.parse().ok()
}

impl Sink {
    /// A sink that dumps messages, backlog 256.
    pub fn builder() -> SinkBuilder {
        SinkBuilder {
            extra: Vec::new(),
            backlog: 256,
            dump: true,
            count: false,
        }
    }

    /// Start a dumping sink with extra options (e.g. `["-f", "RCPT"]` to refuse RCPT
    /// with 5xx).
    pub fn start(extra: &[&str]) -> Result<Self> {
        Self::builder().args(extra).start()
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let exited = self
                .child
                .as_mut()
                .is_none_or(|c| matches!(c.try_wait(), Ok(Some(_))));
            if exited {
                return false;
            }
            let addr = self.addr();
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The messages dumped so far, oldest first: only those smtp-sink has finished (it
    /// creates a message's file at MAIL and closes it after the final dot).
    pub fn messages(&self) -> Vec<Dumped> {
        let Some(pid) = self.child.as_ref().map(Child::id) else {
            return Vec::new();
        };
        read_dumps(&self.dir.path().join("dump"), pid)
    }

    /// Wait until `n` messages were dumped (smtp-sink writes after its 250).
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Dumped> {
        let deadline = Instant::now() + timeout;
        loop {
            let m = self.messages();
            if m.len() >= n || Instant::now() > deadline {
                return m;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Messages received so far (each completed DATA), when started counting.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }

    /// Wait until at least `target` messages arrived (when started counting); the
    /// instant the last one did, or None after `timeout`.
    pub fn wait_count(&self, target: u64, timeout: Duration) -> Option<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.count() >= target {
                return Some(Instant::now());
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// The messages the smtp-sink process `writer`, started with `-d DIR/...`, dumped into
/// `dir` and finished, oldest first (also for a sink started elsewhere, e.g. in the
/// cluster's network namespace).
///
/// smtp-sink creates a message's file at MAIL and writes it as the transaction goes on,
/// so a file it still holds open is a message in progress, possibly empty: it is left
/// out. The directory is listed before the open files are read, so a file closed in
/// between counts as finished and one created in between is not listed at all.
pub fn read_dumps(dir: &Path, writer: u32) -> Vec<Dumped> {
    // `/proc/PID/fd` links are canonical paths: list the directory by its canonical name so a
    // dump directory reached through a symlink (a `TMPDIR` that is one) still matches.
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    let dir = dir.as_path();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    let open = open_files(writer);
    files.retain(|p| !open.contains(p));
    files.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    files.into_iter().filter_map(|p| parse_dump(&p)).collect()
}

/// The files process `pid` holds open (its `/proc/PID/fd` links); empty when it has
/// exited.
fn open_files(pid: u32) -> HashSet<PathBuf> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|rd| {
            rd.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .collect()
        })
        .unwrap_or_default()
}

fn parse_dump(path: &Path) -> Option<Dumped> {
    let text = String::from_utf8_lossy(&std::fs::read(path).ok()?).into_owned();
    let mut mail_from = String::new();
    let mut rcpts = Vec::new();
    let mut lines = text.split_inclusive('\n').peekable();
    // X-* envelope lines, then smtp-sink's own Received header (with continuation lines).
    while let Some(l) = lines.peek() {
        if let Some(v) = l.strip_prefix("X-Mail-Args: ") {
            mail_from = v.trim_end().to_owned();
        } else if let Some(v) = l.strip_prefix("X-Rcpt-Args: ") {
            rcpts.push(v.trim_end().to_owned());
        } else if !l.starts_with("X-") {
            break;
        }
        lines.next();
    }
    if lines.peek().is_some_and(|l| l.starts_with("Received: ")) {
        lines.next();
        while lines.peek().is_some_and(|l| l.starts_with('\t')) {
            lines.next();
        }
    }
    let message: String = lines.collect();
    Some(Dumped {
        path: path.to_owned(),
        mail_from,
        rcpts,
        message,
    })
}

impl Drop for Sink {
    fn drop(&mut self) {
        if let Some(c) = self.child.take() {
            process::kill(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_counters() {
        assert_eq!(parse_mesg(b"sess=3 quit=3 mesg=7"), Some(7));
        assert_eq!(parse_mesg(b"garbage"), None);
    }

    #[test]
    fn parses_a_dump() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m");
        std::fs::write(
            &p,
            "X-Mail-Args: <a@b>\nX-Rcpt-Args: <c@d>\nReceived: from x\n\tby y\nSubject: s\n\nbody\n",
        )
        .unwrap();
        let d = parse_dump(&p).unwrap();
        assert_eq!(d.mail_from, "<a@b>");
        assert_eq!(d.rcpts, ["<c@d>"]);
        assert_eq!(d.message, "Subject: s\n\nbody\n");
    }

    /// A file the writer still holds open is a message in progress and is not read; once
    /// closed, it is.
    #[test]
    fn a_dump_still_open_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let done = dir.path().join("done");
        std::fs::write(&done, "X-Mail-Args: <a@b>\nSubject: done\n").unwrap();
        let mut writing = std::fs::File::create(dir.path().join("writing")).unwrap();
        let me = std::process::id();
        let read = read_dumps(dir.path(), me);
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].path.file_name(), done.file_name());
        // The same directory reached through a symlink: the open file is still recognised.
        let link = tempfile::tempdir().unwrap();
        let via = link.path().join("dumps");
        std::os::unix::fs::symlink(dir.path(), &via).unwrap();
        assert_eq!(read_dumps(&via, me).len(), 1);
        std::io::Write::write_all(&mut writing, b"Subject: later\n").unwrap();
        drop(writing);
        assert_eq!(read_dumps(dir.path(), me).len(), 2);
    }
}
