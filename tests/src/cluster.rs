//! The controller and gateway processes, run as they would run in Pods but as local
//! processes pointed at the test API server (pods never start on it).

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use postern_testkit::gateway::{Gateway, Ready};
use postern_testkit::http::http_get;
use postern_testkit::ports::free_port;
use postern_testkit::process;
use postern_testkit::workspace::workspace_bin;

use crate::kube::{KubeCluster, User};

/// A running `postern controller`.
#[derive(Debug)]
pub struct ControllerProcess {
    child: Option<Child>,
    /// Its identity in leader election and Events.
    pub identity: String,
    /// Address of /metrics, /healthz, /readyz.
    pub metrics: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// Options of a test controller.
#[derive(Clone, Debug)]
pub struct ControllerSpec {
    /// Who it authenticates as.
    pub user: User,
    /// The namespace it manages (and where its Lease lives).
    pub namespace: String,
    /// Identity.
    pub identity: String,
    /// Extra arguments (replacing the defaults they name).
    pub extra: Vec<String>,
}

impl ControllerSpec {
    /// An admin controller managing `namespace`.
    pub fn new(namespace: &str, identity: &str) -> Self {
        Self {
            user: User::Admin,
            namespace: namespace.into(),
            identity: identity.into(),
            extra: Vec::new(),
        }
    }
}

impl ControllerProcess {
    /// Starts `postern controller` with short leader-election timings (3 s lease).
    pub fn start(cluster: &KubeCluster, spec: &ControllerSpec) -> Result<Self> {
        let bin = workspace_bin("postern")?;
        let dir = tempfile::Builder::new().prefix("postern-ctl-").tempdir()?;
        let log = dir.path().join("controller.log");
        let port = free_port();
        let metrics: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let child = Command::new(bin)
            .arg("controller")
            .args(["--namespace", &spec.namespace])
            .args(["--lease-namespace", &spec.namespace])
            .args(["--identity", &spec.identity])
            .args(["--metrics-address", &metrics.to_string()])
            .args(defaults_unless_given(
                &[
                    "--lease-duration",
                    "3s",
                    "--renew-deadline",
                    "2s",
                    "--retry-period",
                    "300ms",
                ],
                &spec.extra.iter().map(String::as_str).collect::<Vec<_>>(),
            ))
            .args(&spec.extra)
            .env("KUBECONFIG", cluster.kubeconfig_for(spec.user))
            .env("POSTERN_LOG", "info,kube=warn,hyper=warn,tower=warn")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log)?)
            .stderr(std::fs::File::options().append(true).open(&log)?)
            .spawn()
            .context("cannot start postern controller")?;
        process::track(child.id());
        let mut p = Self {
            child: Some(child),
            identity: spec.identity.clone(),
            metrics,
            log,
            _dir: dir,
        };
        p.wait_http("/healthz", Duration::from_secs(60))?;
        Ok(p)
    }

    fn wait_http(&mut self, path: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(c) = self.child.as_mut()
                && let Some(status) = c.try_wait()?
            {
                bail!("controller exited ({status}):\n{}", self.logs());
            }
            if http_get(self.metrics, path).is_ok_and(|(code, _)| code == 200) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("controller not serving {path}:\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether `/readyz` answers 200 right now.
    pub fn is_ready(&self) -> bool {
        http_get(self.metrics, "/readyz").is_ok_and(|(code, _)| code == 200)
    }

    /// Waits until `/readyz` answers 200 (caches synced).
    pub fn wait_ready(&mut self) -> Result<()> {
        self.wait_http("/readyz", Duration::from_secs(60))
    }

    /// The Prometheus text of `/metrics`.
    pub fn metrics_text(&self) -> Result<String> {
        Ok(http_get(self.metrics, "/metrics")?.1)
    }

    /// The value of one sample of `/metrics` (`name{labels}` as printed), 0 when absent.
    pub fn metric(&self, sample: &str) -> Result<f64> {
        let text = self.metrics_text()?;
        Ok(text
            .lines()
            .find_map(|l| {
                l.strip_prefix(sample)
                    .filter(|rest| rest.starts_with(' '))
                    .and_then(|rest| rest.trim().parse().ok())
            })
            .unwrap_or(0.0))
    }

    /// Its process id while it runs (for resource measurements).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Its log so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(&mut self) -> Result<std::process::ExitStatus> {
        let mut child = self.child.take().context("already stopped")?;
        process::signal(child.id(), "TERM");
        let status = process::wait_exit(&mut child, Duration::from_secs(15));
        process::kill(child);
        status
    }

    /// SIGKILL: dies without releasing anything.
    pub fn kill(&mut self) {
        if let Some(c) = self.child.take() {
            process::kill(c);
        }
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() || std::env::var_os("POSTERN_TEST_LOGS").is_some() {
            eprintln!("--- controller {} log ---\n{}", self.identity, self.logs());
        }
    }
}

/// Starts a gateway that reads `namespace`'s rendered Secret as `user`, renewing its
/// report every second (3 s lifetime); up once its admin endpoint answers (it serves
/// before any configuration).
pub fn start_gateway(
    cluster: &KubeCluster,
    user: User,
    namespace: &str,
    name: &str,
) -> Result<Gateway> {
    start_gateway_with(cluster, user, namespace, name, &[])
}

/// [`start_gateway`] with extra arguments (replacing the defaults they name, e.g.
/// `--report-ttl 20s`).
pub fn start_gateway_with(
    cluster: &KubeCluster,
    user: User,
    namespace: &str,
    name: &str,
    extra: &[&str],
) -> Result<Gateway> {
    Gateway::in_cluster(namespace, name, &cluster.kubeconfig_for(user))
        .default_arg("--report-interval", "1s")
        .default_arg("--report-ttl", "3s")
        .default_arg("--shutdown-grace", "1s")
        .args(extra)
        .log_filter("info,kube=warn,hyper=warn,tower=warn")
        .ready(Ready::AdminUp)
        .ready_within(Duration::from_secs(60))
        .start()
}

/// The `--flag value` pairs of `defaults` whose flag `extra` does not give.
fn defaults_unless_given(defaults: &[&str], extra: &[&str]) -> Vec<String> {
    defaults
        .chunks(2)
        .filter(|pair| !extra.contains(&pair[0]))
        .flatten()
        .map(|s| (*s).to_owned())
        .collect()
}

/// The first reply line an SMTP server sends on connect (e.g. `220 ...` or
/// `554 5.7.1 ...`), or an error when nothing listens.
pub fn smtp_greeting(addr: SocketAddr) -> Result<String> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line)?;
    Ok(line.trim_end().to_owned())
}

/// Whether an Event (`events.k8s.io/v1`) with `reason` and a note containing
/// `note_contains` was emitted in `namespace`.
pub fn has_event(
    cluster: &KubeCluster,
    namespace: &str,
    reason: &str,
    note_contains: &str,
) -> bool {
    let Ok(out) = cluster.kubectl(&[
        "get",
        "events.v1.events.k8s.io",
        "-n",
        namespace,
        "-o",
        "json",
    ]) else {
        return false;
    };
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| e["reason"] == reason && e["note"].as_str().unwrap_or("").contains(note_contains))
}
