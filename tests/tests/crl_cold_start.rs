//! Revocation from the first handshake: a gateway whose CRL source has not loaded yet
//! (the URL is down or slow at start) refuses the certificates that CRL may be for as
//! unverifiable (`crl_missing`) instead of accepting them; `/readyz` waits for each
//! source's first fetch; `failurePolicy: Open` is the explicit opt-out; a CRL cached on
//! disk is in force before the first handshake of a restarted gateway. Real
//! `postern-gateway`, CRLs over HTTP, `openssl s_client` clients.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use postern_config::GatewayConfig;
use postern_testkit::file_server::HttpServer;
use postern_testkit::gateway::{Gateway, Ready};
use postern_testkit::pki::{Ca, Leaf};
use postern_testkit::ports::free_port;
use postern_tests::clients::Run;
use postern_tests::crl::{certificate_hello, hello_accepted, launch, start_gateway};

struct Client {
    cert: PathBuf,
    key: PathBuf,
}

struct Pki {
    dir: tempfile::TempDir,
    server: Leaf,
    cold: Ca,
    warm: Ca,
}

impl Pki {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            server: Ca::root("Cold Start Server CA").server("127.0.0.1"),
            cold: Ca::root("Cold CA"),
            warm: Ca::root("Warm CA"),
        }
    }

    fn client(&self, name: &str, ca: &Ca, serial: &[u8]) -> Client {
        let c = ca.client(name, serial);
        let cert = self.dir.path().join(format!("{name}.crt"));
        let key = self.dir.path().join(format!("{name}.key"));
        std::fs::write(&cert, &c.cert_pem).unwrap();
        std::fs::write(&key, &c.key_pem).unwrap();
        Client { cert, key }
    }

    /// A listener trusting both CAs; source `cold` for the Cold CA (`policy`), source
    /// `warm` for the Warm CA.
    fn config(&self, port: u16, cold_url: &str, warm_url: &str, policy: &str) -> GatewayConfig {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "postern.dev/gateway/v1",
            "listeners": {"submission": {
                "address": "127.0.0.1", "port": port, "hostname": "mx.cold.test",
                "tls": {"certificateChainPem": self.server.cert_pem, "privateKeyPem": self.server.key_pem,
                        "clientCaPem": format!("{}{}", self.cold.cert_pem(), self.warm.cert_pem())},
                "defaultPolicy": "verify", "nextHop": {"host": "127.0.0.1", "port": free_port()}
            }},
            "policies": {"verify": {"action": "Relay", "tls": "Required", "verifyClientCertificate": true}},
            "crlSources": {
                "cold": {"format": "Asn1", "primaryUrl": cold_url, "interval": "1s",
                         "appliesTo": ["InboundSmtpTls"], "failurePolicy": policy},
                "warm": {"format": "Asn1", "primaryUrl": warm_url, "interval": "1s",
                         "appliesTo": ["InboundSmtpTls"]}
            }
        }))
        .unwrap()
    }
}

fn hello(port: u16, client: &Client) -> Run {
    certificate_hello(port, &client.cert, &client.key, "cold.test")
}

fn accepted(r: &Run) -> bool {
    hello_accepted(r, "cold.test")
}

fn refused(r: &Run, alert: &str, who: &str) {
    assert!(r.has(alert), "{who}: no {alert:?} in {}", r.output);
    assert!(!r.has("221 "), "{who}: the session went on: {}", r.output);
}

