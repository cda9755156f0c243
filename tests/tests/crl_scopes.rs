//! CRL scopes and partitions end to end (RFC 5280 section 6.3.3): the real
//! `postern-gateway` fetches PEM files that OpenSSL's `openssl ca -gencrl` made with an
//! Issuing Distribution Point (a user-certificate CRL beside an ARL, two partitions named
//! by the client certificates' CRL Distribution Points) and checks real client
//! certificates over STARTTLS with `openssl s_client`.
//!
//! Each case replays a bypass that was observed before CRLs were kept per scope and
//! partition: the revoked client was relayed with `250`, and a stale user CRL next to a
//! current ARL was accepted instead of failing closed.

use std::path::Path;
use std::process::Command;

use postern_config::GatewayConfig;
use postern_testkit::file_server::HttpServer;
use postern_testkit::gateway::Gateway;
use postern_testkit::pki::{Ca, Leaf};
use postern_testkit::ports::free_port;
use postern_testkit::workspace::workspace_bin;
use postern_tests::clients::Run;
use postern_tests::crl::{certificate_hello, hello_accepted, start_gateway};
use postern_tests::openssl_ca::{Issued, OpensslCa};

/// The PKI: a root made with OpenSSL that issues the clients and the CRLs, and a server
/// certificate for the gateway.
struct Pki {
    dir: tempfile::TempDir,
    ca: OpensslCa,
    server: Leaf,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = OpensslCa::root(dir.path(), "root", "Scoped Root CA").unwrap();
        let server = Ca::root("Scoped Server CA").server("127.0.0.1");
        Self { dir, ca, server }
    }

    /// A client certificate with the given CRL Distribution Points (none if empty).
    fn client(&self, name: &str, dps: &[&str]) -> Issued {
        let ext = if dps.is_empty() {
            String::new()
        } else {
            format!(
                "crlDistributionPoints = {}",
                dps.iter()
                    .map(|u| format!("URI:{u}"))
                    .collect::<Vec<_>>()
                    .join(",")
            )
        };
        self.ca.issue_v3_with_extensions(name, name, &ext).unwrap()
    }

    fn config(&self, port: u16, url: &str) -> GatewayConfig {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "postern.dev/gateway/v1",
            "listeners": {"submission": {
                "address": "127.0.0.1", "port": port, "hostname": "mx.scopes.test",
                "tls": {"certificateChainPem": self.server.cert_pem, "privateKeyPem": self.server.key_pem,
                        "clientCaPem": self.ca.ca.cert_pem()},
                "defaultPolicy": "verify", "nextHop": {"host": "127.0.0.1", "port": free_port()}
            }},
            "policies": {"verify": {"action": "Relay", "tls": "Required", "verifyClientCertificate": true}},
            "crlSources": {"root": {"format": "Pem", "primaryUrl": url, "interval": "1s",
                                    "appliesTo": ["InboundSmtpTls"]}}
        }))
        .unwrap()
    }
}

/// Issuing Distribution Point lines for `openssl ca -gencrl`.
fn idp(lines: &str) -> String {
    format!("issuingDistributionPoint = critical, @idp\n[idp]\n{lines}")
}

fn hello(port: u16, client: &Issued) -> Run {
    certificate_hello(port, &client.cert, &client.key, "scopes.test")
}

fn accepted(r: &Run) -> bool {
    hello_accepted(r, "scopes.test")
}

fn refused(r: &Run, alert: &str, who: &str) {
    assert!(r.has(alert), "{who}: no {alert:?} in {}", r.output);
    assert!(!r.has("221 "), "{who}: the session went on: {}", r.output);
}

