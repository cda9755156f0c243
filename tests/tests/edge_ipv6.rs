//! IPv6 end to end on `::1` with the real `postern-gateway`: a listener on `::` (dual
//! stack: IPv4 clients arrive as IPv4-mapped addresses and match IPv4 rows), an IPv6 row
//! in the host access table, `[IPv6:...]` in `Received`, and a next hop given by IPv6
//! address (a second listener of the same gateway on `::1`, relaying to smtp-sink).

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use postern_config::{self as cfg, HostAccessEntry, TlsMode};
use postern_testkit::ports::free_port;
use postern_testkit::sink::Sink;
use postern_tests::clients::smtplib_send;
use postern_tests::gateway::{listener, policy, start_gateway};

fn send(host: &str, port: u16, source: &str) -> String {
    smtplib_send(host, port, source, None, "Subject: v6")
        .unwrap()
        .output
}

#[test]
fn ipv6_listener_access_table_received_and_next_hop() {
    let sink = Sink::start(&[]).unwrap();
    let (front_port, back_port) = (free_port(), free_port());
    let mut front = listener(front_port, back_port, "blocked");
    front.address = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
    front.host_access_table = vec![
        HostAccessEntry {
            sender_group: "V6".into(),
            cidrs: vec!["::1/128".parse().unwrap()],
            policy: "relayed".into(),
        },
        HostAccessEntry {
            sender_group: "V4".into(),
            cidrs: vec!["127.0.0.2/32".parse().unwrap()],
            policy: "relayed".into(),
        },
    ];
    front.next_hop.host = "::1".into();
    let mut back = listener(back_port, sink.port, "relayed");
    back.address = IpAddr::V6(Ipv6Addr::LOCALHOST);
    let mut blocked = policy(TlsMode::Disabled, false, false, false);
    blocked.action = cfg::PolicyAction::Reject;
    let config = cfg::GatewayConfig {
        listeners: [("front".to_owned(), front), ("back".to_owned(), back)].into(),
        policies: [
            (
                "relayed".to_owned(),
                policy(TlsMode::Disabled, false, false, false),
            ),
            ("blocked".to_owned(), blocked),
        ]
        .into(),
        ..cfg::GatewayConfig::default()
    };
    let gw = start_gateway(&config).unwrap();

    let out = send("::1", front_port, "::1");
    assert!(out.contains("SENT"), "{out}\n{}", gw.log());
    let msgs = sink.wait_for(1, Duration::from_secs(10));
    let m = &msgs[0].message;
    // The back listener saw the front one over IPv6; the front one saw the client.
    assert!(
        m.starts_with("Received: from gw.test.postern.dev ([IPv6:::1])"),
        "{m}"
    );
    assert!(m.contains("Received: from client.test ([IPv6:::1])"), "{m}");

    // IPv4 on the dual-stack listener: matched as IPv4, logged as IPv4.
    let out = send("127.0.0.1", front_port, "127.0.0.2");
    assert!(out.contains("SENT"), "{out}");
    let msgs = sink.wait_for(2, Duration::from_secs(10));
    assert!(
        msgs.iter().any(|d| d
            .message
            .contains("Received: from client.test ([127.0.0.2])")),
        "{msgs:?}"
    );
    let out = send("127.0.0.1", front_port, "127.0.0.3");
    assert!(out.contains("REFUSED"), "{out}");

    let d = gw.decisions();
    let connect = |ip: &str, group: &str| {
        d.iter().any(|v| {
            v["decision"] == "connect"
                && v["listener"] == "front"
                && v["client_ip"] == ip
                && v["sender_group"] == group
        })
    };
    assert!(connect("::1", "V6"), "{d:?}");
    assert!(connect("127.0.0.2", "V4"), "{d:?}");
    assert!(connect("127.0.0.3", "DEFAULT"), "{d:?}");
}
