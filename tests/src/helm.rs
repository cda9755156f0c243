//! Helm and the chart for tests: `helm lint`/`template`/`install` of `charts/postern`, and
//! the rendered manifests as JSON values.
//!
//! `helm` is `$POSTERN_HELM`, else the first `helm` on `PATH` or in `~/.local/bin`
//! (tests/support/install-deps.sh installs it there). A missing helm is a test failure.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

use postern_testkit::http::http_get;
use postern_testkit::ports::free_port;
use postern_testkit::workspace::workspace_root;

use crate::kube::{KubeCluster, random_hex};

/// The chart's directory.
pub fn chart_dir() -> PathBuf {
    workspace_root().join("charts/postern")
}

/// The `*.yaml` files of `dir`, sorted.
pub fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    Ok(files)
}

/// The values sets of `charts/postern/ci/` (CI renders and installs each one), sorted.
pub fn ci_values() -> Result<Vec<PathBuf>> {
    let dir = chart_dir().join("ci");
    let files = yaml_files(&dir)?;
    if files.is_empty() {
        bail!("no values sets in {}", dir.display());
    }
    Ok(files)
}

/// The helm binary.
pub fn helm_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("POSTERN_HELM") {
        return Ok(PathBuf::from(p));
    }
    find_tool("helm").ok_or_else(|| {
        anyhow!(
            "helm not found in PATH or ~/.local/bin: run tests/support/install-deps.sh \
             (it installs helm into ~/.local/bin) or set POSTERN_HELM"
        )
    })
}

/// A tool from `PATH` or `~/.local/bin`.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".local/bin"));
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// The Python of the virtualenv holding a CEL evaluator (cel-python), for the Flux health
/// expressions: `$POSTERN_CEL_PYTHON`, else `~/.cache/postern/cel-venv/bin/python`
/// (tests/support/install-deps.sh creates it).
pub fn cel_python() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("POSTERN_CEL_PYTHON") {
        return Ok(PathBuf::from(p));
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .ok_or_else(|| anyhow!("neither XDG_CACHE_HOME nor HOME is set"))?;
    let python = cache.join("postern/cel-venv/bin/python");
    if !python.is_file() {
        bail!(
            "no CEL evaluator at {}: run tests/support/install-deps.sh (it installs the PyPI \
             package cel-python into that virtualenv) or set POSTERN_CEL_PYTHON",
            python.display()
        );
    }
    Ok(python)
}

/// Runs `deploy/flux/health_test.py` with extra JSON case files; returns its output
/// (fails when a case fails).
pub fn run_flux_health_tests(cases: &[PathBuf]) -> Result<String> {
    let out = Command::new(cel_python()?)
        .arg(workspace_root().join("deploy/flux/health_test.py"))
        .args(cases)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "deploy/flux/health_test.py failed:\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(text)
}

/// A `helm` command (with `KUBECONFIG` when `kubeconfig` is given).
pub fn helm_cmd(kubeconfig: Option<&Path>) -> Result<Command> {
    let mut c = Command::new(helm_bin()?);
    match kubeconfig {
        Some(k) => {
            c.env("KUBECONFIG", k);
        }
        None => {
            // No cluster: make sure helm cannot reach one by accident.
            c.env("KUBECONFIG", "/dev/null");
        }
    }
    Ok(c)
}

/// Whether the helm binary is Helm 4 or later, which applies server-side by default.
fn applies_server_side() -> bool {
    static V4: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *V4.get_or_init(|| {
        helm_cmd(None)
            .ok()
            .and_then(|mut c| c.args(["version", "--short"]).output().ok())
            .is_some_and(|o| {
                let v = String::from_utf8_lossy(&o.stdout);
                !v.starts_with("v3.") && !v.starts_with("v2.")
            })
    })
}