/// Waits (up to 10 s) for a TLS refusal decision line whose reason starts with `reason`.
fn refusal_line(gw: &Gateway, reason: &str, subject: &str) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let found = gw
            .log()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| {
                v["decision"] == "tls"
                    && v["outcome"] == "failed"
                    && v["cert_subject"] == subject
                    && v["reason"].as_str().is_some_and(|r| r.starts_with(reason))
            });
        if let Some(line) = found {
            return line;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {reason} refusal of {subject}:\n{}",
            gw.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn start(pki: &Pki, file: String) -> (HttpServer, Gateway, u16) {
    let http = HttpServer::start();
    http.put("/root.pem", file.into_bytes());
    let port = free_port();
    let gw = start_gateway(&pki.config(port, &http.url("/root.pem")), &[], "info").unwrap();
    gw.wait_crl("root", "the CRLs in force", |s| s["state"] == "InForce");
    (http, gw, port)
}

fn inspect(dir: &Path, file: &str) -> String {
    let out = Command::new(workspace_bin("postern-gateway").unwrap())
        .args(["crl", "inspect", file])
        .current_dir(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_user_crl_and_an_empty_arl_in_one_file_refuse_the_revoked_client() {
    let pki = Pki::new();
    let alice = pki.client("alice", &[]);
    let mallory = pki.client("mallory", &[]);
    pki.ca.revoke(&mallory).unwrap();
    // The CA's user-certificate CRL lists Mallory; its ARL (no CA revoked) is empty and,
    // made last, carries the higher CRL number.
    let user = pki
        .ca
        .gencrl("user", &idp("onlyuser = TRUE"), true, None)
        .unwrap();
    let arl = pki
        .ca
        .gencrl("arl", &idp("onlyCA = TRUE"), false, None)
        .unwrap();
    let file = format!("{user}{arl}");
    std::fs::write(pki.dir.path().join("both.pem"), &file).unwrap();
    let (_http, gw, port) = start(&pki, file);

    let st = gw.crl_status("root").unwrap();
    let scopes: Vec<&str> = st["crls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["scope"].as_str().unwrap())
        .collect();
    assert_eq!(scopes, ["userCertificates", "caCertificates"], "{st}");

    assert!(accepted(&hello(port, &alice)));
    let r = hello(port, &mallory);
    refused(&r, "certificate revoked", "mallory");
    let line = refusal_line(&gw, "revoked", "CN=mallory");
    assert!(
        line["reason"]
            .as_str()
            .unwrap()
            .contains("is revoked by CRL source root"),
        "{line}"
    );
    let (_, metrics) = gw.http_get("/metrics").unwrap();
    assert!(
        metrics.contains(
            "postern_crl_certificate_rejections_total{source=\"root\",reason=\"revoked\"} 1"
        ),
        "{metrics}"
    );

    // `crl inspect` says what each CRL covers.
    let out = inspect(pki.dir.path(), "both.pem");
    assert!(
        out.contains("covers:           end-entity (user) certificates of the issuer only"),
        "{out}"
    );
    assert!(
        out.contains("covers:           CA certificates of the issuer only"),
        "{out}"
    );
}

#[test]
fn two_partitions_in_one_file_each_cover_their_certificates() {
    let pki = Pki::new();
    let (p1, p2, p3) = (
        "http://crl.scopes.test/p1.crl",
        "http://crl.scopes.test/p2.crl",
        "http://crl.scopes.test/p3.crl",
    );
    let alice = pki.client("alice", &[p1]);
    let mallory = pki.client("mallory", &[p2]);
    let carol = pki.client("carol", &[p3]);
    pki.ca.revoke(&mallory).unwrap();
    // Partition 2 (Mallory's) is made first, so partition 1 has the higher CRL number.
    let two = pki
        .ca
        .gencrl("p2", &idp(&format!("fullname = URI:{p2}")), true, None)
        .unwrap();
    let one = pki
        .ca
        .gencrl("p1", &idp(&format!("fullname = URI:{p1}")), false, None)
        .unwrap();
    let file = format!("{two}{one}");
    std::fs::write(pki.dir.path().join("partitions.pem"), &file).unwrap();
    let (_http, gw, port) = start(&pki, file);

    let st = gw.crl_status("root").unwrap();
    assert_eq!(st["crls"].as_array().unwrap().len(), 2, "{st}");
    assert_eq!(
        st["crls"][0]["distributionPoints"],
        serde_json::json!([format!("URI:{p2}")]),
        "{st}"
    );

    assert!(accepted(&hello(port, &alice)));
    refused(&hello(port, &mallory), "certificate revoked", "mallory");
    // No partition in force covers Carol's distribution point: unverifiable.
    refused(&hello(port, &carol), "unknown ca", "carol");
    let line = refusal_line(&gw, "crl_missing", "CN=carol");
    assert!(
        line["reason"]
            .as_str()
            .unwrap()
            .contains("no CRL of the issuer in force covers it"),
        "{line}"
    );

    let out = inspect(pki.dir.path(), "partitions.pem");
    assert!(out.contains(&format!("in partition URI:{p2}")), "{out}");
    assert!(out.contains(&format!("in partition URI:{p1}")), "{out}");
}

#[test]
fn a_stale_user_crl_beside_a_current_arl_fails_closed() {
    let pki = Pki::new();
    let alice = pki.client("alice", &[]);
    let stale = pki
        .ca
        .gencrl(
            "user",
            &idp("onlyuser = TRUE"),
            true,
            Some(("20240101000000Z", "20240102000000Z")),
        )
        .unwrap();
    let arl = pki
        .ca
        .gencrl("arl", &idp("onlyCA = TRUE"), false, None)
        .unwrap();
    let (_http, gw, port) = start(&pki, format!("{stale}{arl}"));

    refused(&hello(port, &alice), "unknown ca", "alice");
    let line = refusal_line(&gw, "crl_stale", "CN=alice");
    assert!(
        line["reason"].as_str().unwrap().contains("2024-01-02"),
        "{line}"
    );
}
