//! Connection slots against the real `postern-gateway` binary: one client address
//! cannot take every slot of a listener (`maxConnectionsPerClient`; other addresses are
//! still greeted with `220`), the slot comes back however the session ends, and clients
//! that connect and say nothing, or stall in a TLS handshake (STARTTLS or implicit TLS),
//! are cut at `timeouts.greeting` / `timeouts.tlsHandshake`, long before
//! `timeouts.command`. Loopback gives one machine many client addresses (127.0.0.2,
//! 127.0.0.3, ...).

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use postern_config::{Duration as CfgDuration, GatewayConfig, TlsMode};
use postern_testkit::gateway::Gateway;
use postern_testkit::http::http_get;
use postern_testkit::ports::free_port;
use postern_tests::gate::{
    Client, Hop, HopMode, Pki, config, connect_from, policy, start_gateway, static_profile,
};

fn loopback(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

fn base(pki: &Pki, hop: SocketAddr) -> GatewayConfig {
    config(
        pki,
        hop,
        policy(TlsMode::Preferred, false, false, false),
        static_profile(false, true),
    )
}

/// The value of one metric sample (`name{labels}`), 0 when absent.
fn metric(gw: &Gateway, sample: &str) -> f64 {
    let (_, text) = http_get(gw.admin, "/metrics").unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Wait (bounded) until the listener holds `n` connections.
fn wait_active(gw: &Gateway, n: f64) {
    let t = Instant::now();
    let sample = "postern_connections_active{listener=\"main\"}";
    while metric(gw, sample) != n {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{} connections active, expected {n}\n{}",
            metric(gw, sample),
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether the peer has closed `s` (EOF or reset) within the stream's read timeout.
fn closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// The report: with `maxConnections: 20`, one address opening 20 idle sockets made every
/// other address get `421 4.7.0`. With `maxConnectionsPerClient: 5` that address gets 5,
/// the rest are refused at once, and a second address is still greeted and served.
#[test]
fn one_client_cannot_take_every_slot() {
    let pki = Pki::new("Slots CA");
    let hop = Hop::start(HopMode::Accept);
    let mut cfg = base(&pki, hop.addr);
    let l = cfg.listeners.get_mut("main").unwrap();
    l.max_connections = 20;
    l.max_connections_per_client = Some(5);
    let gw = start_gateway(&cfg, &[]).unwrap();
    let addr = gw.addr();

    // The attacker at 127.0.0.2 opens 20 idle connections.
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..20 {
        let c = Client::connect_from(addr, loopback(2)).unwrap();
        if c.greeting.starts_with("220") {
            held.push(c);
        } else {
            assert!(c.greeting.starts_with("421 4.7.0"), "{}", c.greeting);
            refused += 1;
        }
    }
    assert_eq!((held.len(), refused), (5, 15));
    gw.wait_log("client at maxConnectionsPerClient", Duration::from_secs(10))
        .unwrap();
    assert!(
        gw.log()
            .lines()
            .any(|l| l.contains("client at maxConnectionsPerClient")
                && l.contains("client_ip=127.0.0.2")),
        "{}",
        gw.log()
    );
    // Turned away before it has a session, the line still has every key a session's
    // decision lines have (empty where only a session has a value), and the limit.
    let line = gw
        .log()
        .lines()
        .find(|l| l.contains("client at maxConnectionsPerClient"))
        .map(str::to_owned)
        .unwrap();
    for key in [
        "session=",
        "listener=main",
        "client_port=",
        "proxy_ip=",
        "sender_group=",
        "policy=",
        "profile=",
        "tls=none",
        "cert_subject=",
        "cert_serial=",
        "cert_issuer=",
        "user=",
        "auth_method=",
        "query=",
        "decision=\"connect\"",
        "outcome=\"rejected\"",
        "limit=5",
    ] {
        assert!(line.contains(key), "{key} in {line}");
    }
    assert_eq!(
        metric(
            &gw,
            "postern_connections_total{listener=\"main\",outcome=\"over_client_limit\"}"
        ),
        15.0
    );

    // A second address, while the first is at its limit: greeted, and its mail relayed.
    let mut other = Client::connect_from(addr, loopback(3)).unwrap();
    assert!(other.greeting.starts_with("220"), "{}", other.greeting);
    assert_eq!(other.cmd("EHLO other.test").unwrap().0, 250);
    let (code, text) = other
        .send_mail(
            "a@example.org",
            "b@example.net",
            "Subject: other\r\n\r\nhi\r\n",
        )
        .unwrap();
    assert_eq!(code, 250, "{text}");
    assert_eq!(other.cmd("QUIT").unwrap().0, 221);
    drop(other);

    // The slot comes back when a session ends: the first address may connect again.
    drop(held.pop());
    wait_active(&gw, 4.0);
    held.push(Client::connect_from(addr, loopback(2)).unwrap());
    assert!(held[4].greeting.starts_with("220"), "{}", held[4].greeting);

    // The listener's own cap still holds: three more addresses fill it to 20, and a
    // fourth is refused for that reason.
    for n in 4..=6 {
        for _ in 0..5 {
            let c = Client::connect_from(addr, loopback(n)).unwrap();
            assert!(c.greeting.starts_with("220"), "127.0.0.{n}: {}", c.greeting);
            held.push(c);
        }
    }
    let c = Client::connect_from(addr, loopback(7)).unwrap();
    assert!(c.greeting.starts_with("421 4.7.0"), "{}", c.greeting);
    gw.wait_log("listener at maxConnections", Duration::from_secs(10))
        .unwrap();
    drop(held);
    wait_active(&gw, 0.0);
}

/// A client that connects and says nothing is cut at `timeouts.greeting` (`421 4.4.2`),
/// not after `timeouts.command` (5 minutes here); so is one that says something other
/// than EHLO/HELO. After EHLO the command timeout applies; after STARTTLS the client
/// must say EHLO again within the greeting deadline.
#[test]
fn silent_clients_are_cut_at_the_greeting_deadline() {
    let pki = Pki::new("Greeting CA");
    let hop = Hop::start(HopMode::Accept);
    let mut cfg = base(&pki, hop.addr);
    cfg.listeners.get_mut("main").unwrap().timeouts.greeting = CfgDuration::from_secs(1);
    let gw = start_gateway(&cfg, &[]).unwrap();

    // Silent.
    let t = Instant::now();
    let mut c = Client::connect(gw.addr()).unwrap();
    let (_, text) = c.reply().unwrap();
    assert!(text.starts_with("421 4.4.2"), "{text}");
    assert!(
        (Duration::from_millis(900)..Duration::from_secs(8)).contains(&t.elapsed()),
        "{:?}",
        t.elapsed()
    );
    assert!(c.reply().is_err(), "closed after the 421");
    gw.wait_log(
        "no EHLO/HELO within timeouts.greeting (1s)",
        Duration::from_secs(10),
    )
    .unwrap();

    // NOOPs are no introduction: the deadline set at the greeting still applies.
    let t = Instant::now();
    let mut c = Client::connect(gw.addr()).unwrap();
    assert_eq!(c.cmd("NOOP").unwrap().0, 250);
    let (_, text) = c.reply().unwrap();
    assert!(text.starts_with("421 4.4.2"), "{text}");
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());

    // EHLO in time: the session is not cut at the greeting deadline.
    let mut c = Client::connect(gw.addr()).unwrap();
    assert_eq!(c.cmd("EHLO client.test").unwrap().0, 250);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(c.cmd("NOOP").unwrap().0, 250);
    assert_eq!(c.cmd("QUIT").unwrap().0, 221);

    // After STARTTLS: EHLO again, in time, or the 421 comes over TLS.
    let mut c = Client::connect(gw.addr()).unwrap();
    assert_eq!(c.cmd("EHLO client.test").unwrap().0, 250);
    c.starttls(&pki.ca_pem(), None).unwrap();
    let t = Instant::now();
    let (_, text) = c.reply().unwrap();
    assert!(text.starts_with("421 4.4.2"), "{text}");
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());

    wait_active(&gw, 0.0);
}

/// A client that stalls in the TLS handshake, after STARTTLS or on an implicit TLS
/// listener, is disconnected at `timeouts.tlsHandshake`, not after `timeouts.command`.
#[test]
fn stalled_tls_handshakes_are_cut() {
    let pki = Pki::new("Handshake CA");
    let hop = Hop::start(HopMode::Accept);
    let mut cfg = base(&pki, hop.addr);
    let main = cfg.listeners.get_mut("main").unwrap();
    main.timeouts.tls_handshake = CfgDuration::from_secs(1);
    let mut smtps = main.clone();
    smtps.port = free_port();
    smtps.implicit_tls = true;
    cfg.listeners.insert("smtps".into(), smtps.clone());
    let gw = start_gateway(&cfg, &[]).unwrap();
    let main_addr = gw.addr(); // "main", the first listener by name

    // STARTTLS, then half a ClientHello and nothing more.
    let mut s = connect_from(main_addr, loopback(1)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut greeting = [0u8; 256];
    let _ = s.read(&mut greeting).unwrap();
    s.write_all(b"EHLO client.test\r\n").unwrap();
    let mut text = Vec::new();
    while !text.ends_with(b"\r\n") || !String::from_utf8_lossy(&text).contains("250 ") {
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0);
        text.extend_from_slice(&buf[..n]);
    }
    s.write_all(b"STARTTLS\r\n").unwrap();
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).unwrap();
    assert!(
        buf[..n].starts_with(b"220"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).unwrap();
    let t = Instant::now();
    assert!(closed(&mut s), "still open after {:?}", t.elapsed());
    assert!(
        (Duration::from_millis(500)..Duration::from_secs(8)).contains(&t.elapsed()),
        "{:?}",
        t.elapsed()
    );

    // Implicit TLS: connect and say nothing.
    let smtps_addr = SocketAddr::new(smtps.address, smtps.port);
    let t = Instant::now();
    let mut s = connect_from(smtps_addr, loopback(1)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert!(closed(&mut s), "still open after {:?}", t.elapsed());
    assert!(
        (Duration::from_millis(500)..Duration::from_secs(8)).contains(&t.elapsed()),
        "{:?}",
        t.elapsed()
    );

    gw.wait_log(
        "handshake timeout (timeouts.tlsHandshake 1s)",
        Duration::from_secs(10),
    )
    .unwrap();
    let t = Instant::now();
    while metric(
        &gw,
        "postern_tls_handshakes_total{listener=\"main\",outcome=\"failed\",reason=\"timeout\"}",
    ) + metric(
        &gw,
        "postern_tls_handshakes_total{listener=\"smtps\",outcome=\"failed\",reason=\"timeout\"}",
    ) < 2.0
    {
        assert!(t.elapsed() < Duration::from_secs(10), "{}", gw.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}
