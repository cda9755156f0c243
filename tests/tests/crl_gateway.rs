//! CRLs end to end: the real `postern-gateway` fetches CRLs from a local HTTP server and
//! refuses revoked client certificates over real STARTTLS sessions (`openssl s_client`,
//! and a rustls client for sessions held open): a revoked leaf, a revoked intermediate
//! (sent by the client, or in the listener's CA bundle), a stale CRL failing closed, and a
//! CRL replaced while sessions run.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use postern_config::GatewayConfig;
use postern_testkit::crl::{RevokedSpec, crl_pem};
use postern_testkit::file_server::HttpServer;
use postern_testkit::gateway::Gateway;
use postern_testkit::pki::{Ca, Leaf};
use postern_testkit::ports::free_port;
use postern_tests::crl::start_gateway;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

struct Pki {
    dir: tempfile::TempDir,
    server_ca: Ca,
    server: Leaf,
    root: Ca,
    issuing: Ca,
    revoked_issuing: Ca,
}

impl Pki {
    fn new() -> Self {
        let server_ca = Ca::root("E2E Server CA");
        let server = server_ca.server("127.0.0.1");
        let root = Ca::root("E2E Root CA");
        let issuing = Ca::intermediate("E2E Issuing CA 1", &root, &[0x42, 0x01]);
        let revoked_issuing = Ca::intermediate("E2E Issuing CA 2", &root, &[0x42, 0x02]);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("server-ca.pem"), server_ca.cert_pem()).unwrap();
        Self {
            dir,
            server_ca,
            server,
            root,
            issuing,
            revoked_issuing,
        }
    }

    /// Write a client certificate, its key and its chain (the issuing CA) to files.
    fn client(&self, name: &str, ca: &Ca, serial: &[u8]) -> Client {
        let cert = ca.client(name, serial);
        let p = |ext: &str| self.dir.path().join(format!("{name}.{ext}"));
        std::fs::write(p("crt"), &cert.cert_pem).unwrap();
        std::fs::write(p("key"), &cert.key_pem).unwrap();
        std::fs::write(p("chain"), ca.cert_pem()).unwrap();
        Client {
            cert,
            chain_pem: ca.cert_pem(),
            crt: p("crt"),
            key: p("key"),
            chain: p("chain"),
        }
    }

    fn config(&self, port_direct: u16, port_chained: u16, http: &HttpServer) -> GatewayConfig {
        let listener = |port: u16, ca: String| {
            serde_json::json!({
                "address": "127.0.0.1", "port": port, "hostname": "mx.e2e.test",
                "tls": {"certificateChainPem": self.server.cert_pem, "privateKeyPem": self.server.key_pem,
                        "clientCaPem": ca},
                "defaultPolicy": "verify", "nextHop": {"host": "127.0.0.1", "port": free_port()}
            })
        };
        serde_json::from_value(serde_json::json!({
            "apiVersion": "postern.dev/gateway/v1",
            "listeners": {
                // The issuing CA is a trust anchor here (the usual appliance setup)...
                "direct": listener(port_direct, format!("{}{}", self.root.cert_pem(), self.issuing.cert_pem())),
                // ...and only the root here: clients send their intermediate.
                "chained": listener(port_chained, self.root.cert_pem()),
            },
            "policies": {"verify": {"action": "Relay", "tls": "Required", "verifyClientCertificate": true}},
            "crlSources": {
                "root": {"format": "Asn1", "primaryUrl": http.url("/root.crl"), "interval": "1s",
                         "appliesTo": ["InboundSmtpTls"]},
                "issuing": {"format": "Pem", "primaryUrl": http.url("/issuing.pem"), "interval": "1s",
                            "appliesTo": ["InboundSmtpTls"]}
            }
        }))
        .unwrap()
    }
}

struct Client {
    cert: Leaf,
    chain_pem: String,
    crt: PathBuf,
    key: PathBuf,
    chain: PathBuf,
}

