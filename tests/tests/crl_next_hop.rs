//! Revocation of the next hop's certificate (`appliesTo: OutboundSmtpTls`) end to end:
//! a `postern-gateway` relays over verified STARTTLS to a second `postern-gateway` (the
//! next hop, which relays to smtp-sink). While the CRL of the next hop's CA has not
//! loaded, the next hop's certificate is unverifiable (`crl_missing`) and the client gets
//! `451 4.4.1`; once the CRL is in force the mail goes through, and a CRL revoking the
//! next hop's certificate stops it again.

use std::time::{Duration, Instant};

use postern_config::GatewayConfig;
use postern_testkit::file_server::HttpServer;
use postern_testkit::gateway::Gateway;
use postern_testkit::pki::{Ca, Leaf, raw_serial};
use postern_testkit::ports::free_port;
use postern_testkit::sink::Sink;
use postern_tests::clients::swaks;
use postern_tests::crl::start_gateway;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

fn next_hop_config(port: u16, server: &Leaf, sink: u16) -> GatewayConfig {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "postern.dev/gateway/v1",
        "listeners": {"hop": {
            "address": "127.0.0.1", "port": port, "hostname": "hop.test",
            "tls": {"certificateChainPem": server.cert_pem, "privateKeyPem": server.key_pem},
            "defaultPolicy": "relay", "nextHop": {"host": "127.0.0.1", "port": sink, "tls": "Disabled"}
        }},
        "policies": {"relay": {"action": "Relay", "tls": "Preferred"}}
    }))
    .unwrap()
}

fn front_config(port: u16, hop: u16, hop_ca: &Ca, crl_url: &str) -> GatewayConfig {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "postern.dev/gateway/v1",
        "listeners": {"front": {
            "address": "127.0.0.1", "port": port, "hostname": "front.test",
            "defaultPolicy": "relay",
            "nextHop": {"host": "127.0.0.1", "port": hop, "tls": "Required", "caPem": hop_ca.cert_pem()}
        }},
        "policies": {"relay": {"action": "Relay", "tls": "Disabled"}},
        "crlSources": {"hop-ca": {"format": "Asn1", "primaryUrl": crl_url, "interval": "1s",
                                  "appliesTo": ["OutboundSmtpTls"]}}
    }))
    .unwrap()
}

fn send(port: u16) -> postern_tests::clients::Run {
    swaks(port, &["--from", "a@example.org", "--to", "b@example.net"]).unwrap()
}

/// Waits (up to 10 s) for a next-hop refusal with `reason`.
fn next_hop_refusal(gw: &Gateway, reason: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(line) = gw
            .log()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["decision"] == "next_hop_certificate" && v["reason"] == reason)
        {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "no {reason} refusal:\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_next_hop_certificate_is_unverifiable_until_its_crl_is_in_force() {
    let hop_ca = Ca::root("Next Hop CA");
    let server = hop_ca.server("127.0.0.1");
    let hop_serial = raw_serial(
        CertificateDer::from_pem_slice(server.cert_pem.as_bytes())
            .unwrap()
            .as_ref(),
    );
    let sink = Sink::start(&[]).unwrap();
    let hop_port = free_port();
    let _hop = start_gateway(&next_hop_config(hop_port, &server, sink.port), &[], "info").unwrap();

    let http = HttpServer::start();
    http.fail_with(Some(503));
    let front_port = free_port();
    let front = start_gateway(
        &front_config(front_port, hop_port, &hop_ca, &http.url("/hop.crl")),
        &[],
        "info",
    )
    .unwrap();
    front.wait_crl("hop-ca", "the failed first fetch", |s| {
        s["state"] == "FetchFailed"
    });

    // No CRL of the next hop's CA yet: its certificate cannot be checked.
    let r = send(front_port);
    assert!(r.replied("451"), "{}", r.output);
    let line = next_hop_refusal(&front, "crl_missing");
    assert_eq!(line["crl_source"], "hop-ca", "{line}");

    // The CRL arrives (not revoking the next hop): relayed.
    http.put("/hop.crl", hop_ca.current_crl(1, &[]));
    http.fail_with(None);
    front.wait_crl("hop-ca", "the CRL", |s| s["state"] == "InForce");
    let r = send(front_port);
    assert!(r.replied("250"), "{}", r.output);
    assert_eq!(sink.wait_for(1, Duration::from_secs(10)).len(), 1);

    // The CA revokes the next hop's certificate: refused again.
    http.put("/hop.crl", hop_ca.current_crl(2, &[&hop_serial]));
    front.wait_crl("hop-ca", "the revoking CRL", |s| s["entries"] == 1);
    let r = send(front_port);
    assert!(r.replied("451"), "{}", r.output);
    next_hop_refusal(&front, "revoked");
}
