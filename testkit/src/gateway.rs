//! The one way the tests and the benchmark run the `postern-gateway` binary: from a
//! configuration file (or in cluster mode, reading the rendered Secret), with an admin
//! endpoint on a free loopback port, its log captured to a file, ready when the caller's
//! notion of ready holds, stopped on drop. What differs between callers (flags, log
//! format, readiness, a wrapper such as valgrind, where the files go) is a
//! [`GatewayBuilder`] option.
//!
//! The kit knows the gateway only through its command line, its configuration file (YAML
//! text the caller renders) and its admin endpoint, so it does not depend on the gateway
//! crate.

use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::http::{http_get, http_get_within};
use crate::ports::free_port;
use crate::process;
use crate::workspace::workspace_bin;

/// Where the gateway's configuration comes from.
#[derive(Debug, Clone)]
enum Source {
    /// `--config FILE`, with this YAML in it.
    File(String),
    /// `--cluster`: the rendered Secret of gateway `name` in `namespace`, read with the
    /// credentials of `kubeconfig`.
    Cluster {
        namespace: String,
        name: String,
        kubeconfig: PathBuf,
    },
}

/// When a started gateway counts as ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    /// `/readyz` answers 200: configuration applied, listeners bound.
    Readyz,
    /// The admin endpoint answers at all (a cluster gateway serves it before it has a
    /// configuration).
    AdminUp,
    /// Every address given to [`GatewayBuilder::listeners`] accepts connections, and the
    /// gateway has seen those probes close (`postern_connections_active` back to 0), so
    /// that a test counting connection slots starts from zero.
    Listening,
    /// Do not wait; the caller does ([`Gateway::wait_ready`]).
    NoWait,
}

/// How to start a gateway: [`Gateway::with_config`] or [`Gateway::in_cluster`].
#[derive(Debug)]
pub struct GatewayBuilder {
    source: Source,
    bin: Option<PathBuf>,
    wrapper: Vec<String>,
    files: Option<(PathBuf, String)>,
    defaults: Vec<(String, String)>,
    args: Vec<String>,
    log_filter: String,
    stderr: Option<File>,
    listeners: Vec<SocketAddr>,
    ready: Ready,
    ready_within: Duration,
    stop_within: Duration,
    stop_on_drop: bool,
}

impl GatewayBuilder {
    fn new(source: Source) -> Self {
        Self {
            source,
            bin: None,
            wrapper: Vec::new(),
            files: None,
            defaults: Vec::new(),
            args: Vec::new(),
            log_filter: "info".into(),
            stderr: None,
            listeners: Vec::new(),
            ready: Ready::Readyz,
            ready_within: Duration::from_secs(20),
            stop_within: Duration::from_secs(15),
            stop_on_drop: false,
        }
    }

    /// The binary (default: `postern-gateway` built next to the running test).
    pub fn bin(mut self, bin: &Path) -> Self {
        self.bin = Some(bin.to_owned());
        self
    }

    /// Run the gateway under this command prefix (e.g. valgrind and its options).
    pub fn wrapper(mut self, wrapper: Vec<String>) -> Self {
        self.wrapper = wrapper;
        self
    }

    /// Keep the files in `dir` instead of a temporary directory: the configuration in
    /// `<name>-config/` (a directory of its own, which the gateway watches, as a mounted
    /// Secret would be), the log in `<name>.log`.
    pub fn files_in(mut self, dir: &Path, name: &str) -> Self {
        self.files = Some((dir.to_owned(), name.to_owned()));
        self
    }

    /// `flag value`, unless [`Self::args`] gives `flag` itself.
    pub fn default_arg(mut self, flag: &str, value: &str) -> Self {
        self.defaults.push((flag.to_owned(), value.to_owned()));
        self
    }

    /// More command-line arguments.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    /// `POSTERN_LOG` (default `info`).
    pub fn log_filter(mut self, filter: &str) -> Self {
        filter.clone_into(&mut self.log_filter);
        self
    }