/// `openssl s_client -starttls smtp` with a client certificate and its chain, sending EHLO
/// and QUIT once TLS is up.
fn s_client(port: u16, client: &Client, server_ca: &Path) -> String {
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-starttls",
            "smtp",
            "-crlf",
            "-ign_eof",
            "-connect",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(&client.crt)
        .arg("-key")
        .arg(&client.key)
        .arg("-cert_chain")
        .arg(&client.chain)
        .arg("-CAfile")
        .arg(server_ca)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl is required (tests/support/install-deps.sh installs it)");
    let mut stdin = child.stdin.take().unwrap();
    std::thread::spawn(move || {
        // Give the handshake time to finish (a TLS 1.3 client learns of a refused
        // certificate only when it reads).
        std::thread::sleep(Duration::from_millis(300));
        // `-crlf` turns each newline into CRLF.
        let _ = stdin.write_all(b"EHLO client.e2e.test\nQUIT\n");
    });
    let out = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn accepted(out: &str) -> bool {
    out.contains("250-mx.e2e.test") && out.contains("221 ")
}

/// An SMTP session over STARTTLS with a client certificate (rustls), held open.
struct Session {
    r: BufReader<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>,
}

impl Session {
    fn open(port: u16, pki: &Pki, client: &Client) -> Result<Self, String> {
        let err = |e: &dyn std::fmt::Display| e.to_string();
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| err(&e))?;
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut plain = BufReader::new(tcp.try_clone().unwrap());
        reply(&mut plain).map_err(|e| err(&e))?;
        tcp.write_all(b"EHLO client.e2e.test\r\n").unwrap();
        reply(&mut plain).map_err(|e| err(&e))?;
        tcp.write_all(b"STARTTLS\r\n").unwrap();
        let r = reply(&mut plain).map_err(|e| err(&e))?;
        assert!(r.starts_with("220"), "{r}");
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(pki.server_ca.cert_der()))
            .unwrap();
        let mut chain: Vec<CertificateDer<'static>> =
            vec![CertificateDer::from(client.cert.cert_der.clone())];
        chain.extend(
            CertificateDer::pem_slice_iter(client.chain_pem.as_bytes()).map(|c| c.unwrap()),
        );
        let key = PrivateKeyDer::from_pem_slice(client.cert.key_pem.as_bytes()).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
        let conn = rustls::ClientConnection::new(
            Arc::new(config),
            ServerName::try_from("127.0.0.1").unwrap(),
        )
        .unwrap();
        let mut s = Session {
            r: BufReader::new(rustls::StreamOwned::new(conn, tcp)),
        };
        let ehlo = s.cmd("EHLO client.e2e.test")?;
        if !ehlo.starts_with("250") {
            return Err(ehlo);
        }
        Ok(s)
    }

    fn cmd(&mut self, line: &str) -> Result<String, String> {
        self.r
            .get_mut()
            .write_all(format!("{line}\r\n").as_bytes())
            .map_err(|e| e.to_string())?;
        reply(&mut self.r).map_err(|e| e.to_string())
    }
}

fn reply(r: &mut impl BufRead) -> std::io::Result<String> {
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line.len() < 4 || line.as_bytes()[3] == b' ' {
            return Ok(line);
        }
    }
}

