//! `postern explain --ldap --cert` answers revocation through the gateway's own CRL
//! service and OCSP client: examples/either with `verifyClientCertificate`, a CRL made
//! by `openssl ca -gencrl` with the example CA (it revokes `revoked.crt`) served over
//! HTTP, a real slapd for the mapping, and an `openssl ocsp` responder for the OCSP
//! modes. Good → the CRL that answered and the LDAP mapping (exit 0); revoked → the
//! handshake refusal naming the CRL (exit 3); an unreachable CRL URL → fail closed,
//! explained (exit 3), or not checked under `failurePolicy: Open`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use postern_config::{
    self as cfg, CrlFailurePolicy, CrlFormat, CrlScope, GatewayConfig, OnUnavailable,
    RevocationMode,
};
use postern_controller::cli::manifests::{load, read_inputs};
use postern_controller::compile::compile;
use postern_testkit::file_server::HttpServer;
use postern_testkit::ocsp_responder::OcspResponder;
use postern_testkit::ports::free_port;
use postern_testkit::workspace::workspace_bin;
use postern_tests::openssl_ca::OpensslCa;
use postern_tests::slapd::{Slapd, SlapdOptions};

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// The example CA as an OpenSSL CA in `dir` (`ca.crt`, `ca.key`, database `ca.index`):
/// alice recorded valid, `revoked.crt` revoked (keyCompromise); its CRL (CRL number 1)
/// as `ca.crl`; the client certificates copied beside it.
fn ca_database(dir: &Path) -> OpensslCa {
    let pki = examples().join("pki");
    let ca = OpensslCa::from_files(dir, "ca", &pki.join("ca.crt"), &pki.join("ca.key")).unwrap();
    for f in ["alice.crt", "revoked.crt"] {
        std::fs::copy(pki.join(f), dir.join(f)).unwrap();
    }
    ca.record_valid(&dir.join("alice.crt")).unwrap();
    ca.revoke_file(&dir.join("revoked.crt"), "keyCompromise")
        .unwrap();
    ca.crl_pem().unwrap();
    ca
}

/// examples/either with its directory at `ldap_url`, `verifyClientCertificate` on the
/// relaying policy, CrlSource `example-ca` at `crl_url` and the listener's revocation
/// mode; written to `dir/name.yaml`.
fn config_file(
    dir: &Path,
    name: &str,
    ldap_url: &str,
    crl_url: &str,
    failure_policy: CrlFailurePolicy,
    revocation: cfg::Revocation,
) -> PathBuf {
    let texts = read_inputs(&[examples().join("either").display().to_string()]).unwrap();
    let compiled = compile(&load(&texts, None).snapshot, None);
    assert!(!compiled.report.has_errors());
    let mut config: GatewayConfig = compiled.config;
    config.ldap_profiles.get_mut("corp-ldap").unwrap().servers = vec![ldap_url.to_owned()];
    config
        .policies
        .get_mut("relayed")
        .unwrap()
        .verify_client_certificate = true;
    config.crl_sources.insert(
        "example-ca".into(),
        cfg::CrlSource {
            enabled: true,
            format: CrlFormat::Pem,
            primary_url: Some(crl_url.to_owned()),
            secondary_url: None,
            discovery: None,
            interval: cfg::Duration::from_secs(3600),
            applies_to: vec![CrlScope::InboundSmtpTls],
            failure_policy,
            max_size: cfg::DEFAULT_CRL_MAX_SIZE,
        },
    );
    config
        .listeners
        .get_mut("submission")
        .unwrap()
        .tls
        .as_mut()
        .unwrap()
        .revocation = revocation;
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, config.to_yaml()).unwrap();
    path
}

/// `postern explain --ldap` for `cert` (a file in `dir`) from 127.0.0.1: exit code and
/// stdout + stderr.
fn explain(config: &Path, dir: &Path, cert: &str) -> (i32, String) {
    let out = Command::new(workspace_bin("postern").unwrap())
        .args(["explain", "--ldap", "--config"])
        .arg(config)
        .args(["--listener", "submission", "--client-ip", "127.0.0.1"])
        .arg("--cert")
        .arg(dir.join(cert))
        .output()
        .unwrap();
    let both = [out.stdout, out.stderr].concat();
    let code = out.status.code().expect("exit code");
    (code, String::from_utf8_lossy(&both).into_owned())
}

fn mode(mode: RevocationMode, on_unavailable: OnUnavailable, responder: &str) -> cfg::Revocation {
    cfg::Revocation {
        mode,
        on_unavailable,
        ocsp: cfg::Ocsp {
            responder_url: responder.to_owned(),
            timeout: cfg::Duration::from_secs(2),
            ..cfg::Ocsp::default()
        },
    }
}

fn slapd() -> Slapd {
    let ldif = std::fs::read_to_string(examples().join("ldap/users.ldif")).unwrap();
    Slapd::start(SlapdOptions {
        ldif: Some(ldif),
        ..SlapdOptions::default()
    })
    .expect("slapd with the example directory")
}

