//! A Postfix instance doing Postern's job, set up as in docs/components.md ("A Postfix
//! smtpd doing the same job"): its own configuration directory registered in
//! `alternate_config_directories`, `maillog_file = /dev/stdout`, and `smtpd` listeners on
//! loopback that relay to the shared sink through `relayhost`.
//!
//! Listeners (master.cf, all `smtpd`, no chroot):
//! - `tls_ecdsa` / `tls_rsa`: STARTTLS required (`smtpd_tls_security_level = encrypt`), a
//!   client certificate asked for and required (`smtpd_tls_ask_ccert`, `smtpd_tls_req_ccert`)
//!   from the bench CA, relaying only for verified certificates
//!   (`permit_tls_all_clientcerts`); the RSA one overrides the certificate files with `-o`.
//! - `plain`: no TLS, relaying for `mynetworks` (127.0.0.0/8), for smtp-source.
//! - `idle`: as `plain` with a process limit high enough for the idle-connection test.
//!
//! Deviations from the defaults, for a like-for-like comparison: `smtpd_peername_lookup =
//! no` (Postern does no reverse DNS; these machines have no resolver),
//! `inet_protocols = ipv4`, and no session tickets (`tls_session_ticket_cipher =`, empty:
//! Postfix then asks OpenSSL for no TLS 1.3 tickets; an OpenSSL configuration file with
//! `NumTickets = 0` does not do it, Postfix sets the count itself): Postern sends none, and
//! a server that sends tickets after the handshake stalls each short session on Nagle +
//! delayed ACK (about 40 ms), which would make the comparison about that stall.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::pki::Pki;

/// The ports of a [`Postfix`] instance.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PostfixPorts {
    /// STARTTLS + client certificate, ECDSA PKI.
    pub tls_ecdsa: u16,
    /// STARTTLS + client certificate, RSA PKI.
    pub tls_rsa: u16,
    /// Plaintext relay for mynetworks.
    pub plain: u16,
    /// Plaintext, for idle connections.
    pub idle: u16,
}

/// A running Postfix instance, stopped on drop.
#[derive(Debug)]
pub(crate) struct Postfix {
    dir: PathBuf,
    etc: PathBuf,
    /// PID of `master`.
    pub master_pid: u32,
    keep: bool,
}

use postern_testkit::postfix::{master_cf_base, register, run, stop};

fn main_cf(dir: &Path, ecdsa: &Pki, sink: SocketAddr) -> String {
    let d = dir.display();
    format!(
        "# Written by postern-bench: Postfix doing the same job as the Postern under test.
compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
inet_interfaces = loopback-only
inet_protocols = ipv4
myhostname = postfix.bench.postern.test
mydestination =
relayhost = [{sink_ip}]:{sink_port}
mynetworks = 127.0.0.0/8
smtpd_peername_lookup = no
smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
smtpd_tls_CAfile = {ca}
smtpd_tls_security_level = encrypt
smtpd_tls_ask_ccert = yes
smtpd_tls_req_ccert = yes
smtpd_relay_restrictions = permit_tls_all_clientcerts, reject
maillog_file = /dev/stdout
tls_session_ticket_cipher =
",
        sink_ip = sink.ip(),
        sink_port = sink.port(),
        cert = ecdsa.file("server.crt").display(),
        key = ecdsa.file("server.key").display(),
        ca = ecdsa.file("ca.crt").display(),
    )
}

/// The system master.cf with chroot off everywhere and the `smtp inet` service replaced
/// by the bench listeners.
fn master_cf(system: &str, rsa: &Pki, ports: PostfixPorts, idle_procs: u32) -> String {
    let mut out = master_cf_base(system);
    let relay_open = "-o smtpd_tls_security_level=none -o smtpd_tls_ask_ccert=no \
                      -o smtpd_tls_req_ccert=no -o smtpd_relay_restrictions=permit_mynetworks,reject";
    out.push_str(&format!(
        "127.0.0.1:{p} inet n - n - 200 smtpd\n",
        p = ports.tls_ecdsa
    ));
    out.push_str(&format!(
        "127.0.0.1:{p} inet n - n - 200 smtpd\n  -o smtpd_tls_cert_file={c}\n  -o smtpd_tls_key_file={k}\n  -o smtpd_tls_CAfile={a}\n",
        p = ports.tls_rsa,
        c = rsa.file("server.crt").display(),
        k = rsa.file("server.key").display(),
        a = rsa.file("ca.crt").display(),
    ));
    out.push_str(&format!(
        "127.0.0.1:{p} inet n - n - 200 smtpd\n  {relay_open}\n",
        p = ports.plain
    ));
    out.push_str(&format!(
        "127.0.0.1:{p} inet n - n - {idle_procs} smtpd\n  {relay_open}\n",
        p = ports.idle
    ));
    out
}

