//! A real Kubernetes control plane for tests: `etcd` + `kube-apiserver` on loopback.
//!
//! [`KubeCluster::shared`] starts one control plane per test binary (tests isolate
//! themselves with [`KubeCluster::create_namespace`]); [`KubeCluster::start`] starts a
//! private one that stops on drop. All state lives in a temporary directory.
//!
//! The API server is `$POSTERN_KUBE_APISERVER`, else `~/.cache/postern-k8s/bin/kube-apiserver`
//! (built by `tests/support/kube-apiserver.sh`); `etcd` and `kubectl` come from `PATH`.
//! A missing tool is a test failure that says how to get it.
//!
//! Tokens: `admin` (system:masters) and three users with no rights until a test binds a
//! role to them: `postern-controller`, `postern-gateway` and `postern-viewer`
//! ([`User`]), for RBAC tests with restricted credentials.
//!
//! Processes are started through a tiny shell guard that holds a pipe from this process:
//! when the test binary exits (even when killed), the pipe closes and the guard stops the
//! server, so the shared instance never outlives its tests.

use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use postern_testkit::ports::free_ports;
use postern_testkit::process::output_with_stdin;
use postern_testkit::workspace::workspace_root;

/// A user of the test API server, each with its own bearer token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum User {
    /// `system:masters`: may do everything.
    Admin,
    /// User `postern-controller`, group `postern:controllers`; no rights until bound.
    Controller,
    /// User `postern-gateway`, group `postern:gateways`; no rights until bound.
    Gateway,
    /// User `postern-viewer`, no groups; no rights until bound.
    Viewer,
}

impl User {
    const ALL: [User; 4] = [User::Admin, User::Controller, User::Gateway, User::Viewer];

    /// The user name the API server authenticates the token as (RBAC `User` subject).
    pub fn name(self) -> &'static str {
        match self {
            User::Admin => "admin",
            User::Controller => "postern-controller",
            User::Gateway => "postern-gateway",
            User::Viewer => "postern-viewer",
        }
    }

    fn groups(self) -> &'static str {
        match self {
            User::Admin => "system:masters",
            User::Controller => "postern:controllers",
            User::Gateway => "postern:gateways",
            User::Viewer => "",
        }
    }
}

/// A running etcd + kube-apiserver pair.
#[derive(Debug)]
pub struct KubeCluster {
    // Field order is drop order: stop the servers before their directory goes.
    guards: Vec<Guard>,
    dir: PathBuf,
    /// Keeps the directory alive for private clusters; the shared one is removed by a janitor.
    _tempdir: Option<tempfile::TempDir>,
    server: String,
    tokens: Vec<(User, String)>,
}

/// A process under a guard: dropping (or exiting) closes `stdin`, and the guard kills it.
#[derive(Debug)]
struct Guard {
    name: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    log: PathBuf,
}

