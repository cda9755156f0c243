//! CRL discovery end to end: the real `postern-gateway` finds the CRL URLs in the CRL
//! Distribution Points of an OpenSSL-made PKI — the issuing CA's certificate in the
//! `fromCaBundle` bundle names the root's CRL, the client certificates name the issuing
//! CA's — fetches them from a loopback HTTP server, fails closed while a discovered CRL is
//! not loaded yet, and never connects to a distribution point outside
//! `allowedUrlPrefixes` (a listening socket records any connection).

use std::io::ErrorKind;
use std::net::TcpListener;

use postern_config::GatewayConfig;
use postern_testkit::file_server::HttpServer;
use postern_testkit::gateway::Gateway;
use postern_testkit::pki::{Ca, Leaf};
use postern_testkit::ports::free_port;
use postern_tests::clients::Run;
use postern_tests::crl::{certificate_hello, hello_accepted, start_gateway};
use postern_tests::openssl_ca::{Issued, OpensslCa};

fn hello(port: u16, client: &Issued) -> Run {
    certificate_hello(port, &client.cert, &client.key, "discovery.test")
}

fn accepted(r: &Run) -> bool {
    hello_accepted(r, "discovery.test")
}

fn config(port: u16, server: &Leaf, bundle: &str, prefix: &str) -> GatewayConfig {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "postern.dev/gateway/v1",
        "listeners": {"submission": {
            "address": "127.0.0.1", "port": port, "hostname": "mx.discovery.test",
            "tls": {"certificateChainPem": server.cert_pem, "privateKeyPem": server.key_pem,
                    "clientCaPem": bundle},
            "defaultPolicy": "verify", "nextHop": {"host": "127.0.0.1", "port": free_port()}
        }},
        "policies": {"verify": {"action": "Relay", "tls": "Required", "verifyClientCertificate": true}},
        "crlSources": {"dod": {"format": "Pem", "interval": "1h", "appliesTo": ["InboundSmtpTls"],
            "discovery": {"fromCaBundlePem": bundle, "fromPresentedCertificates": true,
                          "allowedUrlPrefixes": [prefix]}}}
    }))
    .unwrap()
}

/// The discovered URL `url` of source `dod`, as `GET /crl/dod` lists it.
fn discovered(gw: &Gateway, url: &str) -> Option<serde_json::Value> {
    gw.crl_status("dod")?["discovered"]
        .as_array()?
        .iter()
        .find(|d| d["url"] == url)
        .cloned()
}

#[test]
fn discovered_distribution_points_are_fetched_and_only_allowed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let http = HttpServer::start();
    let (root_url, issuing_url) = (http.url("/root.crl"), http.url("/issuing.crl"));
    // A distribution point an attacker chose: a socket that records every connection.
    let trap = TcpListener::bind("127.0.0.1:0").unwrap();
    trap.set_nonblocking(true).unwrap();
    let trap_url = format!("http://{}/evil.crl", trap.local_addr().unwrap());

    let root = OpensslCa::root(dir.path(), "root", "Discovery Root CA").unwrap();
    let issuing = root
        .intermediate_with_extensions(
            "issuing",
            "Discovery Issuing CA",
            &format!("crlDistributionPoints = URI:{root_url}"),
        )
        .unwrap();
    let cdp = |url: &str| format!("crlDistributionPoints = URI:{url}");
    let alice = issuing
        .issue_v3_with_extensions("alice", "alice", &cdp(&issuing_url))
        .unwrap();
    let mallory = issuing
        .issue_v3_with_extensions("mallory", "mallory", &cdp(&issuing_url))
        .unwrap();
    let eve = issuing
        .issue_v3_with_extensions("eve", "eve", &cdp(&trap_url))
        .unwrap();
    issuing.revoke(&mallory).unwrap();
    http.put("/root.crl", root.crl_pem().unwrap().into_bytes());
    http.put("/issuing.crl", issuing.crl_pem().unwrap().into_bytes());

    let bundle = format!("{}{}", root.ca.cert_pem(), issuing.ca.cert_pem());
    let server = Ca::root("Discovery Server CA").server("127.0.0.1");
    let port = free_port();
    let gw = start_gateway(&config(port, &server, &bundle, &http.url("/")), &[], "info").unwrap();

    // The issuing CA's distribution point (the root's CRL) is found in the bundle and
    // fetched at once.
    gw.wait_crl("dod", "the root CRL discovered from the bundle", |s| {
        s["discovered"].as_array().is_some_and(|d| {
            d.iter().any(|d| {
                d["url"] == root_url.as_str() && d["state"] == "InForce" && d["from"] == "CaBundle"
            })
        })
    });

    // Alice's distribution point is new: her certificate is unverifiable until the
    // issuing CA's CRL is in force (fail closed), then accepted.
    let r = hello(port, &alice);
    assert!(
        !accepted(&r),
        "accepted before the discovered CRL loaded: {}",
        r.output
    );
    assert!(r.has("unknown ca"), "{}", r.output);
    gw.wait_crl("dod", "the issuing CA's CRL discovered from alice", |_| {
        discovered(&gw, &issuing_url).is_some_and(|d| d["state"] == "InForce")
    });
    let d = discovered(&gw, &issuing_url).unwrap();
    assert_eq!(d["from"], "PresentedCertificate", "{d}");
    assert_eq!(d["entries"], 1, "{d}");
    assert!(accepted(&hello(port, &alice)));
    // Mallory, revoked by the discovered CRL, is refused.
    let r = hello(port, &mallory);
    assert!(r.has("certificate revoked"), "{}", r.output);

    // Eve's distribution point is not allowed: never fetched, logged as a decision, and
    // Eve is checked against the CRL of her issuer in force.
    assert!(accepted(&hello(port, &eve)));
    let line = gw
        .log_lines()
        .into_iter()
        .find(|l| l["decision"] == "crl_discovery" && l["outcome"] == "refused")
        .unwrap_or_else(|| panic!("no refused discovery decision:\n{}", gw.log()));
    assert_eq!(line["url"], trap_url.as_str(), "{line}");
    assert_eq!(line["reason"], "not_allowed", "{line}");
    assert!(discovered(&gw, &trap_url).is_none());
    std::thread::sleep(std::time::Duration::from_millis(500));
    match trap.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("the gateway connected to a distribution point not allowed: {other:?}"),
    }
    assert!(
        http.requests().iter().all(|r| !r.path.contains("evil")),
        "{:?}",
        http.requests()
    );

    // Status and coverage name each discovered URL.
    let st = gw.crl_status("dod").unwrap();
    assert_eq!(st["state"], "InForce", "{st}");
    assert_eq!(st["discovered"].as_array().unwrap().len(), 2, "{st}");
    let (_, coverage) = gw.http_get("/revocation").unwrap();
    let coverage: serde_json::Value = serde_json::from_str(&coverage).unwrap();
    for (cn, url) in [
        ("Discovery Issuing CA", &issuing_url),
        ("Discovery Root CA", &root_url),
    ] {
        let ca = coverage
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["ca"].as_str().is_some_and(|n| n.contains(cn)))
            .unwrap_or_else(|| panic!("{cn} not in {coverage}"));
        assert_eq!(ca["covered"], true, "{ca}");
        assert_eq!(ca["sources"][0], format!("dod[{url}]"), "{ca}");
    }
}