impl Postfix {
    /// Set up and start an instance under `base/postfix`. `idle_procs` is the process
    /// limit of the idle listener.
    pub(crate) fn start(
        base: &Path,
        ecdsa: &Pki,
        rsa: &Pki,
        sink: SocketAddr,
        ports: PostfixPorts,
        idle_procs: u32,
        keep: bool,
    ) -> Result<Self> {
        if !postern_testkit::process::is_root() {
            bail!("starting Postfix needs root (postfix start, queue owned by user postfix)");
        }
        let dir = base.join("postfix");
        let etc = dir.join("etc");
        for d in [&etc, &dir.join("queue"), &dir.join("data")] {
            std::fs::create_dir_all(d)?;
        }
        // The daemons run as user postfix: they must reach the queue and own data/.
        run(
            Command::new("chmod").arg("755").arg(base).arg(&dir),
            "chmod",
        )?;
        run(
            Command::new("chown")
                .arg("postfix:postfix")
                .arg(dir.join("data")),
            "chown postfix data directory",
        )?;
        std::fs::write(etc.join("main.cf"), main_cf(&dir, ecdsa, sink))?;
        let system = std::fs::read_to_string("/etc/postfix/master.cf")
            .context("reading /etc/postfix/master.cf (is postfix installed?)")?;
        std::fs::write(
            etc.join("master.cf"),
            master_cf(&system, rsa, ports, idle_procs),
        )?;
        register(&etc, true)?;
        crate::cleanup::track_postfix(etc.clone());
        let mut pf = Self {
            dir: dir.clone(),
            etc: etc.clone(),
            master_pid: 0,
            keep,
        };
        run(
            Command::new("postfix").arg("-c").arg(&etc).arg("check"),
            "postfix check",
        )?;
        let log = std::fs::File::create(dir.join("postfix.log"))?;
        // The master and every daemon it forks inherit the pinning.
        let status = crate::pin::server_command("postfix")
            .arg("-c")
            .arg(&etc)
            .arg("start")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()
            .context("running postfix start")?;
        if !status.success() {
            bail!(
                "postfix start failed ({status}): {}",
                std::fs::read_to_string(dir.join("postfix.log")).unwrap_or_default()
            );
        }
        let pid_file = dir.join("queue/pid/master.pid");
        let deadline = Instant::now() + Duration::from_secs(15);
        while pf.master_pid == 0 {
            if let Some(pid) = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
                .filter(|&p| postern_testkit::process::alive(p))
            {
                pf.master_pid = pid;
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "Postfix master did not start (no {}); log:\n{}",
                    pid_file.display(),
                    std::fs::read_to_string(dir.join("postfix.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for port in [ports.tls_ecdsa, ports.tls_rsa, ports.plain, ports.idle] {
            postern_testkit::ports::wait_port(port, Duration::from_secs(15))
                .with_context(|| format!("Postfix listener 127.0.0.1:{port}"))?;
        }
        Ok(pf)
    }

    /// Messages still in the queue (files under active/, incoming/, deferred/).
    pub(crate) fn queued(&self) -> usize {
        ["incoming", "active", "deferred", "maildrop"]
            .iter()
            .map(|q| count_files(&self.dir.join("queue").join(q)))
            .sum()
    }
}

fn count_files(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => count_files(&e.path()),
            Ok(_) => 1,
            Err(_) => 0,
        })
        .sum()
}

impl Drop for Postfix {
    fn drop(&mut self) {
        stop(&self.etc);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.master_pid != 0
            && postern_testkit::process::alive(self.master_pid)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        if self.master_pid != 0 && postern_testkit::process::alive(self.master_pid) {
            for pid in crate::procs::tree(self.master_pid) {
                postern_testkit::process::signal(pid, "KILL");
            }
        }
        let _ = register(&self.etc, false);
        crate::cleanup::untrack_postfix(&self.etc);
        if self.keep {
            eprintln!("kept Postfix instance in {}", self.dir.display());
        }
    }
}