impl Drop for Guard {
    fn drop(&mut self) {
        // Closing stdin makes the guard kill its server; wait briefly so a private
        // cluster's ports are free again when drop returns.
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for KubeCluster {
    fn drop(&mut self) {
        // The API server first: without etcd it can hang in its shutdown.
        while let Some(g) = self.guards.pop() {
            drop(g);
        }
    }
}

static SHARED: OnceLock<KubeCluster> = OnceLock::new();

impl KubeCluster {
    /// The control plane of this test binary, started on first use, with the CRDs applied.
    /// Panics with a clear message when it cannot start.
    pub fn shared() -> &'static KubeCluster {
        SHARED.get_or_init(|| {
            let cluster = KubeCluster::start_inner(true)
                .unwrap_or_else(|e| panic!("cannot start the test Kubernetes API server: {e:#}"));
            cluster
                .apply_crds()
                .unwrap_or_else(|e| panic!("cannot apply Postern's CRDs: {e:#}"));
            cluster
        })
    }

    /// A private control plane (without CRDs; see [`Self::apply_crds`]); stops on drop.
    pub fn start() -> Result<KubeCluster> {
        Self::start_inner(false)
    }

    fn start_inner(shared: bool) -> Result<KubeCluster> {
        let apiserver = kube_apiserver_path()?;
        let etcd = which("etcd").context(
            "etcd is not installed (Debian package etcd-server; tests/support/install-deps.sh installs it)",
        )?;
        which("kubectl").context(
            "kubectl is not installed (tests/support/install-deps.sh installs it into ~/.local/bin)",
        )?;
        which("openssl").context("openssl is not installed (Debian package openssl)")?;

        let tempdir = tempfile::Builder::new().prefix("postern-kube-").tempdir()?;
        let dir = tempdir.path().to_path_buf();
        let tokens: Vec<(User, String)> = User::ALL
            .iter()
            .map(|u| (*u, format!("{}-{}", u.name(), random_hex(16))))
            .collect();
        let mut csv = String::new();
        for (i, (user, token)) in tokens.iter().enumerate() {
            csv.push_str(&format!("{token},{},uid{i}", user.name()));
            if !user.groups().is_empty() {
                csv.push_str(&format!(",\"{}\"", user.groups()));
            }
            csv.push('\n');
        }
        std::fs::write(dir.join("tokens.csv"), csv)?;
        run_checked(
            Command::new("openssl")
                .args(["genrsa", "-out", "sa.key", "2048"])
                .current_dir(&dir),
        )?;
        run_checked(
            Command::new("openssl")
                .args(["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"])
                .current_dir(&dir),
        )?;

        // A port picked free can be taken before the server binds it: retry a few times.
        let mut last_err = None;
        for _attempt in 0..3 {
            let [etcd_port, peer_port, api_port] = free_ports(3)[..] else {
                unreachable!("three ports asked for")
            };
            let mut guards = Vec::new();
            let etcd_data = dir.join(format!("etcd-{etcd_port}"));
            guards.push(spawn_guarded(
                "etcd",
                &dir,
                Command::new(&etcd).args([
                    "--data-dir".into(),
                    etcd_data.display().to_string(),
                    "--listen-client-urls".into(),
                    format!("http://127.0.0.1:{etcd_port}"),
                    "--advertise-client-urls".into(),
                    format!("http://127.0.0.1:{etcd_port}"),
                    "--listen-peer-urls".into(),
                    format!("http://127.0.0.1:{peer_port}"),
                    "--initial-advertise-peer-urls".into(),
                    format!("http://127.0.0.1:{peer_port}"),
                    "--initial-cluster".into(),
                    format!("default=http://127.0.0.1:{peer_port}"),
                    "--unsafe-no-fsync".into(),
                ]),
            )?);
            guards.push(spawn_guarded(
                "kube-apiserver",
                &dir,
                Command::new(&apiserver).args([
                    format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
                    format!("--cert-dir={}", dir.join("certs").display()),
                    "--bind-address=127.0.0.1".into(),
                    format!("--secure-port={api_port}"),
                    "--insecure-port=0".into(),
                    format!("--token-auth-file={}", dir.join("tokens.csv").display()),
                    "--authorization-mode=RBAC".into(),
                    "--service-cluster-ip-range=10.96.0.0/24".into(),
                    "--service-account-issuer=https://kubernetes.default.svc".into(),
                    format!(
                        "--service-account-key-file={}",
                        dir.join("sa.pub").display()
                    ),
                    format!(
                        "--service-account-signing-key-file={}",
                        dir.join("sa.key").display()
                    ),
                    "--disable-admission-plugins=ServiceAccount".into(),
                    // Watch caches and event TTL sized for tests; defaults otherwise.
                    "--event-ttl=10m".into(),
                ]),
            )?);
            let mut cluster = KubeCluster {
                dir: dir.clone(),
                _tempdir: None,
                server: format!("https://127.0.0.1:{api_port}"),
                tokens: tokens.clone(),
                guards,
            };
            for user in User::ALL {
                cluster.write_kubeconfig(user)?;
            }
            match cluster.wait_ready(Duration::from_secs(60)) {
                Ok(()) => {
                    if !shared {
                        cluster._tempdir = Some(tempdir);
                    } else {
                        // The janitor removes it once the test binary is gone.
                        let _ = tempdir.keep();
                        cluster.guards.insert(0, spawn_janitor(&dir)?);
                    }
                    return Ok(cluster);
                }
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow!("kube-apiserver did not start")))
    }

    fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            for g in &self.guards {
                if g.name != "janitor"
                    && std::fs::read_to_string(&g.log).is_ok_and(|l| {
                        l.contains("address already in use") || l.contains("bind: address")
                    })
                {
                    bail!("{} could not bind its port:\n{}", g.name, tail(&g.log, 20));
                }
            }
            let out = self
                .kubectl_cmd(User::Admin)
                .args(["get", "--raw", "/readyz"])
                .output()?;
            if out.status.success() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = self
                    .guards
                    .iter()
                    .map(|g| format!("--- {} ---\n{}", g.name, tail(&g.log, 30)))
                    .collect();
                bail!(
                    "kube-apiserver not ready after {timeout:?}: {}\n{}",
                    String::from_utf8_lossy(&out.stderr),
                    logs.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn write_kubeconfig(&self, user: User) -> Result<()> {
        let token = self.token(user);
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {server}\n    insecure-skip-tls-verify: true\nusers:\n- name: {name}\n  user:\n    token: {token}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: {name}\n    namespace: default\ncurrent-context: test\n",
            server = self.server,
            name = user.name(),
        );
        std::fs::write(self.kubeconfig_for(user), text)?;
        Ok(())
    }

    /// The API server's URL, `https://127.0.0.1:PORT`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The bearer token of a user.
    pub fn token(&self, user: User) -> &str {
        &self
            .tokens
            .iter()
            .find(|(u, _)| *u == user)
            .expect("every user has a token")
            .1
    }

    /// The admin kubeconfig.
    pub fn kubeconfig(&self) -> PathBuf {
        self.kubeconfig_for(User::Admin)
    }

    /// A kubeconfig that authenticates as `user`.
    pub fn kubeconfig_for(&self, user: User) -> PathBuf {
        self.dir.join(format!("kubeconfig-{}", user.name()))
    }

    /// The state directory (logs of etcd and kube-apiserver are there).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A `kubectl` command authenticated as `user`.
    pub fn kubectl_cmd(&self, user: User) -> Command {
        let mut c = Command::new("kubectl");
        // A cache of this cluster's own: kubectl's default (~/.kube/cache) is shared by
        // every test cluster this user ever started, on ports that come round again, and
        // served a stale OpenAPI schema of the CRDs to its client-side validation.
        c.env("KUBECONFIG", self.kubeconfig_for(user))
            .arg("--request-timeout=30s")
            .arg(format!(
                "--cache-dir={}",
                self.dir.join("kubectl-cache").display()
            ));
        c
    }

    /// Runs `kubectl ARGS` as admin; fails with its stderr when it fails. Returns stdout.
    pub fn kubectl(&self, args: &[&str]) -> Result<String> {
        self.kubectl_as(User::Admin, args)
    }

    /// Runs `kubectl ARGS` as `user`; fails with its stderr when it fails. Returns stdout.
    pub fn kubectl_as(&self, user: User, args: &[&str]) -> Result<String> {
        let out = self.kubectl_cmd(user).args(args).output()?;
        output_checked(&format!("kubectl {}", args.join(" ")), out)
    }

    /// Runs `kubectl ARGS` with `input` on stdin, as admin. Returns stdout.
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> Result<String> {
        let out = output_with_stdin(self.kubectl_cmd(User::Admin).args(args), input.as_bytes())?;
        output_checked(&format!("kubectl {}", args.join(" ")), out)
    }

    /// `kubectl apply --server-side` of YAML manifests into `namespace`, as admin.
    pub fn apply(&self, namespace: &str, yaml: &str) -> Result<String> {
        self.kubectl_stdin(
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=kubectl",
                "-n",
                namespace,
                "-f",
                "-",
            ],
            yaml,
        )
    }

