//! One measured run: drive a server with a load, then read its CPU and memory from /proc.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::load;
use crate::procs::{self, PeakSampler};
use crate::report::Measure;
use postern_testkit::sink::Sink;

/// A server being measured.
#[derive(Debug, Clone)]
pub(crate) struct Server {
    /// Display name.
    pub name: String,
    /// PID of its root process.
    pub pid: u32,
    /// Postfix (memory is the sum of PSS over its processes) or Postern (RSS).
    pub multi_process: bool,
    /// Processes whose CPU time counts as the server's too (the LDAP section's slapd).
    pub helpers: Vec<u32>,
}

/// What a run counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    /// Completed sessions.
    Sessions,
    /// Messages delivered to the sink.
    Messages,
}

/// How long relayed mail may take to reach the sink after the client finished.
const DRAIN_LIMIT: Duration = Duration::from_secs(180);

struct Probe {
    pid: u32,
    helpers: Vec<u32>,
    multi: bool,
    cpu0: f64,
    client0: f64,
    sampler: PeakSampler,
}

impl Probe {
    fn start(server: &Server) -> Self {
        Self {
            pid: server.pid,
            helpers: server.helpers.clone(),
            multi: server.multi_process,
            cpu0: server_cpu(server.pid, &server.helpers),
            client0: procs::own_cpu_seconds(std::process::id()),
            sampler: PeakSampler::start(server.pid, Duration::from_millis(500)),
        }
    }

    fn finish(self, m: &mut Measure) {
        // Let the last queue-file removals and log writes land in the CPU count.
        std::thread::sleep(Duration::from_millis(100));
        m.cpu_s = server_cpu(self.pid, &self.helpers) - self.cpu0;
        m.client_cpu_s = procs::own_cpu_seconds(std::process::id()) - self.client0;
        let (rss, pss) = self.sampler.finish();
        m.mem_kib = if self.multi { pss } else { rss };
    }
}

fn server_cpu(pid: u32, helpers: &[u32]) -> f64 {
    procs::cpu_seconds(pid) + helpers.iter().map(|&h| procs::cpu_seconds(h)).sum::<f64>()
}

/// Drive `server` with the Rust load client.
pub(crate) fn client_run(
    rt: &tokio::runtime::Runtime,
    server: &Server,
    sink: &Sink,
    spec: load::Spec,
    unit: Unit,
) -> Measure {
    let before = sink.count();
    let probe = Probe::start(server);
    let t0 = Instant::now();
    let mut r = rt.block_on(load::run(spec));
    let mut m = Measure {
        errors: r.errors,
        first_errors: std::mem::take(&mut r.first_errors),
        ..Measure::default()
    };
    match unit {
        Unit::Sessions => {
            m.count = r.sessions;
            m.secs = r.elapsed.as_secs_f64();
            m.p50_ms = load::percentile_ms(&mut r.session_us, 50.0);
            m.p99_ms = load::percentile_ms(&mut r.session_us, 99.0);
            m.handshake_p50_ms = load::percentile_ms(&mut r.handshake_us, 50.0);
            m.handshake_p99_ms = load::percentile_ms(&mut r.handshake_us, 99.0);
        }
        Unit::Messages => {
            let target = before + r.messages;
            let done = sink.wait_count(target, DRAIN_LIMIT);
            let arrived = sink.count().saturating_sub(before).min(r.messages);
            if done.is_none() {
                m.errors += r.messages - arrived;
                m.first_errors.push(format!(
                    "{} of {} accepted messages did not reach the sink within {DRAIN_LIMIT:?}",
                    r.messages - arrived,
                    r.messages
                ));
            }
            m.count = arrived;
            m.secs = done
                .unwrap_or_else(Instant::now)
                .duration_since(t0)
                .as_secs_f64();
            m.p50_ms = load::percentile_ms(&mut r.message_us, 50.0);
            m.p99_ms = load::percentile_ms(&mut r.message_us, 99.0);
        }
    }
    probe.finish(&mut m);
    m
}

/// Postfix's smtp-source: `sessions` parallel sessions sending `messages` in all, of
/// `payload` bytes, one per session or (`reuse`) several per session.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SourceLoad {
    /// Server address.
    pub addr: SocketAddr,
    /// Parallel sessions (`-s`).
    pub sessions: u32,
    /// Messages in all (`-m`).
    pub messages: u64,
    /// Payload bytes (`-l`).
    pub payload: usize,
    /// Send the next message over the same connection (`-d`).
    pub reuse: bool,
    /// Kill smtp-source after this long.
    pub limit: Duration,
}

/// Drive `server` with smtp-source (plaintext relay); count what reaches the sink.
pub(crate) fn source_run(server: &Server, sink: &Sink, l: SourceLoad) -> Result<Measure> {
    let before = sink.count();
    let probe = Probe::start(server);
    let t0 = Instant::now();
    let mut cmd = Command::new("smtp-source");
    cmd.arg("-s")
        .arg(l.sessions.to_string())
        .arg("-m")
        .arg(l.messages.to_string())
        .arg("-l")
        .arg(l.payload.to_string())
        .args(["-M", "bench.client.test"])
        .args(["-f", "bench@example.org", "-t", "sink@example.net"]);
    if l.reuse {
        cmd.arg("-d");
    }
    let mut child = cmd
        .arg(l.addr.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting smtp-source (Debian package postfix)")?;
    let mut m = Measure::default();
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break Some(s);
        }
        if t0.elapsed() > l.limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    match status {
        Some(s) if s.success() => {}
        Some(s) => {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            m.errors += 1;
            m.first_errors
                .push(format!("smtp-source exited with {s}: {}", err.trim()));
        }
        None => {
            m.errors += 1;
            m.first_errors
                .push(format!("smtp-source killed after {:?}", l.limit));
        }
    }
    let done = sink.wait_count(before + l.messages, DRAIN_LIMIT);
    let arrived = sink.count().saturating_sub(before);
    if done.is_none() {
        m.errors += l.messages.saturating_sub(arrived);
    }
    m.count = arrived.min(l.messages);
    m.secs = done
        .unwrap_or_else(Instant::now)
        .duration_since(t0)
        .as_secs_f64();
    probe.finish(&mut m);
    Ok(m)
}
