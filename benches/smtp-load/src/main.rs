//! Session-rate load client for benchmarks (docs/benchmarks.md): each worker loops
//! connect → EHLO → STARTTLS (client certificate) → EHLO → QUIT for a fixed time, against
//! the gateway or a Postfix configured the same way.
//!
//! `smtp-tls-load HOST:PORT CERT KEY [--workers N] [--seconds S] [--implicit]`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[derive(Debug)]
struct AnyServer(rustls::crypto::WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

async fn reply<R: AsyncRead + Unpin>(r: &mut BufReader<R>, line: &mut String) -> Result<u16> {
    loop {
        line.clear();
        if r.read_line(line).await? == 0 {
            bail!("connection closed");
        }
        if line.len() < 4 || line.as_bytes()[3] != b'-' {
            return Ok(line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0));
        }
    }
}

async fn converse<S: AsyncRead + AsyncWrite + Unpin>(s: S, greeting: bool) -> Result<()> {
    let mut r = BufReader::new(s);
    let mut line = String::new();
    if greeting && reply(&mut r, &mut line).await? != 220 {
        bail!("greeting: {line}");
    }
    r.get_mut().write_all(b"EHLO load.test\r\n").await?;
    if reply(&mut r, &mut line).await? != 250 {
        bail!("EHLO: {line}");
    }
    r.get_mut().write_all(b"QUIT\r\n").await?;
    reply(&mut r, &mut line).await?;
    Ok(())
}

async fn session(addr: &str, config: &Arc<ClientConfig>, implicit: bool) -> Result<()> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let connector = tokio_rustls::TlsConnector::from(config.clone());
    let name = ServerName::try_from("localhost")?;
    if implicit {
        let tls = connector.connect(name, tcp).await?;
        return converse(tls, true).await;
    }
    let mut r = BufReader::new(tcp);
    let mut line = String::new();
    if reply(&mut r, &mut line).await? != 220 {
        bail!("greeting: {line}");
    }
    r.get_mut().write_all(b"EHLO load.test\r\n").await?;
    reply(&mut r, &mut line).await?;
    r.get_mut().write_all(b"STARTTLS\r\n").await?;
    if reply(&mut r, &mut line).await? != 220 {
        bail!("STARTTLS: {line}");
    }
    let tls = connector.connect(name, r.into_inner()).await?;
    converse(tls, false).await
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        bail!("usage: smtp-tls-load HOST:PORT CERT KEY [--workers N] [--seconds S] [--implicit]");
    }
    let flag = |name: &str, default: u64| -> u64 {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let workers = flag("--workers", 16);
    let seconds = flag("--seconds", 10);
    let implicit = args.iter().any(|a| a == "--implicit");
    let certs = CertificateDer::pem_file_iter(&args[2])?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(&args[3]).context("client key")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(
            provider.signature_verification_algorithms,
        )))
        .with_client_auth_cert(certs, key)?;
    // Full handshakes only: no side may resume, so every session verifies the certificate.
    let mut config = config;
    config.resumption = rustls::client::Resumption::disabled();
    let config = Arc::new(config);
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (addr, config, ok, failed) =
            (args[1].clone(), config.clone(), ok.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                match session(&addr, &config, implicit).await {
                    Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        if failed.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("session failed: {e:#}");
                        }
                        0
                    }
                };
            }
        }));
    }
    let started = Instant::now();
    for t in tasks {
        t.await?;
    }
    let secs = started.elapsed().as_secs_f64();
    let n = ok.load(Ordering::Relaxed);
    println!(
        "{n} sessions in {secs:.1} s = {:.0} sessions/s ({} failed, {workers} workers)",
        n as f64 / secs,
        failed.load(Ordering::Relaxed)
    );
    Ok(())
}
