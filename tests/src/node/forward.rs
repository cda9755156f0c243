//! A TCP path from the test process (host network, 127.0.0.1) to an address that exists only
//! inside the cluster's namespace (a Service's ClusterIP): a socat in the namespace serves a
//! Unix socket (path sockets are not tied to a network namespace) and connects each client to
//! the target; a socat on the host forwards 127.0.0.1:PORT to that socket. Every connection
//! reaches the Service as a new TCP connection from the node, so kube-proxy picks an endpoint
//! for each, as for any client.

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use postern_testkit::ports::free_port;
use postern_testkit::process;

use super::Node;

/// A running forwarder; stopped on drop.
#[derive(Debug)]
pub struct Forward {
    /// Where the test connects.
    pub local: SocketAddr,
    children: Vec<Child>,
    _dir: tempfile::TempDir,
}

impl Forward {
    /// Forwards a free 127.0.0.1 port to `target` inside the namespace.
    pub fn start(node: &Node, target: SocketAddr) -> Result<Self> {
        let socat = process::system_tool("socat").context(
            "socat not found (apt-get install socat; tests/support/install-deps.sh does)",
        )?;
        let dir = tempfile::Builder::new().prefix("postern-fwd-").tempdir()?;
        let sock = dir.path().join("s");
        let inner = node
            .in_ns(&socat)
            .arg(format!("UNIX-LISTEN:{},fork,mode=600", sock.display()))
            .arg(format!("TCP:{target},connect-timeout=3"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        process::track(inner.id());
        let mut children = vec![inner];
        let deadline = Instant::now() + Duration::from_secs(5);
        while !sock.exists() {
            if Instant::now() > deadline {
                bail!("the namespace side of the forwarder to {target} did not start");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let port = free_port();
        let outer = Command::new(&socat)
            .arg(format!(
                "TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr,backlog=512"
            ))
            .arg(format!("UNIX-CONNECT:{}", sock.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        process::track(outer.id());
        children.push(outer);
        let local = SocketAddr::from(([127, 0, 0, 1], port));
        while TcpStream::connect_timeout(&local, Duration::from_millis(100)).is_err() {
            if Instant::now() > deadline {
                bail!("the host side of the forwarder to {target} did not start");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self {
            local,
            children,
            _dir: dir,
        })
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        for c in self.children.drain(..) {
            process::untrack(c.id());
            process::kill(c);
        }
    }
}
