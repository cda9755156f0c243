//! A real OpenLDAP `slapd` for the LDAP section: loopback port, temporary mdb database,
//! a directory of `users` people plus the bench client, searched by a service account
//! (anonymous clients may only bind), `cn` and `uid` indexed as a production directory
//! would have them. Killed on drop.

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::pki::CLIENT_CN;

/// The directory's suffix.
pub const BASE_DN: &str = "dc=bench,dc=postern,dc=test";
/// The service account the gateway searches with.
pub const SERVICE_DN: &str = "cn=postern,ou=services,dc=bench,dc=postern,dc=test";
/// Its password.
pub const SERVICE_PASSWORD: &str = "bench-service-secret";
/// The bench user: its `cn` is the client certificate's CN, its `uid` the AUTH user.
pub const USER: &str = "bench";
/// The bench user's password.
pub const PASSWORD: &str = "bench-secret";

/// A running slapd.
#[derive(Debug)]
pub struct Slapd {
    child: Child,
    port: u16,
    root: PathBuf,
}

fn tool(name: &str) -> Result<PathBuf> {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
        .with_context(|| {
            format!("{name} not found: install slapd (tests/support/install-deps.sh does)")
        })
}

fn ldif(users: usize) -> String {
    let mut l = format!(
        "dn: {BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\ndc: bench\no: Bench\n\n\
         dn: ou=people,{BASE_DN}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: ou=services,{BASE_DN}\nobjectClass: organizationalUnit\nou: services\n\n\
         dn: {SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: postern\nuserPassword: {SERVICE_PASSWORD}\n\n\
         dn: uid={USER},ou=people,{BASE_DN}\nobjectClass: inetOrgPerson\ncn: {CLIENT_CN}\nsn: Client\nuid: {USER}\nuserPassword: {PASSWORD}\n\n"
    );
    for i in 0..users {
        let _ = write!(
            l,
            "dn: uid=user{i},ou=people,{BASE_DN}\nobjectClass: inetOrgPerson\ncn: BENCH.USER.{n}\nsn: User\nuid: user{i}\nuserPassword: secret-{i}\n\n",
            n = 2_000_000_000 + i
        );
    }
    l
}

impl Slapd {
    /// Write the configuration and `users` entries under `dir/slapd`, start slapd on
    /// `port`, and wait until it accepts connections.
    pub fn start(dir: &Path, port: u16, users: usize) -> Result<Self> {
        let slapd = tool("slapd")?;
        let slapadd = tool("slapadd")?;
        let root = dir.join("slapd");
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("db"))?;
        let mut conf = String::new();
        for schema in ["core", "cosine", "inetorgperson"] {
            let _ = writeln!(conf, "include /etc/ldap/schema/{schema}.schema");
        }
        let _ = write!(
            conf,
            "pidfile {r}/slapd.pid\nmodulepath /usr/lib/ldap\nmoduleload back_mdb\n\
             database mdb\nsuffix \"{BASE_DN}\"\nrootdn \"cn=admin,{BASE_DN}\"\nrootpw admin-secret\n\
             directory {r}/db\nmaxsize 104857600\nindex objectClass eq\nindex cn,uid eq\n\
             access to attrs=userPassword\n  by anonymous auth\n  by * none\n\
             access to *\n  by dn.exact=\"{SERVICE_DN}\" read\n  by users read\n  by anonymous auth\n",
            r = root.display()
        );
        std::fs::write(root.join("slapd.conf"), conf)?;
        std::fs::write(root.join("data.ldif"), ldif(users))?;
        let out = Command::new(slapadd)
            .arg("-q")
            .arg("-f")
            .arg(root.join("slapd.conf"))
            .arg("-l")
            .arg(root.join("data.ldif"))
            .output()?;
        if !out.status.success() {
            bail!(
                "slapadd failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let log = std::fs::File::create(root.join("slapd.log"))?;
        let child = Command::new(slapd)
            .arg("-f")
            .arg(root.join("slapd.conf"))
            .arg("-h")
            .arg(format!("ldap://127.0.0.1:{port}/"))
            .args(["-d", "0"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting slapd")?;
        crate::cleanup::track_pid(child.id());
        let mut s = Self { child, port, root };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = s.child.try_wait() {
                bail!("slapd exited at start-up ({status}): {}", s.log());
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                return Ok(s);
            }
            if Instant::now() > deadline {
                bail!("slapd did not answer on {addr} within 20 s: {}", s.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `ldap://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// PID of slapd (its CPU time is reported next to the gateway's).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("slapd.log")).unwrap_or_default()
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        crate::cleanup::untrack_pid(self.child.id());
    }
}
