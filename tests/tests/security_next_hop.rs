//! A deliberately misbehaving next hop against the real `postern-gateway` binary: replies
//! outside the protocol (`250` to DATA, `354` or `252` to the final dot, `3xx` to MAIL,
//! `252` to RCPT), garbage, multi-line replies with mixed codes, two replies to one
//! command and a reply before the final dot. Each step accepts only its protocol's
//! positive reply: the client gets `451 4.4.1` (and the next hop connection is dropped)
//! or a permanent refusal passed through, never a `354` that would send its message body
//! to a next hop reading commands, never a `250` for a message the next hop did not take.

use std::time::{Duration, Instant};

use postern_config::TlsMode;
use postern_testkit::gateway::Gateway;
use postern_testkit::sink::Sink;
use postern_tests::gate::{
    Client, Hop, HopMode, Misbehave, Pki, config, policy, start_gateway, static_profile,
};

/// Plain relay without authentication: the SMTP relay is the point here.
fn gateway(hop: std::net::SocketAddr) -> Gateway {
    let pki = Pki::new("Next hop CA");
    let cfg = config(
        &pki,
        hop,
        policy(TlsMode::Disabled, false, false, false),
        static_profile(false, true),
    );
    start_gateway(&cfg, &[]).unwrap()
}

fn session(gw: &Gateway) -> Client {
    let mut c = Client::connect(gw.addr()).unwrap();
    assert_eq!(c.cmd("EHLO client.test").unwrap().0, 250);
    c
}

fn body(id: &str) -> String {
    format!("Subject: {id}\r\n\r\nRCPT TO:<injected-{id}@victim.test>\r\nbody of {id}\r\n")
}

/// The gateway's log says `needle` (within 10 s).
fn logged(gw: &Gateway, needle: &str) {
    gw.wait_log(needle, Duration::from_secs(10)).unwrap();
}

#[test]
fn replies_outside_the_protocol_are_temporary_failures() {
    let hop = Hop::start(HopMode::Accept);
    let gw = gateway(hop.addr);
    let cases: [(&str, Misbehave, &str); 12] = [
        (
            "250 to DATA",
            Misbehave {
                data: Some("250 2.0.0 ok\r\n"),
                ..Misbehave::default()
            },
            "answered DATA with 250 2.0.0 ok, which is outside the protocol (expected 354)",
        ),
        (
            "354 to the final dot",
            Misbehave {
                end: Some("354 go ahead\r\n"),
                ..Misbehave::default()
            },
            "answered end of data with 354 go ahead, which is outside the protocol (expected 250)",
        ),
        (
            "252 to the final dot",
            Misbehave {
                end: Some("252 2.5.2 Cannot VRFY user\r\n"),
                ..Misbehave::default()
            },
            "answered end of data with 252 2.5.2",
        ),
        (
            "3xx to MAIL",
            Misbehave {
                mail: Some("354 go ahead\r\n"),
                ..Misbehave::default()
            },
            "answered MAIL with 354 go ahead",
        ),
        (
            "252 to RCPT",
            Misbehave {
                rcpt: Some("252 2.1.5 maybe\r\n"),
                ..Misbehave::default()
            },
            "answered RCPT with 252 2.1.5 maybe, which is outside the protocol (expected 250 or 251)",
        ),
        (
            "garbage greeting",
            Misbehave {
                greeting: Some("hello there\r\n"),
                ..Misbehave::default()
            },
            "during greeting: malformed reply line",
        ),
        (
            "garbage to the final dot",
            Misbehave {
                end: Some("OK got it\r\n"),
                ..Misbehave::default()
            },
            "during end of data: malformed reply line",
        ),
        (
            "mixed codes to the final dot",
            Misbehave {
                // A parser that believes the last line would read 250.
                end: Some("554-5.7.1 rejected\r\n250 2.0.0 ok\r\n"),
                ..Misbehave::default()
            },
            "reply code changed within a multi-line reply (554 then 250)",
        ),
        (
            "mixed codes to MAIL",
            Misbehave {
                mail: Some("250-ok\r\n354 go ahead\r\n"),
                ..Misbehave::default()
            },
            "reply code changed within a multi-line reply (250 then 354)",
        ),
        (
            "two replies to DATA",
            Misbehave {
                data: Some("354 go ahead\r\n250 2.0.0 queued\r\n"),
                ..Misbehave::default()
            },
            "more than one reply to DATA",
        ),
        (
            "220 to the final dot",
            Misbehave {
                end: Some("220 2.0.0 fine\r\n"),
                ..Misbehave::default()
            },
            "answered end of data with 220 2.0.0 fine",
        ),
        (
            "a code RFC 5321 does not define, to the final dot",
            Misbehave {
                end: Some("299 2.0.0 fine, sort of\r\n"),
                ..Misbehave::default()
            },
            "during end of data: malformed reply line",
        ),
    ];
    for (what, bad, logged_reason) in cases {
        hop.set_mode(HopMode::Misbehave(bad));
        let connections = hop.connections();
        let mut c = session(&gw);
        let (code, text) = c
            .send_mail("a@example.org", "b@example.net", &body(what))
            .unwrap();
        assert!(
            text.starts_with("451 4.4.1"),
            "{what}: the client got {code} {text}\n{}",
            gw.log()
        );
        logged(&gw, logged_reason);
        // Nothing was acknowledged, and no message body reached the next hop as commands.
        assert!(hop.messages().is_empty(), "{what}");
        assert!(
            !hop.commands().iter().any(|l| l.contains("injected")),
            "{what}: the body ran as commands: {:?}",
            hop.commands()
        );
        // The next hop connection was dropped: the same session's next message opens a
        // new one, and goes through once the next hop behaves.
        hop.set_mode(HopMode::Accept);
        let (code, text) = c
            .send_mail("a@example.org", "b@example.net", &body("after"))
            .unwrap();
        assert_eq!(code, 250, "{what}: {text}");
        assert_eq!(
            hop.connections(),
            connections + 2,
            "{what}: the misbehaving connection must not be reused"
        );
        assert_eq!(hop.messages().len(), 1, "{what}");
        hop.messages.lock().unwrap().clear();
        let _ = c.cmd("QUIT");
    }
}

