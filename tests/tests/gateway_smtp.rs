//! End-to-end: the gateway relaying to Postfix's smtp-sink, with swaks, Python smtplib
//! and raw sockets; plain-text policies (TLS cases are in gateway_tls.rs).

use std::time::Duration;

use postern_config::{self as cfg, TlsMode};
use postern_testkit::gateway::Gateway;
use postern_testkit::ports::free_port;
use postern_testkit::sink::Sink;
use postern_tests::clients::{Raw, python, swaks};
use postern_tests::gateway::{listener, policy, single, start_gateway, user};

fn open_relay(sink: &Sink) -> (Gateway, u16) {
    let port = free_port();
    let gw = start_gateway(&single(
        listener(port, sink.port, "relayed"),
        policy(TlsMode::Disabled, false, false, false),
        None,
    ))
    .unwrap();
    (gw, port)
}

fn greet(port: u16) -> Raw {
    let mut c = Raw::connect(port).unwrap();
    assert!(c.reply().unwrap().starts_with("220 "));
    assert!(c.cmd("EHLO client.test").unwrap().starts_with("250"));
    c
}

#[test]
fn swaks_message_arrives_with_received_header() {
    let sink = Sink::start(&[]).unwrap();
    let (gw, port) = open_relay(&sink);
    let r = swaks(
        port,
        &[
            "--from",
            "a@example.org",
            "--to",
            "b@example.net",
            "--body",
            "hello from swaks",
        ],
    )
    .unwrap();
    assert_eq!(r.code, 0, "{}", r.output);
    assert!(r.has("250 2.0.0 Ok: queued as"), "{}", r.output);
    let msgs = sink.wait_for(1, Duration::from_secs(5));
    assert_eq!(msgs.len(), 1);
    let m = &msgs[0];
    assert_eq!(m.mail_from, "<a@example.org>");
    assert_eq!(m.rcpts, ["<b@example.net>"]);
    assert!(m.message.starts_with("Received: from client.test ([127.0.0.1])\n\tby gw.test.postern.dev (Postern) with ESMTP id "), "{}", m.message);
    assert!(m.message.contains("\tfor <b@example.net>;\n"));
    assert!(m.message.contains("hello from swaks"));
    let d = gw.decisions();
    assert!(
        d.iter()
            .any(|v| v["decision"] == "data" && v["outcome"] == "relayed"),
        "{d:?}"
    );
}

#[test]
fn smtplib_message_is_byte_exact_after_dot_unstuffing() {
    let sink = Sink::start(&[]).unwrap();
    let (_gw, port) = open_relay(&sink);
    let script = r#"
import smtplib
body = "Subject: dots\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nmiddle\r\n...\r\nlast line without newline"
s = smtplib.SMTP("127.0.0.1", PORT, timeout=10)
s.ehlo("py.client")
s.sendmail("a@example.org", ["b@example.net", "c@example.net"], body)
s.quit()
print("SENT")
"#
    .replace("PORT", &port.to_string());
    let r = python(&script).unwrap();
    assert!(r.has("SENT"), "{}", r.output);
    let msgs = sink.wait_for(1, Duration::from_secs(5));
    let m = &msgs[0];
    assert_eq!(m.rcpts, ["<b@example.net>", "<c@example.net>"]);
    let after_received = m.message.split_once("+0000\n").unwrap().1;
    let expected =
        "Subject: dots\n\n.leading dot\n..two dots\n.\nmiddle\n...\nlast line without newline\n";
    assert!(
        after_received.starts_with(expected),
        "got {after_received:?}"
    );
}

