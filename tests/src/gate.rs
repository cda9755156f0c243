//! The security, fault and load tests' world: the real `postern-gateway` binary run from
//! a configuration file (text log, 200 ms poll interval, ready once every listener
//! accepts), a test PKI, a blocking SMTP client (with STARTTLS through rustls) and a
//! scripted next hop that can misbehave on purpose (down, slow, dropping mid-DATA).
//! Everything on loopback, every wait bounded.

// Test handles wrap sockets and processes; Debug output of them would say nothing useful.
#![allow(missing_debug_implementations)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use postern_config::*;
use postern_testkit::gateway::{Gateway, GatewayBuilder, Ready};
use postern_testkit::pki::{Ca, Leaf};
use postern_testkit::ports::free_port;
use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// A CA with a server certificate for `localhost`/127.0.0.1, able to issue client certs.
pub struct Pki {
    /// The CA.
    pub ca: Ca,
    /// The server certificate (PEM).
    pub server_pem: String,
    /// The server key (PEM).
    pub server_key_pem: String,
}

/// A client certificate chain and key, as a client presents them.
#[derive(Clone)]
pub struct ClientCert {
    /// Certificate chain (leaf first), PEM.
    pub chain_pem: String,
    /// Key, PEM.
    pub key_pem: String,
}

impl From<Leaf> for ClientCert {
    fn from(leaf: Leaf) -> Self {
        Self {
            chain_pem: leaf.cert_pem,
            key_pem: leaf.key_pem,
        }
    }
}

impl Pki {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Self {
        let ca = Ca::new(name);
        let server = ca.localhost_server();
        Self {
            ca,
            server_pem: server.cert_pem,
            server_key_pem: server.key_pem,
        }
    }

    /// The CA certificate (PEM).
    pub fn ca_pem(&self) -> String {
        self.ca.cert_pem()
    }

    /// A client certificate for `cn` signed by this CA.
    pub fn client(&self, cn: &str) -> ClientCert {
        let mut p = client_params();
        p.distinguished_name.push(DnType::CommonName, cn);
        self.issue(p)
    }

    /// A client certificate from caller-built parameters, signed by this CA.
    pub fn issue(&self, params: CertificateParams) -> ClientCert {
        self.ca.issue(params).into()
    }
}

/// Client-auth certificate parameters without a subject.
pub fn client_params() -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p
}

/// Users of the Static backend most tests use: `jdoe` (certificate CN
/// `DOE.JOHN.1234567890`), `frank` / `frankpw` (AUTH), `carol` / `carolpw` (not allowed).
pub fn static_users() -> Vec<StaticUser> {
    vec![
        StaticUser {
            user_id: "jdoe".into(),
            password: None,
            certificate_cn: Some("DOE.JOHN.1234567890".into()),
            allowed: true,
            addresses: Vec::new(),
        },
        StaticUser {
            user_id: "frank".into(),
            password: Some("frankpw".into()),
            certificate_cn: None,
            allowed: true,
            addresses: Vec::new(),
        },
        StaticUser {
            user_id: "carol".into(),
            password: Some("carolpw".into()),
            certificate_cn: None,
            allowed: false,
            addresses: Vec::new(),
        },
    ]
}

/// One listener `main` on a free port relaying to `hop`, with `policy` and `profile`.
pub fn config(
    pki: &Pki,
    hop: SocketAddr,
    policy: MailFlowPolicy,
    profile: AuthProfile,
) -> GatewayConfig {
    let listener = Listener {
        address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port: free_port(),
        hostname: "gw.test.postern.dev".into(),
        implicit_tls: false,
        tls: Some(ListenerTls {
            certificate_chain_pem: pki.server_pem.clone(),
            private_key_pem: pki.server_key_pem.clone(),
            client_ca_pem: Some(pki.ca_pem()),
            allow_version1_client_certificates: false,
            revocation: Default::default(),
        }),
        auth_profile: Some("profile".into()),
        host_access_table: vec![],
        default_policy: "policy".into(),
        next_hop: NextHop {
            host: "127.0.0.1".into(),
            port: hop.port(),
            tls: TlsMode::Disabled,
            ca_pem: None,
            connect_timeout: Duration::from_secs(2).into(),
            command_timeout: Duration::from_secs(3).into(),
            xclient: false,
        },
        timeouts: ListenerTimeouts::default(),
        max_connections: 100,
        max_connections_per_client: None,
        proxy_protocol: None,
    };
    GatewayConfig {
        listeners: [("main".to_owned(), listener)].into(),
        policies: [("policy".to_owned(), policy)].into(),
        auth_profiles: [("profile".to_owned(), profile)].into(),
        ..GatewayConfig::default()
    }
}