/// `args` for a cluster, as docs/install.md says for API servers older than v1.23: the
/// test API server (v1.20) does not know `x-kubernetes-validations` (the CRDs' CEL
/// rules) in its schema of CRDs, so Helm 4's install and upgrade apply client-side (a
/// server-side apply is typed against that schema and refused; a create drops what the
/// server does not know, as on any old cluster), and the CRDs templated as release
/// objects (`crds.managed`) skip Helm's check against the server's OpenAPI.
pub(crate) fn cluster_args<'a>(kubeconfig: Option<&Path>, args: &[&'a str]) -> Vec<&'a str> {
    let mut out = args.to_vec();
    let writes = matches!(args.first(), Some(&("install" | "upgrade")));
    let dry = args.iter().any(|a| a.starts_with("--dry-run"));
    if kubeconfig.is_none() || !writes || dry {
        return out;
    }
    if !args.iter().any(|a| a.starts_with("--server-side")) && applies_server_side() {
        out.push("--server-side=false");
    }
    if !args.contains(&"--disable-openapi-validation") {
        out.push("--disable-openapi-validation");
    }
    out
}

/// Runs helm; fails with its output when it fails. Returns stdout.
pub fn helm(kubeconfig: Option<&Path>, args: &[&str]) -> Result<String> {
    let args = &cluster_args(kubeconfig, args)[..];
    let out = helm_cmd(kubeconfig)?
        .args(args)
        .output()
        .context("cannot run helm")?;
    if !out.status.success() {
        bail!(
            "helm {} failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs helm expecting failure; returns its stderr (fails when helm succeeds).
pub fn helm_fails(kubeconfig: Option<&Path>, args: &[&str]) -> Result<String> {
    let args = &cluster_args(kubeconfig, args)[..];
    let out = helm_cmd(kubeconfig)?
        .args(args)
        .output()
        .context("cannot run helm")?;
    if out.status.success() {
        bail!("helm {} succeeded but should have failed", args.join(" "));
    }
    Ok(String::from_utf8_lossy(&out.stderr).into_owned())
}

/// What to render.
#[derive(Clone, Debug, Default)]
pub struct Render {
    /// Release name (default `postern`).
    pub release: Option<String>,
    /// Release namespace (default `postern-system`).
    pub namespace: Option<String>,
    /// Values files, in order.
    pub values: Vec<PathBuf>,
    /// `--set` expressions.
    pub sets: Vec<String>,
    /// `--kube-version` (default: helm's own).
    pub kube_version: Option<String>,
    /// Render `crds/` too (`--include-crds`).
    pub include_crds: bool,
}

impl Render {
    /// The helm arguments after `template`.
    pub fn args(&self) -> Vec<String> {
        let mut a = vec![
            self.release.clone().unwrap_or_else(|| "postern".into()),
            chart_dir().display().to_string(),
            "--namespace".into(),
            self.namespace
                .clone()
                .unwrap_or_else(|| "postern-system".into()),
        ];
        for v in &self.values {
            a.push("--values".into());
            a.push(v.display().to_string());
        }
        for s in &self.sets {
            a.push("--set".into());
            a.push(s.clone());
        }
        if let Some(k) = &self.kube_version {
            a.push("--kube-version".into());
            a.push(k.clone());
        }
        if self.include_crds {
            a.push("--include-crds".into());
        }
        a
    }

    /// `helm template` output.
    pub fn yaml(&self) -> Result<String> {
        let mut args = vec!["template".to_owned()];
        args.extend(self.args());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        helm(None, &refs)
    }

    /// `helm template` output as objects.
    pub fn objects(&self) -> Result<Vec<serde_json::Value>> {
        parse_manifests(&self.yaml()?)
    }
}

/// The chart's objects rendered with the default values and `sets` (`--set`).
pub fn render_with(sets: &[&str]) -> Result<Vec<serde_json::Value>> {
    Render {
        sets: sets.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
    .objects()
}

/// YAML as Kubernetes reads it: YAML 1.2 booleans only (`on`, `no` are strings).
fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! { strict_booleans: true }
}

/// Splits a multi-document YAML stream into objects (empty documents dropped).
pub fn parse_manifests(yaml: &str) -> Result<Vec<serde_json::Value>> {
    let docs: Vec<Value> = serde_saphyr::from_multiple_with_options(yaml, yaml_options())
        .context("parsing rendered YAML")?;
    Ok(docs.into_iter().filter(|v| !v.is_null()).collect())
}

/// One YAML document as a value.
pub fn parse_yaml(yaml: &str) -> Result<Value> {
    serde_saphyr::from_str_with_options(yaml, yaml_options()).context("parsing YAML")
}

/// The objects of `kind` (optionally named `name`).
pub fn find<'a>(
    objects: &'a [serde_json::Value],
    kind: &str,
    name: Option<&str>,
) -> Vec<&'a serde_json::Value> {
    objects
        .iter()
        .filter(|o| o["kind"] == kind && name.is_none_or(|n| o["metadata"]["name"] == n))
        .collect()
}

/// The one object of `kind` named `name`; fails when absent.
pub fn get<'a>(
    objects: &'a [serde_json::Value],
    kind: &str,
    name: &str,
) -> Result<&'a serde_json::Value> {
    find(objects, kind, Some(name))
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("no {kind} {name} in the rendered chart"))
}

