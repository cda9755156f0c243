//! PROXY protocol end to end: real HAProxy (`send-proxy`, `send-proxy-v2`) and nginx
//! `stream` (`proxy_protocol on`) in front of the real `postern-gateway`. The host access
//! table, the decision log and `Received` see the original client (a loopback address
//! other than the proxy's); STARTTLS and implicit TLS work behind the proxy; a trusted
//! peer without a header, and an untrusted one with a header, are refused with a
//! decision line.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use postern_config::{self as cfg, HostAccessEntry, ProxyProtocol, TlsMode};
use postern_testkit::gateway::Gateway;
use postern_testkit::ports::free_port;
use postern_testkit::sink::Sink;
use postern_tests::clients::swaks;
use postern_tests::front::{Front, Proxy};
use postern_tests::gate::{Pki, connect_from};
use postern_tests::gateway::{listener, policy, single, start_gateway};

const REJECTED_CLIENT: &str = "127.0.0.5";
const CLIENT: &str = "127.0.0.6";

/// A gateway whose listener trusts 127.0.0.1 (where the proxies connect from) and
/// rejects 127.0.0.5 by its host access table.
fn gateway(pki: &Pki, sink: &Sink, implicit_tls: bool) -> (Gateway, SocketAddr) {
    let port = free_port();
    let mut l = listener(port, sink.port, "relayed");
    l.tls = Some(cfg::ListenerTls {
        certificate_chain_pem: pki.server_pem.clone(),
        private_key_pem: pki.server_key_pem.clone(),
        client_ca_pem: None,
        revocation: Default::default(),
        allow_version1_client_certificates: false,
    });
    l.implicit_tls = implicit_tls;
    l.host_access_table = vec![HostAccessEntry {
        sender_group: "BLOCKED".into(),
        cidrs: vec![format!("{REJECTED_CLIENT}/32").parse().unwrap()],
        policy: "blocked".into(),
    }];
    l.proxy_protocol = Some(ProxyProtocol {
        trusted_cidrs: vec!["127.0.0.1/32".parse().unwrap()],
    });
    let mut config = single(l, policy(TlsMode::Preferred, false, false, false), None);
    let mut blocked = policy(TlsMode::Preferred, false, false, false);
    blocked.action = cfg::PolicyAction::Reject;
    config.policies.insert("blocked".into(), blocked);
    let gw = start_gateway(&config).unwrap();
    (gw, SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
}

fn through(front: Front, implicit_tls: bool) {
    let pki = Pki::new(&format!("proxy {front:?}"));
    let sink = Sink::start(&[]).unwrap();
    let (gw, addr) = gateway(&pki, &sink, implicit_tls);
    let proxy = Proxy::start(front, addr).unwrap();
    let tls = if implicit_tls { "--tlsc" } else { "--tls" };

    let r = swaks(
        proxy.port,
        &[tls, "--local-interface", CLIENT, "--to", "b@example.net"],
    )
    .unwrap();
    assert!(r.has("250 2.0.0 Ok: queued"), "{front:?}: {}", r.output);
    let msgs = sink.wait_for(1, Duration::from_secs(10));
    let m = &msgs[0].message;
    assert!(
        m.starts_with(&format!(
            "Received: from client.test ([{CLIENT}] via proxy [127.0.0.1])"
        )),
        "{front:?}: {m}"
    );
    assert!(m.contains("with ESMTPS"), "{m}");

    let r = swaks(
        proxy.port,
        &[
            tls,
            "--local-interface",
            REJECTED_CLIENT,
            "--to",
            "b@example.net",
        ],
    )
    .unwrap();
    assert!(r.has("554 5.7.1"), "{front:?}: {}", r.output);

    let d = gw.decisions();
    let connects: Vec<_> = d.iter().filter(|v| v["decision"] == "connect").collect();
    assert!(
        connects.iter().any(|v| v["client_ip"] == CLIENT
            && v["proxy_ip"] == "127.0.0.1"
            && v["outcome"] == "accepted"),
        "{front:?}: {connects:?}"
    );
    assert!(
        connects.iter().any(|v| v["client_ip"] == REJECTED_CLIENT
            && v["sender_group"] == "BLOCKED"
            && v["outcome"] == "rejected"),
        "{front:?}: {connects:?}"
    );
}

#[test]
fn haproxy_v2_starttls() {
    through(Front::HaproxyV2, false);
}

#[test]
fn haproxy_v1_starttls() {
    through(Front::HaproxyV1, false);
}

#[test]
fn haproxy_v2_implicit_tls() {
    through(Front::HaproxyV2, true);
}

#[test]
fn nginx_stream_starttls_and_implicit_tls() {
    through(Front::NginxStream, false);
    through(Front::NginxStream, true);
}

/// Read what the gateway sends until it closes (bounded).
fn read_all(s: &mut std::net::TcpStream) -> String {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn header_rules_are_enforced_with_a_decision_line() {
    let pki = Pki::new("proxy rules");
    let sink = Sink::start(&[]).unwrap();
    let (gw, addr) = gateway(&pki, &sink, false);

    // The trusted proxy address speaking SMTP without a header.
    let mut s = connect_from(addr, IpAddr::V4(Ipv4Addr::LOCALHOST)).unwrap();
    s.write_all(b"EHLO x\r\n").unwrap();
    let out = read_all(&mut s);
    assert!(out.starts_with("421 4.7.0"), "{out}");

    // An untrusted peer sending a header as its first line, after the greeting.
    let untrusted: IpAddr = "127.0.0.9".parse().unwrap();
    let mut s = connect_from(addr, untrusted).unwrap();
    s.write_all(b"PROXY TCP4 192.0.2.1 127.0.0.1 1234 25\r\nEHLO x\r\n")
        .unwrap();
    let out = read_all(&mut s);
    assert!(out.starts_with("220 "), "{out}");
    assert!(out.contains("421 4.7.0"), "{out}");
    assert!(!out.contains("250"), "{out}");

    // The same with a v2 header.
    let mut s = connect_from(addr, untrusted).unwrap();
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    v2.extend_from_slice(&[192, 0, 2, 1, 127, 0, 0, 1, 4, 210, 0, 25]);
    s.write_all(&v2).unwrap();
    let out = read_all(&mut s);
    assert!(out.contains("421 4.7.0"), "{out}");

    // A trusted proxy's health check (v2 LOCAL): served as the proxy itself.
    let mut s = connect_from(addr, IpAddr::V4(Ipv4Addr::LOCALHOST)).unwrap();
    s.write_all(b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00QUIT\r\n")
        .unwrap();
    let out = read_all(&mut s);
    assert!(out.starts_with("220 "), "{out}");
    assert!(out.contains("221"), "{out}");

    // A trusted proxy whose client's first commands arrive in the header's segment: the
    // session gets them after its greeting, none is lost or read twice.
    let mut s = connect_from(addr, IpAddr::V4(Ipv4Addr::LOCALHOST)).unwrap();
    s.write_all(b"PROXY TCP4 192.0.2.7 127.0.0.1 4321 25\r\nEHLO pipelined\r\nQUIT\r\n")
        .unwrap();
    let out = read_all(&mut s);
    assert!(out.starts_with("220 "), "{out}");
    assert_eq!(out.matches("\r\n250 ").count(), 1, "{out}");
    assert!(out.contains("\r\n221 "), "{out}");

    let d = gw.decisions();
    assert!(
        d.iter().any(|v| v["client_ip"] == "192.0.2.7"
            && v["decision"] == "connect"
            && v["outcome"] == "accepted"),
        "{d:?}"
    );
    let reasons: Vec<String> = d
        .iter()
        .filter(|v| v["outcome"] == "rejected")
        .map(|v| v["reason"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("trusted proxy sent no valid PROXY header")),
        "{reasons:?}"
    );
    assert_eq!(
        reasons
            .iter()
            .filter(|r| r.as_str() == "PROXY header from a peer outside proxyProtocol.trustedCidrs")
            .count(),
        2,
        "{reasons:?}"
    );
}