/// A Relay policy.
pub fn policy(
    tls: TlsMode,
    verify: bool,
    require_auth: bool,
    tls_for_auth: bool,
) -> MailFlowPolicy {
    MailFlowPolicy {
        action: PolicyAction::Relay,
        tls,
        verify_client_certificate: verify,
        require_smtp_auth: require_auth,
        require_tls_for_smtp_auth: tls_for_auth,
        limits: Limits::default(),
        rate_limits: Default::default(),
        sender_binding: Default::default(),
    }
}

/// Certificate mapping with the static users, plus SMTP AUTH (allowance Reject 525).
pub fn static_profile(certificate: bool, smtp_auth: bool) -> AuthProfile {
    AuthProfile {
        certificate: certificate.then(|| CertificateAuth {
            required_policies: Vec::new(),
            required_ekus: Vec::new(),

            backend: AuthBackend::Static {
                users: static_users(),
            },
        }),
        smtp_auth: smtp_auth.then(|| SmtpAuth {
            profile: "users".into(),
            backend: AuthBackend::Static {
                users: static_users(),
            },
            allowance: Some(Allowance {
                action: AllowanceAction::Reject,
                response: Reply {
                    code: 525,
                    enhanced_code: "5.7.13".into(),
                    text: "Dear user, please use your CAC to send email.".into(),
                },
            }),
            throttle: Default::default(),
        }),
    }
}

/// Certificate mapping and SMTP AUTH against profile `corp`; allowance Monitor so that
/// every user who binds is let in (and logged in full).
pub fn ldap_auth_profile() -> AuthProfile {
    let backend = AuthBackend::Ldap {
        ldap_profile: "corp".into(),
    };
    AuthProfile {
        certificate: Some(CertificateAuth {
            required_policies: Vec::new(),
            required_ekus: Vec::new(),

            backend: backend.clone(),
        }),
        smtp_auth: Some(SmtpAuth {
            profile: "corp".into(),
            backend,
            allowance: Some(Allowance {
                action: AllowanceAction::Monitor,
                response: Reply {
                    code: 525,
                    enhanced_code: "5.7.13".into(),
                    text: "Dear user, please use your CAC to send email.".into(),
                },
            }),
            throttle: Default::default(),
        }),
    }
}

/// How these tests run the gateway: `config` (every listener probed until it accepts),
/// text log, 200 ms poll interval, 3 s shutdown grace, 30 s to start.
pub fn launch(config: &GatewayConfig) -> GatewayBuilder {
    Gateway::with_config(config.to_yaml())
        .default_arg("--poll-interval", "200ms")
        .default_arg("--shutdown-grace", "3s")
        .listeners(
            config
                .listeners
                .values()
                .map(|l| SocketAddr::new(l.address, l.port))
                .collect(),
        )
        .ready(Ready::Listening)
        .ready_within(Duration::from_secs(30))
}

/// [`launch`] with `extra` arguments, started.
pub fn start_gateway(config: &GatewayConfig, extra: &[&str]) -> Result<Gateway> {
    launch(config).args(extra).start()
}

enum Conn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Conn {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(b),
            Conn::Tls(s) => s.read(b),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(b),
            Conn::Tls(s) => s.write(b),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

/// A blocking SMTP client with a 10 s read timeout.
pub struct Client {
    conn: Option<BufReader<Conn>>,
    /// The greeting.
    pub greeting: String,
}

/// A reply: code and all text lines joined by `\n`.
pub type SmtpReply = (u16, String);

impl Client {
    /// Connect and read the greeting.
    pub fn connect(addr: SocketAddr) -> Result<Self> {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
        Self::greeted(s)
    }

    /// Connect from the loopback address `source` (any of 127.0.0.0/8: one machine,
    /// many client addresses) and read the greeting.
    pub fn connect_from(addr: SocketAddr, source: IpAddr) -> Result<Self> {
        Self::greeted(connect_from(addr, source)?)
    }

    fn greeted(s: TcpStream) -> Result<Self> {
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut c = Self {
            conn: Some(BufReader::new(Conn::Plain(s))),
            greeting: String::new(),
        };
        c.greeting = c.reply()?.1;
        Ok(c)
    }

