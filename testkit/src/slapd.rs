//! A real OpenLDAP `slapd` per test: loopback port, temporary mdb database, the `cac`
//! schema, and the directory of the appliance manual's procedures.
//!
//! ```no_run
//! let slapd = postern_testkit::slapd::Slapd::start(Default::default()).unwrap();
//! println!("{}", slapd.url()); // ldap://127.0.0.1:PORT
//! ```
//!
//! The server is killed when the value is dropped. For fault tests it can be stopped,
//! killed, paused (SIGSTOP: accepts connections, answers nothing) and started again on
//! the same port with the same data.
//!
//! Access control is like a production directory: anonymous clients may only bind;
//! searches need the service account [`SERVICE_DN`] (or `anonymous_read`). The benchmark
//! fills it with its own people ([`SlapdOptions::ldif`]) and indexes them.

use std::fmt::Write as _;
use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::pki::{Ca, days_from_now, generalized_time};
use crate::ports::free_ports;
use crate::process::{self, output_with_stdin};

/// The suffix of the test directory.
pub const BASE_DN: &str = "dc=example,dc=org";
/// The directory manager.
pub const ADMIN_DN: &str = "cn=admin,dc=example,dc=org";
/// Its password.
pub const ADMIN_PASSWORD: &str = "admin-secret";
/// The service account the gateway searches with.
pub const SERVICE_DN: &str = "cn=postern,ou=services,dc=example,dc=org";
/// Its password.
pub const SERVICE_PASSWORD: &str = "postern-service-secret";