    /// `kubectl apply --server-side -f PATH` (a file or a directory) into `namespace`.
    pub fn apply_path(&self, namespace: &str, path: &Path) -> Result<String> {
        let p = path.display().to_string();
        self.kubectl(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=kubectl",
            "-n",
            namespace,
            "-f",
            &p,
        ])
    }

    /// `kubectl delete KIND NAME -n NAMESPACE` (waits for the deletion).
    pub fn delete(&self, namespace: &str, kind: &str, name: &str) -> Result<String> {
        self.kubectl(&["delete", "-n", namespace, kind, name])
    }

    /// An object as JSON (`kubectl get -o json`), or `None` when it does not exist.
    pub fn get_json(
        &self,
        namespace: &str,
        kind: &str,
        name: &str,
    ) -> Result<Option<serde_json::Value>> {
        let out = self
            .kubectl_cmd(User::Admin)
            .args([
                "get",
                "-n",
                namespace,
                kind,
                name,
                "-o",
                "json",
                "--ignore-not-found",
            ])
            .output()?;
        let text = output_checked(&format!("kubectl get {kind} {name}"), out)?;
        if text.trim().is_empty() {
            return Ok(None);
        }
        Ok(Some(serde_json::from_str(&text)?))
    }

    /// The condition `type_` of an object's `status.conditions`, if present.
    pub fn condition(
        &self,
        namespace: &str,
        kind: &str,
        name: &str,
        type_: &str,
    ) -> Result<Option<Condition>> {
        let Some(obj) = self.get_json(namespace, kind, name)? else {
            return Ok(None);
        };
        Ok(condition_of(&obj, type_))
    }

    /// Creates a fresh namespace `PREFIX-<random>` and returns its name.
    pub fn create_namespace(&self, prefix: &str) -> Result<String> {
        let name = format!("{prefix}-{}", random_hex(6));
        self.kubectl(&["create", "namespace", &name])?;
        Ok(name)
    }

    /// Applies the generated CRDs (`charts/postern/crds/`) and waits until they are served.
    pub fn apply_crds(&self) -> Result<()> {
        let dir = crds_dir();
        let has_yaml = std::fs::read_dir(&dir)
            .with_context(|| format!("no CRDs at {} (run crdgen)", dir.display()))?
            .filter_map(|e| e.ok())
            .any(|e| e.path().extension().is_some_and(|x| x == "yaml"));
        if !has_yaml {
            bail!("no CRD YAML in {} (run crdgen)", dir.display());
        }
        let d = dir.display().to_string();
        // This server (v1.20) predates CEL rules (`x-kubernetes-validations`): kubectl's
        // schema check would refuse them (--validate=false) and so would a server-side
        // apply, which types the CRD against the server's own (older) schema of CRDs. A
        // client-side apply is decoded like a create, which drops the fields the server
        // does not know: the CRDs are served without the rules, as on any old cluster.
        self.kubectl(&["apply", "--validate=false", "-f", &d])?;
        self.kubectl(&[
            "wait",
            "--for=condition=Established",
            "crd",
            "-l",
            "app.kubernetes.io/part-of=postern",
            "--timeout=60s",
        ])
        .or_else(|_| {
            // CRDs without the label: wait on all of them.
            self.kubectl(&[
                "wait",
                "--for=condition=Established",
                "crd",
                "--all",
                "--timeout=60s",
            ])
        })?;
        Ok(())
    }

    /// Binds a ClusterRole to `user` for the whole cluster.
    pub fn bind_cluster_role(&self, user: User, cluster_role: &str) -> Result<()> {
        let name = format!("{}-{}-{}", user.name(), cluster_role, random_hex(4));
        self.kubectl(&[
            "create",
            "clusterrolebinding",
            &name,
            &format!("--clusterrole={cluster_role}"),
            &format!("--user={}", user.name()),
        ])?;
        Ok(())
    }

    /// Binds a Role or ClusterRole to `user` in one namespace.
    pub fn bind_role(&self, namespace: &str, user: User, kind: &str, role: &str) -> Result<()> {
        let name = format!("{}-{}-{}", user.name(), role, random_hex(4));
        let flag = match kind {
            "ClusterRole" => format!("--clusterrole={role}"),
            _ => format!("--role={role}"),
        };
        self.kubectl(&[
            "create",
            "rolebinding",
            "-n",
            namespace,
            &name,
            &flag,
            &format!("--user={}", user.name()),
        ])?;
        Ok(())
    }

    /// A kube-rs client authenticated as `user`. Make one per test: a client belongs to
    /// the tokio runtime it was created on.
    pub async fn client_as(&self, user: User) -> Result<::kube::Client> {
        let kubeconfig = ::kube::config::Kubeconfig::read_from(self.kubeconfig_for(user))?;
        let config = ::kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &::kube::config::KubeConfigOptions::default(),
        )
        .await?;
        // The test binaries link rustls with both providers (the gateway's AWS-LC and
        // ring): the Kubernetes client needs a process default named.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Ok(kube::Client::try_from(config)?)
    }

    /// An admin kube-rs client.
    pub async fn client(&self) -> Result<::kube::Client> {
        self.client_as(User::Admin).await
    }
}

