//! Fault: the log cannot be written (the disk holding it is full). Mail keeps flowing:
//! a decision line that cannot be written is dropped, it does not end the session that
//! logged it, and it is counted in `postern_log_lines_dropped_total`. (Before, the log
//! writer's report of its own failure went to the same full stderr and panicked every
//! session task.)

use std::time::Duration;

use postern_config::TlsMode;
use postern_testkit::ports::free_port;
use postern_testkit::sink::Sink;
use postern_tests::clients::Raw;
use postern_tests::gateway::{launch, listener, policy, single};

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