    /// Read one (multi-line) reply.
    pub fn reply(&mut self) -> Result<SmtpReply> {
        let r = self.conn.as_mut().ok_or_else(|| anyhow!("closed"))?;
        let mut text = Vec::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line)? == 0 {
                bail!("connection closed (after {text:?})");
            }
            let line = line.trim_end().to_owned();
            if line.len() < 3 {
                bail!("malformed reply {line:?}");
            }
            let code: u16 = line[..3].parse().context("reply code")?;
            let last = line.as_bytes().get(3) != Some(&b'-');
            text.push(line);
            if last {
                return Ok((code, text.join("\n")));
            }
        }
    }

    /// Write raw bytes.
    pub fn send(&mut self, bytes: &[u8]) -> Result<()> {
        let c = self
            .conn
            .as_mut()
            .ok_or_else(|| anyhow!("closed"))?
            .get_mut();
        c.write_all(bytes)?;
        c.flush()?;
        Ok(())
    }

    /// Send a command line and read the reply.
    pub fn cmd(&mut self, line: &str) -> Result<SmtpReply> {
        self.send(format!("{line}\r\n").as_bytes())?;
        self.reply()
    }

    /// Upgrade the connection (after the 220 to STARTTLS, or at once for implicit TLS).
    pub fn tls(&mut self, ca_pem: &str, cert: Option<&ClientCert>) -> Result<()> {
        let reader = self.conn.take().ok_or_else(|| anyhow!("closed"))?;
        if !reader.buffer().is_empty() {
            bail!("unexpected bytes before the TLS handshake");
        }
        let Conn::Plain(tcp) = reader.into_inner() else {
            bail!("already TLS");
        };
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(c?)?;
        }
        let b = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
        let cfg = match cert {
            Some(c) => {
                let chain = CertificateDer::pem_slice_iter(c.chain_pem.as_bytes())
                    .collect::<Result<Vec<_>, _>>()?;
                let key = PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes())?;
                b.with_client_auth_cert(chain, key)?
            }
            None => b.with_no_client_auth(),
        };
        let name = ServerName::IpAddress(Ipv4Addr::LOCALHOST.into());
        let conn = rustls::ClientConnection::new(Arc::new(cfg), name)?;
        let mut s = rustls::StreamOwned::new(conn, tcp);
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock)?;
        }
        self.conn = Some(BufReader::new(Conn::Tls(Box::new(s))));
        Ok(())
    }

    /// STARTTLS and the handshake.
    pub fn starttls(&mut self, ca_pem: &str, cert: Option<&ClientCert>) -> Result<()> {
        let (code, text) = self.cmd("STARTTLS")?;
        if code != 220 {
            bail!("STARTTLS refused: {text}");
        }
        self.tls(ca_pem, cert)
    }

    /// AUTH PLAIN with `authcid` / `password` (raw bytes, so NUL can be tested).
    pub fn auth_plain(&mut self, user: &[u8], password: &[u8]) -> Result<SmtpReply> {
        use base64::Engine;
        let mut raw = vec![0u8];
        raw.extend_from_slice(user);
        raw.push(0);
        raw.extend_from_slice(password);
        let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
        self.cmd(&format!("AUTH PLAIN {b64}"))
    }

    /// MAIL, RCPT, DATA with `body`; the final reply (or the first refusal).
    pub fn send_mail(&mut self, from: &str, to: &str, body: &str) -> Result<SmtpReply> {
        let r = self.cmd(&format!("MAIL FROM:<{from}>"))?;
        if r.0 != 250 {
            return Ok(r);
        }
        let r = self.cmd(&format!("RCPT TO:<{to}>"))?;
        if r.0 != 250 {
            return Ok(r);
        }
        let r = self.cmd("DATA")?;
        if r.0 != 354 {
            return Ok(r);
        }
        self.send(body.as_bytes())?;
        self.cmd("\r\n.")
    }
}

/// A TCP connection to `addr` from the loopback address `source` (bound before
/// connecting, which the standard library cannot do).
pub fn connect_from(addr: SocketAddr, source: IpAddr) -> Result<TcpStream> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // bind() picks the source port without knowing the destination, so it can pick one
    // whose earlier connection to the gateway is still in TIME_WAIT there (the gateway
    // closed it), and the SYN is answered with a reset. No connection was made then, so
    // a fresh socket is tried (a few times).
    let stream = rt.block_on(async {
        let mut attempt = 0;
        loop {
            let socket = match source {
                IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
                IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
            };
            socket.bind(SocketAddr::new(source, 0))?;
            match tokio::time::timeout(Duration::from_secs(3), socket.connect(addr))
                .await
                .map_err(|_| anyhow!("connecting from {source} to {addr} timed out"))?
            {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused && attempt < 5 => {
                    attempt += 1;
                }
                r => break r.map_err(anyhow::Error::from),
            }
        }
    })?;
    let stream = stream.into_std()?;
    stream.set_nonblocking(false)?;
    Ok(stream)
}

