//! A real single-node Kubernetes cluster for end-to-end tests of the images and the chart:
//! the scripts of `tests/support/k8s/` (Kubernetes 1.20 built from Debian's source package,
//! containerd, CNI bridge) run everything in the private network namespace `postern-k8s`
//! (198.18.0.0/23, no route out). [`Node::up`] starts it (or finds it up) and holds a lock so
//! that two test binaries never share it; dropping the [`Node`] stops it. A machine where it
//! cannot start fails the test with the script's message, never skips.

pub mod forward;
pub mod load;
pub mod peers;
pub mod release;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use postern_testkit::process;
use postern_testkit::workspace::workspace_root;

use crate::helm::helm_bin;

/// The node's address on its bridge: where pods reach the things the tests run for them.
pub const NODE_IP: &str = "198.18.1.1";
/// The network namespace everything runs in.
pub const NETNS: &str = "/run/netns/postern-k8s";

/// The cluster's scripts.
pub fn support_dir() -> PathBuf {
    workspace_root().join("tests/support/k8s")
}

fn cache_dir() -> PathBuf {
    std::env::var_os("POSTERN_K8S_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let base = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
                });
            base.join("postern-k8s")
        })
}

/// The running cluster; stopped (and its state purged) on drop.
#[derive(Debug)]
pub struct Node {
    state: PathBuf,
    _lock: File,
    /// How long `cluster-up.sh` took.
    pub startup: Duration,
}