/// The `cac` schema of the procedures (GeneralizedTime with ordering for
/// `cacemergency`; `cacissuer` for issuer-bound certificate queries), plus an Active Directory-style `sAMAccountName` and an auxiliary
/// class named `user`, so the manual's AD query `(&(objectClass=user)(cn={cn}))` runs
/// unchanged.
pub const CAC_SCHEMA: &str = "\
attributetype ( 1.3.6.1.4.1.99999.1.1 NAME 'caccn' EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
attributetype ( 1.3.6.1.4.1.99999.1.2 NAME 'cacserial' EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
attributetype ( 1.3.6.1.4.1.99999.1.3 NAME 'cacexempt' EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
attributetype ( 1.3.6.1.4.1.99999.1.4 NAME 'cacemergency' EQUALITY generalizedTimeMatch ORDERING generalizedTimeOrderingMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.24 )
attributetype ( 1.3.6.1.4.1.99999.1.5 NAME 'cacissuer' EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
objectclass ( 1.3.6.1.4.1.99999.2.1 NAME 'cacUser' SUP top AUXILIARY MAY ( caccn $ cacserial $ cacissuer $ cacexempt $ cacemergency ) )
attributetype ( 1.2.840.113556.1.4.221 NAME 'sAMAccountName' EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.99999.2.2 NAME 'user' SUP top AUXILIARY MAY ( sAMAccountName ) )
";

/// A user of the test directory.
#[derive(Clone, Copy, Debug)]
pub struct User {
    /// `uid` (the SMTP AUTH user name).
    pub uid: &'static str,
    /// `userPassword`.
    pub password: &'static str,
    /// `caccn` and the certificate CN, when the user holds a CAC.
    pub caccn: Option<&'static str>,
    /// `cacserial` and the certificate serial (upper-case hex).
    pub cacserial: Option<&'static str>,
    /// `cacexempt` set.
    pub exempt: bool,
    /// `cacemergency` relative to now, in days (positive: future).
    pub emergency_days: Option<i64>,
}

/// CAC holder whose CN and serial match their certificate; not exempt, no emergency
/// date: the allowance query refuses them (`525`), their certificate maps to them.
pub const ALICE: User = User {
    uid: "alice",
    password: "alice-secret",
    caccn: Some("DOE.ALICE.1000000001"),
    cacserial: Some("1A2B3C4D"),
    exempt: false,
    emergency_days: None,
};
/// No CAC: allowed to use SMTP AUTH.
pub const FRANK: User = User {
    uid: "frank",
    password: "frank-secret",
    caccn: None,
    cacserial: None,
    exempt: false,
    emergency_days: None,
};
/// CAC holder who is exempt: allowed.
pub const ERIN: User = User {
    uid: "erin",
    password: "erin-secret",
    caccn: Some("DOE.ERIN.1000000003"),
    cacserial: Some("3E3E3E"),
    exempt: true,
    emergency_days: None,
};
/// CAC holder with an emergency date in the future: allowed.
pub const EMMA: User = User {
    uid: "emma",
    password: "emma-secret",
    caccn: Some("DOE.EMMA.1000000004"),
    cacserial: Some("4E4E4E"),
    exempt: false,
    emergency_days: Some(30),
};
/// CAC holder whose emergency date has passed: refused.
pub const PAUL: User = User {
    uid: "paul",
    password: "paul-secret",
    caccn: Some("DOE.PAUL.1000000005"),
    cacserial: Some("5A5A5A"),
    exempt: false,
    emergency_days: Some(-1),
};
/// A user whose uid is made of filter metacharacters; escaping must find exactly them.
pub const ODD: User = User {
    uid: "o*(dd)\\user",
    password: "odd-secret",
    caccn: Some("ODD(CN)*\\1"),
    cacserial: Some("0DD0"),
    exempt: false,
    emergency_days: None,
};
/// The users with a `uid` under `ou=people`.
pub const USERS: [User; 6] = [ALICE, FRANK, ERIN, EMMA, PAUL, ODD];

/// Active Directory-style user: `sAMAccountName` is the user id, `cn` the CAC name.
pub const JANE_CN: &str = "DOE.JANE.2000000002";
/// Jane's `sAMAccountName`.
pub const JANE_SAM: &str = "jane.doe";
/// Jane's password.
pub const JANE_PASSWORD: &str = "jane-secret";
/// Jane's certificate serial.
pub const JANE_SERIAL: &str = "2B2B2B";
/// Two entries carry this CN and serial: mapping is ambiguous.
pub const TWIN_CN: &str = "DOE.TWIN.3000000003";
/// The twins' serial.
pub const TWIN_SERIAL: &str = "3C3C3C";
/// An entry with this CN and serial has no `uid`.
pub const NOUID_CN: &str = "DOE.NOUID.4000000004";
/// Its serial.
pub const NOUID_SERIAL: &str = "4D4D4D";

/// GeneralizedTime of `now + days`.
pub fn generalized_time_in_days(days: i64) -> String {
    generalized_time(days_from_now(days))
}

/// The LDIF of the test directory (emergency dates relative to now).
pub fn directory_ldif() -> String {
    let mut l = format!(
        "dn: {BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n\n\
         dn: ou=people,{BASE_DN}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: ou=services,{BASE_DN}\nobjectClass: organizationalUnit\nou: services\n\n\
         dn: {SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: postern\nuserPassword: {SERVICE_PASSWORD}\n\n"
    );
    for (i, u) in USERS.iter().enumerate() {
        // The DN uses a plain RDN; the uid itself may hold metacharacters.
        let _ = write!(
            l,
            "dn: cn=user{i},ou=people,{BASE_DN}\nobjectClass: inetOrgPerson\nobjectClass: posixAccount\nobjectClass: cacUser\n\
             cn: user{i}\nsn: {uid}\nuid: {uid}\nuidNumber: {n}\ngidNumber: 1000\nhomeDirectory: /home/user{i}\nuserPassword: {pw}\n",
            uid = u.uid,
            n = 1000 + i,
            pw = u.password
        );
        if let Some(cn) = u.caccn {
            let _ = writeln!(l, "caccn: {cn}");
        }
        if let Some(sn) = u.cacserial {
            let _ = writeln!(l, "cacserial: {sn}");
        }
        if u.exempt {
            l.push_str("cacexempt: TRUE\n");
        }
        if let Some(days) = u.emergency_days {
            let _ = writeln!(l, "cacemergency: {}", generalized_time_in_days(days));
        }
        l.push('\n');
    }
    let _ = write!(
        l,
        "dn: cn={JANE_CN},ou=people,{BASE_DN}\nobjectClass: inetOrgPerson\nobjectClass: user\nobjectClass: cacUser\n\
         cn: {JANE_CN}\nsn: Doe\nsAMAccountName: {JANE_SAM}\nuserPassword: {JANE_PASSWORD}\ncaccn: {JANE_CN}\ncacserial: {JANE_SERIAL}\n\n"
    );
    for twin in ["twin1", "twin2"] {
        let _ = write!(
            l,
            "dn: uid={twin},ou=people,{BASE_DN}\nobjectClass: inetOrgPerson\nobjectClass: cacUser\n\
             cn: {twin}\nsn: Twin\nuid: {twin}\nuserPassword: {twin}-secret\ncaccn: {TWIN_CN}\ncacserial: {TWIN_SERIAL}\n\n"
        );
    }
    let _ = write!(
        l,
        "dn: cn=nouid,ou=people,{BASE_DN}\nobjectClass: inetOrgPerson\nobjectClass: cacUser\n\
         cn: nouid\nsn: Nouid\ncaccn: {NOUID_CN}\ncacserial: {NOUID_SERIAL}\n\n"
    );
    l
}

/// TLS material for `ldaps://` and StartTLS: a CA and a server certificate for
/// `127.0.0.1` and `localhost`.
#[derive(Clone, Debug)]
pub struct SlapdTls {
    /// The CA certificate (what the gateway's `caBundle` must hold).
    pub ca_pem: String,
    /// The server certificate.
    pub cert_pem: String,
    /// The server key.
    pub key_pem: String,
}

impl SlapdTls {
    /// A fresh CA and server certificate.
    pub fn generate() -> Result<Self> {
        let ca = Ca::builder("Postern test LDAP CA")
            .key_usages(vec![])
            .self_signed()?;
        let server = ca
            .leaf()
            .cn("localhost")
            .names(&["localhost", "127.0.0.1"])
            .issue()?;
        Ok(Self {
            ca_pem: ca.cert_pem(),
            cert_pem: server.cert_pem,
            key_pem: server.key_pem,
        })
    }
}

/// How to start a test slapd.
#[derive(Clone, Debug, Default)]
pub struct SlapdOptions {
    /// Directory content; default [`directory_ldif`].
    pub ldif: Option<String>,
    /// Extra schema; default [`CAC_SCHEMA`].
    pub schema: Option<String>,
    /// Serve `ldaps://` on a second port and allow StartTLS.
    pub tls: Option<SlapdTls>,
    /// `sizelimit` for everyone but the manager.
    pub size_limit: Option<u32>,
    /// `referral` URL returned for searches outside the suffix.
    pub referral: Option<String>,
    /// Let anonymous clients search (default: only the service account).
    pub anonymous_read: bool,
    /// Log every operation (slapd's `stats` level, `-d 256`) to [`Slapd::log`], so a test
    /// can see which BINDs reached the server ([`Slapd::binds_as`]).
    pub stats_log: bool,
    /// `index` lines (e.g. `cn,uid eq`), as a production directory has them.
    pub indexes: Vec<String>,
}

/// A running (or stopped) slapd.
#[derive(Debug)]
pub struct Slapd {
    dir: tempfile::TempDir,
    port: u16,
    ldaps_port: Option<u16>,
    tls: Option<SlapdTls>,
    stats_log: bool,
    child: Option<Child>,
}

fn need(tool: &str) -> Result<PathBuf> {
    process::system_tool(tool).with_context(|| {
        format!("{tool} not found: install Debian's slapd and ldap-utils (tests/support/install-deps.sh)")
    })
}

impl Slapd {
    /// Write the configuration and data, then start slapd and wait until it answers.
    pub fn start(opts: SlapdOptions) -> Result<Self> {
        let slapadd = need("slapadd")?;
        need("slapd")?;
        let dir = tempfile::Builder::new()
            .prefix("postern-slapd-")
            .tempdir()?;
        let root = dir.path();
        fs::write(
            root.join("cac.schema"),
            opts.schema.as_deref().unwrap_or(CAC_SCHEMA),
        )?;
        fs::create_dir(root.join("db"))?;
        let mut conf = String::new();
        for schema in ["core", "cosine", "inetorgperson", "nis"] {
            let _ = writeln!(conf, "include /etc/ldap/schema/{schema}.schema");
        }
        let _ = writeln!(conf, "include {}/cac.schema", root.display());
        let _ = writeln!(conf, "pidfile {}/slapd.pid", root.display());
        conf.push_str("modulepath /usr/lib/ldap\nmoduleload back_mdb\n");
        if let Some(tls) = &opts.tls {
            fs::write(root.join("server.crt"), &tls.cert_pem)?;
            fs::write(root.join("server.key"), &tls.key_pem)?;
            let _ = writeln!(conf, "TLSCertificateFile {}/server.crt", root.display());
            let _ = writeln!(conf, "TLSCertificateKeyFile {}/server.key", root.display());
        }
        if let Some(limit) = opts.size_limit {
            let _ = writeln!(conf, "sizelimit {limit}");
        }
        if let Some(referral) = &opts.referral {
            let _ = writeln!(conf, "referral {referral}");
        }
        let _ = writeln!(
            conf,
            "database mdb\nsuffix \"{BASE_DN}\"\nrootdn \"{ADMIN_DN}\"\nrootpw {ADMIN_PASSWORD}\n\
             directory {}/db\nmaxsize 104857600",
            root.display()
        );
        for index in &opts.indexes {
            let _ = writeln!(conf, "index {index}");
        }
        let readers = if opts.anonymous_read {
            "  by * read\n"
        } else {
            "  by users read\n  by anonymous auth\n"
        };
        let _ = write!(
            conf,
            "access to attrs=userPassword\n  by anonymous auth\n  by * none\n\
             access to *\n  by dn.exact=\"{SERVICE_DN}\" read\n{readers}"
        );
        fs::write(root.join("slapd.conf"), conf)?;
        let ldif = opts.ldif.unwrap_or_else(directory_ldif);
        fs::write(root.join("data.ldif"), ldif)?;
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
        let mut slapd = Self {
            port: 0,
            ldaps_port: None,
            tls: opts.tls.clone(),
            stats_log: opts.stats_log,
            child: None,
            dir,
        };
        let mut last_err = None;
        // A port picked as free can be taken by someone else before slapd binds it.
        for _ in 0..5 {
            let ports = free_ports(2);
            slapd.port = ports[0];
            slapd.ldaps_port = opts.tls.as_ref().map(|_| ports[1]);
            match slapd.start_again() {
                Ok(()) => return Ok(slapd),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.expect("tried at least once"))
    }

    /// `ldap://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// `ldaps://127.0.0.1:PORT` when started with TLS.
    pub fn ldaps_url(&self) -> Option<String> {
        self.ldaps_port.map(|p| format!("ldaps://127.0.0.1:{p}"))
    }

    /// The plain LDAP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The CA that signed the server certificate, when started with TLS.
    pub fn ca_pem(&self) -> Option<&str> {
        self.tls.as_ref().map(|t| t.ca_pem.as_str())
    }

    /// The slapd log (stderr), for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("slapd.log")).unwrap_or_default()
    }

    /// How many simple BINDs as `dn` the server has received (needs
    /// [`SlapdOptions::stats_log`]; counts what slapd logged, whatever the outcome).
    pub fn binds_as(&self, dn: &str) -> usize {
        assert!(self.stats_log, "binds_as needs SlapdOptions::stats_log");
        // One `method=` line per BIND request (a successful one logs a second `mech=` line).
        let needle = format!(" BIND dn=\"{dn}\" method=");
        self.log().lines().filter(|l| l.contains(&needle)).count()
    }

    /// Every BIND line slapd logged (needs `stats_log`).
    pub fn binds(&self) -> Vec<String> {
        assert!(self.stats_log, "binds needs SlapdOptions::stats_log");
        self.log()
            .lines()
            .filter(|l| l.contains(" BIND dn=\"") && l.contains(" method="))
            .map(str::to_owned)
            .collect()
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        let running = self
            .child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)));
        if !running {
            // Reaped: its PID may soon be another process's, so no signal may go there.
            self.kill();
        }
        running
    }

    /// Start (again) on the same ports with the same data, and wait until it answers.
    pub fn start_again(&mut self) -> Result<()> {
        if self.is_running() {
            return Ok(());
        }
        let root = self.dir.path();
        let mut urls = self.url() + "/";
        if let Some(s) = self.ldaps_url() {
            urls.push(' ');
            urls.push_str(&s);
            urls.push('/');
        }
        // Appended to, so that the operations before a restart stay on record.
        let log = fs::File::options()
            .create(true)
            .append(true)
            .open(root.join("slapd.log"))?;
        let debug = std::env::var("POSTERN_SLAPD_DEBUG")
            .unwrap_or_else(|_| if self.stats_log { "256" } else { "0" }.into());
        let child = Command::new(need("slapd")?)
            .arg("-f")
            .arg(root.join("slapd.conf"))
            .arg("-h")
            .arg(&urls)
            .arg("-d")
            .arg(&debug)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start slapd")?;
        process::track(child.id());
        self.child = Some(child);
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if !self.is_running() {
                bail!("slapd exited at start-up: {}", self.log());
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                bail!("slapd did not answer on {addr} within 10s: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            process::signal(c.id(), sig);
        }
    }

    /// Stop gracefully (SIGTERM) and wait for the process to end.
    pub fn stop(&mut self) {
        if !self.is_running() {
            return;
        }
        self.signal("CONT");
        self.signal("TERM");
        if let Some(mut c) = self.child.take() {
            let _ = process::wait_exit(&mut c, Duration::from_secs(10));
            process::kill(c);
        }
    }

    /// Kill (SIGKILL) and reap.
    pub fn kill(&mut self) {
        if let Some(c) = self.child.take() {
            process::kill(c);
        }
    }

    /// Freeze the process (SIGSTOP): the kernel still accepts connections, nothing answers.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Resume after [`pause`](Self::pause).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    /// Apply an LDIF change as the manager (`ldapmodify`).
    pub fn modify(&self, ldif: &str) -> Result<()> {
        let out = output_with_stdin(
            Command::new(need("ldapmodify")?).args([
                "-x",
                "-H",
                &self.url(),
                "-D",
                ADMIN_DN,
                "-w",
                ADMIN_PASSWORD,
            ]),
            ldif.as_bytes(),
        )?;
        if !out.status.success() {
            bail!(
                "ldapmodify failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        if self.is_running() {
            self.signal("CONT");
        }
        self.kill();
    }
}
