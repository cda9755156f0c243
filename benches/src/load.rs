//! The load client: N concurrent SMTP sessions, bounded by a session count and a time
//! limit, each optionally upgraded with STARTTLS presenting the bench client certificate
//! (which smtp-source cannot do), optionally relaying M messages. Also opens and holds
//! idle connections.
//!
//! With a [`Proxy`], the client plays a load balancer: a PROXY protocol header comes first
//! on each connection, before the greeting is read.
//!
//! Every session is a new TCP connection with a full TLS handshake (resumption is off on
//! this side too), from a rotating 127.0.0.x source address so TIME_WAIT never runs out
//! of ports. No pipelining: one command, one reply, as most submission clients do.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rustls::ClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::pki::Pki;
use crate::proxy_header::Proxy;

/// TLS protocol version offered by the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TlsVersion {
    /// TLS 1.2 only.
    V12,
    /// TLS 1.3 only.
    V13,
}

impl TlsVersion {
    /// Label for tables.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::V12 => "TLS 1.2",
            Self::V13 => "TLS 1.3",
        }
    }
}

/// A client TLS configuration presenting the PKI's client certificate, trusting its CA,
/// offering only `version`, without session resumption.
pub(crate) fn tls_config(pki: &Pki, version: TlsVersion) -> Result<Arc<ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pki.ca_pem.as_bytes()) {
        roots.add(c.context("bench CA PEM")?)?;
    }
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(pki.client_pem.as_bytes())
            .collect::<Result<_, _>>()
            .context("client certificate PEM")?;
    let key =
        PrivateKeyDer::from_pem_slice(pki.client_key_pem.as_bytes()).context("client key PEM")?;
    let versions: &[&'static rustls::SupportedProtocolVersion] = match version {
        TlsVersion::V12 => &[&rustls::version::TLS12],
        TlsVersion::V13 => &[&rustls::version::TLS13],
    };
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)?;
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// The `AUTH PLAIN` initial response for `user` and `password` (RFC 4616, no authzid).
pub(crate) fn auth_plain(user: &str, password: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
}

/// A message of about `payload` bytes of body plus headers, dot-terminated.
pub(crate) fn message(payload: usize) -> Vec<u8> {
    let mut m = Vec::with_capacity(payload + 256);
    m.extend_from_slice(
        b"From: <bench@example.org>\r\nTo: <sink@example.net>\r\nSubject: postern-bench\r\nMessage-ID: <bench@postern.test>\r\n\r\n",
    );
    let line = [b'x'; 78];
    let mut left = payload;
    while left > 0 {
        let n = left.min(78);
        m.extend_from_slice(&line[..n]);
        m.extend_from_slice(b"\r\n");
        left = left.saturating_sub(n + 2);
    }
    m.extend_from_slice(b".\r\n");
    m
}

enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Gone,
}

/// One client SMTP connection.
pub(crate) struct Smtp {
    io: Io,
    buf: Vec<u8>,
    start: usize,
}

impl std::fmt::Debug for Smtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Smtp").finish_non_exhaustive()
    }
}

impl Smtp {
    /// Connect from `src` to `addr`.
    pub(crate) async fn connect(addr: SocketAddr, src: Ipv4Addr) -> Result<Self> {
        let sock = TcpSocket::new_v4()?;
        sock.bind(SocketAddr::from((src, 0)))?;
        let tcp = sock.connect(addr).await.context("connect")?;
        tcp.set_nodelay(true)?;
        Ok(Self {
            io: Io::Plain(tcp),
            buf: Vec::with_capacity(1024),
            start: 0,
        })
    }