    /// Send the log (stderr) here instead of the log file, e.g. `/dev/full` for a disk
    /// that is full.
    pub fn stderr_to(mut self, file: File) -> Self {
        self.stderr = Some(file);
        self
    }

    /// The listener addresses of the configuration, for [`Ready::Listening`] and
    /// [`Gateway::addr`].
    pub fn listeners(mut self, addrs: Vec<SocketAddr>) -> Self {
        self.listeners = addrs;
        self
    }

    /// When it counts as started (default [`Ready::Readyz`]).
    pub fn ready(mut self, ready: Ready) -> Self {
        self.ready = ready;
        self
    }

    /// How long it may take to be ready (default 20 s).
    pub fn ready_within(mut self, timeout: Duration) -> Self {
        self.ready_within = timeout;
        self
    }

    /// How long [`Gateway::stop`] waits after SIGTERM (default 15 s).
    pub fn stop_within(mut self, timeout: Duration) -> Self {
        self.stop_within = timeout;
        self
    }

    /// Stop gracefully on drop (SIGTERM, SIGKILL after the stop timeout) instead of
    /// killing, for a wrapper that writes its results on exit.
    pub fn stop_on_drop(mut self) -> Self {
        self.stop_on_drop = true;
        self
    }

    /// The command line after the program: source, admin address, defaults not
    /// overridden, the caller's arguments.
    fn command_args(&self, config_path: Option<&Path>, admin: SocketAddr) -> Vec<String> {
        let mut out = Vec::new();
        match (&self.source, config_path) {
            (Source::File(_), Some(path)) => {
                out.extend(["--config".to_owned(), path.display().to_string()]);
            }
            (
                Source::Cluster {
                    namespace, name, ..
                },
                _,
            ) => out.extend([
                "--cluster".to_owned(),
                "--namespace".to_owned(),
                namespace.clone(),
                "--gateway-name".to_owned(),
                name.clone(),
            ]),
            (Source::File(_), None) => {}
        }
        out.extend(["--admin-address".to_owned(), admin.to_string()]);
        for (flag, value) in &self.defaults {
            if !self.args.contains(flag) {
                out.extend([flag.clone(), value.clone()]);
            }
        }
        out.extend(self.args.iter().cloned());
        out
    }

    /// Write the files, start the process and wait until it is ready.
    pub fn start(self) -> Result<Gateway> {
        let bin = match &self.bin {
            Some(b) => b.clone(),
            None => workspace_bin("postern-gateway")?,
        };
        let (tempdir, dir, prefix) = match &self.files {
            Some((dir, prefix)) => (None, dir.clone(), prefix.clone()),
            None => {
                let t = tempfile::Builder::new().prefix("postern-gw-").tempdir()?;
                let dir = t.path().to_owned();
                (Some(t), dir, "gateway".to_owned())
            }
        };
        // What messages call it.
        let name = match &self.source {
            Source::Cluster { name, .. } => format!("gateway {name}"),
            Source::File(_) if self.files.is_some() => prefix.clone(),
            Source::File(_) => "postern-gateway".to_owned(),
        };
        let config_path = match &self.source {
            Source::File(yaml) => {
                let config_dir = dir.join(format!("{prefix}-config"));
                std::fs::create_dir_all(&config_dir)?;
                let path = config_dir.join("gateway.yaml");
                std::fs::write(&path, yaml)?;
                Some(path)
            }
            Source::Cluster { .. } => None,
        };
        let log = dir.join(format!("{prefix}.log"));
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut cmd = match self.wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        cmd.args(self.command_args(config_path.as_deref(), admin))
            .env("POSTERN_LOG", &self.log_filter)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(File::options().create(true).append(true).open(&log)?);
        match self.stderr {
            Some(f) => cmd.stderr(f),
            None => cmd.stderr(File::options().append(true).open(&log)?),
        };
        if let Source::Cluster { kubeconfig, .. } = &self.source {
            cmd.env("KUBECONFIG", kubeconfig);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        process::track(child.id());
        let mut gw = Gateway {
            child: Some(child),
            name,
            admin,
            config_path,
            listeners: self.listeners,
            log,
            stop_within: self.stop_within,
            stop_on_drop: self.stop_on_drop,
            _dir: tempdir,
        };
        match self.ready {
            Ready::Readyz => gw.wait_ready(self.ready_within)?,
            Ready::AdminUp => gw.wait_admin(self.ready_within)?,
            Ready::Listening => gw.wait_listening(self.ready_within)?,
            Ready::NoWait => {}
        }
        Ok(gw)
    }
}

/// A running gateway.
#[derive(Debug)]
pub struct Gateway {
    child: Option<Child>,
    name: String,
    /// The admin address (`/readyz`, `/metrics`, `/config`, `/crl/{name}`).
    pub admin: SocketAddr,
    config_path: Option<PathBuf>,
    listeners: Vec<SocketAddr>,
    log: PathBuf,
    stop_within: Duration,
    stop_on_drop: bool,
    _dir: Option<tempfile::TempDir>,
}

impl Gateway {
    /// A gateway run with `--config FILE` holding `yaml`.
    pub fn with_config(yaml: impl Into<String>) -> GatewayBuilder {
        GatewayBuilder::new(Source::File(yaml.into()))
    }

