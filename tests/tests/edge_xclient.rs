//! `nextHop.xclient` end to end: the real `postern-gateway` in front of a real Postfix
//! `smtpd` that trusts it with XCLIENT (`smtpd_authorized_xclient_hosts`), relaying to
//! smtp-sink. Postfix's log and its `Received` header name the original client and the
//! login the gateway authenticated, and Postfix's own policy (`mynetworks` is only the
//! gateway's address) is applied to the original client, not to the gateway. And the
//! `X-Postern-Authenticated-User` header: the gateway's own, never the client's.

use std::time::Duration;

use postern_config::TlsMode;
use postern_testkit::ports::free_port;
use postern_testkit::postfix::Postfix;
use postern_testkit::sink::Sink;
use postern_tests::clients::smtplib_send;
use postern_tests::gate::static_profile;
use postern_tests::gateway::{listener, policy, single, start_gateway};

/// One message from `source` through 127.0.0.1:`port`, after AUTH PLAIN as `login` when
/// given, with `headers`.
fn send_with_headers(
    port: u16,
    source: &str,
    login: Option<(&str, &str)>,
    headers: &str,
) -> String {
    smtplib_send("127.0.0.1", port, source, login, headers)
        .unwrap()
        .output
}

fn send(port: u16, source: &str, login: Option<(&str, &str)>) -> String {
    send_with_headers(port, source, login, "Subject: xclient")
}

#[test]
fn postfix_sees_the_original_client_and_login() {
    let sink = Sink::start(&[]).unwrap();
    let postfix = Postfix::start(([127, 0, 0, 1], sink.port).into(), "127.0.0.1/32").unwrap();
    let port = free_port();
    let mut l = listener(port, postfix.port, "relayed");
    l.next_hop.xclient = true;
    let config = single(
        l,
        policy(TlsMode::Disabled, false, false, false),
        Some(static_profile(false, true)),
    );
    let gw = start_gateway(&config).unwrap();

    let out = send(port, "127.0.0.7", Some(("frank", "frankpw")));
    assert!(
        out.contains("SENT"),
        "{out}\n{}\n{}",
        gw.log_tail(30),
        postfix.log()
    );
    let line = postfix
        .wait_log(
            &["client=unknown[127.0.0.7]", "sasl_username=frank"],
            Duration::from_secs(10),
        )
        .unwrap();
    assert!(line.contains("sasl_method=XCLIENT"), "{line}");
    let msgs = sink.wait_for(1, Duration::from_secs(30));
    assert_eq!(msgs.len(), 1, "{}", postfix.log());
    let m = &msgs[0].message;
    // Postfix's header first (the client as XCLIENT named it), then the gateway's.
    let postfix_received = m
        .split("\nReceived: ")
        .next()
        .unwrap_or_default()
        .replace("\n\t", " ");
    assert!(
        postfix_received.starts_with("Received: from client.test (unknown [127.0.0.7])"),
        "{m}"
    );
    assert!(
        postfix_received.contains("(Authenticated sender: frank)"),
        "{m}"
    );
    assert!(
        m.contains("Received: from client.test ([127.0.0.7])"),
        "{m}"
    );
    let d = gw.decisions();
    assert!(
        d.iter().any(|v| v["decision"] == "relay"
            && v["outcome"] == "xclient"
            && v["reason"]
                .as_str()
                .is_some_and(|r| r.contains("client 127.0.0.7") && r.contains("login frank"))),
        "{d:?}"
    );

    // Without a login, the client is judged by Postfix as itself: 127.0.0.8 is not in
    // its mynetworks (the gateway's 127.0.0.1 is), so Postfix refuses to relay, and the
    // refusal reaches the client.
    let out = send(port, "127.0.0.8", None);
    assert!(out.contains("REFUSED"), "{out}");
    assert!(out.contains("554"), "{out}");
    postfix
        .wait_log(
            &["NOQUEUE: reject: RCPT from unknown[127.0.0.8]", "554 5.7.1"],
            Duration::from_secs(10),
        )
        .unwrap();
    assert_eq!(sink.messages().len(), 1);
}

/// A client cannot forge the identity header: every copy it writes in its header section
/// (any case, with continuation lines) is removed, and an authenticated session gets the
/// gateway's own, after `Received`.
#[test]
fn the_identity_header_is_the_gateways_own() {
    let sink = Sink::start(&[]).unwrap();
    let port = free_port();
    let config = single(
        listener(port, sink.port, "relayed"),
        policy(TlsMode::Disabled, false, false, false),
        Some(static_profile(false, true)),
    );
    let gw = start_gateway(&config).unwrap();
    let forged = "Subject: forged\\r\\nX-Postern-Authenticated-User: user=ceo; method=PLAIN\\r\\n\\tcontinued\\r\\nx-postern-authenticated-user: user=boss";
    let out = send_with_headers(port, "127.0.0.2", Some(("frank", "frankpw")), forged);
    assert!(out.contains("SENT"), "{out}\n{}", gw.log_tail(20));
    let out = send_with_headers(port, "127.0.0.3", None, forged);
    assert!(out.contains("SENT"), "{out}");
    let msgs = sink.wait_for(2, Duration::from_secs(10));
    assert_eq!(msgs.len(), 2);
    for d in &msgs {
        let m = &d.message;
        assert!(
            !m.contains("ceo") && !m.contains("boss") && !m.contains("continued"),
            "{m}"
        );
        assert!(m.contains("Subject: forged"), "{m}");
    }
    let authenticated = msgs
        .iter()
        .find(|d| d.message.contains("[127.0.0.2]"))
        .unwrap();
    let m = &authenticated.message;
    assert_eq!(m.matches("X-Postern-Authenticated-User").count(), 1, "{m}");
    assert!(
        m.contains("X-Postern-Authenticated-User: user=frank; method=PLAIN\n"),
        "{m}"
    );
    assert!(m.find("Received: from client.test").unwrap() < m.find("X-Postern").unwrap());
    let anonymous = msgs
        .iter()
        .find(|d| d.message.contains("[127.0.0.3]"))
        .unwrap();
    assert!(
        !anonymous.message.contains("X-Postern-Authenticated-User"),
        "{}",
        anonymous.message
    );
}
