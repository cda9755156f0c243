//! The images and the chart on the node: both images built from the repository's Dockerfile
//! (`tests/support/k8s/images.sh`: release binaries built on the host, a distroless stand-in)
//! and imported into the node's containerd; the values a cluster without a registry and a
//! load balancer needs; the example sets adapted for pods.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use postern_testkit::workspace::workspace_root;

use crate::helm::{chart_dir, yaml_files};

use super::peers::{CRL_PORT, LDAP_PORT, SINK_PORT};
use super::{NODE_IP, Node, support_dir};

/// The Listener ports of the three example sets, in the order of `examples/README.md`;
/// each becomes a port of the gateway Service (name, port).
pub const EXAMPLE_PORTS: [(&str, u16); 4] = [
    ("cert-only", 2587),
    ("ldap-auth", 2588),
    ("ldap-monitor", 2598),
    ("either", 2589),
];

/// The release binaries the images are made of: `$POSTERN_RELEASE_DIR`, else `release/`
/// of the target directory this test binary was built in (tests/run builds them).
pub fn release_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("POSTERN_RELEASE_DIR") {
        return Ok(PathBuf::from(d));
    }
    let exe = std::env::current_exe()?;
    // <target>/debug/deps/<test binary>
    let target = exe
        .ancestors()
        .nth(3)
        .context("the test binary is not in a cargo target directory")?;
    Ok(target.join("release"))
}

/// Both images, imported into the node's containerd.
#[derive(Clone, Debug)]
pub struct Images {
    /// Tag of both.
    pub tag: String,
}

/// Repository of the controller image.
pub const CONTROLLER_REPO: &str = "localhost/postern/controller";
/// Repository of the gateway image.
pub const GATEWAY_REPO: &str = "localhost/postern/gateway";

impl Images {
    /// Builds both images from the release binaries and imports them into the node.
    pub fn build(tag: &str) -> Result<Self> {
        let rel = release_dir()?;
        for bin in ["postern", "postern-gateway"] {
            if !rel.join(bin).is_file() {
                bail!(
                    "no release binary {}: build them first (cargo build --release --locked \
                     -p postern-controller -p postern-gateway --bin postern --bin postern-gateway; \
                     tests/run does)",
                    rel.join(bin).display()
                );
            }
        }
        run(Command::new(support_dir().join("images.sh"))
            .arg(&rel)
            .arg(tag))?;
        let images = Self { tag: tag.into() };
        images.load()?;
        Ok(images)
    }

    /// The same images under another tag (a new version, as a rollout sees it).
    pub fn retag(&self, tag: &str) -> Result<Self> {
        for repo in [CONTROLLER_REPO, GATEWAY_REPO] {
            run(Command::new("podman")
                .env("CONTAINERS_CONF", support_dir().join("containers.conf"))
                .args([
                    "tag",
                    &format!("{repo}:{}", self.tag),
                    &format!("{repo}:{tag}"),
                ]))?;
        }
        let images = Self { tag: tag.into() };
        images.load()?;
        Ok(images)
    }

    fn load(&self) -> Result<()> {
        for repo in [CONTROLLER_REPO, GATEWAY_REPO] {
            run(Command::new(support_dir().join("load-image.sh"))
                .arg(format!("{repo}:{}", self.tag)))?;
        }
        Ok(())
    }

    /// `--set` arguments: the images (never pulled) and a ClusterIP Service with the
    /// examples' Listener ports (1.20 has no safe sysctl for ports below 1024); everything
    /// else stays the chart's default.
    pub fn values(&self) -> Vec<String> {
        let mut v = Vec::new();
        for (key, repo) in [("controller", CONTROLLER_REPO), ("gateway", GATEWAY_REPO)] {
            v.push(format!("{key}.image.repository={repo}"));
            v.push(format!("{key}.image.tag={}", self.tag));
            v.push(format!("{key}.image.pullPolicy=Never"));
        }
        v.push("gateway.service.type=ClusterIP".into());
        for (i, (name, port)) in EXAMPLE_PORTS.iter().enumerate() {
            v.push(format!("gateway.service.ports[{i}].name={name}"));
            v.push(format!("gateway.service.ports[{i}].port={port}"));
        }
        v
    }

    /// `helm ... --set a --set b ...`.
    pub fn set_args(&self) -> Vec<String> {
        self.values()
            .into_iter()
            .flat_map(|s| ["--set".to_owned(), s])
            .collect()
    }
}

/// `helm upgrade --install RELEASE CHART --wait` in `ns` with the images' values and
/// `extra` arguments; how long it took. `chart` defaults to the working tree's chart.
pub fn helm_install(
    node: &Node,
    ns: &str,
    release: &str,
    chart: Option<&std::path::Path>,
    images: &Images,
    extra: &[&str],
) -> Result<std::time::Duration> {
    let start = std::time::Instant::now();
    let chart = chart.map_or_else(chart_dir, std::path::Path::to_path_buf);
    let chart = chart.display().to_string();
    let mut args: Vec<String> = [
        "upgrade",
        "--install",
        release,
        &chart,
        "-n",
        ns,
        "--create-namespace",
        "--wait",
        "--timeout",
        "180s",
    ]
    .map(String::from)
    .to_vec();
    args.extend(images.set_args());
    args.extend(extra.iter().map(|s| s.to_string()));
    node.helm(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
    Ok(start.elapsed())
}

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(())
}

/// The manifests of `examples/<set>/`, adapted for pods: Listeners on every address of the
/// pod (the examples' 127.0.0.1 is the pod's own loopback), the directory, next hop and CRL
/// server at the node's address, where [`super::peers::Peers`] runs them.
pub fn example_manifests(set: &str) -> Result<String> {
    let dir = workspace_root().join("examples").join(set);
    let files = yaml_files(&dir)?;
    let mut all = String::new();
    for f in files {
        all.push_str(&std::fs::read_to_string(&f)?);
        all.push_str("\n---\n");
    }
    let adapted = all
        .replace("address: 127.0.0.1", "address: 0.0.0.0")
        .replace(
            &format!("ldap://127.0.0.1:{LDAP_PORT}"),
            &format!("ldap://{NODE_IP}:{LDAP_PORT}"),
        )
        .replace(
            &format!("host: 127.0.0.1, port: {SINK_PORT}"),
            &format!("host: {NODE_IP}, port: {SINK_PORT}"),
        )
        .replace(
            &format!("http://127.0.0.1:{CRL_PORT}"),
            &format!("http://{NODE_IP}:{CRL_PORT}"),
        )
        .replace(
            &format!("http://localhost:{CRL_PORT}"),
            &format!("http://{NODE_IP}:{CRL_PORT}"),
        );
    for left in ["127.0.0.1:", "localhost:"] {
        if let Some(line) = adapted
            .lines()
            .find(|l| l.contains(left) && !l.trim_start().starts_with('#'))
        {
            bail!("examples/{set}: a loopback address is left for the pods: {line}");
        }
    }
    Ok(adapted)
}

/// The node the tests run on, for reports: CPUs and load average.
pub fn machine_load() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "{cpus} CPUs, load average {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// Whether `ns` has a Postern object that is not Ready yet (all kinds).
pub fn all_postern_ready(node: &Node, ns: &str) -> bool {
    node.get_json(&["postern", "-n", ns])
        .ok()
        .and_then(|v| v["items"].as_array().cloned())
        .is_some_and(|items| {
            !items.is_empty()
                && items.iter().all(|o| {
                    o["status"]["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
        })
}