    /// A gateway run with `--cluster`: it reads the rendered Secret of gateway `name` in
    /// `namespace` with the credentials of `kubeconfig`.
    pub fn in_cluster(namespace: &str, name: &str, kubeconfig: &Path) -> GatewayBuilder {
        GatewayBuilder::new(Source::Cluster {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            kubeconfig: kubeconfig.to_owned(),
        })
    }

    /// What messages call it (`postern-gateway`, `gateway <name>` in cluster mode, or the
    /// file prefix given to [`GatewayBuilder::files_in`]).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The admin port on 127.0.0.1.
    pub fn admin_port(&self) -> u16 {
        self.admin.port()
    }

    /// The address of the first listener given to [`GatewayBuilder::listeners`].
    pub fn addr(&self) -> SocketAddr {
        *self.listeners.first().expect("no listener addresses given")
    }

    /// The configuration file (rewrite it to reload).
    pub fn config_path(&self) -> &Path {
        self.config_path
            .as_deref()
            .expect("a gateway started with a configuration file")
    }

    /// The process id (of the wrapper, under one).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Fail if the process has exited.
    fn check_running(&mut self) -> Result<()> {
        if let Some(c) = self.child.as_mut()
            && let Some(status) = c.try_wait()?
        {
            bail!("{} exited ({status}):\n{}", self.name, self.log());
        }
        Ok(())
    }

    /// Poll `ok` until it holds, the process exits or `within` passes.
    fn wait_until(
        &mut self,
        within: Duration,
        what: &str,
        ok: impl Fn(&Self) -> bool,
    ) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            self.check_running()?;
            if ok(self) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{} {what} within {within:?}:\n{}", self.name, self.log());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Wait until `/readyz` answers 200.
    pub fn wait_ready(&mut self, within: Duration) -> Result<()> {
        self.wait_until(within, "was not ready", |g| {
            g.http_get("/readyz").is_ok_and(|(code, _)| code == 200)
        })
    }

    fn wait_admin(&mut self, within: Duration) -> Result<()> {
        self.wait_until(within, "did not serve its admin endpoint", |g| {
            g.http_get("/healthz").is_ok()
        })
    }