/// One entry of `status.conditions`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// CamelCase reason.
    pub reason: String,
    /// Human-readable message.
    pub message: String,
    /// The generation the condition was computed for.
    pub observed_generation: Option<i64>,
    /// RFC 3339 time of the last flip.
    pub last_transition_time: String,
}

/// Reads condition `type_` from an object's JSON.
pub fn condition_of(obj: &serde_json::Value, type_: &str) -> Option<Condition> {
    let conds = obj.pointer("/status/conditions")?.as_array()?;
    let c = conds.iter().find(|c| c["type"] == type_)?;
    let s = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
    Some(Condition {
        status: s("status"),
        reason: s("reason"),
        message: s("message"),
        observed_generation: c["observedGeneration"].as_i64(),
        last_transition_time: s("lastTransitionTime"),
    })
}

/// Polls `f` every 100 ms until it returns `Some`, or fails after `timeout` with the last
/// state `f` described (its `Err`).
pub fn wait_until<T>(
    timeout: Duration,
    what: &str,
    mut f: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        match f() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = format!("{e:#}"),
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}; last: {last}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Where crdgen writes the CRDs.
pub fn crds_dir() -> PathBuf {
    workspace_root().join("charts/postern/crds")
}

fn kube_apiserver_path() -> Result<PathBuf> {
    kube_apiserver_path_from(std::env::var_os("POSTERN_KUBE_APISERVER"))
}