    async fn fill(&mut self) -> Result<()> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let len = self.buf.len();
        self.buf.resize(len + 4096, 0);
        let n = match &mut self.io {
            Io::Plain(s) => s.read(&mut self.buf[len..]).await?,
            Io::Tls(s) => s.read(&mut self.buf[len..]).await?,
            Io::Gone => 0,
        };
        self.buf.truncate(len + n);
        if n == 0 {
            bail!("connection closed by the server");
        }
        Ok(())
    }

    /// Read one (possibly multi-line) reply: its code and last line.
    pub(crate) async fn reply(&mut self) -> Result<(u16, String)> {
        loop {
            while let Some(pos) = self.buf[self.start..].windows(2).position(|w| w == b"\r\n") {
                let line = &self.buf[self.start..self.start + pos];
                self.start += pos + 2;
                if line.len() >= 4 && line[3] == b'-' {
                    continue;
                }
                let text = String::from_utf8_lossy(line).into_owned();
                let code = text
                    .get(..3)
                    .and_then(|c| c.parse().ok())
                    .with_context(|| format!("malformed reply {text:?}"))?;
                return Ok((code, text));
            }
            self.fill().await?;
        }
    }

    async fn send(&mut self, data: &[u8]) -> Result<()> {
        match &mut self.io {
            Io::Plain(s) => {
                s.write_all(data).await?;
            }
            Io::Tls(s) => {
                s.write_all(data).await?;
                s.flush().await?;
            }
            Io::Gone => bail!("connection gone"),
        }
        Ok(())
    }

    /// Send a command line and expect reply code `want`.
    pub(crate) async fn cmd(&mut self, line: &str, want: u16) -> Result<()> {
        let mut l = Vec::with_capacity(line.len() + 2);
        l.extend_from_slice(line.as_bytes());
        l.extend_from_slice(b"\r\n");
        self.send(&l).await?;
        self.expect(want, line).await
    }

    async fn expect(&mut self, want: u16, after: &str) -> Result<()> {
        let (code, text) = self.reply().await?;
        if code != want {
            bail!("{after}: expected {want}, got {text:?}");
        }
        Ok(())
    }

    /// Send a PROXY protocol header (before anything is read).
    pub(crate) async fn proxy_header(&mut self, header: &[u8]) -> Result<()> {
        self.send(header).await.context("sending the PROXY header")
    }

    /// STARTTLS and the handshake.
    pub(crate) async fn starttls(&mut self, connector: &TlsConnector) -> Result<()> {
        self.cmd("STARTTLS", 220).await?;
        if self.start != self.buf.len() {
            bail!("data after the STARTTLS reply");
        }
        let Io::Plain(tcp) = std::mem::replace(&mut self.io, Io::Gone) else {
            bail!("STARTTLS on a TLS connection");
        };
        let name = ServerName::try_from("localhost").expect("valid name");
        let tls = connector
            .connect(name, tcp)
            .await
            .context("TLS handshake")?;
        self.io = Io::Tls(Box::new(tls));
        self.buf.clear();
        self.start = 0;
        Ok(())
    }

    /// Greeting, EHLO, and (with `tls`) STARTTLS and EHLO again. With `tls`, returns the
    /// handshake time as the client sees it: from sending STARTTLS to the reply to the
    /// EHLO inside TLS. (A TLS 1.3 client finishes its side before the server has checked
    /// the client certificate, so the first reply inside TLS is where the server's share
    /// of the handshake, revocation checks included, shows.)
    pub(crate) async fn open(&mut self, tls: Option<&TlsConnector>) -> Result<Option<Duration>> {
        self.expect(220, "greeting").await?;
        self.cmd("EHLO bench.client.test", 250).await?;
        let Some(c) = tls else {
            return Ok(None);
        };
        let t = Instant::now();
        self.starttls(c).await?;
        self.cmd("EHLO bench.client.test", 250).await?;
        Ok(Some(t.elapsed()))
    }

    /// One transaction with `body` (dot-terminated).
    pub(crate) async fn send_message(&mut self, body: &[u8]) -> Result<()> {
        self.cmd("MAIL FROM:<bench@example.org>", 250).await?;
        self.cmd("RCPT TO:<sink@example.net>", 250).await?;
        self.cmd("DATA", 354).await?;
        self.send(body).await?;
        self.expect(250, "end of DATA").await
    }
}

/// What to run.
#[derive(Clone)]
pub(crate) struct Spec {
    /// Server address.
    pub addr: SocketAddr,
    /// STARTTLS with this configuration, or plaintext.
    pub tls: Option<Arc<ClientConfig>>,
    /// `AUTH PLAIN` with this initial response (base64) after the (last) EHLO.
    pub auth: Option<Arc<str>>,
    /// A PROXY protocol header first on each connection.
    pub proxy: Option<Proxy>,
    /// Messages per session (0: STARTTLS + EHLO + QUIT only).
    pub messages: u32,
    /// The message (see [`message`]).
    pub body: Arc<Vec<u8>>,
    /// Concurrent sessions.
    pub concurrency: usize,
    /// Most sessions to start.
    pub max_sessions: u64,
    /// No new session (nor message) starts after this long.
    pub duration: Duration,
    /// Sessions still running this long after the start are abandoned as errors.
    pub hard_limit: Duration,
}

impl std::fmt::Debug for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spec")
            .field("addr", &self.addr)
            .field("tls", &self.tls.is_some())
            .field("auth", &self.auth.is_some())
            .field("proxy", &self.proxy)
            .field("messages", &self.messages)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

/// Outcome of a load run.
#[derive(Debug, Default)]
pub(crate) struct LoadResult {
    /// Completed sessions (QUIT answered 221).
    pub sessions: u64,
    /// Relayed messages (250 after DATA).
    pub messages: u64,
    /// Failed sessions.
    pub errors: u64,
    /// The first few errors.
    pub first_errors: Vec<String>,
    /// From the start until every session ended.
    pub elapsed: Duration,
    /// Session latencies (connect to the QUIT reply), microseconds.
    pub session_us: Vec<u32>,
    /// Handshake times (STARTTLS to the first reply inside TLS), microseconds.
    pub handshake_us: Vec<u32>,
    /// Message latencies (MAIL to the reply after DATA), microseconds.
    pub message_us: Vec<u32>,
}

/// Source address number `i` (127.0.0.1 .. 127.0.0.100).
pub(crate) fn source(i: u64) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 1 + (i % 100) as u8)
}

