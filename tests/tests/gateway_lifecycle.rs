//! End-to-end: hot reload (valid and invalid configurations), admin endpoints and
//! metrics, and the SIGTERM drain.

use std::time::Duration;

use postern_config::{self as cfg, TlsMode};
use postern_testkit::ports::free_port;
use postern_testkit::sink::Sink;
use postern_tests::clients::{Raw, swaks};
use postern_tests::gateway::{launch, listener, policy, single, start_gateway};

fn greet(port: u16) -> Raw {
    let mut c = Raw::connect(port).unwrap();
    assert!(c.reply().unwrap().starts_with("220 "));
    assert!(c.cmd("EHLO client.test").unwrap().starts_with("250"));
    c
}

#[test]
fn hot_reload_applies_valid_and_refuses_invalid_configurations() {
    let sink = Sink::start(&[]).unwrap();
    let port = free_port();
    let open = single(
        listener(port, sink.port, "relayed"),
        policy(TlsMode::Disabled, false, false, false),
        None,
    );
    let gw = start_gateway(&open).unwrap();
    let status = gw.config_status().unwrap();
    assert_eq!(status["hash"], open.hash());
    assert_eq!(status["generation"], 1);
    assert!(gw.http_get("/healthz").unwrap().1.contains("ok"));

    // A session opened under the old configuration keeps it.
    let mut old_session = greet(port);

    // Valid change: the policy now rejects everybody.
    let mut closed = open.clone();
    closed.policies.get_mut("relayed").unwrap().action = cfg::PolicyAction::Reject;
    gw.write_config_text(&closed.to_yaml()).unwrap();
    gw.wait_hash(&closed.hash(), Duration::from_secs(10))
        .unwrap();
    assert_eq!(gw.config_status().unwrap()["generation"], 2);
    let mut c = Raw::connect(port).unwrap();
    assert!(c.reply().unwrap().starts_with("554 5.7.1"));
    assert!(
        old_session
            .cmd("MAIL FROM:<a@example.org>")
            .unwrap()
            .starts_with("250")
    );
    assert!(
        old_session
            .cmd("RCPT TO:<b@example.net>")
            .unwrap()
            .starts_with("250")
    );
    assert!(old_session.cmd("DATA").unwrap().starts_with("354"));
    old_session
        .send(b"Subject: old rules\r\n\r\nx\r\n.\r\n")
        .unwrap();
    assert!(old_session.reply().unwrap().starts_with("250 2.0.0"));

    // Invalid configurations are refused; the one in force keeps serving.
    gw.write_config_text("apiVersion: postern.dev/gateway/v1\nlisteners: [not a map\n")
        .unwrap();
    assert!(
        gw.wait_log_line(Duration::from_secs(10), |v| v["decision"] == "config"
            && v["outcome"] == "refused")
            .is_some(),
        "{}",
        gw.log()
    );
    let mut bad = closed.clone();
    bad.listeners.get_mut("smtp").unwrap().default_policy = "missing".into();
    gw.write_config_text(&bad.to_yaml()).unwrap();
    assert!(
        gw.wait_log_line(Duration::from_secs(10), |v| v["outcome"] == "refused"
            && v["reason"]
                .as_str()
                .is_some_and(|r| r.contains("MailFlowPolicy \"missing\" not found")))
            .is_some(),
        "{}",
        gw.log()
    );
    let status = gw.config_status().unwrap();
    assert_eq!(status["hash"], closed.hash());
    assert!(
        status["lastAttempt"]["error"]
            .as_str()
            .unwrap()
            .contains("missing"),
        "{status}"
    );
    let mut c = Raw::connect(port).unwrap();
    assert!(c.reply().unwrap().starts_with("554 5.7.1"));

    // Back to open, on a new port too: the old port closes, the new one serves.
    let new_port = free_port();
    let mut moved = open.clone();
    moved.listeners.get_mut("smtp").unwrap().port = new_port;
    gw.write_config_text(&moved.to_yaml()).unwrap();
    gw.wait_hash(&moved.hash(), Duration::from_secs(10))
        .unwrap();
    assert!(
        swaks(
            new_port,
            &["--from", "a@example.org", "--to", "b@example.net"]
        )
        .unwrap()
        .has("250 2.0.0 Ok: queued")
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "old port still accepting"
    );

    let (_, metrics) = gw.http_get("/metrics").unwrap();
    assert!(metrics.contains("postern_config_generation 3"), "{metrics}");
    assert!(
        metrics.contains("postern_config_reloads_total{outcome=\"refused\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "postern_config_info{{hash=\"{}\"}} 1",
            moved.hash()
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("postern_messages_total{listener=\"smtp\",outcome=\"relayed\"} 2"),
        "{metrics}"
    );
}

#[test]
fn sigterm_drains_then_answers_421_4_3_2() {
    let sink = Sink::start(&[]).unwrap();
    let port = free_port();
    let config = single(
        listener(port, sink.port, "relayed"),
        policy(TlsMode::Disabled, false, false, false),
        None,
    );
    let mut gw = launch(&config)
        .args(&["--shutdown-grace", "2s"])
        .start()
        .unwrap();
    let mut a = greet(port);
    let mut b = greet(port);
    gw.signal("TERM").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // No new connections; readiness is withdrawn.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    // A session in progress can still finish its message within the grace period.
    assert!(
        a.cmd("MAIL FROM:<a@example.org>")
            .unwrap()
            .starts_with("250")
    );
    assert!(a.cmd("RCPT TO:<b@example.net>").unwrap().starts_with("250"));
    assert!(a.cmd("DATA").unwrap().starts_with("354"));
    a.send(b"Subject: drain\r\n\r\nx\r\n.\r\n").unwrap();
    assert!(a.reply().unwrap().starts_with("250 2.0.0"));
    assert!(a.cmd("QUIT").unwrap().starts_with("221"));
    // The idle one is told 421 4.3.2 when the grace period is over.
    assert!(b.reply().unwrap().starts_with("421 4.3.2"));
    let status = gw
        .wait_exit(Duration::from_secs(10))
        .expect("gateway exits after the drain");
    assert!(status.success(), "{status}");
    assert_eq!(sink.messages().len(), 1);
}

#[test]
fn sigterm_closes_idle_sessions_at_once_and_lets_transactions_finish() {
    let sink = Sink::start(&[]).unwrap();
    let port = free_port();
    let config = single(
        listener(port, sink.port, "relayed"),
        policy(TlsMode::Disabled, false, false, false),
        None,
    );
    // The default grace period (30 s): idle sessions must not wait for it.
    let mut gw = start_gateway(&config).unwrap();
    let mut idle = greet(port);
    let mut busy = greet(port);
    assert!(
        busy.cmd("MAIL FROM:<a@example.org>")
            .unwrap()
            .starts_with("250")
    );
    assert!(
        busy.cmd("RCPT TO:<b@example.net>")
            .unwrap()
            .starts_with("250")
    );
    let started = std::time::Instant::now();
    gw.signal("TERM").unwrap();
    assert!(idle.reply().unwrap().starts_with("421 4.3.2"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // The open transaction finishes, then the session is closed the same way.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(busy.cmd("DATA").unwrap().starts_with("354"));
    busy.send(b"Subject: drain\r\n\r\nx\r\n.\r\n").unwrap();
    assert!(busy.reply().unwrap().starts_with("250 2.0.0"));
    assert!(busy.reply().unwrap().starts_with("421 4.3.2"));
    let status = gw
        .wait_exit(Duration::from_secs(10))
        .expect("gateway exits once the transaction is done");
    assert!(status.success(), "{status}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(sink.messages().len(), 1);
    assert!(
        gw.log()
            .contains("shutting down: no transaction in progress"),
        "{}",
        gw.log()
    );
}