#[test]
fn crls_answer_for_real_and_an_unreachable_source_fails_closed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ca_database(dir);
    let files = HttpServer::start();
    files.put("/example.crl", std::fs::read(dir.join("ca.crl")).unwrap());
    let slapd = slapd();
    let crl_only = || mode(RevocationMode::CrlOnly, OnUnavailable::Refuse, "");
    let config = config_file(
        dir,
        "crl",
        &slapd.url(),
        &files.url("/example.crl"),
        CrlFailurePolicy::Closed,
        crl_only(),
    );

    // alice: the CRL that answered (source, issuer, number, nextUpdate), then the
    // directory's mapping as before.
    let (code, out) = explain(&config, dir, "alice.crt");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("example-ca: 1 CRL(s) in force from http://"),
        "{out}"
    );
    assert!(out.contains("ANDERSON.ALICE.A.1000000001"), "{out}");
    assert!(out.contains("not revoked (CRL of"), "{out}");
    assert!(
        out.contains("of source example-ca (CRL number 1, nextUpdate 20"),
        "{out}"
    );
    assert!(out.contains("verifier: accepted"), "{out}");
    assert!(
        out.contains("uid=alice,ou=people,dc=example,dc=org → user alice"),
        "{out}"
    );
    assert!(out.contains("ACCEPTED"), "{out}");
    assert!(!out.contains("needs the running gateway"), "{out}");

    // revoked.crt: the handshake refusal, naming the CRL source and the reason.
    let (code, out) = explain(&config, dir, "revoked.crt");
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("REVOKED, reason"), "{out}");
    assert!(out.contains("(CRL number 1,"), "{out}");
    assert!(
        out.contains("REFUSED: TLS handshake refused (revoked: certificate"),
        "{out}"
    );
    assert!(out.contains("revoked by CRL source example-ca"), "{out}");
    assert!(!out.contains("uid=alice"), "{out}");

    // The CRL URL does not answer: the first fetch fails, the source fails closed.
    let down = format!("http://127.0.0.1:{}/example.crl", free_port());
    let config = config_file(
        dir,
        "down",
        &slapd.url(),
        &down,
        CrlFailurePolicy::Closed,
        crl_only(),
    );
    let started = Instant::now();
    let (code, out) = explain(&config, dir, "alice.crt");
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("example-ca: fetch FAILED"), "{out}");
    assert!(out.contains("failurePolicy Closed"), "{out}");
    assert!(
        out.contains("REFUSED: TLS handshake refused (crl_missing:"),
        "{out}"
    );
    assert!(started.elapsed() < Duration::from_secs(30), "{out}");

    // The same under failurePolicy Open: said, and the certificate is not refused for it.
    let config = config_file(
        dir,
        "open",
        &slapd.url(),
        &down,
        CrlFailurePolicy::Open,
        crl_only(),
    );
    let (code, out) = explain(&config, dir, "alice.crt");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("failurePolicy Open"), "{out}");
    assert!(out.contains("ACCEPTED"), "{out}");
}

#[test]
fn an_ocsp_mode_is_answered_by_the_responder() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ca = ca_database(dir);
    let files = HttpServer::start();
    files.put("/example.crl", std::fs::read(dir.join("ca.crl")).unwrap());
    let index = ca.index_path().display().to_string();
    let responder = OcspResponder::start(dir, &index, "ca.crt", "ca").unwrap();
    let slapd = slapd();
    let config = config_file(
        dir,
        "ocsp",
        &slapd.url(),
        &files.url("/example.crl"),
        CrlFailurePolicy::Closed,
        mode(
            RevocationMode::OcspThenCrl,
            OnUnavailable::Refuse,
            &responder.url(),
        ),
    );

    let (code, out) = explain(&config, dir, "alice.crt");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("OcspThenCrl for the client's certificate"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "accepted: OCSP responder {} answered good",
            responder.url()
        )),
        "{out}"
    );
    assert!(
        out.contains("uid=alice,ou=people,dc=example,dc=org → user alice"),
        "{out}"
    );

    let (code, out) = explain(&config, dir, "revoked.crt");
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains(&format!("revoked by OCSP responder {}", responder.url())),
        "{out}"
    );
    assert!(
        out.contains("keyCompromise") || out.contains("KeyCompromise"),
        "{out}"
    );
    assert!(
        out.contains("REFUSED: TLS handshake refused (revoked:"),
        "{out}"
    );

    // The responder gone, OcspOnly: no current answer, onUnavailable Refuse.
    drop(responder);
    let gone = format!("http://127.0.0.1:{}/", free_port());
    let config = config_file(
        dir,
        "ocsp-down",
        &slapd.url(),
        &files.url("/example.crl"),
        CrlFailurePolicy::Closed,
        mode(RevocationMode::OcspOnly, OnUnavailable::Refuse, &gone),
    );
    let (code, out) = explain(&config, dir, "alice.crt");
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("REFUSED: TLS handshake refused (revocation_unavailable:"),
        "{out}"
    );
}