    fn wait_listening(&mut self, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        for addr in self.listeners.clone() {
            let left = deadline.saturating_duration_since(Instant::now());
            self.wait_until(left, &format!("never listened on {addr}"), |_| {
                TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            })?;
        }
        // Those probes were sessions too (one per address): wait until the gateway has
        // accepted every one of them and seen it close, or a probe still in the accept
        // queue takes a slot from the test's first clients.
        let probes = self.listeners.len() as u64;
        while Instant::now() < deadline {
            let settled = self.http_get("/metrics").map(|(_, text)| {
                let mut seen = 0;
                let mut busy = false;
                for line in text.lines() {
                    let value = || line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
                    if line.starts_with("postern_connections_total{") {
                        seen += value().unwrap_or(0.0) as u64;
                    } else if line.starts_with("postern_connections_active{") {
                        busy |= value() != Some(0.0);
                    }
                }
                seen >= probes && !busy
            });
            if matches!(settled, Ok(true)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// GET a path of the admin endpoint: (status, body).
    pub fn http_get(&self, path: &str) -> Result<(u16, String)> {
        http_get(self.admin, path)
    }

    /// `/config` as JSON.
    pub fn config_status(&self) -> Result<serde_json::Value> {
        let (_, body) = self.http_get("/config")?;
        let start = body.find('{').context("no JSON in /config")?;
        let end = body.rfind('}').context("no JSON in /config")?;
        Ok(serde_json::from_str(&body[start..=end])?)
    }

    /// The status of CRL source `name` (`GET /crl/{name}`), if it exists.
    pub fn crl_status(&self, name: &str) -> Option<serde_json::Value> {
        match self.http_get(&format!("/crl/{name}")) {
            Ok((200, body)) => serde_json::from_str(&body).ok(),
            _ => None,
        }
    }

    /// Wait until `pred` holds for the status of CRL source `name`: how long that took,
    /// and the status.
    pub fn wait_crl_within(
        &self,
        name: &str,
        timeout: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<(Duration, serde_json::Value)> {
        let start = Instant::now();
        loop {
            let status = self.crl_status(name);
            if let Some(s) = &status
                && pred(s)
            {
                return Ok((start.elapsed(), s.clone()));
            }
            if start.elapsed() > timeout {
                bail!(
                    "CRL {name} of {} not as expected after {timeout:?}: {status:?}\n{}",
                    self.name,
                    self.log_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait (30 s at most, else panic naming `what`) until `pred` holds for the status
    /// of CRL source `name`.
    pub fn wait_crl(
        &self,
        name: &str,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        match self.wait_crl_within(name, Duration::from_secs(30), pred) {
            Ok((_, status)) => status,
            Err(e) => panic!("timed out waiting for {what}: {e:#}\n{}", self.log()),
        }
    }

    /// The file the gateway's log (stderr) goes to.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything the gateway logged so far. A quiet gateway writes a line before the
    /// SMTP reply that follows it; a busy one queues lines for a moment, so this first
    /// waits (2 s at most) until its `postern_log_lines_pending` reads 0. Then it waits
    /// until the file has not grown for 50 ms (2 s at most): a refused TLS handshake's
    /// decision line is logged after the alert that tells the client, so a client can
    /// see its failure before the line is written.
    pub fn log(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.log_lines_pending() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let read = || std::fs::read_to_string(&self.log).unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut text = read();
        loop {
            std::thread::sleep(Duration::from_millis(50));
            let again = read();
            if again == text || Instant::now() > deadline {
                return again;
            }
            text = again;
        }
    }

    /// Whether the gateway says it has log lines queued (not when it cannot say: exited,
    /// stopped, not serving its admin endpoint yet).
    fn log_lines_pending(&self) -> bool {
        http_get_within(self.admin, "/metrics", Duration::from_millis(500)).is_ok_and(
            |(_, text)| {
                text.lines().any(|l| {
                    l.strip_prefix("postern_log_lines_pending ")
                        .is_some_and(|v| v.trim() != "0")
                })
            },
        )
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = self.log();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The JSON log lines so far (with `--log-format json`).
    pub fn log_lines(&self) -> Vec<serde_json::Value> {
        self.log()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .collect()
    }

    /// Decision log lines (parsed) so far.
    pub fn decisions(&self) -> Vec<serde_json::Value> {
        self.log_lines()
            .into_iter()
            .filter(|v| v.get("decision").is_some())
            .collect()
    }

    /// Wait until a JSON log line satisfies `pred`.
    pub fn wait_log_line(
        &self,
        timeout: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = self.log_lines().into_iter().find(|v| pred(v)) {
                return Some(v);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Wait until the log contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while !self.log().contains(needle) {
            if Instant::now() > deadline {
                bail!("log never said {needle:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Replace the configuration file atomically (write + rename, as Kubernetes does).
    pub fn write_config_text(&self, text: &str) -> Result<()> {
        let path = self.config_path();
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }

    /// Wait until `/config` reports `hash` as applied.
    pub fn wait_hash(&self, hash: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.config_status()?;
            if s["hash"].as_str() == Some(hash) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "hash {hash} not applied within {timeout:?}; /config: {s}\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Send a signal (`TERM`, `KILL`, `STOP`, `CONT`).
    pub fn signal(&self, sig: &str) -> Result<()> {
        let child = self.child.as_ref().context("not running")?;
        if !process::signal(child.id(), sig) {
            bail!("kill -{sig} {} failed", child.id());
        }
        Ok(())
    }

    /// SIGSTOP (`true`) or SIGCONT: a gateway that hangs.
    pub fn pause(&self, paused: bool) -> Result<()> {
        self.signal(if paused { "STOP" } else { "CONT" })
    }

    /// Wait for the process to exit, at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let child = self.child.as_mut().context("not running")?;
        process::wait_exit(child, timeout)
    }

    /// SIGTERM, then wait for the exit (the stop timeout); SIGKILL if it does not come.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        let mut child = self.child.take().context("already stopped")?;
        if let Some(status) = child.try_wait()? {
            process::untrack(child.id());
            return Ok(status);
        }
        process::signal(child.id(), "CONT");
        process::signal(child.id(), "TERM");
        let status = process::wait_exit(&mut child, self.stop_within);
        process::kill(child);
        status
    }

    /// SIGKILL: dies without releasing anything.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            // A paused gateway is let go on first; only while it has not been reaped, as
            // its PID could belong to another process after that.
            if matches!(c.try_wait(), Ok(None)) {
                process::signal(c.id(), "CONT");
            }
            process::kill(c);
        }
    }

    /// Resident set size in KiB (from /proc).
    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    /// CPU time used so far by all threads of the process (from the scheduler's
    /// per-thread accounting, nanosecond resolution).
    pub fn cpu_time(&self) -> Duration {
        let mut ns = 0u64;
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.pid())) {
            for t in tasks.flatten() {
                if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
                    ns += s
                        .split_whitespace()
                        .next()
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0);
                }
            }
        }
        Duration::from_nanos(ns)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if self.stop_on_drop {
            let _ = self.stop();
        } else {
            self.kill();
        }
        if std::thread::panicking() || std::env::var_os("POSTERN_TEST_LOGS").is_some() {
            eprintln!("--- {} log ---\n{}", self.name, self.log());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(b: &GatewayBuilder) -> Vec<String> {
        b.command_args(Some(Path::new("/c.yaml")), "127.0.0.1:9".parse().unwrap())
    }

    #[test]
    fn defaults_give_way_to_the_callers_arguments() {
        let b = Gateway::with_config("")
            .default_arg("--poll-interval", "1s")
            .default_arg("--shutdown-grace", "5s")
            .args(&["--shutdown-grace", "1s"]);
        assert_eq!(
            args(&b),
            [
                "--config",
                "/c.yaml",
                "--admin-address",
                "127.0.0.1:9",
                "--poll-interval",
                "1s",
                "--shutdown-grace",
                "1s"
            ]
        );
    }

    #[test]
    fn cluster_mode_names_its_secret() {
        let b = Gateway::in_cluster("ns", "gw", Path::new("/k"));
        assert_eq!(
            b.command_args(None, "127.0.0.1:9".parse().unwrap()),
            [
                "--cluster",
                "--namespace",
                "ns",
                "--gateway-name",
                "gw",
                "--admin-address",
                "127.0.0.1:9"
            ]
        );
    }
}