/// Replies a deliberately misbehaving next hop gives instead of the well-behaved ones
/// (`None`: behave). Texts are sent as they are, CRLFs included.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Misbehave {
    /// Instead of `220 hop.test ESMTP`.
    pub greeting: Option<&'static str>,
    /// Instead of `250` to MAIL.
    pub mail: Option<&'static str>,
    /// Instead of `250` to RCPT.
    pub rcpt: Option<&'static str>,
    /// Instead of `354` to DATA. Unless it starts with `354`, the hop stays in command
    /// mode, as a real server would: whatever comes next is read as commands.
    pub data: Option<&'static str>,
    /// Instead of `250` to the final dot. The message counts as accepted only if this
    /// starts with `250`.
    pub end: Option<&'static str>,
    /// Sent in the middle of the message (after its first line), before any final dot.
    pub early: Option<&'static str>,
}

/// How the scripted next hop behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HopMode {
    /// A normal sink: every message accepted and recorded.
    Accept,
    /// Close the connection after reading some of the message body (no final reply).
    DropMidData,
    /// Accept the connection but answer nothing (a hung MTA).
    Silent,
    /// Delay every reply by this many milliseconds.
    SlowMs(u64),
    /// 451 to DATA's end.
    TempFail,
    /// Replies outside the protocol, garbage, replies out of turn.
    Misbehave(Misbehave),
}

/// A scripted next hop on loopback (threads; stopped on drop).
pub struct Hop {
    /// Its address.
    pub addr: SocketAddr,
    /// Messages it accepted (with a 250), as received.
    pub messages: Arc<Mutex<Vec<String>>>,
    seen: Arc<HopSeen>,
    mode: Arc<Mutex<HopMode>>,
    stop: Arc<AtomicBool>,
}

impl Hop {
    /// Start a hop in `mode`.
    pub fn start(mode: HopMode) -> Self {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        l.set_nonblocking(true).unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::new(HopSeen::default());
        let mode = Arc::new(Mutex::new(mode));
        let stop = Arc::new(AtomicBool::new(false));
        let (m, md, st, sn) = (messages.clone(), mode.clone(), stop.clone(), seen.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((s, _)) => {
                        sn.connections.fetch_add(1, Ordering::SeqCst);
                        let (m, mode) = (m.clone(), *md.lock().unwrap());
                        let (st, sn) = (st.clone(), sn.clone());
                        std::thread::spawn(move || {
                            let _ = hop_session(s, mode, &m, &sn, &st);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Self {
            addr,
            messages,
            seen,
            mode,
            stop,
        }
    }

    /// The command lines read so far, across connections (without line ends).
    pub fn commands(&self) -> Vec<String> {
        self.seen.commands.lock().unwrap().clone()
    }

    /// How many connections it has accepted.
    pub fn connections(&self) -> usize {
        self.seen.connections.load(Ordering::SeqCst)
    }

    /// How many early replies ([`Misbehave::early`]) it has sent.
    pub fn early_replies(&self) -> usize {
        self.seen.early_replies.load(Ordering::SeqCst)
    }

    /// An address where nothing listens.
    pub fn down() -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()))
    }

    /// Change the behaviour for new connections.
    pub fn set_mode(&self, mode: HopMode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// The accepted messages so far.
    pub fn messages(&self) -> Vec<String> {
        self.messages.lock().unwrap().clone()
    }
}

impl Drop for Hop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// What the scripted next hop has seen and done, for the tests to check.
#[derive(Default)]
struct HopSeen {
    commands: Mutex<Vec<String>>,
    connections: AtomicUsize,
    early_replies: AtomicUsize,
}

fn hop_session(
    s: TcpStream,
    mode: HopMode,
    messages: &Mutex<Vec<String>>,
    seen: &HopSeen,
    stop: &AtomicBool,
) -> Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut w = s.try_clone()?;
    let mut r = BufReader::new(s);
    if mode == HopMode::Silent {
        let mut sink = Vec::new();
        let _ = r.read_to_end(&mut sink);
        return Ok(());
    }
    let bad = match mode {
        HopMode::Misbehave(m) => m,
        _ => Misbehave::default(),
    };
    let say = |w: &mut TcpStream, text: &str| -> Result<()> {
        if let HopMode::SlowMs(ms) = mode {
            std::thread::sleep(Duration::from_millis(ms));
        }
        w.write_all(text.as_bytes())?;
        Ok(())
    };
    say(&mut w, bad.greeting.unwrap_or("220 hop.test ESMTP\r\n"))?;
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        seen.commands
            .lock()
            .unwrap()
            .push(line.trim_end_matches(['\r', '\n']).to_owned());
        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" => say(
                &mut w,
                "250-hop.test\r\n250-8BITMIME\r\n250 SIZE 100000000\r\n",
            )?,
            "MAIL" => say(&mut w, bad.mail.unwrap_or("250 2.0.0 ok\r\n"))?,
            "RCPT" => say(&mut w, bad.rcpt.unwrap_or("250 2.0.0 ok\r\n"))?,
            "HELO" | "RSET" | "NOOP" => say(&mut w, "250 2.0.0 ok\r\n")?,
            "QUIT" => {
                say(&mut w, "221 2.0.0 bye\r\n")?;
                return Ok(());
            }
            "DATA" => {
                let go = bad.data.unwrap_or("354 go ahead\r\n");
                say(&mut w, go)?;
                if !go.starts_with("354") {
                    // Not reading a message: what follows is commands.
                    continue;
                }
                let mut msg = String::new();
                let mut early = bad.early;
                loop {
                    let mut l = String::new();
                    if r.read_line(&mut l)? == 0 {
                        return Ok(());
                    }
                    if l == ".\r\n" {
                        break;
                    }
                    msg.push_str(&l);
                    if let Some(text) = early.take() {
                        say(&mut w, text)?;
                        seen.early_replies.fetch_add(1, Ordering::SeqCst);
                    }
                    if mode == HopMode::DropMidData && msg.len() > 64 {
                        // Vanish mid-message: no reply, connection reset.
                        return Ok(());
                    }
                }
                let end = match mode {
                    HopMode::TempFail => "451 4.3.0 try later\r\n",
                    _ => bad.end.unwrap_or("250 2.0.0 queued\r\n"),
                };
                if end.starts_with("250") {
                    messages.lock().unwrap().push(msg);
                }
                say(&mut w, end)?;
            }
            _ => say(&mut w, "502 5.5.2 what\r\n")?,
        }
    }
}

