//! Bounded load against the real gateway binary on loopback: slow clients (slowloris)
//! cannot starve others — the listener's connection cap holds and the command timeout is
//! a deadline per line, not per read; memory stays bounded under junk; reloading the
//! configuration under steady traffic drops nothing.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postern_config::{GatewayConfig, TlsMode};
use postern_tests::gate::{
    Client, Hop, HopMode, Pki, config, policy, start_gateway, static_profile,
};

fn base(pki: &Pki, hop: SocketAddr, max_connections: u32, command: Duration) -> GatewayConfig {
    let mut cfg = config(
        pki,
        hop,
        policy(TlsMode::Preferred, false, true, false),
        static_profile(false, true),
    );
    let l = cfg.listeners.get_mut("main").unwrap();
    l.max_connections = max_connections;
    // Every client here is 127.0.0.1: the listener's cap is the one under test.
    l.max_connections_per_client = Some(max_connections);
    l.timeouts.command = command.into();
    cfg
}

fn deliver(addr: SocketAddr, ca: &str, id: &str) -> anyhow::Result<(u16, String)> {
    let mut c = Client::connect(addr)?;
    anyhow::ensure!(c.greeting.starts_with("220"), "greeting {}", c.greeting);
    c.cmd("EHLO client.test")?;
    c.starttls(ca, None)?;
    c.cmd("EHLO client.test")?;
    anyhow::ensure!(c.auth_plain(b"frank", b"frankpw")?.0 == 235, "AUTH");
    let r = c.send_mail(
        "frank@example.org",
        "a@example.net",
        &format!("Subject: {id}\r\n\r\nbody\r\n"),
    )?;
    let _ = c.cmd("QUIT");
    Ok(r)
}

