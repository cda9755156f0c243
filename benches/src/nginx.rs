//! nginx's mail proxy doing Postern's job (Debian `nginx-light` + `libnginx-mod-mail`):
//! STARTTLS required, the client certificate verified against the bench CA, no queue,
//! mail proxied to the shared sink.
//!
//! Listeners (one `mail` server each, `protocol smtp`, `smtp_auth none`):
//! - `tls_ecdsa` / `tls_rsa`: `starttls only`, `ssl_verify_client on`. nginx 1.22 still
//!   lets a client that never says STARTTLS reach MAIL and RCPT there, so the `auth_http`
//!   answer (served by the same nginx, `location = /tls`) refuses any session whose
//!   `Auth-SSL-Verify` is not `SUCCESS`: only a verified certificate gets a next hop.
//! - `plain`: no TLS, every client proxied (`location = /plain`), for smtp-source.
//!
//! TLS 1.2 and 1.3 (nginx 1.22's mail default has no TLS 1.3); TLS 1.3 session tickets are off (`ssl_conf_command NumTickets 0`), as Postern sends
//! none: a server that sends tickets after the handshake stalls each short session on
//! Nagle + delayed ACK, which would make the comparison about that stall.
//!
//! nginx runs with a master and two workers (`worker_processes 2`, one per CPU of the
//! bench machine); its CPU and memory are those of the whole process tree.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::pki::Pki;
use postern_testkit::ports::free_port;

/// The ports of an [`Nginx`] instance.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NginxPorts {
    /// STARTTLS + client certificate, ECDSA PKI.
    pub tls_ecdsa: u16,
    /// STARTTLS + client certificate, RSA PKI.
    pub tls_rsa: u16,
    /// Plaintext relay.
    pub plain: u16,
    /// The `auth_http` endpoint (HTTP, served by the same nginx).
    pub auth: u16,
}

impl NginxPorts {
    /// Free ports for every listener.
    pub(crate) fn free() -> Self {
        Self {
            tls_ecdsa: free_port(),
            tls_rsa: free_port(),
            plain: free_port(),
            auth: free_port(),
        }
    }
}

/// A running nginx, stopped on drop.
#[derive(Debug)]
pub(crate) struct Nginx {
    child: Option<Child>,
    dir: PathBuf,
    /// PID of the master process (the workers are its children).
    pub master_pid: u32,
    keep: bool,
}

const MAIL_MODULE: &str = "/usr/lib/nginx/modules/ngx_mail_module.so";

fn config(dir: &Path, ecdsa: &Pki, rsa: &Pki, sink: SocketAddr, ports: NginxPorts) -> String {
    let d = dir.display();
    let next_hop = format!(
        "add_header Auth-Status OK always;\n        add_header Auth-Server {} always;\n        add_header Auth-Port {} always;\n        return 200;",
        sink.ip(),
        sink.port()
    );
    let tls_server = |port: u16, pki: &Pki| {
        format!(
            "    server {{
        listen 127.0.0.1:{port};
        protocol smtp;
        starttls only;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_client_certificate {ca};
        ssl_verify_client on;
    }}
",
            cert = pki.file("server.crt").display(),
            key = pki.file("server.key").display(),
            ca = pki.file("ca.crt").display(),
        )
    };
    format!(
        "# Written by postern-bench: nginx's mail proxy doing the same job as the Postern under test.
load_module {MAIL_MODULE};
daemon off;
master_process on;
worker_processes 2;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    server {{
        listen 127.0.0.1:{auth};
        location = /tls {{
            if ($http_auth_ssl_verify != SUCCESS) {{
                add_header Auth-Status \"client certificate required\" always;
                return 200;
            }}
            {next_hop}
        }}
        location = /plain {{
            {next_hop}
        }}
    }}
}}
mail {{
    server_name nginx.bench.postern.test;
    auth_http 127.0.0.1:{auth}/tls;
    smtp_auth none;
    smtp_capabilities PIPELINING 8BITMIME \"SIZE 52428800\";
    xclient off;
    proxy_pass_error_message on;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_tickets off;
    ssl_conf_command NumTickets 0;
{ecdsa_server}{rsa_server}    server {{
        listen 127.0.0.1:{plain};
        protocol smtp;
        auth_http 127.0.0.1:{auth}/plain;
    }}
}}
",
        auth = ports.auth,
        plain = ports.plain,
        ecdsa_server = tls_server(ports.tls_ecdsa, ecdsa),
        rsa_server = tls_server(ports.tls_rsa, rsa),
    )
}

impl Nginx {
    /// Set up and start an instance under `base/nginx`.
    pub(crate) fn start(
        base: &Path,
        ecdsa: &Pki,
        rsa: &Pki,
        sink: SocketAddr,
        ports: NginxPorts,
        keep: bool,
    ) -> Result<Self> {
        if !Path::new(MAIL_MODULE).exists() {
            bail!("{MAIL_MODULE} is missing (Debian package libnginx-mod-mail)");
        }
        let dir = base.join("nginx");
        std::fs::create_dir_all(dir.join("tmp"))?;
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config(&dir, ecdsa, rsa, sink, ports))?;
        let log = std::fs::File::create(dir.join("stderr.log"))?;
        let child = crate::pin::server_command("nginx")
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting nginx (Debian packages nginx-light, libnginx-mod-mail)")?;
        let master_pid = child.id();
        postern_testkit::process::track(master_pid);
        let nginx = Self {
            child: Some(child),
            dir: dir.clone(),
            master_pid,
            keep,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        for port in [ports.tls_ecdsa, ports.tls_rsa, ports.plain, ports.auth] {
            let left = deadline.saturating_duration_since(Instant::now());
            postern_testkit::ports::wait_port(port, left).with_context(|| {
                format!(
                    "nginx listener 127.0.0.1:{port}; error log:\n{}{}",
                    std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default(),
                    std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
                )
            })?;
        }
        Ok(nginx)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGQUIT: the master stops its workers and exits; whatever is left is killed.
            postern_testkit::process::signal(self.master_pid, "QUIT");
            if postern_testkit::process::wait_exit(&mut child, Duration::from_secs(10)).is_err() {
                for pid in crate::procs::tree(self.master_pid) {
                    postern_testkit::process::signal(pid, "KILL");
                }
                let _ = child.wait();
            }
            postern_testkit::process::untrack(self.master_pid);
        }
        if self.keep {
            eprintln!("kept nginx instance in {}", self.dir.display());
        }
    }
}
