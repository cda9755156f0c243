//! CPU time and memory of a server's processes, read from /proc.
//!
//! A server is a root process and its direct children (Postfix: `master` and the daemons
//! it forks; Postern: one process). CPU is utime+stime+cutime+cstime of the root plus the
//! same of every living child, so a child that exited between two samples is still counted
//! (in the root's cutime, once the root reaped it). Memory is the sum over the processes
//! of RSS and of PSS (PSS splits shared pages, so it does not count a shared library once
//! per Postfix process).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Clock ticks per second of /proc/*/stat times.
fn ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// (ppid, utime + stime + cutime + cstime) of a process.
fn stat(pid: u32) -> Option<(u32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state): ppid is field 4, utime..cstime fields 14..17.
    let ppid = f.get(1)?.parse().ok()?;
    let t: u64 = f
        .get(11..15)?
        .iter()
        .map(|v| v.parse::<u64>().unwrap_or(0))
        .sum();
    Some((ppid, t))
}

/// The root and its direct children.
pub(crate) fn tree(root: u32) -> Vec<u32> {
    let mut pids = vec![root];
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if pid != root && stat(pid).is_some_and(|(ppid, _)| ppid == root) {
                pids.push(pid);
            }
        }
    }
    pids
}

/// CPU seconds used so far by the root and its children (see the module docs).
pub(crate) fn cpu_seconds(root: u32) -> f64 {
    let ticks: u64 = tree(root)
        .iter()
        .filter_map(|&p| stat(p))
        .map(|s| s.1)
        .sum();
    ticks as f64 / ticks_per_second()
}

/// CPU seconds used so far by one process (its threads, and children it reaped).
pub(crate) fn own_cpu_seconds(pid: u32) -> f64 {
    stat(pid).map_or(0.0, |s| s.1 as f64 / ticks_per_second())
}

fn kib_field(text: &str, field: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Memory of a process tree, KiB.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Mem {
    /// Sum of VmRSS.
    pub rss_kib: u64,
    /// Sum of Pss.
    pub pss_kib: u64,
    /// Number of processes.
    pub processes: u32,
}

/// Current memory of the root and its children.
pub(crate) fn memory(root: u32) -> Mem {
    let mut m = Mem::default();
    for pid in tree(root) {
        let Ok(rollup) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else {
            continue;
        };
        m.rss_kib += kib_field(&rollup, "Rss:");
        m.pss_kib += kib_field(&rollup, "Pss:");
        m.processes += 1;
    }
    m
}

/// Samples a tree's memory in the background and keeps the peak.
#[derive(Debug)]
pub(crate) struct PeakSampler {
    stop: Arc<AtomicBool>,
    peak_rss: Arc<AtomicU64>,
    peak_pss: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PeakSampler {
    /// Start sampling `root` every `every`.
    pub(crate) fn start(root: u32, every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak_rss = Arc::new(AtomicU64::new(0));
        let peak_pss = Arc::new(AtomicU64::new(0));
        let (s, r, p) = (stop.clone(), peak_rss.clone(), peak_pss.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let m = memory(root);
                r.fetch_max(m.rss_kib, Ordering::Relaxed);
                p.fetch_max(m.pss_kib, Ordering::Relaxed);
                std::thread::sleep(every);
            }
        });
        Self {
            stop,
            peak_rss,
            peak_pss,
            thread: Some(thread),
        }
    }

    /// Stop and return the peak (RSS, PSS) in KiB.
    pub(crate) fn finish(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        (
            self.peak_rss.load(Ordering::Relaxed),
            self.peak_pss.load(Ordering::Relaxed),
        )
    }
}

impl Drop for PeakSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The (soft, hard) open-file limits of this process.
pub(crate) fn nofile() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let mut v = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .map(|x| x.parse::<u64>().unwrap_or(u64::MAX));
    Some((v.next()?, v.next()?))
}

/// Raise this process's soft open-file limit towards `want` (up to the hard limit, which
/// only a privileged process may raise) with prlimit(1); children started afterwards
/// inherit it. Returns the limit in force.
pub(crate) fn raise_nofile(want: u64) -> anyhow::Result<u64> {
    let (soft, hard) = nofile().ok_or_else(|| anyhow::anyhow!("cannot read /proc/self/limits"))?;
    let target = want.min(hard);
    if target <= soft {
        return Ok(soft);
    }
    let status = std::process::Command::new("prlimit")
        .arg("--pid")
        .arg(std::process::id().to_string())
        .arg(format!("--nofile={target}:{hard}"))
        .status()
        .map_err(|e| anyhow::anyhow!("running prlimit (util-linux): {e}"))?;
    if !status.success() {
        anyhow::bail!("prlimit --nofile={target}:{hard} failed ({status})");
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let me = std::process::id();
        assert!(stat(me).is_some());
        assert!(postern_testkit::process::alive(me));
        let m = memory(me);
        assert!(m.rss_kib > 0 && m.processes >= 1, "{m:?}");
    }
}
