//! A real Prometheus (Debian's `prometheus`) on a free loopback port, scraping the targets
//! it is given every second, and the HTTP API calls the tests make of it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::http::http_get;
use crate::ports::{free_port, wait_port};
use crate::process::{self, system_tool};

/// One scrape target: an address and the target labels Prometheus adds to its series (as
/// a ServiceMonitor adds `namespace` and `pod`).
#[derive(Clone, Debug)]
pub struct Target {
    /// `host:port` of the `/metrics` endpoint.
    pub address: SocketAddr,
    /// Labels of every series scraped from it.
    pub labels: Vec<(String, String)>,
}

/// A running Prometheus.
#[derive(Debug)]
pub struct Prometheus {
    child: Option<Child>,
    /// Its web and API address.
    pub address: SocketAddr,
    _dir: tempfile::TempDir,
}

/// Where `promtool` is (Debian's `prometheus` package).
pub fn promtool() -> Result<PathBuf> {
    system_tool("promtool").context("promtool not installed (Debian package prometheus)")
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` every second.
    pub fn start(targets: &[Target]) -> Result<Self> {
        let bin = system_tool("prometheus")
            .context("prometheus not installed (Debian package prometheus)")?;
        let dir = tempfile::Builder::new().prefix("postern-prom-").tempdir()?;
        let mut config = String::from(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\nscrape_configs:\n",
        );
        for (i, t) in targets.iter().enumerate() {
            let labels: Vec<String> = t
                .labels
                .iter()
                .map(|(k, v)| format!("{k}: {v:?}"))
                .collect();
            config.push_str(&format!(
                "  - job_name: target{i}\n    static_configs:\n      - targets: [\"{}\"]\n        labels: {{{}}}\n",
                t.address,
                labels.join(", ")
            ));
        }
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config)?;
        let port = free_port();
        let address: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let log = std::fs::File::create(dir.path().join("prometheus.log"))?;
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting prometheus")?;
        process::track(child.id());
        let me = Self {
            child: Some(child),
            address,
            _dir: dir,
        };
        wait_port(port, Duration::from_secs(30))?;
        Ok(me)
    }

    /// `GET /api/v1/<path>`: the `data` of a successful answer.
    pub fn api(&self, path: &str) -> Result<serde_json::Value> {
        let (code, body) = http_get(self.address, &format!("/api/v1/{path}"))?;
        let v: serde_json::Value =
            serde_json::from_str(&body).with_context(|| format!("{path}: {code} {body}"))?;
        if code != 200 || v["status"] != "success" {
            bail!("{path}: {code} {body}");
        }
        Ok(v["data"].clone())
    }

    /// The series matching the selector `selector` (label sets, `__name__` included).
    pub fn series(&self, selector: &str) -> Result<Vec<serde_json::Value>> {
        let data = self.api(&format!("series?match[]={}", url_encode(selector)))?;
        Ok(data.as_array().cloned().unwrap_or_default())
    }

    /// Waits until every target has been scraped successfully (`up == 1`).
    pub fn wait_scraped(&self, targets: usize, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            // Until its storage is open Prometheus answers 503 in plain text.
            let up = self.api(&format!("query?query={}", url_encode("up == 1")));
            if up
                .as_ref()
                .is_ok_and(|up| up["result"].as_array().map_or(0, Vec::len) >= targets)
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("targets not scraped within {timeout:?}: {up:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            process::kill(child);
        }
    }
}

/// Percent-encodes a query parameter.
pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