async fn session(
    spec: &Spec,
    connector: Option<&TlsConnector>,
    n: u64,
    deadline: Instant,
    r: &mut LoadResult,
) -> Result<()> {
    let t0 = Instant::now();
    let mut c = Smtp::connect(spec.addr, source(n)).await?;
    if let Some(p) = spec.proxy {
        c.proxy_header(&p.header(n)).await?;
    }
    let handshake = c.open(connector).await?;
    if let Some(token) = &spec.auth {
        c.cmd(&format!("AUTH PLAIN {token}"), 235).await?;
    }
    for i in 0..spec.messages {
        if i > 0 && Instant::now() >= deadline {
            break;
        }
        let t = Instant::now();
        c.send_message(&spec.body).await?;
        r.messages += 1;
        r.message_us.push(t.elapsed().as_micros() as u32);
    }
    c.cmd("QUIT", 221).await?;
    r.sessions += 1;
    r.session_us.push(t0.elapsed().as_micros() as u32);
    if let Some(h) = handshake {
        r.handshake_us.push(h.as_micros() as u32);
    }
    Ok(())
}

/// Run the load to completion (bounded by count, time and the hard limit).
pub(crate) async fn run(spec: Spec) -> LoadResult {
    let spec = Arc::new(spec);
    let started = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let deadline = t0 + spec.duration;
    let hard = tokio::time::Instant::from_std(t0 + spec.hard_limit);
    let connector = spec.tls.clone().map(TlsConnector::from);
    let mut tasks = Vec::new();
    for _ in 0..spec.concurrency {
        let (spec, started, connector) = (spec.clone(), started.clone(), connector.clone());
        tasks.push(tokio::spawn(async move {
            let mut r = LoadResult::default();
            loop {
                if Instant::now() >= deadline {
                    break;
                }
                let n = started.fetch_add(1, Ordering::Relaxed);
                if n >= spec.max_sessions {
                    break;
                }
                let res = tokio::time::timeout_at(
                    hard,
                    session(&spec, connector.as_ref(), n, deadline, &mut r),
                )
                .await;
                let err = match res {
                    Ok(Ok(())) => continue,
                    Ok(Err(e)) => format!("{e:#}"),
                    Err(_) => "session still running at the hard time limit".to_owned(),
                };
                r.errors += 1;
                if r.first_errors.len() < 3 {
                    r.first_errors.push(err);
                }
                if tokio::time::Instant::now() >= hard {
                    break;
                }
                // A refused connection should not turn into a busy loop.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            r
        }));
    }
    let mut total = LoadResult::default();
    for t in tasks {
        let Ok(r) = t.await else {
            total.errors += 1;
            continue;
        };
        total.sessions += r.sessions;
        total.messages += r.messages;
        total.errors += r.errors;
        for e in r.first_errors {
            if total.first_errors.len() < 5 {
                total.first_errors.push(e);
            }
        }
        total.session_us.extend(r.session_us);
        total.handshake_us.extend(r.handshake_us);
        total.message_us.extend(r.message_us);
    }
    total.elapsed = t0.elapsed();
    total
}

/// Open `n` connections to `addr` (greeting + EHLO, and with `tls` STARTTLS + EHLO),
/// `parallel` at a time, and return them open. Fails on the first error.
pub(crate) async fn open_idle(
    addr: SocketAddr,
    tls: Option<Arc<ClientConfig>>,
    n: usize,
    parallel: usize,
) -> Result<Vec<Smtp>> {
    let connector = tls.map(TlsConnector::from);
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..parallel.max(1) {
        let (connector, next) = (connector.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n as u64 {
                    return Ok::<_, anyhow::Error>(held);
                }
                let mut c = Smtp::connect(addr, source(i)).await?;
                tokio::time::timeout(Duration::from_secs(60), c.open(connector.as_ref()))
                    .await
                    .context("opening an idle session timed out")??;
                held.push(c);
            }
        }));
    }
    let mut all = Vec::with_capacity(n);
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(all)
}

/// Percentile (0..=100) of microsecond samples, in milliseconds.
pub(crate) fn percentile_ms(samples: &mut [u32], p: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let idx = ((p / 100.0) * (samples.len() - 1) as f64).round() as usize;
    Some(f64::from(samples[idx]) / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_size_and_termination() {
        let m = message(5000);
        assert!(m.len() > 5000 && m.len() < 5300, "{}", m.len());
        assert!(m.ends_with(b"\r\n.\r\n"));
    }

    #[test]
    fn auth_plain_token() {
        assert_eq!(
            auth_plain("tim", "tanstaaftanstaaf"),
            "AHRpbQB0YW5zdGFhZnRhbnN0YWFm"
        );
    }

    #[test]
    fn percentiles() {
        let mut v: Vec<u32> = (1..=100).map(|x| x * 1000).collect();
        assert_eq!(percentile_ms(&mut v, 50.0), Some(51.0));
        assert_eq!(percentile_ms(&mut v, 99.0), Some(99.0));
        assert_eq!(percentile_ms(&mut [], 50.0), None);
    }
}
