//! What the gateway pods talk to, run on the host inside the cluster's namespace and bound to
//! the node's bridge address (pods reach it, nothing outside does): the example directory
//! (`examples/ldap/run-slapd.sh`), a next hop (smtp-sink dumping every message) and an HTTP
//! server for the example CRL (`examples/pki/ca.crl`).

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use postern_testkit::process;
use postern_testkit::sink::{Dumped, read_dumps};
use postern_testkit::workspace::workspace_root;

use super::{NODE_IP, Node};

/// Ports on the node address: those the examples use.
pub const LDAP_PORT: u16 = 3389;
/// The next hop's port.
pub const SINK_PORT: u16 = 2525;
/// The CRL server's port.
pub const CRL_PORT: u16 = 8480;

/// slapd, smtp-sink and the CRL server; stopped on drop.
#[derive(Debug)]
pub struct Peers {
    children: Vec<Child>,
    dump: tempfile::TempDir,
    /// smtp-sink's process (`nsenter` execs it: same pid).
    sink: u32,
}

impl Peers {
    /// Starts all three and waits until each accepts connections.
    pub fn start(node: &Node) -> Result<Self> {
        let root = workspace_root();
        let mut children = Vec::new();
        let mut spawn = |c: &mut std::process::Command| -> Result<u32> {
            let child = c
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?;
            let pid = child.id();
            process::track(pid);
            children.push(child);
            Ok(pid)
        };
        spawn(
            node.in_ns(root.join("examples/ldap/run-slapd.sh"))
                .arg(LDAP_PORT.to_string())
                .arg(NODE_IP),
        )
        .context("starting examples/ldap/run-slapd.sh")?;
        let dump = tempfile::Builder::new()
            .prefix("postern-node-sink-")
            .tempdir()?;
        // smtp-sink switches to `nobody`, who must be able to write the dumps.
        std::fs::set_permissions(
            dump.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )?;
        let sink = process::system_tool("smtp-sink")
            .context("smtp-sink not found (Debian's postfix package)")?;
        let sink_pid = spawn(
            node.in_ns(sink)
                .args(["-u", "nobody", "-d"])
                .arg(format!("{}/%H%M%S.", dump.path().display()))
                .arg(format!("{NODE_IP}:{SINK_PORT}"))
                .arg("256"),
        )
        .context("starting smtp-sink")?;
        spawn(
            node.in_ns("python3")
                .args(["-m", "http.server", "--bind", NODE_IP, "--directory"])
                .arg(root.join("examples/pki"))
                .arg(CRL_PORT.to_string()),
        )
        .context("starting the CRL server")?;
        let peers = Self {
            children,
            dump,
            sink: sink_pid,
        };
        for port in [LDAP_PORT, SINK_PORT, CRL_PORT] {
            peers.wait_listening(node, port)?;
        }
        Ok(peers)
    }

    fn wait_listening(&self, node: &Node, port: u16) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let ok = node
                .in_ns("bash")
                .arg("-c")
                .arg(format!("exec 3<>/dev/tcp/{NODE_IP}/{port}"))
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("nothing listens on {NODE_IP}:{port} in the cluster's namespace");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The messages the next hop received, oldest first.
    pub fn messages(&self) -> Vec<Dumped> {
        read_dumps(self.dump.path(), self.sink)
    }

    /// The received messages whose text contains `needle`.
    pub fn received(&self, needle: &str) -> Vec<Dumped> {
        self.messages()
            .into_iter()
            .filter(|m| m.message.contains(needle))
            .collect()
    }

    /// Where the dumps are.
    pub fn dump_dir(&self) -> PathBuf {
        self.dump.path().to_owned()
    }
}

impl Drop for Peers {
    fn drop(&mut self) {
        for c in self.children.drain(..) {
            process::untrack(c.id());
            process::signal(c.id(), "TERM");
            let mut c = c;
            let _ = process::wait_exit(&mut c, Duration::from_secs(5));
            process::kill(c);
        }
    }
}
