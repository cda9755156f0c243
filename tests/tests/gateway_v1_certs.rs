//! End to end: X.509 version 1 client certificates, as a bare `openssl x509 -req -CA`
//! makes them, through the real gateway with swaks and `openssl s_client -starttls smtp`:
//! accepted and relayed to smtp-sink when they chain to the client CA (directly or through
//! a version 3 intermediate the client sends), refused with the same alerts as version 3
//! certificates otherwise (`unknown ca`, `certificate expired`, `certificate revoked` from
//! the CA's CRL), and in lenient mode (no `verifyClientCertificate`) used for certificate
//! authentication instead of being ignored — on a listener that opts in with
//! `tls.allowVersion1ClientCertificates`. Without it (the default), a version 1
//! certificate is refused at the handshake (`certificate unknown`, reason
//! `version1_not_allowed`) or ignored, and never mapped. And the attack of a version 1
//! leaf followed by many self-made "CA" certificates named as its issuer: refused at once,
//! while other clients still get their banner and `/healthz` answers.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use postern_config::{self as cfg, TlsMode};
use postern_testkit::file_server::HttpServer;
use postern_testkit::gateway::Gateway;
use postern_testkit::pki::{Ca, generalized_time};
use postern_testkit::ports::free_port;
use postern_testkit::sink::Sink;
use postern_tests::clients::{Run, openssl, python, swaks};
use postern_tests::gateway::{listener, policy, start_gateway, user};
use postern_tests::openssl_ca::{Issued, OpensslCa};
use rustls_pki_types::pem::PemObject;

struct Pki {
    dir: tempfile::TempDir,
    root: OpensslCa,
    alice: Issued,
    other_ca: Issued,
    expired: Issued,
    bob: Issued,
    bob_chain: std::path::PathBuf,
    mid: Issued,
    mallory: Issued,
    crl_pem: String,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let root = OpensslCa::root(d, "root", "V1 Test Root CA").unwrap();
    let other = OpensslCa::root(d, "other", "V1 Other CA").unwrap();
    let mid = root.intermediate("mid", "V1 Test Issuing CA").unwrap();
    let alice = root.issue_v1("alice", "/CN=ALICE.1", 11).unwrap();
    let other_ca = other.issue_v1("otherca", "/CN=ALICE.1", 12).unwrap();
    let expired = root
        .issue_v1_dated("expired", "ALICE.1", "20200101000000Z", "20200201000000Z")
        .unwrap();
    let bob = mid.issue_v1("bob", "/CN=BOB.2", 13).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let mallory = root
        .issue_v1_dated(
            "mallory",
            "MALLORY.3",
            &generalized_time(now - time::Duration::days(1)),
            &generalized_time(now + time::Duration::days(1)),
        )
        .unwrap();
    root.revoke(&mallory).unwrap();
    let crl_pem = root.crl_pem().unwrap();
    for cert in [&alice, &other_ca, &expired, &bob, &mallory] {
        let text = cert.text();
        assert!(
            text.contains("Version: 1 (0x0)"),
            "not a version 1 certificate: {text}"
        );
    }
    assert!(mid.ca.text().contains("Version: 3"));
    // Bob's certificate followed by his issuing CA, for smtplib (which sends the file's
    // chain).
    let bob_chain = d.join("bob-chain.crt");
    std::fs::write(
        &bob_chain,
        format!("{}{}", bob.cert_pem(), mid.ca.cert_pem()),
    )
    .unwrap();
    Pki {
        root,
        alice,
        other_ca,
        expired,
        bob,
        bob_chain,
        mid: mid.ca.clone(),
        mallory,
        crl_pem,
        dir,
    }
}

fn users() -> Vec<cfg::StaticUser> {
    vec![
        user("alice", None, Some("ALICE.1"), true),
        user("bob", None, Some("BOB.2"), true),
        user("mallory", None, Some("MALLORY.3"), true),
    ]
}