/// Waits (up to 10 s) until the gateway logged `at_least` TLS refusals of `subject` with
/// a reason starting with `reason`; returns the last one.
fn refusals(gw: &Gateway, reason: &str, subject: &str, at_least: usize) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines: Vec<serde_json::Value> = gw
            .log()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| {
                v["decision"] == "tls"
                    && v["outcome"] == "failed"
                    && v["cert_subject"] == subject
                    && v["reason"].as_str().is_some_and(|r| r.starts_with(reason))
            })
            .collect();
        if lines.len() >= at_least {
            return lines.last().cloned().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "{} {reason} refusals of {subject}, wanted {at_least}:\n{}",
            lines.len(),
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn metric(gw: &Gateway, line: &str) -> bool {
    gw.http_get("/metrics").unwrap().1.contains(line)
}

#[test]
fn a_gateway_whose_crl_has_not_loaded_refuses_instead_of_accepting() {
    let pki = Pki::new();
    let alice = pki.client("alice", &pki.cold, &[0x0a, 0x01]);
    let mallory = pki.client("mallory", &pki.cold, &[0x0a, 0x02]);
    let bob = pki.client("bob", &pki.warm, &[0x0b, 0x01]);
    // The Cold CA's CRL server is slow and then fails; the Warm CA's works.
    let cold = HttpServer::start();
    cold.set_delay(Duration::from_secs(8));
    cold.fail_with(Some(503));
    let warm = HttpServer::start();
    warm.put("/warm.crl", pki.warm.current_crl(1, &[]));
    let port = free_port();
    let config = pki.config(
        port,
        &cold.url("/cold.crl"),
        &warm.url("/warm.crl"),
        "Closed",
    );
    let mut gw = launch(&config, "info")
        .ready(Ready::NoWait)
        .start()
        .unwrap();

    // Not ready while the first fetch of `cold` is under way...
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok((503, body)) = gw.http_get("/readyz")
            && body.contains("waiting for the first fetch of CRL source(s) cold")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never reported waiting:\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // ...and a client that connects anyway is refused, revoked or not: nobody can tell.
    refused(
        &hello(port, &alice),
        "unknown ca",
        "alice before the first fetch",
    );

    // The first fetch failed: ready (the failure is reported), still refusing.
    gw.wait_ready(Duration::from_secs(30)).unwrap();
    let st = gw.wait_crl("cold", "the failed first fetch", |s| {
        s["state"] == "FetchFailed"
    });
    assert_eq!(st["lastError"]["reason"], "http_status", "{st}");
    assert_eq!(st["failingOpen"], false, "{st}");
    refused(&hello(port, &alice), "unknown ca", "alice");
    refused(&hello(port, &mallory), "unknown ca", "mallory");
    let line = refusals(&gw, "crl_missing", "CN=alice", 2);
    assert!(
        line["reason"]
            .as_str()
            .unwrap()
            .contains("CRL source cold: the CRL source has no CRL in force yet"),
        "{line}"
    );
    refusals(&gw, "crl_missing", "CN=mallory", 1);
    // The Warm CA's CRL is in force: its clients are checked against it and accepted.
    gw.wait_crl("warm", "the warm CRL", |s| s["state"] == "InForce");
    assert!(accepted(&hello(port, &bob)), "bob");
    assert!(metric(
        &gw,
        "postern_crl_certificate_rejections_total{source=\"cold\",reason=\"missing\"} 3"
    ));
    assert!(metric(&gw, "postern_crl_in_force{source=\"cold\"} 0"));
    assert!(
        metric(
            &gw,
            "postern_tls_handshakes_total{listener=\"submission\",outcome=\"failed\",reason=\"crl_missing\"} 3"
        ),
        "{}",
        gw.http_get("/metrics").unwrap().1
    );

    // The CA's CRL becomes reachable: the normal rule applies.
    cold.put("/cold.crl", pki.cold.current_crl(1, &[&[0x0a, 0x02]]));
    cold.set_delay(Duration::ZERO);
    cold.fail_with(None);
    gw.wait_crl("cold", "the cold CRL", |s| s["state"] == "InForce");
    assert!(
        accepted(&hello(port, &alice)),
        "alice once the CRL is in force"
    );
    refused(&hello(port, &mallory), "certificate revoked", "mallory");
    assert!(metric(&gw, "postern_crl_in_force{source=\"cold\"} 1"));
}

#[test]
fn failure_policy_open_accepts_while_no_crl_is_in_force_and_says_so() {
    let pki = Pki::new();
    let alice = pki.client("alice", &pki.cold, &[0x0a, 0x01]);
    let mallory = pki.client("mallory", &pki.cold, &[0x0a, 0x02]);
    let cold = HttpServer::start(); // nothing at /cold.crl yet: 404
    let warm = HttpServer::start();
    warm.put("/warm.crl", pki.warm.current_crl(1, &[]));
    let port = free_port();
    let config = pki.config(port, &cold.url("/cold.crl"), &warm.url("/warm.crl"), "Open");
    let gw = start_gateway(&config, &[], "info").unwrap();
    let st = gw.wait_crl("cold", "the failed first fetch", |s| {
        s["state"] == "FetchFailed"
    });
    assert_eq!(st["failurePolicy"], "Open", "{st}");
    assert_eq!(st["failingOpen"], true, "{st}");
    assert!(metric(&gw, "postern_crl_fail_open{source=\"cold\"} 1"));
    assert!(accepted(&hello(port, &alice)), "alice");
    assert!(
        accepted(&hello(port, &mallory)),
        "mallory, not yet known to be revoked"
    );

    // Once a CRL is in force it is enforced like any other.
    cold.put("/cold.crl", pki.cold.current_crl(1, &[&[0x0a, 0x02]]));
    let st = gw.wait_crl("cold", "the cold CRL", |s| s["state"] == "InForce");
    assert_eq!(st["failingOpen"], false, "{st}");
    assert!(metric(&gw, "postern_crl_fail_open{source=\"cold\"} 0"));
    refused(&hello(port, &mallory), "certificate revoked", "mallory");
    assert!(accepted(&hello(port, &alice)), "alice");
}

#[test]
fn a_restarted_gateway_enforces_its_cached_crl_with_the_url_down() {
    let pki = Pki::new();
    let alice = pki.client("alice", &pki.cold, &[0x0a, 0x01]);
    let mallory = pki.client("mallory", &pki.cold, &[0x0a, 0x02]);
    let cache = tempfile::tempdir().unwrap();
    let cache_arg = format!("--crl-cache-dir={}", cache.path().display());
    let cold = HttpServer::start();
    cold.put("/cold.crl", pki.cold.current_crl(1, &[&[0x0a, 0x02]]));
    let warm = HttpServer::start();
    warm.put("/warm.crl", pki.warm.current_crl(1, &[]));
    let port = free_port();
    let config = pki.config(
        port,
        &cold.url("/cold.crl"),
        &warm.url("/warm.crl"),
        "Closed",
    );
    {
        let gw = start_gateway(&config, &[&cache_arg], "info").unwrap();
        gw.wait_crl("cold", "the cold CRL", |s| s["state"] == "InForce");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cache.path().join("cold.json").exists() {
            assert!(Instant::now() < deadline, "cache not written");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    cold.fail_with(Some(503));
    let gw = start_gateway(&config, &[&cache_arg], "info").unwrap();
    let st = gw.crl_status("cold").unwrap();
    assert_eq!(st["state"], "InForce", "{st}");
    assert_eq!(st["restoredFromDisk"], true, "{st}");
    assert!(accepted(&hello(port, &alice)), "alice");
    refused(&hello(port, &mallory), "certificate revoked", "mallory");
}
