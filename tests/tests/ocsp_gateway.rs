//! End to end: `tls.revocation` with OCSP through the real gateway, against a real
//! responder (`openssl ocsp -index ... -port ...` on loopback) and an OpenSSL-made PKI:
//! good, revoked, unknown, responder down (with both `onUnavailable`), a response signed
//! by a key the CA never authorised, and a delegated responder certificate.

use std::path::Path;
use std::process::Command;

use postern_config::{self as cfg, TlsMode};
use postern_testkit::gateway::Gateway;
use postern_testkit::ocsp_responder::OcspResponder;
use postern_testkit::pki::Ca;
use postern_testkit::ports::free_port;
use postern_testkit::sink::Sink;
use postern_tests::clients::openssl as s_client;
use postern_tests::gateway::{listener, policy, single, start_gateway, user};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is required for this test");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An RSA CA; clients `good` (serial 1001), `revoked` (1002), `unknown` (1003, not in
/// the index); a delegated responder certificate (OCSPSigning) and a stray signer of
/// another CA.
fn pki(dir: &Path) {
    let ca = |name: &str, cn: &str| {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.crt"),
                "-days",
                "30",
                "-subj",
                &format!("/O=OCSP Test/CN={cn}"),
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
                "-addext",
                "basicConstraints=critical,CA:true",
            ],
        )
    };
    ca("ca", "OCSP Test CA");
    ca("other", "Other CA");
    std::fs::write(
        dir.join("client.ext"),
        "basicConstraints=CA:false\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("responder.ext"),
        "basicConstraints=CA:false\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=OCSPSigning\n",
    )
    .unwrap();
    for (name, serial, ext) in [
        ("good", "0x1001", "client.ext"),
        ("revoked", "0x1002", "client.ext"),
        ("unknown", "0x1003", "client.ext"),
        ("responder", "0x2001", "responder.ext"),
    ] {
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={name}"),
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-set_serial",
                serial,
                "-days",
                "10",
                "-extfile",
                ext,
                "-out",
                &format!("{name}.crt"),
            ],
        );
    }
    std::fs::write(
        dir.join("index.txt"),
        "V\t350101000000Z\t\t1001\tunknown\t/CN=good\n\
         R\t350101000000Z\t240101000000Z,keyCompromise\t1002\tunknown\t/CN=revoked\n",
    )
    .unwrap();
}

fn gateway(dir: &Path, sink: &Sink, revocation: cfg::Revocation) -> (Gateway, u16) {
    let server = Ca::long_lived("Server CA").localhost_server();
    let port = free_port();
    let mut l = listener(port, sink.port, "relayed");
    l.tls = Some(cfg::ListenerTls {
        certificate_chain_pem: server.cert_pem.clone(),
        private_key_pem: server.key_pem.clone(),
        client_ca_pem: Some(std::fs::read_to_string(dir.join("ca.crt")).unwrap()),
        allow_version1_client_certificates: false,
        revocation,
    });
    let profile = cfg::AuthProfile {
        certificate: Some(cfg::CertificateAuth {
            backend: cfg::AuthBackend::Static {
                users: ["good", "revoked", "unknown"]
                    .map(|cn| user(cn, None, Some(cn), true))
                    .to_vec(),
            },
            required_policies: Vec::new(),
            required_ekus: Vec::new(),
        }),
        smtp_auth: None,
    };
    let p = policy(TlsMode::Required, true, false, false);
    (start_gateway(&single(l, p, Some(profile))).unwrap(), port)
}

fn revocation(mode: cfg::RevocationMode, allow: bool, url: &str) -> cfg::Revocation {
    let mut r = cfg::Revocation {
        mode,
        ..Default::default()
    };
    if allow {
        r.on_unavailable = cfg::OnUnavailable::Allow;
    }
    r.ocsp.responder_url = url.into();
    r.ocsp.timeout = cfg::Duration::from_millis(1500);
    r
}

/// Whether the client `name` gets through EHLO after STARTTLS; the session's output.
fn connect(dir: &Path, port: u16, name: &str) -> (bool, String) {
    let crt = dir.join(format!("{name}.crt")).display().to_string();
    let key = dir.join(format!("{name}.key")).display().to_string();
    let r = s_client(
        port,
        true,
        &["-cert", &crt, "-key", &key],
        "EHLO c\r\nQUIT\r\n",
    )
    .unwrap();
    (r.has("221 2.0.0"), r.output)
}