impl Node {
    /// Starts the cluster (`tests/support/k8s/cluster-up.sh`: builds and caches the
    /// Kubernetes binaries the first time). Waits for another test binary's cluster to be
    /// released first.
    pub fn up() -> Result<Self> {
        if !process::is_root() {
            bail!(
                "the Kubernetes node tests need root (network namespace, mounts, cgroups, \
                 containerd); run them as root (tests/run does on CI)"
            );
        }
        let state = cache_dir().join("cluster");
        std::fs::create_dir_all(&state)?;
        let lock = File::create(cache_dir().join("node-tests.lock"))?;
        lock.lock()
            .context("locking the node tests' cluster (one per machine)")?;
        let started = Instant::now();
        let out = Command::new(support_dir().join("cluster-up.sh"))
            .stdin(Stdio::null())
            .output()
            .context("running tests/support/k8s/cluster-up.sh")?;
        if !out.status.success() {
            let _ = Command::new(support_dir().join("cluster-down.sh")).output();
            bail!(
                "the single-node Kubernetes cluster could not start (tests/support/k8s/cluster-up.sh; \
                 it needs root, network namespaces, containerd, runc and the CNI plugins; logs in {}):\n{}\n{}",
                state.join("logs").display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(Self {
            state,
            _lock: lock,
            startup: started.elapsed(),
        })
    }

    /// The admin kubeconfig (valid inside the namespace only). The tests use it for
    /// what an operator does (helm, kubectl); the Postern pods never see it.
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.state.join("admin.kubeconfig")
    }

    /// A command run inside the cluster's network namespace.
    pub fn in_ns(&self, program: impl AsRef<Path>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={NETNS}"))
            .arg("--")
            .arg(program.as_ref());
        c.env("KUBECONFIG", self.admin_kubeconfig());
        c
    }

    /// `kubectl ARGS` (the support wrapper: enters the namespace, admin kubeconfig).
    pub fn kubectl_output(&self, args: &[&str]) -> Result<Output> {
        Command::new(support_dir().join("kubectl"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("running kubectl")
    }

    /// `kubectl ARGS`, stdout; an error with stderr when it fails.
    pub fn kubectl(&self, args: &[&str]) -> Result<String> {
        checked("kubectl", args, self.kubectl_output(args)?)
    }

    /// `kubectl ARGS` with `input` on stdin (e.g. `apply -f -`).
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> Result<String> {
        checked("kubectl", args, self.kubectl_stdin_output(args, input)?)
    }

    /// `kubectl ARGS` with `input` on stdin, whatever its exit status.
    pub fn kubectl_stdin_output(&self, args: &[&str], input: &str) -> Result<Output> {
        process::output_with_stdin(
            Command::new(support_dir().join("kubectl")).args(args),
            input.as_bytes(),
        )
    }

    /// `kubectl get ARGS -o json`.
    pub fn get_json(&self, args: &[&str]) -> Result<Value> {
        let mut a = vec!["get"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["-o", "json"]);
        Ok(serde_json::from_str(&self.kubectl(&a)?)?)
    }

    /// `helm ARGS` against the cluster (a 1.20 API server: installs and upgrades apply
    /// client-side, as docs/install.md says for clusters before 1.23).
    pub fn helm(&self, args: &[&str]) -> Result<String> {
        let kubeconfig = self.admin_kubeconfig();
        let args = &crate::helm::cluster_args(Some(&kubeconfig), args)[..];
        let out = self
            .in_ns(helm_bin()?)
            .arg("--kubeconfig")
            .arg(self.admin_kubeconfig())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("running helm")?;
        checked("helm", args, out).map_err(|e| e.context(self.diagnosis()))
    }

    /// What a failed install or wait needs to be understood from a CI log alone: the node's
    /// pressure conditions and taints, every pod's phase and waiting reason, recent warnings.
    pub fn diagnosis(&self) -> String {
        let mut out = String::from("cluster state:\n");
        for args in [
            &[
                "get",
                "nodes",
                "-o",
                "jsonpath={range .items[*]}{.metadata.name} taints={.spec.taints} {range .status.conditions[*]}{.type}={.status} {end}{\"\\n\"}{end}",
            ][..],
            &["get", "pods", "-A", "-o", "wide"][..],
            &[
                "get",
                "pods",
                "-A",
                "-o",
                "jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name}: {range .status.containerStatuses[*]}{.name} waiting={.state.waiting.reason} terminated={.state.terminated.reason} restarts={.restartCount} {end}{\"\\n\"}{end}",
            ][..],
            &[
                "get",
                "events",
                "-A",
                "--field-selector",
                "type=Warning",
                "--sort-by",
                ".lastTimestamp",
            ][..],
        ] {
            match self.kubectl_output(args) {
                Ok(o) => {
                    // The last lines of each: the newest events, enough pods.
                    let text = String::from_utf8_lossy(&o.stdout).into_owned()
                        + &String::from_utf8_lossy(&o.stderr);
                    let lines: Vec<&str> = text.lines().collect();
                    for line in &lines[lines.len().saturating_sub(40)..] {
                        out.push_str(line);
                        out.push('\n');
                    }
                }
                Err(e) => out.push_str(&format!("kubectl {}: {e:#}\n", args.join(" "))),
            }
        }
        out.push_str(&format!("component logs: {}\n", self.log_dir().display()));
        out
    }

    /// Polls `f` every 200 ms until it holds; the time it took, or an error after `limit`.
    pub fn wait(
        &self,
        what: &str,
        limit: Duration,
        mut f: impl FnMut() -> bool,
    ) -> Result<Duration> {
        let start = Instant::now();
        loop {
            if f() {
                return Ok(start.elapsed());
            }
            if start.elapsed() > limit {
                bail!("timed out after {limit:?} waiting for {what}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The pods matching `selector` in `ns`, as (name, ready, deleting).
    pub fn pods(&self, ns: &str, selector: &str) -> Result<Vec<PodState>> {
        let list = self.get_json(&["pods", "-n", ns, "-l", selector])?;
        Ok(list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| PodState {
                name: p["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                ip: p["status"]["podIP"].as_str().unwrap_or_default().to_owned(),
                ready: p["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True"),
                deleting: !p["metadata"]["deletionTimestamp"].is_null(),
            })
            .collect())
    }

    /// `GET url` from inside the namespace (a pod IP or ClusterIP), the body when 2xx.
    pub fn http_get(&self, url: &str) -> Result<String> {
        let out = self
            .in_ns("curl")
            .args(["-sf", "-m", "5", url])
            .stdin(Stdio::null())
            .output()
            .context("running curl")?;
        checked("curl", &[url], out)
    }

    /// The component logs of the cluster (for failure messages).
    pub fn log_dir(&self) -> PathBuf {
        self.state.join("logs")
    }
}

/// One pod, as the tests look at it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodState {
    /// Name.
    pub name: String,
    /// Pod IP (empty before it has one).
    pub ip: String,
    /// Condition Ready is True.
    pub ready: bool,
    /// It has a deletion timestamp.
    pub deleting: bool,
}

fn checked(tool: &str, args: &[&str], out: Output) -> Result<String> {
    if !out.status.success() {
        bail!(
            "{tool} {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Drop for Node {
    fn drop(&mut self) {
        if std::env::var_os("POSTERN_K8S_KEEP").is_some() {
            eprintln!(
                "POSTERN_K8S_KEEP is set: the cluster stays up (tests/support/k8s/cluster-down.sh stops it)"
            );
            return;
        }
        let _ = Command::new(support_dir().join("cluster-down.sh"))
            .arg("--purge")
            .stdin(Stdio::null())
            .output();
    }
}