fn kube_apiserver_path_from(configured: Option<std::ffi::OsString>) -> Result<PathBuf> {
    let path = match configured {
        Some(p) => PathBuf::from(p),
        None => {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .ok_or_else(|| anyhow!("neither XDG_CACHE_HOME nor HOME is set"))?;
            cache.join("postern-k8s/bin/kube-apiserver")
        }
    };
    if !path.is_file() {
        bail!(
            "kube-apiserver not found at {} — build it with tests/support/kube-apiserver.sh \
             (tests/run does; about 5 minutes once, then cached) or set POSTERN_KUBE_APISERVER",
            path.display()
        );
    }
    Ok(path)
}

fn which(name: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".local/bin"));
    }
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| anyhow!("{name} not found in PATH"))
}

fn spawn_guarded(name: &'static str, dir: &Path, cmd: &mut Command) -> Result<Guard> {
    let log = dir.join(format!("{name}.log"));
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    let logfile = std::fs::File::create(&log)?;
    // The guard runs the server in the background and waits for EOF on its stdin (the
    // pipe from this process), then stops the server.
    let mut guard = Command::new("bash");
    guard
        .arg("-c")
        .arg(
            r#""$@" </dev/null & c=$!; read -r _; kill "$c" 2>/dev/null
for _ in $(seq 50); do kill -0 "$c" 2>/dev/null || exit 0; sleep 0.1; done
kill -9 "$c" 2>/dev/null; wait "$c""#,
        )
        .arg("guard")
        .arg(&program)
        .args(&args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(logfile.try_clone()?)
        .stderr(logfile);
    let mut child = guard
        .spawn()
        .with_context(|| format!("cannot start {}", program.to_string_lossy()))?;
    let stdin = child.stdin.take().expect("piped stdin");
    Ok(Guard {
        name,
        child,
        stdin: Some(stdin),
        log,
    })
}

/// Removes the shared cluster's state directory once the test binary is gone.
fn spawn_janitor(dir: &Path) -> Result<Guard> {
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(r#"read -r _; sleep 2; rm -rf "$1""#)
        .arg("janitor")
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start bash")?;
    let stdin = child.stdin.take().expect("piped stdin");
    Ok(Guard {
        name: "janitor",
        child,
        stdin: Some(stdin),
        log: dir.join("janitor.log"),
    })
}

fn run_checked(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {:?}", cmd.get_program()))?;
    output_checked(&format!("{:?}", cmd.get_program()), out)
}

fn output_checked(what: &str, out: Output) -> Result<String> {
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Random lowercase hex, `n` characters (for tokens and unique names).
pub fn random_hex(n: usize) -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::new();
    while out.len() < n {
        let mut h = RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
        );
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out.truncate(n);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_apiserver_is_a_clear_error() {
        let e = kube_apiserver_path_from(Some("/nonexistent/kube-apiserver".into())).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("/nonexistent/kube-apiserver"), "{msg}");
        assert!(msg.contains("tests/support/kube-apiserver.sh"), "{msg}");
        assert!(msg.contains("POSTERN_KUBE_APISERVER"), "{msg}");
    }

    #[test]
    fn random_names_differ() {
        assert_eq!(random_hex(6).len(), 6);
        assert_ne!(random_hex(12), random_hex(12));
    }

    #[test]
    fn reads_conditions() {
        let obj = serde_json::json!({"status": {"conditions": [
            {"type": "Ready", "status": "False", "reason": "RefNotFound", "message": "m",
             "observedGeneration": 3, "lastTransitionTime": "2024-01-01T00:00:00Z"}]}});
        let c = condition_of(&obj, "Ready").unwrap();
        assert_eq!(c.status, "False");
        assert_eq!(c.reason, "RefNotFound");
        assert_eq!(c.observed_generation, Some(3));
        assert!(condition_of(&obj, "Accepted").is_none());
    }
}
