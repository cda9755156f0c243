//! The session load of the CRL benchmarks: STARTTLS + client certificate + EHLO + QUIT
//! against a real `postern-gateway`, full handshakes only (no resumption), `concurrency`
//! clients in a loop; the rate, the gateway's CPU time per session, and the latency of
//! each TLS handshake. Also their command-line options and the machine's load.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use postern_testkit::gateway::Gateway;
use postern_testkit::pki::Ca;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

async fn read_reply(r: &mut (impl AsyncBufReadExt + Unpin)) -> std::io::Result<String> {
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line.len() < 4 || line.as_bytes()[3] == b' ' {
            return Ok(line);
        }
    }
}

/// One session; returns how long the TLS handshake took (client certificate verified,
/// revocation checked).
pub async fn session(
    addr: SocketAddr,
    tls: &tokio_rustls::TlsConnector,
) -> std::io::Result<Duration> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let mut r = BufReader::new(tcp);
    read_reply(&mut r).await?;
    r.get_mut().write_all(b"EHLO bench.client\r\n").await?;
    read_reply(&mut r).await?;
    r.get_mut().write_all(b"STARTTLS\r\n").await?;
    let reply = read_reply(&mut r).await?;
    if !reply.starts_with("220") {
        return Err(std::io::Error::other(format!("STARTTLS: {reply}")));
    }
    let name = ServerName::try_from("127.0.0.1").expect("name");
    let started = Instant::now();
    let stream = tls.connect(name, r.into_inner()).await?;
    let mut r = BufReader::new(stream);
    r.get_mut().write_all(b"EHLO bench.client\r\n").await?;
    // The server's verdict on the certificate arrives with its first reply (TLS 1.3
    // finishes the client's side before the server has checked it).
    let reply = read_reply(&mut r).await?;
    let handshake = started.elapsed();
    if !reply.starts_with("250") {
        return Err(std::io::Error::other(format!("EHLO after TLS: {reply}")));
    }
    r.get_mut().write_all(b"QUIT\r\n").await?;
    read_reply(&mut r).await?;
    Ok(handshake)
}

/// A TLS client trusting `server_ca`, presenting `cert_pem` (the chain) with `key_pem`.
pub fn connector(server_ca: &Ca, cert_pem: &str, key_pem: &str) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(server_ca.cert_der()))
        .expect("root");
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("client chain");
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("client key");
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .expect("client cert");
    // Full handshakes only: every session verifies the client certificate (and its CRL).
    config.resumption = rustls::client::Resumption::disabled();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// What a run measured.
#[derive(Debug, Default)]
pub struct Round {
    /// Sessions per second.
    pub rate: f64,
    /// Failed sessions.
    pub failed: u64,
    /// Gateway CPU time per session, microseconds.
    pub cpu_us: f64,
    /// Each successful session: when its handshake ended, and how long it took.
    pub handshakes: Vec<(Instant, Duration)>,
}

impl Round {
    /// "N sessions/s (F failed, C us gateway CPU each)".
    pub fn summary(&self) -> String {
        format!(
            "{:.0} sessions/s ({} failed, {:.0} us gateway CPU each)",
            self.rate, self.failed, self.cpu_us
        )
    }
}

/// `concurrency` clients in a loop against `addr` (served by `gateway`) until `stop` is
/// set, then the rate, CPU per session and every handshake's latency.
pub async fn run_until(
    gateway: &Gateway,
    addr: SocketAddr,
    tls: &tokio_rustls::TlsConnector,
    concurrency: usize,
    stop: Arc<AtomicBool>,
) -> Round {
    let cpu_before = gateway.cpu_time();
    let failed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (failed, stop, tls) = (failed.clone(), stop.clone(), tls.clone());
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match session(addr, &tls).await {
                    Ok(h) => seen.push((Instant::now(), h)),
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            seen
        }));
    }
    let mut handshakes = Vec::new();
    for t in tasks {
        handshakes.extend(t.await.unwrap_or_default());
    }
    let elapsed = start.elapsed().as_secs_f64();
    let n = handshakes.len();
    let cpu = gateway.cpu_time().saturating_sub(cpu_before);
    Round {
        rate: n as f64 / elapsed,
        failed: failed.load(Ordering::Relaxed),
        cpu_us: cpu.as_secs_f64() * 1e6 / n.max(1) as f64,
        handshakes,
    }
}

/// [`run_until`] for `seconds`.
pub async fn measure(
    gateway: &Gateway,
    addr: SocketAddr,
    tls: &tokio_rustls::TlsConnector,
    seconds: u64,
    concurrency: usize,
) -> Round {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let timer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        s.store(true, Ordering::Relaxed);
    });
    let round = run_until(gateway, addr, tls, concurrency, stop).await;
    let _ = timer.await;
    round
}

/// The `q`-quantile (0..=1) of `latencies`, milliseconds.
pub fn quantile_ms(latencies: &mut [Duration], q: f64) -> f64 {
    if latencies.is_empty() {
        return f64::NAN;
    }
    latencies.sort_unstable();
    let i = ((latencies.len() - 1) as f64 * q).round() as usize;
    latencies[i].as_secs_f64() * 1e3
}

/// The value after the benchmark option `name` (`--seconds 5`), or `default`.
pub fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The machine's 1, 5 and 15-minute load averages.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}
