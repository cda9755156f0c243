//! Child processes the kit starts: signals by PID, liveness, and a registry of every
//! running child so that a harness that is interrupted (the benchmark on SIGINT) can stop
//! them all; owners' `Drop` stops them on a normal end.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

static PIDS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Runs `cmd` with `input` on its stdin (closed after it) and collects its stdout and
/// stderr. The exit status is the caller's to judge.
pub fn output_with_stdin(cmd: &mut Command, input: &[u8]) -> Result<Output> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child.stdin.take().expect("piped stdin").write_all(input)?;
    Ok(child.wait_with_output()?)
}

/// Remember a running child (the kit's launchers do this for theirs).
pub fn track(pid: u32) {
    PIDS.lock().expect("process registry").push(pid);
}

/// Forget a child that was stopped.
pub fn untrack(pid: u32) {
    PIDS.lock().expect("process registry").retain(|&p| p != pid);
}

/// Stop every tracked child: SIGTERM, a second to go, then SIGKILL.
pub fn stop_tracked() {
    let pids = PIDS.lock().map(|v| v.clone()).unwrap_or_default();
    for &pid in &pids {
        signal(pid, "TERM");
    }
    std::thread::sleep(Duration::from_secs(1));
    for &pid in &pids {
        if alive(pid) {
            signal(pid, "KILL");
        }
    }
}

/// Send `sig` (`TERM`, `KILL`, `STOP`, `CONT`) with kill(1); whether kill succeeded.
pub fn signal(pid: u32, sig: &str) -> bool {
    Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether a PID is alive (and not a zombie).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|t| {
            t.rfind(')')
                .and_then(|i| t.get(i + 2..i + 3).map(|s| s != "Z"))
        })
        .unwrap_or(false)
}

/// Whether this process runs as root (smtp-sink's `-u` and Postfix need to know).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Where a system program (a daemon or tool from a distribution package) is installed.
pub fn system_tool(name: &str) -> Option<PathBuf> {
    [
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
        "/usr/local/sbin",
        "/usr/local/bin",
    ]
    .iter()
    .map(|d| Path::new(d).join(name))
    .find(|p| p.is_file())
}

/// Wait at most `timeout` for `child` to exit.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Result<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = child.try_wait()? {
            return Ok(s);
        }
        if Instant::now() > deadline {
            bail!("process {} did not exit within {timeout:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Kill (SIGKILL), reap and forget `child`.
pub fn kill(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
    untrack(child.id());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_signals_and_reaps() {
        assert!(alive(std::process::id()));
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        track(child.id());
        assert!(PIDS.lock().unwrap().contains(&child.id()));
        assert!(wait_exit(&mut child, Duration::from_millis(50)).is_err());
        assert!(signal(child.id(), "TERM"));
        assert!(
            !wait_exit(&mut child, Duration::from_secs(5))
                .unwrap()
                .success()
        );
        let pid = child.id();
        kill(child);
        assert!(!PIDS.lock().unwrap().contains(&pid));
        assert!(!alive(pid));
    }
}
