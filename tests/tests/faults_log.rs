//! When the decision log is written. A quiet gateway's decision line is in the log by
//! the time the client has the reply that follows it (a harness or an operator reading
//! the log right after a session finds it). Fault: the log cannot be written (the disk
//! holding it is full). Mail keeps flowing: a decision line that cannot be written is
//! dropped, it does not end the session that logged it, and it is counted in
//! `postern_log_lines_dropped_total`. (Before, the log writer's report of its own
//! failure went to the same full stderr and panicked every session task.)

use std::time::Duration;

use postern_config::TlsMode;
use postern_testkit::ports::free_port;
use postern_testkit::sink::Sink;
use postern_tests::clients::Raw;
use postern_tests::gate::static_profile;
use postern_tests::gateway::{launch, listener, policy, single, start_gateway};

/// Session after session, each decision line is read from the log file the moment the
/// reply after it arrives, without waiting for anything.
#[test]
fn a_decision_line_is_in_the_log_when_the_reply_after_it_arrives() {
    let sink = Sink::start(&[]).unwrap();
    let port = free_port();
    let config = single(
        listener(port, sink.port, "relayed"),
        policy(TlsMode::Disabled, false, false, false),
        Some(static_profile(false, true)),
    );
    let gw = start_gateway(&config).unwrap();
    // The lines of this session with this decision and outcome, read from the file now.
    let logged = |client_port: u16, decision: &str, outcome: &str| {
        std::fs::read_to_string(gw.log_path())
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| {
                v["client_port"] == client_port
                    && v["decision"] == decision
                    && v["outcome"] == outcome
            })
            .count()
    };
    for i in 0..20 {
        let mut c = Raw::connect(port).unwrap();
        let me = c.local_port().unwrap();
        assert!(c.reply().unwrap().starts_with("220 "));
        assert_eq!(logged(me, "connect", "accepted"), 1, "session {i}: connect");
        assert!(c.cmd("EHLO client.test").unwrap().starts_with("250"));
        if i == 0 {
            // frank / wrong (once: failures count towards the throttle).
            assert!(
                c.cmd("AUTH PLAIN AGZyYW5rAHdyb25n")
                    .unwrap()
                    .starts_with("535")
            );
            assert_eq!(logged(me, "auth", "invalid"), 1, "auth refused");
        }
        assert!(
            c.cmd("AUTH PLAIN AGZyYW5rAGZyYW5rcHc=")
                .unwrap()
                .starts_with("235")
        );
        assert_eq!(
            logged(me, "auth", "authenticated"),
            1,
            "session {i}: auth\n{}",
            gw.log_tail(10)
        );
        assert!(
            c.cmd("MAIL FROM:<frank@example.org>")
                .unwrap()
                .starts_with("250")
        );
        assert!(c.cmd("RCPT TO:<b@example.net>").unwrap().starts_with("250"));
        assert!(c.cmd("DATA").unwrap().starts_with("354"));
        c.send(b"Subject: at the reply\r\n\r\nx\r\n.\r\n").unwrap();
        assert!(c.reply().unwrap().starts_with("250"));
        assert_eq!(logged(me, "data", "relayed"), 1, "session {i}: data");
        assert!(c.cmd("QUIT").unwrap().starts_with("221"));
    }
}

#[test]
fn sessions_and_relay_go_on_when_the_log_cannot_be_written() {
    let sink = Sink::start(&[]).unwrap();
    let port = free_port();
    let config = single(
        listener(port, sink.port, "relayed"),
        policy(TlsMode::Disabled, false, false, false),
        None,
    );
    // Writes to /dev/full fail with ENOSPC, as on a full disk.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let mut gw = launch(&config)
        .args(&["--shutdown-grace", "1s"])
        .stderr_to(full)
        .start()
        .expect("the gateway starts with an unwritable log");
    for i in 0..5 {
        let mut c = Raw::connect(port).unwrap();
        let greeting = c.reply().unwrap();
        assert!(greeting.starts_with("220 "), "session {i}: {greeting:?}");
        assert!(c.cmd("EHLO client.test").unwrap().starts_with("250"));
        assert!(
            c.cmd("MAIL FROM:<a@example.org>")
                .unwrap()
                .starts_with("250")
        );
        assert!(c.cmd("RCPT TO:<b@example.net>").unwrap().starts_with("250"));
        assert!(c.cmd("DATA").unwrap().starts_with("354"));
        c.send(format!("Subject: log full {i}\r\n\r\nx\r\n.\r\n").as_bytes())
            .unwrap();
        let reply = c.reply().unwrap();
        assert!(reply.starts_with("250"), "session {i}: {reply:?}");
        assert!(c.cmd("QUIT").unwrap().starts_with("221"));
    }
    assert_eq!(sink.wait_for(5, Duration::from_secs(10)).len(), 5);
    assert!(
        gw.wait_exit(Duration::from_millis(100)).is_err(),
        "the gateway is still running"
    );
    // Every lost line is counted (the PosternDecisionLogDropping alert reads it): at least
    // one decision line per session and command was dropped.
    let admin = format!("127.0.0.1:{}", gw.admin_port()).parse().unwrap();
    let (_, metrics) = postern_testkit::http::http_get(admin, "/metrics").unwrap();
    let dropped: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("postern_log_lines_dropped_total "))
        .expect("postern_log_lines_dropped_total exported")
        .trim()
        .parse()
        .unwrap();
    assert!(dropped >= 5.0, "{dropped} lines counted as dropped");
}