#[test]
fn pipelining_and_command_replies() {
    let sink = Sink::start(&[]).unwrap();
    let (_gw, port) = open_relay(&sink);
    let mut c = Raw::connect(port).unwrap();
    c.reply().unwrap();
    let ehlo = c.cmd("EHLO client.test").unwrap();
    for kw in [
        "PIPELINING",
        "SIZE 10485760",
        "8BITMIME",
        "ENHANCEDSTATUSCODES",
        "SMTPUTF8",
    ] {
        assert!(ehlo.contains(kw), "{ehlo}");
    }
    assert!(
        !ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"),
        "{ehlo}"
    );
    assert!(c.cmd("VRFY bob").unwrap().starts_with("252 2.5.2"));
    assert!(c.cmd("HELP").unwrap().starts_with("214"));
    assert!(c.cmd("NOOP").unwrap().starts_with("250 2.0.0"));
    assert!(c.cmd("EXPN list").unwrap().starts_with("502 5.5.1"));
    assert!(c.cmd("FROB").unwrap().starts_with("500 5.5.2"));
    assert!(c.cmd("STARTTLS").unwrap().starts_with("502 5.5.1"));
    assert!(c.cmd("AUTH PLAIN").unwrap().starts_with("503 5.5.1"));
    // Pipelined transaction in one write.
    c.send(
        b"MAIL FROM:<a@example.org> BODY=8BITMIME SIZE=100\r\nRCPT TO:<b@example.net>\r\nDATA\r\n",
    )
    .unwrap();
    assert!(c.reply().unwrap().starts_with("250 2.1.0"));
    assert!(c.reply().unwrap().starts_with("250 2.1.5"));
    assert!(c.reply().unwrap().starts_with("354"));
    c.send(b"Subject: p\r\n\r\nx\r\n.\r\nRSET\r\nQUIT\r\n")
        .unwrap();
    assert!(c.reply().unwrap().starts_with("250 2.0.0 Ok: queued"));
    assert!(c.reply().unwrap().starts_with("250 2.0.0"));
    assert!(c.reply().unwrap().starts_with("221 2.0.0"));
    assert_eq!(sink.wait_for(1, Duration::from_secs(5)).len(), 1);
}

#[test]
fn bad_input_gets_the_right_reply_and_nothing_is_lost() {
    let sink = Sink::start(&[]).unwrap();
    let (_gw, port) = open_relay(&sink);
    let mut c = greet(port);
    // Overlong line.
    c.send(&[b'N'; 10_000]).unwrap();
    c.send(b"\r\n").unwrap();
    assert!(c.reply().unwrap().starts_with("500 5.5.2"));
    // NUL in a command.
    c.send(b"NOOP\0x\r\n").unwrap();
    assert!(c.reply().unwrap().starts_with("500 5.5.2"));
    // Out of order.
    assert!(
        c.cmd("RCPT TO:<b@example.net>")
            .unwrap()
            .starts_with("503 5.5.1")
    );
    assert!(c.cmd("DATA").unwrap().starts_with("503 5.5.1"));
    assert!(
        c.cmd("MAIL FROM:<a@example.org>")
            .unwrap()
            .starts_with("250")
    );
    assert!(
        c.cmd("MAIL FROM:<a@example.org>")
            .unwrap()
            .starts_with("503 5.5.1")
    );
    // DATA without RCPT.
    assert!(c.cmd("DATA").unwrap().starts_with("503 5.5.1"));
    assert!(
        c.cmd("MAIL FROM:<a@example.org")
            .unwrap()
            .starts_with("501")
    );
    assert!(c.cmd("RSET").unwrap().starts_with("250"));
    assert!(c.cmd("MAIL FROM:<bad address>").unwrap().starts_with("501"));
    assert!(
        c.cmd("MAIL FROM:<a@example.org> FOO=BAR")
            .unwrap()
            .starts_with("555 5.5.4")
    );
    // Bare LF (command lines are accepted with bare LF; message data is not).
    c.send(b"NOOP\n").unwrap();
    assert!(c.reply().unwrap().starts_with("250"));
    assert!(
        c.cmd("MAIL FROM:<a@example.org>")
            .unwrap()
            .starts_with("250")
    );
    assert!(c.cmd("RCPT TO:<b@example.net>").unwrap().starts_with("250"));
    assert!(c.cmd("DATA").unwrap().starts_with("354"));
    c.send(b"Subject: smuggle\r\n\r\nline\n.\nMAIL FROM:<x@y.z>\r\n.\r\n")
        .unwrap();
    assert!(c.reply().unwrap().starts_with("521 5.5.2"));
    assert!(c.closed());
    // NUL in message data.
    let mut c = greet(port);
    c.cmd("MAIL FROM:<a@example.org>").unwrap();
    c.cmd("RCPT TO:<b@example.net>").unwrap();
    assert!(c.cmd("DATA").unwrap().starts_with("354"));
    c.send(b"Subject: nul\r\n\r\na\0b\r\n.\r\n").unwrap();
    assert!(c.reply().unwrap().starts_with("554 5.6.0"));
    // The session goes on after a refused message.
    assert!(c.cmd("NOOP").unwrap().starts_with("250"));
    // A client that disappears mid-DATA.
    let mut c = greet(port);
    c.cmd("MAIL FROM:<a@example.org>").unwrap();
    c.cmd("RCPT TO:<b@example.net>").unwrap();
    assert!(c.cmd("DATA").unwrap().starts_with("354"));
    c.send(b"Subject: half\r\n\r\nhalf a message\r\n").unwrap();
    drop(c);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        sink.messages().is_empty(),
        "a partial message reached the next hop"
    );
}

