//! The built `postern-gateway` binary, started with a configuration file on loopback,
//! ready when `/readyz` says so, killed on drop. Also small builders for configurations.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use postern_config::{self as cfg, GatewayConfig};

use crate::kube::workspace_bin;
use crate::ports::free_port;

/// A running gateway.
#[derive(Debug)]
pub struct Gateway {
    child: Child,
    /// Admin port on 127.0.0.1.
    pub admin_port: u16,
    /// The configuration file it watches.
    pub config_path: PathBuf,
    log_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Gateway {
    /// Start with `config` and a 5 s shutdown grace period.
    pub fn start(config: &GatewayConfig) -> Result<Self> {
        Self::start_with(config, &["--shutdown-grace", "5s"])
    }

    /// Start with extra command-line arguments.
    pub fn start_with(config: &GatewayConfig, args: &[&str]) -> Result<Self> {
        Self::start_logging_to(config, args, None)
    }

    /// Start with the log (stderr) going to `stderr` instead of the temporary log file,
    /// e.g. `/dev/full` for a disk that is full.
    pub fn start_logging_to(
        config: &GatewayConfig,
        args: &[&str],
        stderr: Option<std::fs::File>,
    ) -> Result<Self> {
        let bin = workspace_bin("postern-gateway")?;
        let dir = tempfile::Builder::new().prefix("postern-gw-").tempdir()?;
        let config_path = dir.path().join("gateway.yaml");
        std::fs::write(&config_path, config.to_yaml())?;
        let log_path = dir.path().join("gateway.log");
        let stderr = match stderr {
            Some(f) => f,
            None => std::fs::File::create(&log_path)?,
        };
        let admin_port = free_port();
        let child = Command::new(bin)
            .arg("--config")
            .arg(&config_path)
            .arg("--admin-address")
            .arg(format!("127.0.0.1:{admin_port}"))
            .args(["--log-format", "json", "--poll-interval", "1s"])
            .args(args)
            .env("POSTERN_LOG", "info")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.path().join("stdout.log"))?)
            .stderr(stderr)
            .spawn()
            .context("starting postern-gateway")?;
        let mut gw = Self {
            child,
            admin_port,
            config_path,
            log_path,
            _dir: dir,
        };
        gw.wait_ready()?;
        Ok(gw)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "postern-gateway exited ({status}) before it was ready:\n{}",
                    self.log()
                );
            }
            if let Ok((200, _)) = self.http_get("/readyz") {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        bail!("postern-gateway was not ready within 20 s:\n{}", self.log())
    }

    /// GET a path of the admin endpoint: (status, body).
    pub fn http_get(&self, path: &str) -> Result<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.admin_port))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )?;
        let mut resp = String::new();
        s.read_to_string(&mut resp)?;
        let status = resp
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .context("malformed HTTP response")?;
        let body = resp
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Ok((status, body))
    }

    /// `/config` as JSON.
    pub fn config_status(&self) -> Result<serde_json::Value> {
        let (_, body) = self.http_get("/config")?;
        // Tolerate chunked encoding: take the JSON object.
        let start = body.find('{').context("no JSON in /config")?;
        let end = body.rfind('}').context("no JSON in /config")?;
        Ok(serde_json::from_str(&body[start..=end])?)
    }

    /// Everything the gateway logged so far (JSON lines).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Decision log lines (parsed) so far.
    pub fn decisions(&self) -> Vec<serde_json::Value> {
        self.log()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v.get("decision").is_some())
            .collect()
    }

    /// Wait until a log line satisfies `pred`.
    pub fn wait_log(
        &self,
        timeout: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = self
                .log()
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|v| pred(v))
            {
                return Some(v);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Replace the configuration file atomically (write + rename, as Kubernetes does).
    pub fn write_config_text(&self, text: &str) -> Result<()> {
        let tmp = self.config_path.with_extension("tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &self.config_path)?;
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

    /// Send SIGTERM.
    pub fn sigterm(&self) -> Result<()> {
        let st = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()?;
        if !st.success() {
            bail!("kill -TERM failed");
        }
        Ok(())
    }

    /// Wait for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- postern-gateway log ---\n{}", self.log());
        }
    }
}

// --- configuration builders -----------------------------------------------------------

/// A mail flow policy.
pub fn policy(
    tls: cfg::TlsMode,
    verify: bool,
    require_auth: bool,
    tls_for_auth: bool,
) -> cfg::MailFlowPolicy {
    cfg::MailFlowPolicy {
        action: cfg::PolicyAction::Relay,
        tls,
        verify_client_certificate: verify,
        require_smtp_auth: require_auth,
        require_tls_for_smtp_auth: tls_for_auth,
        limits: cfg::Limits::default(),
    }
}

/// A listener on 127.0.0.1:`port` relaying to 127.0.0.1:`next_hop_port` (no TLS to it).
pub fn listener(port: u16, next_hop_port: u16, policy: &str) -> cfg::Listener {
    cfg::Listener {
        address: "127.0.0.1".parse().expect("ip"),
        port,
        hostname: "gw.test.postern.dev".into(),
        implicit_tls: false,
        tls: None,
        auth_profile: None,
        host_access_table: vec![],
        default_policy: policy.into(),
        next_hop: cfg::NextHop {
            host: "127.0.0.1".into(),
            port: next_hop_port,
            tls: cfg::TlsMode::Disabled,
            ca_pem: None,
            connect_timeout: cfg::Duration::from_secs(2),
            command_timeout: cfg::Duration::from_secs(3),
        },
        timeouts: cfg::ListenerTimeouts::default(),
        max_connections: 100,
        max_connections_per_client: None,
    }
}

/// A static user.
pub fn user(id: &str, password: Option<&str>, cn: Option<&str>, allowed: bool) -> cfg::StaticUser {
    cfg::StaticUser {
        user_id: id.into(),
        password: password.map(Into::into),
        certificate_cn: cn.map(Into::into),
        allowed,
    }
}

/// A configuration with one listener `smtp`, one policy `relayed` and optional profile `auth`.
pub fn single(
    listener: cfg::Listener,
    policy: cfg::MailFlowPolicy,
    profile: Option<cfg::AuthProfile>,
) -> GatewayConfig {
    let mut listener = listener;
    if profile.is_some() {
        listener.auth_profile = Some("auth".into());
    }
    GatewayConfig {
        listeners: BTreeMap::from([("smtp".to_owned(), listener)]),
        policies: BTreeMap::from([("relayed".to_owned(), policy)]),
        auth_profiles: profile
            .map(|p| BTreeMap::from([("auth".to_owned(), p)]))
            .unwrap_or_default(),
        ..GatewayConfig::default()
    }
}
