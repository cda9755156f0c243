//! Faults around the real gateway binary: the next hop down, hung, slow, refusing or
//! vanishing mid-DATA (the client never gets `250` for a message the next hop did not
//! take); the gateway killed with sessions in flight (SIGKILL: no acknowledged message
//! lost) and stopped with SIGTERM (clean drain); the configuration file replaced with
//! invalid ones (the one in force keeps serving).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postern_config::{GatewayConfig, TlsMode};
use postern_testkit::gateway::Gateway;
use postern_tests::gate::{
    Client, Hop, HopMode, Pki, config, policy, start_gateway, static_profile,
};

fn gateway_to(pki: &Pki, hop: SocketAddr) -> (GatewayConfig, Gateway) {
    let cfg = config(
        pki,
        hop,
        policy(TlsMode::Preferred, false, true, false),
        static_profile(false, true),
    );
    let gw = start_gateway(&cfg, &[]).unwrap();
    (cfg, gw)
}

/// An authenticated session over TLS.
fn session(gw: &Gateway, pki: &Pki) -> anyhow::Result<Client> {
    let mut c = Client::connect(gw.addr())?;
    c.cmd("EHLO client.test")?;
    c.starttls(&pki.ca_pem(), None)?;
    c.cmd("EHLO client.test")?;
    let (code, text) = c.auth_plain(b"frank", b"frankpw")?;
    anyhow::ensure!(code == 235, "AUTH: {text}");
    Ok(c)
}

fn body(id: &str) -> String {
    format!(
        "Subject: {id}\r\n\r\n{}\r\n",
        "line of text for the body\r\n".repeat(20)
    )
}

#[test]
fn next_hop_faults_never_yield_250() {
    let pki = Pki::new("Fault CA");

    // Down: nothing listens.
    let (_, gw) = gateway_to(&pki, Hop::down());
    let mut c = session(&gw, &pki).unwrap();
    let (code, text) = c
        .send_mail("frank@example.org", "a@example.net", &body("down"))
        .unwrap();
    assert!(text.starts_with("451 4.4.1"), "{code} {text}");
    drop(gw);

    // Vanishes mid-DATA.
    let hop = Hop::start(HopMode::DropMidData);
    let (_, gw) = gateway_to(&pki, hop.addr);
    let mut c = session(&gw, &pki).unwrap();
    let (code, text) = c
        .send_mail("frank@example.org", "a@example.net", &body("dropped"))
        .unwrap();
    assert!(
        code == 451 || code == 421,
        "a dropped relay must not be acknowledged: {text}"
    );
    assert!(hop.messages().is_empty());

    // Refuses temporarily at the end of DATA: passed on as a temporary failure.
    hop.set_mode(HopMode::TempFail);
    let mut c = session(&gw, &pki).unwrap();
    let (code, text) = c
        .send_mail("frank@example.org", "a@example.net", &body("tempfail"))
        .unwrap();
    assert_eq!(code / 100, 4, "{text}");

    // Hung: accepts the connection, says nothing. The next hop's timeouts (2 s connect,
    // 3 s command here) bound the wait.
    hop.set_mode(HopMode::Silent);
    let mut c = session(&gw, &pki).unwrap();
    let t = Instant::now();
    let (code, text) = c
        .send_mail("frank@example.org", "a@example.net", &body("hung"))
        .unwrap();
    assert!(text.starts_with("451 4.4.1"), "{code} {text}");
    assert!(t.elapsed() < Duration::from_secs(9), "{:?}", t.elapsed());

    // Slow but within its timeouts: delivered, and acknowledged only then.
    hop.set_mode(HopMode::SlowMs(300));
    let mut c = session(&gw, &pki).unwrap();
    let (code, text) = c
        .send_mail("frank@example.org", "a@example.net", &body("slow"))
        .unwrap();
    assert_eq!(code, 250, "{text}");
    let got = hop.messages();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].contains("Subject: slow"));
}