#[test]
fn auth_with_malformed_input_and_cancel() {
    let sink = Sink::start(&[]).unwrap();
    let port = free_port();
    let profile = cfg::AuthProfile {
        certificate: None,
        smtp_auth: Some(cfg::SmtpAuth {
            profile: "users".into(),
            backend: cfg::AuthBackend::Static {
                users: vec![user("frank", Some("frankpw"), None, true)],
            },
            allowance: None,
            throttle: Default::default(),
        }),
    };
    let _gw = start_gateway(&single(
        listener(port, sink.port, "relayed"),
        policy(TlsMode::Disabled, false, true, false),
        Some(profile),
    ))
    .unwrap();
    let mut c = greet(port);
    assert!(
        c.cmd("AUTH PLAIN !!!notbase64")
            .unwrap()
            .starts_with("501 5.5.2")
    );
    assert!(c.cmd("AUTH PLAIN").unwrap().starts_with("334"));
    assert!(c.cmd("*").unwrap().starts_with("501 5.7.0"));
    assert!(c.cmd("AUTH CRAM-MD5").unwrap().starts_with("504 5.5.4"));
    assert!(
        c.cmd("MAIL FROM:<a@example.org>")
            .unwrap()
            .starts_with("530 5.7.0")
    );
    assert!(c.cmd("AUTH LOGIN").unwrap().starts_with("334 VXNlcm5hbWU6"));
    assert!(c.cmd("ZnJhbms=").unwrap().starts_with("334 UGFzc3dvcmQ6"));
    assert!(c.cmd("d3Jvbmc=").unwrap().starts_with("535 5.7.8"));
    // AUTH LOGIN with the user name as initial response.
    assert!(
        c.cmd("AUTH LOGIN ZnJhbms=")
            .unwrap()
            .starts_with("334 UGFzc3dvcmQ6")
    );
    assert!(c.cmd("ZnJhbmtwdw==").unwrap().starts_with("235 2.7.0"));
    assert!(
        c.cmd("AUTH PLAIN AGZyYW5rAGZyYW5rcHc=")
            .unwrap()
            .starts_with("503 5.5.1")
    );
    assert!(
        c.cmd("MAIL FROM:<frank@example.org>")
            .unwrap()
            .starts_with("250")
    );
}

#[test]
fn size_and_recipient_limits() {
    let sink = Sink::start(&[]).unwrap();
    let port = free_port();
    let mut p = policy(TlsMode::Disabled, false, false, false);
    p.limits = cfg::Limits {
        max_message_size: 1000,
        max_recipients: 2,
        max_messages_per_session: 100,
    };
    let _gw = start_gateway(&single(listener(port, sink.port, "relayed"), p, None)).unwrap();
    let mut c = greet(port);
    assert!(
        c.cmd("MAIL FROM:<a@example.org> SIZE=5000")
            .unwrap()
            .starts_with("552 5.3.4")
    );
    assert!(
        c.cmd("MAIL FROM:<a@example.org>")
            .unwrap()
            .starts_with("250")
    );
    assert!(
        c.cmd("RCPT TO:<b1@example.net>")
            .unwrap()
            .starts_with("250")
    );
    assert!(
        c.cmd("RCPT TO:<b2@example.net>")
            .unwrap()
            .starts_with("250")
    );
    assert!(
        c.cmd("RCPT TO:<b3@example.net>")
            .unwrap()
            .starts_with("452 4.5.3")
    );
    assert!(c.cmd("DATA").unwrap().starts_with("354"));
    let mut big = b"Subject: big\r\n\r\n".to_vec();
    for _ in 0..100 {
        big.extend_from_slice(b"0123456789012345678901234567890123456789\r\n");
    }
    big.extend_from_slice(b".\r\n");
    c.send(&big).unwrap();
    assert!(c.reply().unwrap().starts_with("552 5.3.4"));
    assert!(c.cmd("NOOP").unwrap().starts_with("250"));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        sink.messages().is_empty(),
        "an oversize message reached the next hop"
    );
    // swaks sees the same.
    let r = swaks(
        port,
        &[
            "--from",
            "a@example.org",
            "--to",
            "b@example.net",
            "--body",
            &"x".repeat(2000),
        ],
    )
    .unwrap();
    assert!(r.has("552 5.3.4"), "{}", r.output);
}