/// Waits (up to 10 s) until the gateway has logged at least `at_least` TLS
/// refusals whose reason starts with `reason`, and returns the count. The
/// decision line is written after the alert is sent, so the client can see
/// the refusal a moment before the log does.
fn refusals(gw: &Gateway, reason: &str, at_least: usize) -> usize {
    let count = || {
        gw.log()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| {
                v["decision"] == "tls"
                    && v["outcome"] == "failed"
                    && v["reason"].as_str().is_some_and(|r| r.starts_with(reason))
            })
            .count()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let n = count();
        if n >= at_least || std::time::Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

struct Setup {
    pki: Pki,
    http: HttpServer,
    gw: Gateway,
    direct: u16,
    chained: u16,
}

fn setup() -> Setup {
    let pki = Pki::new();
    let http = HttpServer::start();
    http.put(
        "/root.crl",
        pki.root.current_crl(1, &[&pki.revoked_issuing.serial]),
    );
    http.put(
        "/issuing.pem",
        crl_pem(&pki.issuing.current_crl(1, &[&[0x11, 0x02]])).into_bytes(),
    );
    let (direct, chained) = (free_port(), free_port());
    let config = pki.config(direct, chained, &http);
    let gw = start_gateway(&config, &[], "info").unwrap();
    gw.wait_crl("root", "the root CRL", |s| s["entries"] == 1);
    gw.wait_crl("issuing", "the issuing CA's CRL", |s| s["entries"] == 1);
    Setup {
        pki,
        http,
        gw,
        direct,
        chained,
    }
}

#[test]
fn revoked_client_certificates_and_intermediates_are_refused_with_certificate_revoked() {
    let Setup {
        pki,
        http: _http,
        gw,
        direct,
        chained,
    } = setup();
    let server_ca = pki.dir.path().join("server-ca.pem");
    let alice = pki.client("alice", &pki.issuing, &[0x11, 0x01]);
    let mallory = pki.client("mallory", &pki.issuing, &[0x11, 0x02]);
    let bob = pki.client("bob", &pki.revoked_issuing, &[0x22, 0x01]);

    for port in [direct, chained] {
        let out = s_client(port, &alice, &server_ca);
        assert!(accepted(&out), "alice on {port}: {out}");
        let out = s_client(port, &mallory, &server_ca);
        assert!(
            out.contains("certificate revoked"),
            "mallory on {port}: {out}"
        );
        assert!(!out.contains("221 "), "mallory's session went on: {out}");
        // Bob's issuing CA is revoked by the root's CRL.
        let out = s_client(port, &bob, &server_ca);
        assert!(out.contains("certificate revoked"), "bob on {port}: {out}");
    }
    assert!(refusals(&gw, "revoked", 4) >= 4, "{}", gw.log());
    let (_, metrics) = gw.http_get("/metrics").unwrap();
    assert!(
        metrics.contains(
            "postern_crl_certificate_rejections_total{source=\"issuing\",reason=\"revoked\"} 2"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "postern_crl_certificate_rejections_total{source=\"root\",reason=\"revoked\"} 2"
        ),
        "{metrics}"
    );
    // The rustls client sees the alert too.
    let e = Session::open(chained, &pki, &mallory)
        .err()
        .expect("refused");
    assert!(e.contains("CertificateRevoked"), "{e}");
    // The status the controller copies into CrlSource.
    let st = gw.crl_status("root").unwrap();
    assert_eq!(st["servedBy"], "primary");
    assert_eq!(st["issuer"], "CN=E2E Root CA, O=Postern Test PKI");
    for field in ["lastFetchTime", "thisUpdate", "nextUpdate"] {
        assert!(st[field].is_string(), "{field}: {st}");
    }
}

#[test]
fn a_stale_crl_fails_closed_until_a_current_one_arrives() {
    let Setup {
        pki,
        http,
        gw,
        direct,
        ..
    } = setup();
    let server_ca = pki.dir.path().join("server-ca.pem");
    let alice = pki.client("alice", &pki.issuing, &[0x11, 0x01]);
    assert!(accepted(&s_client(direct, &alice, &server_ca)));

    // The CA publishes late: the newest CRL it has is already past nextUpdate.
    http.put(
        "/issuing.pem",
        crl_pem(
            pki.issuing
                .crl(
                    2,
                    &[RevokedSpec::key_compromise(&[0x11, 0x02])],
                    -3 * 3600,
                    -3600,
                )
                .der(),
        )
        .into_bytes(),
    );
    let st = gw.wait_crl("issuing", "the stale CRL", |s| s["crlNumber"] == "2");
    assert_eq!(st["stale"], true);
    assert!(st["secondsUntilStale"].as_i64().unwrap() < -3000, "{st}");
    let out = s_client(direct, &alice, &server_ca);
    assert!(out.contains("unknown ca"), "alice with a stale CRL: {out}");
    assert!(!out.contains("221 "), "{out}");
    assert!(refusals(&gw, "crl_stale", 1) >= 1, "{}", gw.log());
    let (_, metrics) = gw.http_get("/metrics").unwrap();
    assert!(
        metrics.contains("postern_crl_stale{source=\"issuing\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "postern_crl_certificate_rejections_total{source=\"issuing\",reason=\"stale\"}"
        ),
        "{metrics}"
    );
    assert!(gw.log().contains("past nextUpdate"), "{}", gw.log());
    // Other CAs are not affected: the root's CRL is current.
    let st = gw.crl_status("root").unwrap();
    assert_eq!(st["stale"], false);

    // A current CRL: accepted again.
    http.put(
        "/issuing.pem",
        crl_pem(&pki.issuing.current_crl(3, &[&[0x11, 0x02]])).into_bytes(),
    );
    gw.wait_crl("issuing", "a current CRL", |s| {
        s["crlNumber"] == "3" && s["stale"] == false
    });
    assert!(accepted(&s_client(direct, &alice, &server_ca)));
}

#[test]
fn an_issuing_ca_revoked_by_the_root_is_refused_even_where_it_is_a_trust_anchor() {
    let Setup {
        pki,
        http,
        gw,
        direct,
        chained,
    } = setup();
    let server_ca = pki.dir.path().join("server-ca.pem");
    let alice = pki.client("alice", &pki.issuing, &[0x11, 0x01]);
    assert!(accepted(&s_client(direct, &alice, &server_ca)));

    // The root revokes Issuing CA 1, which the direct listener has in its bundle.
    http.put(
        "/root.crl",
        pki.root
            .current_crl(2, &[&pki.revoked_issuing.serial, &pki.issuing.serial]),
    );
    gw.wait_crl("root", "the root CRL revoking Issuing CA 1", |s| {
        s["entries"] == 2
    });
    for port in [direct, chained] {
        let out = s_client(port, &alice, &server_ca);
        assert!(
            out.contains("certificate revoked"),
            "alice on {port}: {out}"
        );
        assert!(!out.contains("221 "), "alice's session went on: {out}");
    }
    assert!(refusals(&gw, "revoked", 2) >= 2, "{}", gw.log());
    // The decision line names the client's certificate and the revoked CA.
    let line = gw
        .log()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["decision"] == "tls" && v["outcome"] == "failed")
        .expect("a refusal line");
    assert_eq!(line["cert_subject"], "CN=alice", "{line}");
    assert_eq!(line["cert_serial"], "1101", "{line}");
    let reason = line["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("revoked: certificate CN=E2E Issuing CA 1")
            && reason.contains("(serial 4201) is revoked by CRL source root"),
        "{line}"
    );
}

#[test]
fn crl_replaced_while_sessions_run() {
    let Setup {
        pki,
        http,
        gw,
        chained,
        ..
    } = setup();
    let alice = Arc::new(pki.client("alice", &pki.issuing, &[0x11, 0x01]));
    let carol = Arc::new(pki.client("carol", &pki.issuing, &[0x11, 0x03]));
    let pki = Arc::new(pki);

    // Alice is in a session; Carol keeps opening new ones.
    let mut held = Session::open(chained, &pki, &alice).expect("alice's session");
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load = {
        let (pki, carol, stop, ok, failed) = (
            pki.clone(),
            carol.clone(),
            stop.clone(),
            ok.clone(),
            failed.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match Session::open(chained, &pki, &carol).and_then(|mut s| s.cmd("QUIT")) {
                    Ok(r) if r.starts_with("221") => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };

    // The CA revokes Alice; the gateway picks the new CRL up on its schedule.
    let started = Instant::now();
    http.put(
        "/issuing.pem",
        crl_pem(&pki.issuing.current_crl(2, &[&[0x11, 0x02], &[0x11, 0x01]])).into_bytes(),
    );
    gw.wait_crl("issuing", "the replaced CRL", |s| {
        s["crlNumber"] == "2" && s["entries"] == 2
    });
    let swapped_in = started.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();

    // The session in progress was verified at its handshake and goes on.
    assert!(held.cmd("NOOP").unwrap().starts_with("250"));
    assert!(held.cmd("QUIT").unwrap().starts_with("221"));
    // New sessions of Alice are refused; Carol was never disturbed.
    let e = Session::open(chained, &pki, &alice)
        .err()
        .expect("alice refused now");
    assert!(e.contains("CertificateRevoked"), "{e}");
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "sessions failed during the swap"
    );
    assert!(ok.load(Ordering::Relaxed) > 0);
    assert!(swapped_in < Duration::from_secs(10), "{swapped_in:?}");
}
