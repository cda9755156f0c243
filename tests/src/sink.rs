//! Postfix's `smtp-sink` as the next hop: started on a free loopback port, one dump file
//! per message in a temporary directory, killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::ports::free_port;

/// A running smtp-sink.
#[derive(Debug)]
pub struct Sink {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: tempfile::TempDir,
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

fn find(name: &str) -> Result<PathBuf> {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!("{name} not found: install Debian's postfix package (tests/support/install-deps.sh does)")
}

impl Sink {
    /// Start smtp-sink with extra options (e.g. `["-f", "RCPT"]` to refuse RCPT with 5xx).
    pub fn start(extra: &[&str]) -> Result<Self> {
        let bin = find("smtp-sink")?;
        for _ in 0..5 {
            let dir = tempfile::Builder::new().prefix("postern-sink-").tempdir()?;
            let dump = dir.path().join("dump");
            std::fs::create_dir(&dump)?;
            // smtp-sink runs as nobody (-u) when started as root: the dump dir must be writable.
            Command::new("chmod").arg("777").arg(&dump).status()?;
            let port = free_port();
            let mut cmd = Command::new(&bin);
            if is_root() {
                cmd.args(["-u", "nobody"]);
            }
            let child = cmd
                .arg("-d")
                .arg(format!("{}/%H%M%S.", dump.display()))
                .args(extra)
                .arg(format!("127.0.0.1:{port}"))
                .arg("256")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting smtp-sink")?;
            let mut sink = Self { child, port, dir };
            if sink.wait_ready() {
                return Ok(sink);
            }
        }
        bail!("smtp-sink did not start")
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// The dumped messages so far, oldest first.
    pub fn messages(&self) -> Vec<Dumped> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("dump"))
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
        files.into_iter().filter_map(|p| parse_dump(&p)).collect()
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
}

fn is_root() -> bool {
    std::env::var("USER").map(|u| u == "root").unwrap_or(false)
        || Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout.trim_ascii() == b"0")
            .unwrap_or(false)
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
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
