//! A Postfix `smtpd` on a free loopback port as a next hop that trusts the gateway with
//! `XCLIENT` (`smtpd_authorized_xclient_hosts = 127.0.0.1`), relaying what it accepts to
//! a `relayhost` (e.g. smtp-sink). Its own configuration directory is registered in the
//! default main.cf's `alternate_config_directories` (Postfix starts no other) while it
//! runs; `postfix start-fg` keeps `master` a child of the test, so its log
//! (`maillog_file = /dev/stdout`) can be read. Stopped, and unregistered, on drop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::ports::{free_port, wait_port};
use crate::process;

const MAIN_CF: &str = "/etc/postfix/main.cf";

/// A running Postfix.
#[derive(Debug)]
pub struct Postfix {
    /// The smtpd port on 127.0.0.1.
    pub port: u16,
    child: Option<Child>,
    etc: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// Run a Postfix tool (`postconf`, `postfix`, ...) or another command of the setup;
/// its standard output, or an error with both outputs.
pub fn run(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {what} (Debian package postfix)"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Add or remove `etc` in `alternate_config_directories`, keeping the other entries.
pub fn register(etc: &Path, add: bool) -> Result<()> {
    if !Path::new(MAIN_CF).exists() {
        std::fs::write(MAIN_CF, "").with_context(|| format!("creating {MAIN_CF}"))?;
    }
    let current = run(
        Command::new("postconf").args(["-h", "alternate_config_directories"]),
        "postconf -h",
    )?;
    let me = etc.display().to_string();
    let mut list: Vec<String> = current
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty() && *s != me)
        .map(str::to_owned)
        .collect();
    if add {
        list.push(me);
    }
    run(
        Command::new("postconf")
            .arg("-e")
            .arg(format!("alternate_config_directories = {}", list.join(" "))),
        "postconf -e",
    )?;
    Ok(())
}

/// The system master.cf with chroot off everywhere (the temporary queue directory is no
/// chroot jail) and its `smtp inet` service commented out; the caller adds its own.
pub fn master_cf_base(system: &str) -> String {
    let mut out = String::new();
    for line in system.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let is_service =
            !line.starts_with('#') && !line.starts_with(char::is_whitespace) && fields.len() >= 8;
        if is_service && fields[0] == "smtp" && fields[1] == "inet" {
            out.push_str(&format!("#{line}\n"));
            continue;
        }
        if is_service {
            // Column 5 is chroot.
            let mut f: Vec<&str> = fields.clone();
            f[4] = "n";
            out.push_str(&f.join(" "));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// `postfix -c etc stop`, best effort (a drop path).
pub fn stop(etc: &Path) {
    let _ = Command::new("postfix")
        .arg("-c")
        .arg(etc)
        .arg("stop")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

impl Postfix {
    /// Start an smtpd that relays to `relayhost`, trusts 127.0.0.1 with XCLIENT, relays
    /// for SASL-authenticated clients (XCLIENT `LOGIN` counts) and for `mynetworks`, and
    /// names the authenticated sender in its `Received` header.
    pub fn start(relayhost: SocketAddr, mynetworks: &str) -> Result<Self> {
        if !process::is_root() {
            bail!("starting Postfix needs root (queue owned by user postfix)");
        }
        let dir = tempfile::Builder::new()
            .prefix("postern-postfix-")
            .tempdir()?;
        let base = dir.path().to_owned();
        let etc = base.join("etc");
        for d in [&etc, &base.join("queue"), &base.join("data")] {
            std::fs::create_dir_all(d)?;
        }
        run(Command::new("chmod").arg("755").arg(&base), "chmod")?;
        run(
            Command::new("chown")
                .arg("postfix:postfix")
                .arg(base.join("data")),
            "chown",
        )?;
        let port = free_port();
        std::fs::write(
            etc.join("main.cf"),
            format!(
                "compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
inet_interfaces = loopback-only
inet_protocols = ipv4
myhostname = postfix.test.postern.dev
mydestination =
relayhost = [{ip}]:{rport}
mynetworks = {mynetworks}
smtpd_peername_lookup = no
smtpd_authorized_xclient_hosts = 127.0.0.1
smtpd_sasl_auth_enable = yes
smtpd_sasl_authenticated_header = yes
smtpd_relay_restrictions = permit_sasl_authenticated, permit_mynetworks, reject
alias_maps =
alias_database =
maillog_file = /dev/stdout
",
                d = base.display(),
                ip = relayhost.ip(),
                rport = relayhost.port(),
            ),
        )?;
        let system = std::fs::read_to_string("/etc/postfix/master.cf")
            .context("reading /etc/postfix/master.cf (is postfix installed?)")?;
        let master = master_cf_base(&system) + &format!("127.0.0.1:{port} inet n - n - 20 smtpd\n");
        std::fs::write(etc.join("master.cf"), master)?;
        register(&etc, true)?;
        let log = base.join("postfix.log");
        let out = std::fs::File::create(&log)?;
        let child = Command::new("postfix")
            .arg("-c")
            .arg(&etc)
            .arg("start-fg")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("running postfix start-fg")?;
        process::track(child.id());
        let pf = Self {
            port,
            child: Some(child),
            etc,
            log,
            _dir: dir,
        };
        wait_port(port, Duration::from_secs(20))
            .with_context(|| format!("Postfix smtpd on 127.0.0.1:{port}; log:\n{}", pf.log()))?;
        Ok(pf)
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait until the log has a line containing every one of `parts`; that line.
    pub fn wait_log(&self, parts: &[&str], timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self
                .log()
                .lines()
                .find(|l| parts.iter().all(|p| l.contains(p)))
            {
                return Ok(line.to_owned());
            }
            if Instant::now() > deadline {
                bail!("no Postfix log line with {parts:?}; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        stop(&self.etc);
        if let Some(mut child) = self.child.take() {
            let id = child.id();
            if process::wait_exit(&mut child, Duration::from_secs(10)).is_err() {
                process::kill(child);
            }
            process::untrack(id);
        }
        let _ = register(&self.etc, false);
    }
}