/// Listener `verify` (verifyClientCertificate) and listener `lenient` (certificate
/// authentication without it), both with the root as client CA and its CRL in force, and
/// `allowVersion1ClientCertificates` as given.
fn config(
    verify_port: u16,
    lenient_port: u16,
    sink_port: u16,
    pki: &Pki,
    http: &HttpServer,
    allow_v1: bool,
) -> cfg::GatewayConfig {
    let server = Ca::long_lived("V1 Test Server CA").localhost_server();
    let tls = cfg::ListenerTls {
        certificate_chain_pem: server.cert_pem.clone(),
        private_key_pem: server.key_pem.clone(),
        client_ca_pem: Some(pki.root.ca.cert_pem()),
        allow_version1_client_certificates: allow_v1,
        revocation: Default::default(),
    };
    let mut verify = listener(verify_port, sink_port, "verify");
    verify.tls = Some(tls.clone());
    verify.auth_profile = Some("cert".into());
    let mut lenient = listener(lenient_port, sink_port, "lenient");
    lenient.tls = Some(tls);
    lenient.auth_profile = Some("cert".into());
    let profile = cfg::AuthProfile {
        certificate: Some(cfg::CertificateAuth {
            required_policies: Vec::new(),
            required_ekus: Vec::new(),

            backend: cfg::AuthBackend::Static { users: users() },
        }),
        smtp_auth: None,
    };
    let crl: cfg::CrlSource = serde_json::from_value(serde_json::json!({
        "format": "Pem", "primaryUrl": http.url("/root.pem"), "interval": "1s",
        "appliesTo": ["InboundSmtpTls"]
    }))
    .unwrap();
    cfg::GatewayConfig {
        listeners: BTreeMap::from([("verify".into(), verify), ("lenient".into(), lenient)]),
        policies: BTreeMap::from([
            (
                "verify".into(),
                policy(TlsMode::Required, true, true, false),
            ),
            (
                "lenient".into(),
                policy(TlsMode::Required, false, true, false),
            ),
        ]),
        auth_profiles: BTreeMap::from([("cert".into(), profile)]),
        crl_sources: BTreeMap::from([("root".into(), crl)]),
        ..cfg::GatewayConfig::default()
    }
}

/// Wait until the root's CRL is in force.
fn wait_crl(gw: &Gateway) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, body) = gw.http_get("/crl/root").unwrap();
        let status: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        if code == 200 && status["entries"] == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "CRL not loaded: {code} {body}\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// swaks over STARTTLS presenting `cert` and `key`.
fn send(port: u16, cert: &Path, key: &Path) -> Run {
    swaks(
        port,
        &[
            "--from",
            "a@example.org",
            "--to",
            "b@example.net",
            "--tls",
            "--tls-cert",
            &path(cert),
            "--tls-key",
            &path(key),
        ],
    )
    .unwrap()
}