/// A TCP proxy on loopback that delays every chunk it forwards (both directions) by a
/// settable number of milliseconds: a slow network or a slow server, for real clients
/// and servers on either side. It can also cut the connections open at a moment the
/// next time their client sends anything ([`DelayProxy::cut_open_connections`]).
pub struct DelayProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    delay_ms: Arc<std::sync::atomic::AtomicU64>,
    /// Bumped by `cut_open_connections`; a connection opened under an older one is cut.
    generation: Arc<std::sync::atomic::AtomicU64>,
    cut: Arc<std::sync::atomic::AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl DelayProxy {
    /// Proxy to `target` with `delay_ms` per chunk.
    pub fn start(target: SocketAddr, delay_ms: u64) -> Self {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        l.set_nonblocking(true).unwrap();
        let delay = Arc::new(std::sync::atomic::AtomicU64::new(delay_ms));
        let generation = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let cut = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (d, g, c, st) = (delay.clone(), generation.clone(), cut.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                let Ok((client, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let born = g.load(Ordering::SeqCst);
                let _ = client.set_nonblocking(false);
                let Ok(server) = TcpStream::connect_timeout(&target, Duration::from_secs(2)) else {
                    continue; // dropping the client: the target is down
                };
                for (upstream, mut from, mut to) in [
                    (
                        true,
                        client.try_clone().unwrap(),
                        server.try_clone().unwrap(),
                    ),
                    (false, server, client),
                ] {
                    let (d, g, c, st) = (d.clone(), g.clone(), c.clone(), st.clone());
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16 * 1024];
                        while !st.load(Ordering::Relaxed) {
                            let n = match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            if upstream && g.load(Ordering::SeqCst) > born {
                                // Not forwarded: both sides closed, as by a server that
                                // had dropped the connection.
                                c.fetch_add(1, Ordering::SeqCst);
                                break;
                            }
                            std::thread::sleep(Duration::from_millis(d.load(Ordering::Relaxed)));
                            if to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                        let _ = from.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Self {
            addr,
            delay_ms: delay,
            generation,
            cut,
            stop,
        }
    }

    /// Change the delay (applies to the next chunk).
    pub fn set_delay_ms(&self, ms: u64) {
        self.delay_ms.store(ms, Ordering::Relaxed);
    }

    /// The connections open now are cut the next time their client sends something:
    /// what it sends is not forwarded and both sides are closed, as after a server's or
    /// firewall's silent idle timeout, which a client learns of only when it next uses
    /// the connection. Connections opened later are forwarded as usual.
    pub fn cut_open_connections(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// How many connections were cut so far.
    pub fn cut(&self) -> u64 {
        self.cut.load(Ordering::SeqCst)
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
