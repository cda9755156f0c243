//! End to end: X.509 version 1 client certificates, as a bare `openssl x509 -req -CA`
//! makes them, through the real gateway with swaks and `openssl s_client -starttls smtp`:
//! accepted and relayed to smtp-sink when they chain to the client CA (directly or through
//! a version 3 intermediate the client sends), refused with the same alerts as version 3
//! certificates otherwise (`unknown ca`, `certificate expired`, `certificate revoked` from
//! the CA's CRL), and in lenient mode (no `verifyClientCertificate`) used for certificate
//! authentication instead of being ignored.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use postern_gateway::config::{self as cfg, TlsMode};
use postern_tests::clients::{Run, openssl, python, swaks};
use postern_tests::gateway::{Gateway, listener, policy, user};
use postern_tests::http::HttpServer;
use postern_tests::openssl_ca::{Issued, OpensslCa};
use postern_tests::pki::Ca;
use postern_tests::ports::free_port;
use postern_tests::sink::Sink;

fn generalized(t: time::OffsetDateTime) -> String {
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

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
            &generalized(now - time::Duration::days(1)),
            &generalized(now + time::Duration::days(1)),
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
/// authentication without it), both with the root as client CA and its CRL in force.
fn config(
    verify_port: u16,
    lenient_port: u16,
    sink_port: u16,
    pki: &Pki,
    http: &HttpServer,
) -> cfg::GatewayConfig {
    let server = Ca::new("V1 Test Server CA").unwrap().server().unwrap();
    let tls = cfg::ListenerTls {
        certificate_chain_pem: server.cert_pem.clone(),
        private_key_pem: server.key_pem.clone(),
        client_ca_pem: Some(pki.root.ca.cert_pem()),
    };
    let mut verify = listener(verify_port, sink_port, "verify");
    verify.tls = Some(tls.clone());
    verify.auth_profile = Some("cert".into());
    let mut lenient = listener(lenient_port, sink_port, "lenient");
    lenient.tls = Some(tls);
    lenient.auth_profile = Some("cert".into());
    let profile = cfg::AuthProfile {
        certificate: Some(cfg::CertificateAuth {
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
    let gw = Gateway::start(&config(verify, lenient, sink.port, &pki, &http)).unwrap();
    // The CRL is in force before anyone connects.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (code, body) = gw.http_get("/crl/root").unwrap();
        let status: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        if code == 200 && status["entries"] == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "CRL not loaded: {code} {body}\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

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
    gw.wait_log(Duration::from_secs(10), |v| {
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