/// `openssl s_client -starttls smtp` presenting `cert`, with extra arguments.
fn s_client(port: u16, cert: &Issued, extra: &[&str]) -> Run {
    let mut args = vec![
        "-cert".to_owned(),
        path(&cert.cert),
        "-key".to_owned(),
        path(&cert.key),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    openssl(port, true, &args, "EHLO client.test\r\nQUIT\r\n").unwrap()
}

fn refused(r: &Run, alert: &str, who: &str) {
    assert!(r.has(alert), "{who}: no {alert:?} in {}", r.output);
    assert!(
        !r.has("221 2.0.0"),
        "{who}: the session went on: {}",
        r.output
    );
}

#[test]
fn version_1_client_certificates_are_verified_like_version_3_ones() {
    let pki = pki();
    let sink = Sink::start(&[]).unwrap();
    let http = HttpServer::start();
    http.put("/root.pem", pki.crl_pem.clone().into_bytes());
    let (verify, lenient) = (free_port(), free_port());
    let gw = start_gateway(&config(verify, lenient, sink.port, &pki, &http, true)).unwrap();
    wait_crl(&gw);

    // A v1 certificate from the client CA: accepted, mapped, relayed.
    let r = send(verify, &pki.alice.cert, &pki.alice.key);
    assert!(r.has("250 2.0.0 Ok: queued"), "{}", r.output);
    let m = &sink.wait_for(1, Duration::from_secs(5))[0];
    assert!(
        m.message
            .contains("(authenticated as alice by certificate)"),
        "{}",
        m.message
    );
    // openssl, TLS 1.3 and TLS 1.2 (each checks the client's handshake signature with
    // the v1 certificate's key).
    for version in ["-tls1_3", "-tls1_2"] {
        let r = s_client(verify, &pki.alice, &[version]);
        assert!(
            r.has("250-gw.test.postern.dev") && r.has("221 2.0.0"),
            "{version}: {}",
            r.output
        );
    }

    // Through a v3 intermediate the client sends: openssl with -cert_chain, Python's
    // smtplib with the chain in the certificate file (swaks sends only the leaf).
    let r = s_client(verify, &pki.bob, &["-cert_chain", &path(&pki.mid.cert)]);
    assert!(
        r.has("250-gw.test.postern.dev") && r.has("221 2.0.0"),
        "{}",
        r.output
    );
    let script = format!(
        r#"
import smtplib, ssl
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.load_cert_chain({chain:?}, {key:?})
s = smtplib.SMTP("127.0.0.1", {verify}, timeout=15)
s.starttls(context=ctx)
s.sendmail("a@example.org", ["b@example.net"], "Subject: v1\r\n\r\nthrough an intermediate\r\n")
s.quit()
print("SENT")
"#,
        chain = path(&pki.bob_chain),
        key = path(&pki.bob.key),
    );
    let r = python(&script).unwrap();
    assert!(r.has("SENT"), "{}", r.output);
    let m = &sink.wait_for(2, Duration::from_secs(5))[1];
    assert!(
        m.message.contains("(authenticated as bob by certificate)"),
        "{}",
        m.message
    );
    // Without the intermediate, nothing links bob to the root.
    refused(&s_client(verify, &pki.bob, &[]), "unknown ca", "bob alone");

    // Refusals, with the alerts a v3 certificate gets.
    refused(
        &s_client(verify, &pki.other_ca, &[]),
        "unknown ca",
        "other CA",
    );
    refused(
        &s_client(verify, &pki.expired, &[]),
        "certificate expired",
        "expired",
    );
    refused(
        &s_client(verify, &pki.mallory, &[]),
        "certificate revoked",
        "revoked",
    );
    let r = send(verify, &pki.mallory.cert, &pki.mallory.key);
    assert!(!r.has("250 2.0.0 Ok: queued"), "{}", r.output);
    gw.wait_log_line(Duration::from_secs(10), |v| {
        v["decision"] == "tls"
            && v["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("revoked"))
    })
    .expect("the revocation is logged");
    let reasons: Vec<String> = gw
        .decisions()
        .iter()
        .filter(|v| v["decision"] == "tls" && v["outcome"] == "failed")
        .map(|v| v["reason"].as_str().unwrap_or("").to_owned())
        .collect();
    for reason in ["unknown_issuer", "expired", "revoked"] {
        assert!(
            reasons.iter().any(|r| r.starts_with(reason)),
            "{reason} not in {reasons:?}"
        );
    }

    // Lenient mode: the v1 certificate authenticates; invalid ones are ignored (530).
    let r = send(lenient, &pki.alice.cert, &pki.alice.key);
    assert!(r.has("250 2.0.0 Ok: queued"), "{}", r.output);
    let m = &sink.wait_for(3, Duration::from_secs(5))[2];
    assert!(
        m.message
            .contains("(authenticated as alice by certificate)"),
        "{}",
        m.message
    );
    for (name, cert) in [
        ("revoked", &pki.mallory),
        ("expired", &pki.expired),
        ("other CA", &pki.other_ca),
    ] {
        let r = send(lenient, &cert.cert, &cert.key);
        assert!(r.has("530 5.7.0"), "{name}: {}", r.output);
    }
    assert_eq!(sink.messages().len(), 3);
    drop(pki.dir);
}

/// Waits (up to 10 s) until at least `n` decision lines satisfy `pred`; returns them.
fn wait_decisions(
    gw: &Gateway,
    n: usize,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found: Vec<serde_json::Value> = gw.decisions().into_iter().filter(&pred).collect();
        if found.len() >= n || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn tls_refusal(v: &serde_json::Value, reason: &str) -> bool {
    v["decision"] == "tls"
        && v["outcome"] == "failed"
        && v["reason"].as_str().is_some_and(|r| r.starts_with(reason))
}

#[test]
fn without_the_opt_in_a_version_1_certificate_is_refused_and_never_mapped() {
    let pki = pki();
    // The same user's certificate from the same CA, made with -extfile: version 3.
    let alice_v3 = pki.root.issue_v3("alice3", "/CN=ALICE.1", 21).unwrap();
    assert!(alice_v3.text().contains("Version: 3 (0x2)"));
    let sink = Sink::start(&[]).unwrap();
    let http = HttpServer::start();
    http.put("/root.pem", pki.crl_pem.clone().into_bytes());
    let (verify, lenient) = (free_port(), free_port());
    let gw = start_gateway(&config(verify, lenient, sink.port, &pki, &http, false)).unwrap();
    wait_crl(&gw);

    // Control: the version 3 certificate is accepted and mapped.
    let r = s_client(verify, &alice_v3, &[]);
    assert!(
        r.has("250-gw.test.postern.dev") && r.has("221 2.0.0"),
        "{}",
        r.output
    );

    // The version 1 certificate: refused at the handshake (TLS 1.3 and 1.2, and swaks),
    // with the alert webpki gives any certificate of a version it does not support.
    for version in ["-tls1_3", "-tls1_2"] {
        refused(
            &s_client(verify, &pki.alice, &[version]),
            "certificate unknown",
            version,
        );
    }
    let r = send(verify, &pki.alice.cert, &pki.alice.key);
    assert!(!r.has("250 2.0.0 Ok: queued"), "{}", r.output);
    let lines = wait_decisions(&gw, 3, |v| tls_refusal(v, "version1_not_allowed"));
    assert_eq!(lines.len(), 3, "{}", gw.log());
    for line in &lines {
        // The decision names the certificate and says what to change.
        assert_eq!(line["cert_subject"], "CN=ALICE.1", "{line}");
        assert!(
            line["reason"]
                .as_str()
                .unwrap()
                .contains("tls.allowVersion1ClientCertificates"),
            "{line}"
        );
    }

    // Lenient listener: ignored as if none had been sent, so the session is not
    // authenticated and cannot send.
    let r = send(lenient, &pki.alice.cert, &pki.alice.key);
    assert!(r.replied("530"), "{}", r.output);
    let ignored = wait_decisions(&gw, 1, |v| {
        v["decision"] == "certificate"
            && v["outcome"] == "ignored"
            && v["reason"]
                .as_str()
                .is_some_and(|r| r.contains("version1_not_allowed"))
    });
    assert_eq!(ignored.len(), 1, "{}", gw.log());

    // Never mapped: the one certificate authentication is the version 3 control's.
    let mapped: Vec<serde_json::Value> = gw
        .decisions()
        .into_iter()
        .filter(|v| v["decision"] == "certificate_auth")
        .collect();
    assert_eq!(mapped.len(), 1, "{mapped:?}");
    assert_eq!(mapped[0]["outcome"], "authenticated");
    assert_eq!(mapped[0]["cert_serial"], "15", "{}", mapped[0]);

    let (_, metrics) = gw.http_get("/metrics").unwrap();
    for line in [
        r#"postern_tls_handshakes_total{listener="verify",outcome="failed",reason="version1_not_allowed"} 3"#,
        r#"postern_client_certificates_total{listener="lenient",outcome="invalid_ignored",reason="version1_not_allowed"} 1"#,
    ] {
        assert!(metrics.contains(line), "no {line} in {metrics}");
    }
    assert!(sink.messages().is_empty());
    drop(pki.dir);
}

/// `n` self-signed CA certificates (version 3, `CA:TRUE`) of subject `CN=<cn>`, each with
/// its own key, as PEM.
fn self_made_cas(cn: &str, n: usize) -> String {
    (0..n)
        .map(|_| self_made_ca(cn, None).pem())
        .collect::<Vec<_>>()
        .concat()
}

/// A CA certificate `CN=<cn>` made with rcgen: self-signed, or signed by `issuer`.
fn self_made_ca(
    cn: &str,
    issuer: Option<&rcgen::CertifiedIssuer<'_, rcgen::KeyPair>>,
) -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let key = rcgen::KeyPair::generate().unwrap();
    match issuer {
        None => rcgen::CertifiedIssuer::self_signed(p, key).unwrap(),
        Some(i) => rcgen::CertifiedIssuer::signed_by(p, key, i).unwrap(),
    }
}

/// The raw DER issuer of the certificate in `pem`, and its subject.
fn names(pem: &str) -> (Vec<u8>, Vec<u8>) {
    let der = rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .unwrap()
        .unwrap();
    let (_, c) = x509_parser::parse_x509_certificate(&der).unwrap();
    (c.issuer().as_raw().to_vec(), c.subject().as_raw().to_vec())
}

#[test]
fn a_version_1_leaf_with_many_self_made_cas_is_refused_at_once_and_starves_no_one() {
    use std::io::{BufRead, BufReader, Write};
    use std::sync::atomic::{AtomicBool, Ordering};

    let pki = pki();
    let d = pki.dir.path();
    // The attack of the issue: a version 1 leaf whose issuer no trust anchor names,
    // followed by 30 self-made "CA" certificates of that name. Before, every ordering of
    // up to six of them was searched, with no budget spent: hours per connection.
    let evil = OpensslCa::root(d, "evil", "V1 Evil CA").unwrap();
    let mallory = evil.issue_v1("mallory9", "/CN=MALLORY.9", 31).unwrap();
    let flood = self_made_cas("V1 Evil CA", 30);
    assert_eq!(
        names(&mallory.cert_pem()).0,
        names(&flood).1,
        "same issuer name"
    );
    let flood_file = d.join("flood.pem");
    std::fs::write(&flood_file, &flood).unwrap();

    // A variant that reaches the trust anchor by name at every step, so every step checks
    // a signature: leaf <- 3 x "V1 Y CA" <- 3 x "V1 X CA" <- 3 x self-made "V1 Test Root
    // CA". 3 x 3 x 16 = 144 paths end at the anchor: more than webpki's 100 signatures.
    let y = OpensslCa::root(d, "y", "V1 Y CA").unwrap();
    let eve = y.issue_v1("eve", "/CN=EVE.4", 32).unwrap();
    let fake_root = self_made_ca("V1 Test Root CA", None);
    let x_ca = self_made_ca("V1 X CA", None);
    let mut layered = String::new();
    for _ in 0..3 {
        layered.push_str(&self_made_ca("V1 Y CA", Some(&x_ca)).pem());
    }
    for _ in 0..3 {
        layered.push_str(&self_made_ca("V1 X CA", Some(&fake_root)).pem());
    }
    layered.push_str(&self_made_cas("V1 Test Root CA", 3));
    assert_eq!(names(&fake_root.pem()).1, names(&pki.root.ca.cert_pem()).1);
    let layered_file = d.join("layered.pem");
    std::fs::write(&layered_file, &layered).unwrap();
    assert_eq!(
        rustls_pki_types::CertificateDer::pem_file_iter(&layered_file)
            .unwrap()
            .count(),
        9
    );

    let sink = Sink::start(&[]).unwrap();
    let http = HttpServer::start();
    http.put("/root.pem", pki.crl_pem.clone().into_bytes());
    let (verify, lenient) = (free_port(), free_port());
    let gw = start_gateway(&config(verify, lenient, sink.port, &pki, &http, true)).unwrap();
    wait_crl(&gw);

    let limit = Duration::from_secs(2);
    let attack = |port: u16, who: &Issued, chain: &Path| {
        let started = Instant::now();
        let r = postern_tests::clients::openssl_within(
            Duration::from_secs(60),
            port,
            true,
            &[
                "-cert",
                &path(&who.cert),
                "-key",
                &path(&who.key),
                "-cert_chain",
                &path(chain),
            ],
            "EHLO client.test\r\nQUIT\r\n",
        )
        .unwrap();
        (started.elapsed(), r)
    };

    // Four attackers at once, for at least two seconds each, while a fifth client keeps
    // connecting for its banner and asking /healthz.
    let stop = AtomicBool::new(false);
    let (attacks, probes) = std::thread::scope(|s| {
        let attackers: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let started = Instant::now();
                    let mut runs = Vec::new();
                    while runs.len() < 3 || started.elapsed() < Duration::from_secs(2) {
                        runs.push(attack(verify, &mallory, &flood_file));
                    }
                    runs
                })
            })
            .collect();
        let probe = s.spawn(|| {
            let mut probes = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let started = Instant::now();
                let mut tcp = std::net::TcpStream::connect(("127.0.0.1", verify)).unwrap();
                tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                let mut banner = String::new();
                let _ = BufReader::new(&tcp).read_line(&mut banner);
                let banner_took = started.elapsed();
                let _ = tcp.write_all(b"QUIT\r\n");
                let started = Instant::now();
                let health = gw.http_get("/healthz").map(|(code, _)| code).ok();
                probes.push((banner_took, banner, started.elapsed(), health));
                std::thread::sleep(Duration::from_millis(50));
            }
            probes
        });
        let attacks: Vec<(Duration, Run)> = attackers
            .into_iter()
            .flat_map(|a| a.join().unwrap())
            .collect();
        stop.store(true, Ordering::SeqCst);
        (attacks, probe.join().unwrap())
    });

    let slowest = attacks.iter().map(|(t, _)| *t).max().unwrap();
    let banner_max = probes.iter().map(|p| p.0).max().unwrap();
    let health_max = probes.iter().map(|p| p.2).max().unwrap();
    eprintln!(
        "{} attacks, slowest refused in {slowest:?}; {} probes: banner max {banner_max:?}, /healthz max {health_max:?}",
        attacks.len(),
        probes.len()
    );
    for (took, r) in &attacks {
        refused(r, "unknown ca", "30 self-made CAs");
        assert!(*took < limit, "refused only after {took:?}: {}", r.output);
    }
    assert!(probes.len() >= 5, "too few probes: {probes:?}");
    for (banner_took, banner, health_took, health) in &probes {
        assert!(banner.starts_with("220 "), "no banner: {banner:?}");
        assert!(*banner_took < limit, "banner after {banner_took:?}");
        assert_eq!(*health, Some(200));
        assert!(*health_took < limit, "/healthz after {health_took:?}");
    }
    let lines = wait_decisions(&gw, attacks.len(), |v| {
        tls_refusal(v, "unknown_issuer") && v["cert_subject"] == "CN=MALLORY.9"
    });
    assert_eq!(lines.len(), attacks.len(), "{}", gw.log());

    // The signature variant: webpki's signature budget runs out, refused at once too.
    let (took, r) = attack(verify, &eve, &layered_file);
    refused(&r, "certificate unknown", "signature flood");
    assert!(took < limit, "refused only after {took:?}");
    let line = wait_decisions(&gw, 1, |v| tls_refusal(v, "path_budget_exceeded"));
    assert_eq!(line.len(), 1, "{}", gw.log());
    assert!(
        line[0]["reason"]
            .as_str()
            .unwrap()
            .contains("MaximumSignatureChecksExceeded"),
        "{}",
        line[0]
    );

    // Where certificates are checked after the handshake (lenient), the same chain is
    // ignored just as quickly and the session goes on unauthenticated.
    let (took, r) = attack(lenient, &mallory, &flood_file);
    assert!(
        r.has("250-gw.test.postern.dev") && r.has("221 2.0.0"),
        "{}",
        r.output
    );
    assert!(took < limit, "ignored only after {took:?}");
    let ignored = wait_decisions(&gw, 1, |v| {
        v["decision"] == "certificate"
            && v["outcome"] == "ignored"
            && v["reason"]
                .as_str()
                .is_some_and(|r| r.contains("unknown_issuer"))
    });
    assert_eq!(ignored.len(), 1, "{}", gw.log());
    assert!(sink.messages().is_empty());
}