#[test]
fn ocsp_only_good_revoked_unknown_and_a_responder_down() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    pki(d);
    let sink = Sink::start(&[]).unwrap();
    let responder = OcspResponder::start(d, "index.txt", "ca.crt", "ca").unwrap();
    let (gw, port) = gateway(
        d,
        &sink,
        revocation(cfg::RevocationMode::OcspOnly, false, &responder.url()),
    );
    let (ok, out) = connect(d, port, "good");
    assert!(ok, "good: {out}");
    // Again, from the cache.
    assert!(connect(d, port, "good").0);
    let (ok, out) = connect(d, port, "revoked");
    assert!(!ok && out.contains("revoked"), "revoked: {out}");
    let (ok, out) = connect(d, port, "unknown");
    assert!(!ok && out.contains("unknown ca"), "unknown: {out}");

    // The decision lines name the mechanism and the responder.
    let url = responder.url();
    let reasons: Vec<String> = gw
        .decisions()
        .iter()
        .filter(|d| d["decision"] == "tls")
        .map(|d| d["reason"].as_str().unwrap_or_default().to_owned())
        .collect();
    let established = format!("revocation=ocsp responder={url}");
    assert_eq!(
        reasons
            .iter()
            .filter(|r| r.starts_with("cipher ") && r.ends_with(&established))
            .count(),
        2,
        "{reasons:#?}"
    );
    assert!(
        reasons.iter().any(|r| r.starts_with(
            "revoked: certificate CN=revoked (serial 1002) is revoked by OCSP responder"
        ) && r.contains("(reason KeyCompromise)")
            && r.contains(&established)),
        "{reasons:#?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("revocation_unavailable:") && r.contains("answers unknown")),
        "{reasons:#?}"
    );
    // Metrics per responder: one request per certificate, the second "good" a cache hit.
    let (_, metrics) = gw.http_get("/metrics").unwrap();
    for line in [
        format!("postern_ocsp_requests_total{{responder=\"{url}\",result=\"good\"}} 1"),
        format!("postern_ocsp_requests_total{{responder=\"{url}\",result=\"revoked\"}} 1"),
        format!("postern_ocsp_requests_total{{responder=\"{url}\",result=\"unknown\"}} 1"),
        format!("postern_ocsp_cache_hits_total{{responder=\"{url}\"}} 1"),
        format!("postern_ocsp_request_seconds_count{{responder=\"{url}\"}} 3"),
    ] {
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }

    // Responder down: Refuse refuses, Allow accepts; a cached good answer still serves.
    let down = format!("http://127.0.0.1:{}/", free_port());
    let (_gw, port) = gateway(
        d,
        &sink,
        revocation(cfg::RevocationMode::OcspOnly, false, &down),
    );
    let (ok, out) = connect(d, port, "good");
    assert!(!ok && out.contains("unknown ca"), "down, refuse: {out}");
    let (_gw, port) = gateway(
        d,
        &sink,
        revocation(cfg::RevocationMode::OcspOnly, true, &down),
    );
    assert!(connect(d, port, "good").0, "down, allow");
    assert!(
        connect(d, port, "revoked").0,
        "down, allow: nothing says revoked"
    );
}

#[test]
fn fallback_modes_with_no_crl_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    pki(d);
    let sink = Sink::start(&[]).unwrap();
    let responder = OcspResponder::start(d, "index.txt", "ca.crt", "ca").unwrap();
    let down = format!("http://127.0.0.1:{}/", free_port());
    // No CRL is in force for the CA: CrlThenOcsp asks OCSP.
    let (_gw, port) = gateway(
        d,
        &sink,
        revocation(cfg::RevocationMode::CrlThenOcsp, false, &responder.url()),
    );
    assert!(connect(d, port, "good").0);
    assert!(!connect(d, port, "revoked").0);
    // OcspThenCrl with the responder down and no CRL: nothing answers.
    let (_gw, port) = gateway(
        d,
        &sink,
        revocation(cfg::RevocationMode::OcspThenCrl, false, &down),
    );
    assert!(!connect(d, port, "good").0);
    let (_gw, port) = gateway(
        d,
        &sink,
        revocation(cfg::RevocationMode::OcspThenCrl, true, &down),
    );
    assert!(connect(d, port, "good").0);
    // CrlOnly (the default) never asks the responder: no CRL configured, accepted.
    let (_gw, port) = gateway(
        d,
        &sink,
        revocation(cfg::RevocationMode::CrlOnly, false, &down),
    );
    assert!(connect(d, port, "revoked").0);
}

#[test]
fn responses_signed_by_a_stranger_are_refused_and_a_delegated_responder_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    pki(d);
    let sink = Sink::start(&[]).unwrap();
    let stranger = OcspResponder::start(d, "index.txt", "ca.crt", "other").unwrap();
    let (_gw, port) = gateway(
        d,
        &sink,
        revocation(cfg::RevocationMode::OcspOnly, false, &stranger.url()),
    );
    let (ok, out) = connect(d, port, "good");
    assert!(!ok && out.contains("unknown ca"), "wrong key: {out}");
    let delegated = OcspResponder::start(d, "index.txt", "ca.crt", "responder").unwrap();
    let (_gw, port) = gateway(
        d,
        &sink,
        revocation(cfg::RevocationMode::OcspOnly, false, &delegated.url()),
    );
    assert!(connect(d, port, "good").0, "delegated responder");
    assert!(!connect(d, port, "revoked").0);
}