/// The exact report: a next hop answering `250` to DATA made the client see `354`, and
/// the client's message ran at the next hop as commands. Now the client gets `451` at
/// DATA; even a client that sends its body anyway only talks to the gateway.
#[test]
fn a_250_to_data_never_lets_the_body_through_as_commands() {
    let hop = Hop::start(HopMode::Misbehave(Misbehave {
        data: Some("250 2.0.0 ok\r\n"),
        ..Misbehave::default()
    }));
    let gw = gateway(hop.addr);
    let mut c = session(&gw);
    assert_eq!(c.cmd("MAIL FROM:<a@example.org>").unwrap().0, 250);
    assert_eq!(c.cmd("RCPT TO:<b@example.net>").unwrap().0, 250);
    let (code, text) = c.cmd("DATA").unwrap();
    assert!(text.starts_with("451 4.4.1"), "{code} {text}");
    // A client that sends its message regardless: the gateway reads it as (refused)
    // commands of its own; nothing reaches the next hop.
    c.send(b"RCPT TO:<injected@victim.test>\r\nDATA\r\n.\r\n")
        .unwrap();
    for _ in 0..3 {
        let (code, text) = c.reply().unwrap();
        assert!(code >= 500, "{code} {text}");
    }
    assert_eq!(c.cmd("NOOP").unwrap().0, 250);
    let commands = hop.commands();
    assert!(
        !commands.iter().any(|l| l.contains("injected")),
        "{commands:?}"
    );
    assert!(hop.messages().is_empty());
}