#[test]
fn next_hop_refusals_and_failures() {
    // Permanent refusal passed through.
    let sink = Sink::start(&["-f", "RCPT"]).unwrap();
    let (_gw, port) = open_relay(&sink);
    let mut c = greet(port);
    assert!(
        c.cmd("MAIL FROM:<a@example.org>")
            .unwrap()
            .starts_with("250")
    );
    let r = c.cmd("RCPT TO:<b@example.net>").unwrap();
    assert!(r.starts_with("5"), "{r}");
    // A next hop that refuses the session itself (5xx greeting, then 5xx EHLO and HELO):
    // permanent, passed through at MAIL, not turned into a temporary 451.
    for refused in ["CONNECT", "EHLO,HELO"] {
        let sink = Sink::start(&["-f", refused]).unwrap();
        let (_gw, port) = open_relay(&sink);
        let mut c = greet(port);
        let r = c.cmd("MAIL FROM:<a@example.org>").unwrap();
        assert!(
            r.starts_with("5") && r.contains("Next hop"),
            "{refused}: {r}"
        );
    }
    // Temporary refusal at DATA: 451 4.4.1.
    let sink = Sink::start(&["-r", "DATA"]).unwrap();
    let (_gw2, port) = open_relay(&sink);
    let r = swaks(port, &["--from", "a@example.org", "--to", "b@example.net"]).unwrap();
    assert!(r.has("451 4.4.1"), "{}", r.output);
    // Unreachable next hop.
    let dead = free_port();
    let port = free_port();
    let _gw3 = start_gateway(&single(
        listener(port, dead, "relayed"),
        policy(TlsMode::Disabled, false, false, false),
        None,
    ))
    .unwrap();
    let mut c = greet(port);
    assert!(
        c.cmd("MAIL FROM:<a@example.org>")
            .unwrap()
            .starts_with("451 4.4.1")
    );
    // A next hop that accepts the connection and then hangs.
    let hang = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free_port();
    let _gw4 = start_gateway(&single(
        listener(port, hang.local_addr().unwrap().port(), "relayed"),
        policy(TlsMode::Disabled, false, false, false),
        None,
    ))
    .unwrap();
    let mut c = greet(port);
    let started = std::time::Instant::now();
    assert!(
        c.cmd("MAIL FROM:<a@example.org>")
            .unwrap()
            .starts_with("451 4.4.1")
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    // A next hop that hangs after DATA: nothing acknowledged.
    let sink = Sink::start(&["-w", "30"]).unwrap();
    let (_gw5, port) = open_relay(&sink);
    let r = swaks(port, &["--from", "a@example.org", "--to", "b@example.net"]).unwrap();
    assert!(r.has("451 4.4.1") && !r.has("queued as"), "{}", r.output);
}

#[test]
fn policy_reject_host_access_table_idle_timeout_and_connection_cap() {
    let sink = Sink::start(&[]).unwrap();
    let port = free_port();
    let mut l = listener(port, sink.port, "relayed");
    l.host_access_table = vec![cfg::HostAccessEntry {
        sender_group: "BLOCKED".into(),
        cidrs: vec!["127.0.0.0/8".parse().unwrap()],
        policy: "blocked".into(),
    }];
    let mut config = single(l, policy(TlsMode::Disabled, false, false, false), None);
    let mut blocked = policy(TlsMode::Disabled, false, false, false);
    blocked.action = cfg::PolicyAction::Reject;
    config.policies.insert("blocked".into(), blocked);
    let gw = start_gateway(&config).unwrap();
    let mut c = Raw::connect(port).unwrap();
    assert!(c.reply().unwrap().starts_with("554 5.7.1"));
    assert!(c.closed());
    assert!(
        gw.decisions()
            .iter()
            .any(|v| v["outcome"] == "rejected" && v["sender_group"] == "BLOCKED")
    );
    drop(gw);

    let port = free_port();
    let mut l = listener(port, sink.port, "relayed");
    l.timeouts.command = cfg::Duration::from_secs(1);
    l.max_connections = 2;
    l.max_connections_per_client = Some(2);
    let _gw = start_gateway(&single(
        l,
        policy(TlsMode::Disabled, false, false, false),
        None,
    ))
    .unwrap();
    let mut a = Raw::connect(port).unwrap();
    a.reply().unwrap();
    let mut b = Raw::connect(port).unwrap();
    b.reply().unwrap();
    let mut third = Raw::connect(port).unwrap();
    assert!(third.reply().unwrap().starts_with("421 4.7.0"));
    // Idle timeout closes the first two.
    assert!(a.reply().unwrap().starts_with("421 4.4.2"));
    assert!(b.reply().unwrap().starts_with("421 4.4.2"));
    std::thread::sleep(Duration::from_millis(200));
    let mut again = Raw::connect(port).unwrap();
    assert!(again.reply().unwrap().starts_with("220"));
}