/// `kind/name` of an object, for messages.
pub fn id(o: &serde_json::Value) -> String {
    format!(
        "{}/{}",
        o["kind"].as_str().unwrap_or("?"),
        o["metadata"]["name"].as_str().unwrap_or("?")
    )
}

/// An installed release.
#[derive(Debug)]
pub struct Release<'a> {
    /// The cluster it is installed in.
    pub cluster: &'a KubeCluster,
    /// Release name.
    pub name: String,
    /// Release namespace.
    pub namespace: String,
    dir: tempfile::TempDir,
}

impl<'a> Release<'a> {
    /// `helm install NAME charts/postern -n NAMESPACE ARGS...` as admin. Release names are
    /// unique per test: the ClusterRoles are cluster-wide and named after the release.
    pub fn install(cluster: &'a KubeCluster, prefix: &str, args: &[&str]) -> Release<'a> {
        let namespace = cluster.create_namespace(prefix).unwrap();
        let name = format!("{prefix}-{}", random_hex(4));
        let chart = chart_dir().display().to_string();
        let mut a = vec!["install", &name, &chart, "-n", &namespace];
        a.extend_from_slice(args);
        helm(Some(&cluster.kubeconfig()), &a).unwrap();
        Release {
            cluster,
            name,
            namespace,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// `helm ARGS -n NAMESPACE` as admin; panics on failure. Returns stdout.
    pub fn helm(&self, args: &[&str]) -> String {
        let mut a: Vec<&str> = args.to_vec();
        a.extend_from_slice(&["-n", &self.namespace]);
        helm(Some(&self.cluster.kubeconfig()), &a).unwrap()
    }

    /// The objects of the release as Helm recorded them.
    pub fn manifest(&self) -> Vec<Value> {
        parse_manifests(&self.helm(&["get", "manifest", &self.name])).unwrap()
    }

    /// `<release>-postern`, the prefix of the object names.
    pub fn fullname(&self) -> String {
        format!("{}-postern", self.name)
    }

    /// A kubeconfig authenticating as ServiceAccount `sa` of the release namespace with a
    /// token from the TokenRequest API, as a Pod's projected token would.
    pub fn service_account_kubeconfig(&self, sa: &str) -> PathBuf {
        let token = self
            .cluster
            .kubectl(&[
                "create",
                "token",
                sa,
                "-n",
                &self.namespace,
                "--duration=1h",
            ])
            .unwrap();
        let path = self.dir.path().join(format!("kubeconfig-{sa}"));
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n    \
                 insecure-skip-tls-verify: true\nusers:\n- name: {sa}\n  user:\n    token: {}\n\
                 contexts:\n- name: test\n  context:\n    cluster: test\n    user: {sa}\n    \
                 namespace: {}\ncurrent-context: test\n",
                self.cluster.server(),
                token.trim(),
                self.namespace
            ),
        )
        .unwrap();
        path
    }
}

/// The container of a rendered Deployment, run as a local process the way its Pod would
/// run it: the chart's args and env (downward-API fields filled in), credentials of a
/// ServiceAccount through `KUBECONFIG`. Only the admin/metrics listen address is moved to
/// a free loopback port. Killed on drop.
#[derive(Debug)]
pub struct ChartProcess {
    child: Option<std::process::Child>,
    /// The admin or metrics address (/healthz, /readyz, /metrics).
    pub http: std::net::SocketAddr,
    /// The Pod name it was given (`POD_NAME`).
    pub pod_name: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl ChartProcess {
    /// Starts `bin` (the image's ENTRYPOINT) for the first container of `deployment`, as
    /// Pod `pod_name` in `namespace`, authenticated by `kubeconfig`; waits for `/healthz`.
    pub fn start(
        bin: &Path,
        deployment: &Value,
        pod_name: &str,
        namespace: &str,
        kubeconfig: &Path,
    ) -> Result<ChartProcess> {
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        let port = free_port();
        let http: std::net::SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let mut args = Vec::new();
        for a in container["args"].as_array().into_iter().flatten() {
            let a = a.as_str().context("non-string arg")?;
            args.push(match a.split_once('=') {
                Some((flag @ ("--metrics-address" | "--admin-address"), _)) => {
                    format!("{flag}={http}")
                }
                _ => a.to_owned(),
            });
        }
        let dir = tempfile::Builder::new()
            .prefix("postern-chart-")
            .tempdir()?;
        let log = dir.path().join("process.log");
        let mut cmd = Command::new(bin);
        cmd.args(&args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("KUBECONFIG", kubeconfig)
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(&log)?)
            .stderr(std::fs::File::options().append(true).open(&log)?);
        for e in container["env"].as_array().into_iter().flatten() {
            let name = e["name"].as_str().context("env without name")?;
            let value = match (&e["value"], &e["valueFrom"]["fieldRef"]["fieldPath"]) {
                (Value::String(v), _) => v.clone(),
                (_, Value::String(path)) => match path.as_str() {
                    "metadata.name" => pod_name.to_owned(),
                    "metadata.namespace" => namespace.to_owned(),
                    "metadata.uid" => format!("00000000-0000-4000-8000-{}", random_hex(12)),
                    other => bail!("env {name}: unsupported fieldRef {other}"),
                },
                _ => bail!("env {name}: unsupported source {e}"),
            };
            cmd.env(name, value);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let mut p = ChartProcess {
            child: Some(child),
            http,
            pod_name: pod_name.to_owned(),
            log,
            _dir: dir,
        };
        p.wait_http("/healthz", std::time::Duration::from_secs(30))?;
        Ok(p)
    }

    /// Waits until `path` answers 200.
    pub fn wait_http(&mut self, path: &str, timeout: std::time::Duration) -> Result<()> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(c) = self.child.as_mut()
                && let Some(status) = c.try_wait()?
            {
                bail!("{} exited ({status}):\n{}", self.pod_name, self.logs());
            }
            if self.get(path).is_ok_and(|(code, _)| code == 200) {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                bail!("{} does not answer {path}:\n{}", self.pod_name, self.logs());
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// `GET path` on the admin address: (status code, body).
    pub fn get(&self, path: &str) -> Result<(u16, String)> {
        http_get(self.http, path)
    }

    /// Its output so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM and wait (up to 20 s); returns whether it exited successfully.
    pub fn stop(&mut self) -> Result<bool> {
        let mut child = self.child.take().context("already stopped")?;
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status.success());
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "{} did not stop on SIGTERM:\n{}",
                    self.pod_name,
                    self.logs()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for ChartProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_documents_and_drops_empty_ones() {
        let objs =
            parse_manifests("---\n# c\n---\na: 1\n---\nkind: X\nmetadata: {name: y}\n").unwrap();
        assert_eq!(objs.len(), 2);
        assert_eq!(id(&objs[1]), "X/y");
        assert!(get(&objs, "X", "y").is_ok());
        assert!(get(&objs, "X", "z").is_err());
    }

    #[test]
    fn render_args_carry_values_and_sets() {
        let r = Render {
            values: vec!["/v.yaml".into()],
            sets: vec!["a=b".into()],
            kube_version: Some("1.20.2".into()),
            ..Default::default()
        };
        let a = r.args().join(" ");
        assert!(
            a.contains("--values /v.yaml --set a=b --kube-version 1.20.2"),
            "{a}"
        );
        assert!(a.contains("--namespace postern-system"), "{a}");
    }
}