/// A next hop that says `250` while the message is still coming, and refuses it at the
/// final dot: its early `250` is not the answer to the dot, so the client gets `451`,
/// not `250` for a message the next hop refused.
#[test]
fn a_reply_before_the_final_dot_is_not_the_answer_to_it() {
    let hop = Hop::start(HopMode::Misbehave(Misbehave {
        early: Some("250 2.0.0 queued\r\n"),
        end: Some("554 5.7.1 rejected\r\n"),
        ..Misbehave::default()
    }));
    let gw = gateway(hop.addr);
    let mut c = session(&gw);
    assert_eq!(c.cmd("MAIL FROM:<a@example.org>").unwrap().0, 250);
    assert_eq!(c.cmd("RCPT TO:<b@example.net>").unwrap().0, 250);
    assert_eq!(c.cmd("DATA").unwrap().0, 354);
    // More than the gateway's 16 KiB relay chunk: the next hop sees the start of the
    // message (and answers early) while the client still holds back its final dot.
    let line = "a line of the message body, long enough to fill the chunk quickly\r\n";
    c.send(format!("Subject: early\r\n\r\n{}", line.repeat(600)).as_bytes())
        .unwrap();
    let t = Instant::now();
    while hop.early_replies() == 0 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "no early reply\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The early reply is on its way over loopback; let it arrive before the dot does.
    std::thread::sleep(Duration::from_millis(300));
    let (code, text) = c.cmd(".").unwrap();
    assert!(text.starts_with("451 4.4.1"), "{code} {text}\n{}", gw.log());
    logged(&gw, "the next hop replied before the end of the message");
    assert!(hop.messages().is_empty());
}

/// Refusals inside the protocol: a permanent one is passed through as it is, a
/// temporary one is `451 4.4.1`; after a refusal of the message, the next hop connection
/// is in a known state and is kept.
#[test]
fn refusals_are_passed_through_or_temporary() {
    let hop = Hop::start(HopMode::Misbehave(Misbehave {
        end: Some("554 5.7.1 rejected by policy\r\n"),
        ..Misbehave::default()
    }));
    let gw = gateway(hop.addr);
    let mut c = session(&gw);
    let (_, text) = c
        .send_mail("a@example.org", "b@example.net", &body("refused"))
        .unwrap();
    assert!(
        text.starts_with("554 5.7.1 Next hop: rejected by policy"),
        "{text}"
    );
    logged(
        &gw,
        "next hop refused end of data: 554 5.7.1 rejected by policy",
    );

    hop.set_mode(HopMode::Misbehave(Misbehave {
        data: Some("554 5.5.1 no valid recipients\r\n"),
        ..Misbehave::default()
    }));
    let mut c = session(&gw);
    let (_, text) = c
        .send_mail("a@example.org", "b@example.net", &body("refused-data"))
        .unwrap();
    assert!(
        text.starts_with("554 5.5.1 Next hop: no valid recipients"),
        "{text}"
    );

    hop.set_mode(HopMode::Misbehave(Misbehave {
        end: Some("452 4.3.1 Insufficient system storage\r\n"),
        ..Misbehave::default()
    }));
    let connections = hop.connections();
    let mut c = session(&gw);
    let (_, text) = c
        .send_mail("a@example.org", "b@example.net", &body("full"))
        .unwrap();
    assert!(text.starts_with("451 4.4.1"), "{text}");
    // The same session's next message reuses the connection (the refusal left the next
    // hop in a known state), and the next hop answers it the same way.
    let (_, text) = c
        .send_mail("a@example.org", "b@example.net", &body("full-again"))
        .unwrap();
    assert!(text.starts_with("451 4.4.1"), "{text}");
    assert_eq!(hop.connections(), connections + 1);
    assert!(hop.messages().is_empty());
}

/// A well-behaved next hop (Postfix's smtp-sink) is unaffected: several messages in one
/// session, over one next hop connection, each acknowledged after the sink took it.
#[test]
fn a_well_behaved_smtp_sink_still_relays() {
    let sink = Sink::start(&[]).expect("smtp-sink (Debian postfix) is required");
    let gw = gateway(std::net::SocketAddr::from(([127, 0, 0, 1], sink.port)));
    let mut c = session(&gw);
    for i in 0..3 {
        let (code, text) = c
            .send_mail(
                "a@example.org",
                "b@example.net",
                &format!("Subject: sink-{i}\r\n\r\nhello\r\n"),
            )
            .unwrap();
        assert_eq!(code, 250, "{text}\n{}", gw.log());
    }
    let _ = c.cmd("QUIT");
    let got = sink.wait_for(3, Duration::from_secs(10));
    assert_eq!(got.len(), 3, "{got:?}");
}
