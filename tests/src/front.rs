//! Real proxies in front of a gateway listener, speaking PROXY protocol to it: HAProxy
//! (Debian `haproxy`, `send-proxy` / `send-proxy-v2`) and nginx `stream` with
//! `proxy_protocol on`. Each runs in the foreground as a child on a free loopback port
//! and is stopped when dropped.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use postern_testkit::ports::free_port;

/// Which proxy, and which PROXY protocol version it sends.
#[derive(Clone, Copy, Debug)]
pub enum Front {
    /// HAProxy with `send-proxy` (v1, text).
    HaproxyV1,
    /// HAProxy with `send-proxy-v2` (v2, binary).
    HaproxyV2,
    /// nginx `stream` with `proxy_protocol on` (v1).
    NginxStream,
}

/// A running proxy: clients connect to `port` on 127.0.0.1.
#[derive(Debug)]
pub struct Proxy {
    /// The port clients connect to.
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proxy {
    /// Start `front` forwarding to `backend`.
    pub fn start(front: Front, backend: SocketAddr) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = free_port();
        let child = match front {
            Front::HaproxyV1 | Front::HaproxyV2 => haproxy(dir.path(), port, backend, front)?,
            Front::NginxStream => nginx(dir.path(), port, backend)?,
        };
        let mut proxy = Self {
            port,
            child,
            _dir: dir,
        };
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = proxy.child.try_wait()? {
                bail!("{front:?} exited at start: {status}");
            }
            if t.elapsed() > Duration::from_secs(10) {
                bail!("{front:?} not listening on {port} after 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(proxy)
    }
}

fn haproxy(dir: &Path, port: u16, backend: SocketAddr, front: Front) -> Result<Child> {
    let send = match front {
        Front::HaproxyV1 => "send-proxy",
        _ => "send-proxy-v2",
    };
    let cfg = format!(
        "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
         frontend f\n  bind 127.0.0.1:{port}\n  default_backend b\n\
         backend b\n  server s {backend} {send}\n"
    );
    let path = dir.join("hap.cfg");
    std::fs::write(&path, cfg)?;
    Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting haproxy (Debian package haproxy)")
}

/// nginx in one process (`master_process off`): killing the child then leaves no orphaned
/// worker holding the port.
fn nginx(dir: &Path, port: u16, backend: SocketAddr) -> Result<Child> {
    let d = dir.display();
    let cfg = format!(
        "load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n\
         master_process off;\nerror_log {d}/error.log;\npid {d}/nginx.pid;\n\
         events {{ worker_connections 256; }}\n\
         stream {{\n  server {{\n    listen 127.0.0.1:{port};\n    proxy_pass {backend};\n    proxy_protocol on;\n  }}\n}}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, cfg)?;
    Command::new("nginx")
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&path)
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting nginx (Debian packages nginx-light, libnginx-mod-stream)")
}