#[test]
fn slowloris_cannot_starve_other_clients() {
    let pki = Pki::new("Slowloris CA");
    let hop = Hop::start(HopMode::Accept);
    // 5 s command timeout: long enough that on a loaded machine all ten are still
    // holding their slots when the eleventh connects.
    let gw = start_gateway(&base(&pki, hop.addr, 10, Duration::from_secs(5)), &[]).unwrap();
    let addr = gw.addr();

    // Ten clients take every slot and trickle a byte every 300 ms, never ending a line.
    let stop = Arc::new(AtomicBool::new(false));
    let cut = Arc::new(AtomicUsize::new(0));
    let greeted_all = Arc::new(AtomicUsize::new(0));
    let slow: Vec<_> = (0..10)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            let (stop, cut, greeted_all) = (stop.clone(), cut.clone(), greeted_all.clone());
            std::thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_millis(300)))
                    .unwrap();
                let mut buf = [0u8; 512];
                let mut greeted = false;
                let t = Instant::now();
                while !stop.load(Ordering::Relaxed) && t.elapsed() < Duration::from_secs(20) {
                    if s.write_all(b"X").is_err() {
                        break;
                    }
                    match s.read(&mut buf) {
                        Ok(0) => break,
                        Ok(_) if greeted => {} // e.g. 421 4.4.2 before the close
                        Ok(_) => {
                            greeted = true;
                            greeted_all.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                        Err(_) => break,
                    }
                }
                if t.elapsed() < Duration::from_secs(20) && !stop.load(Ordering::Relaxed) {
                    cut.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    // Every slow client holds a slot once it has its greeting.
    let t = Instant::now();
    while greeted_all.load(Ordering::Relaxed) < 10 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "slow clients never greeted"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // The cap holds: the eleventh connection is told so at once, not queued.
    let t = Instant::now();
    let c = Client::connect(addr).unwrap();
    assert!(c.greeting.starts_with("421"), "{}", c.greeting);
    assert!(t.elapsed() < Duration::from_secs(2));

    // Within the command timeout (5 s) plus slack, the trickling clients are cut and a
    // normal client is served.
    let t = Instant::now();
    loop {
        match deliver(addr, &pki.ca_pem(), "served") {
            Ok((250, _)) => break,
            other => {
                assert!(
                    t.elapsed() < Duration::from_secs(12),
                    "starved: {other:?}\n{}",
                    gw.log()
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for s in slow {
        s.join().unwrap();
    }
    assert_eq!(cut.load(Ordering::Relaxed), 10, "every slow client is cut");
    assert_eq!(hop.messages().len(), 1);
}

#[test]
fn memory_stays_bounded_under_junk() {
    let pki = Pki::new("Memory CA");
    let hop = Hop::start(HopMode::Accept);
    let gw = start_gateway(&base(&pki, hop.addr, 200, Duration::from_secs(5)), &[]).unwrap();
    let addr = gw.addr();
    std::thread::sleep(Duration::from_millis(300));
    let before = gw.rss_kib();
    // 100 connections, each pushing 512 KiB of one endless command line.
    let junk = vec![b'A'; 512 * 1024];
    let conns: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ = s.write_all(&junk);
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let during = gw.rss_kib();
    drop(conns);
    // Still serving afterwards.
    let (code, text) = deliver(addr, &pki.ca_pem(), "after-junk").unwrap();
    assert_eq!(code, 250, "{text}");
    let grown = during.saturating_sub(before);
    // 50 MiB of junk was sent; far less may stay with the gateway.
    assert!(
        grown < 16 * 1024,
        "RSS grew {grown} KiB ({before} -> {during})"
    );
}

#[test]
fn reload_under_load_drops_nothing() {
    let pki = Pki::new("Reload load CA");
    let hop = Hop::start(HopMode::Accept);
    let cfg = base(&pki, hop.addr, 100, Duration::from_secs(10));
    let gw = start_gateway(&cfg, &[]).unwrap();
    let addr = gw.addr();
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let senders: Vec<_> = (0..4)
        .map(|t| {
            let (ca, failures) = (pki.ca_pem(), failures.clone());
            std::thread::spawn(move || {
                for i in 0..12 {
                    let id = format!("load-{t}-{i}");
                    match deliver(addr, &ca, &id) {
                        Ok((250, _)) => {}
                        other => failures.lock().unwrap().push(format!("{id}: {other:?}")),
                    }
                }
            })
        })
        .collect();
    // Meanwhile, a new configuration every 150 ms (the greeting host name changes).
    let mut n = 0;
    while senders.iter().any(|s| !s.is_finished()) {
        let mut next = cfg.clone();
        next.listeners.get_mut("main").unwrap().hostname = format!("gen{n}.test.postern.dev");
        std::fs::write(gw.config_path(), next.to_yaml()).unwrap();
        n += 1;
        std::thread::sleep(Duration::from_millis(150));
    }
    for s in senders {
        s.join().unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "{failures:#?}\n{}", gw.log());
    assert_eq!(hop.messages().len(), 48);
    assert!(
        gw.log().matches("configuration applied").count() >= 3,
        "{n} rewrites, too few reloads seen:\n{}",
        gw.log()
    );
}

/// Read one reply line from a plain connection (whatever its read timeout).
fn line(r: &mut std::io::BufReader<TcpStream>) -> std::io::Result<String> {
    use std::io::BufRead;
    let mut l = String::new();
    r.read_line(&mut l)?;
    Ok(l)
}

#[test]
fn trickling_data_is_cut_at_the_data_deadline() {
    let pki = Pki::new("Data deadline CA");
    let hop = Hop::start(HopMode::Accept);
    let mut cfg = base(&pki, hop.addr, 10, Duration::from_secs(10));
    let l = cfg.listeners.get_mut("main").unwrap();
    l.timeouts.data = Duration::from_secs(2).into();
    l.timeouts.data_total = Duration::from_secs(4).into();
    let gw = start_gateway(&cfg, &[]).unwrap();
    let addr = gw.addr();

    // Plain text (this policy allows AUTH without TLS), so replies can be polled.
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = std::io::BufReader::new(s.try_clone().unwrap());
    assert!(line(&mut r).unwrap().starts_with("220"));
    let auth = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(b"\0frank\0frankpw")
    };
    w.write_all(
        format!(
            "EHLO client.test\r\nAUTH PLAIN {auth}\r\nMAIL FROM:<frank@example.org>\r\n\
             RCPT TO:<a@example.net>\r\nDATA\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    for expect in ["250", "235", "250", "250", "354"] {
        let mut l = line(&mut r).unwrap();
        while l.as_bytes().get(3) == Some(&b'-') {
            l = line(&mut r).unwrap();
        }
        assert!(l.starts_with(expect), "{expect}: {l}\n{}", gw.log());
    }

    // A byte every 500 ms: well inside the 2 s idle limit, so only the 4 s deadline for
    // the whole DATA phase can stop it. Bounded at 12 s either way.
    let started = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut reply = String::new();
    while started.elapsed() < Duration::from_secs(12) {
        if w.write_all(b"x").is_err() {
            break;
        }
        match line(&mut r) {
            Ok(l) => {
                reply = l;
                break;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("{e}\n{}", gw.log()),
        }
    }
    let took = started.elapsed();
    assert!(
        reply.starts_with("421 4.4.2"),
        "after {took:?}: {reply:?}\n{}",
        gw.log()
    );
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(8),
        "cut after {took:?}"
    );
    // The connection is closed after the 421, and nothing was relayed.
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert!(
        matches!(line(&mut r).as_deref(), Ok("") | Err(_)),
        "the session must be closed"
    );
    assert!(hop.messages().is_empty());
    gw.wait_log("timeouts.dataTotal", Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", gw.log()));

    // A client that sends promptly is unaffected.
    let (code, text) = deliver(addr, &pki.ca_pem(), "prompt").unwrap();
    assert_eq!(code, 250, "{text}");
    assert_eq!(hop.messages().len(), 1);
}