/// SIGKILL while messages are in flight: every message a client saw `250` for is at the
/// next hop (the gateway only acknowledges what the next hop accepted).
#[test]
fn sigkill_loses_no_acknowledged_message() {
    let pki = Pki::new("Kill CA");
    let hop = Hop::start(HopMode::SlowMs(150));
    let (_, gw) = gateway_to(&pki, hop.addr);
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let gw = Arc::new(Mutex::new(gw));
    let addr = gw.lock().unwrap().addr();
    let ca = pki.ca_pem();
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let (acked, ca) = (acked.clone(), ca.clone());
            std::thread::spawn(move || {
                let run = || -> anyhow::Result<()> {
                    let mut c = Client::connect(addr)?;
                    c.cmd("EHLO client.test")?;
                    c.starttls(&ca, None)?;
                    c.cmd("EHLO client.test")?;
                    anyhow::ensure!(c.auth_plain(b"frank", b"frankpw")?.0 == 235);
                    for i in 0..20 {
                        let id = format!("msg-{t}-{i}");
                        let (code, _) =
                            c.send_mail("frank@example.org", "a@example.net", &body(&id))?;
                        if code == 250 {
                            acked.lock().unwrap().push(id);
                        }
                    }
                    Ok(())
                };
                let _ = run();
            })
        })
        .collect();
    // Let some messages through, then kill in the middle of the traffic.
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked.lock().unwrap().len() < 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    gw.lock().unwrap().signal("KILL").unwrap();
    for t in threads {
        t.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let delivered = hop.messages();
    assert!(!acked.is_empty(), "no message went through before the kill");
    for id in &acked {
        assert!(
            delivered
                .iter()
                .any(|m| m.contains(&format!("Subject: {id}\r\n"))),
            "{id} was acknowledged but never reached the next hop"
        );
    }
    assert!(acked.len() < 120, "the kill happened after all traffic");
}

/// SIGTERM: new connections are refused, a message in flight completes (`250`, delivered),
/// an idle session gets `421 4.3.2` when the grace period ends, and the process exits 0.
#[test]
fn sigterm_drains_cleanly() {
    let pki = Pki::new("Drain CA");
    // Each next-hop reply takes 150 ms: the transaction outlasts the SIGTERM, not the grace.
    let hop = Hop::start(HopMode::SlowMs(150));
    let (_, mut gw) = gateway_to(&pki, hop.addr);
    let mut idle = session(&gw, &pki).unwrap();
    let mut busy = session(&gw, &pki).unwrap();
    let sender = std::thread::spawn(move || {
        busy.send_mail("frank@example.org", "a@example.net", &body("in-flight"))
    });
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    gw.signal("TERM").unwrap();
    let (code, text) = sender
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("{e:#}\n{}", gw.log()));
    assert_eq!(code, 250, "the message in flight must complete: {text}");
    assert!(
        hop.messages()
            .iter()
            .any(|m| m.contains("Subject: in-flight"))
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        Client::connect(gw.addr()).is_err(),
        "a draining gateway must not accept new sessions"
    );
    // The idle session (no transaction open) is told 421 4.3.2 without waiting for the
    // 3 s grace period, which only the transaction in flight may use.
    let (code, text) = idle.reply().unwrap();
    assert!(text.starts_with("421 4.3.2"), "{code} {text}");
    let status = gw.wait_exit(Duration::from_secs(15)).unwrap();
    assert!(status.success(), "{status}\n{}", gw.log());
    assert!(
        gw.log()
            .contains("shutting down: no transaction in progress")
            && !gw.log().contains("shutdown grace period over"),
        "{:?}\n{}",
        t.elapsed(),
        gw.log()
    );
}

/// The configuration file replaced by garbage, by a truncated file, and by a parsable but
/// invalid configuration: each is refused and the configuration in force keeps serving;
/// a valid replacement is then applied.
#[test]
fn invalid_config_replacements_keep_the_old_one_serving() {
    let pki = Pki::new("Reload CA");
    let hop = Hop::start(HopMode::Accept);
    let (cfg, gw) = gateway_to(&pki, hop.addr);
    let good = cfg.to_yaml();
    let mut broken = cfg.clone();
    broken.listeners.get_mut("main").unwrap().default_policy = "missing".into();
    let replacements = [
        ("garbage", "\u{1}\u{2}not: [yaml".to_owned()),
        ("truncated", good[..good.len() / 2].to_owned()),
        ("invalid", broken.to_yaml()),
        ("empty", String::new()),
    ];
    for (i, (what, text)) in replacements.iter().enumerate() {
        // Atomically (write + rename): an in-place write can be read half-done, refused as
        // such, and then the next replacement (e.g. the empty one) is that same content.
        gw.write_config_text(text).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while gw.log().matches("configuration refused").count() <= i {
            assert!(
                Instant::now() < deadline,
                "{what} never refused:\n{}",
                gw.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut c = session(&gw, &pki).unwrap();
        let (code, text) = c
            .send_mail("frank@example.org", "a@example.net", &body(what))
            .unwrap();
        assert_eq!(code, 250, "after the {what} file: {text}");
    }
    assert_eq!(hop.messages().len(), replacements.len());
    // A valid new configuration is applied (the greeting names the new host).
    let mut renamed = cfg.clone();
    renamed.listeners.get_mut("main").unwrap().hostname = "renamed.test.postern.dev".into();
    gw.write_config_text(&renamed.to_yaml()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let c = Client::connect(gw.addr()).unwrap();
        if c.greeting.contains("renamed.test.postern.dev") {
            break;
        }
        assert!(Instant::now() < deadline, "never applied:\n{}", gw.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}
