//! The relay's "reconnect once": a session keeps its next hop connection between
//! messages; when the next hop drops it meanwhile (silently, or with `421` as an MTA
//! does at its idle timeout) the next message reconnects and is relayed. A message is
//! never acknowledged unless the next hop said `250` to it: a connection cut after the
//! end of data but before the next hop's reply gives the client `451`, not `250`.
//! The next hop is Postfix's smtp-sink behind a proxy that cuts connections on command.

use std::net::SocketAddr;
use std::time::Duration;

use postern_config::TlsMode;
use postern_testkit::sink::Sink;
use postern_tests::cutproxy::CutProxy;
use postern_tests::gate::{Client, Pki, config, policy, start_gateway, static_profile};

fn body(id: &str) -> String {
    format!("Subject: {id}\r\n\r\nmessage {id}\r\n")
}

fn subjects(sink: &Sink) -> Vec<String> {
    sink.messages()
        .iter()
        .filter_map(|m| {
            m.message
                .lines()
                .find_map(|l| l.strip_prefix("Subject: ").map(str::to_owned))
        })
        .collect()
}

#[test]
fn next_hop_dropping_between_messages_is_reconnected_once() {
    let sink = Sink::start(&[]).expect("smtp-sink (Debian postfix) is required");
    let proxy = CutProxy::start(SocketAddr::from(([127, 0, 0, 1], sink.port)));
    let pki = Pki::new("Reconnect CA");
    let cfg = config(
        &pki,
        proxy.addr,
        policy(TlsMode::Preferred, false, true, false),
        static_profile(false, true),
    );
    let gw = start_gateway(&cfg, &[]).unwrap();

    let mut c = Client::connect(gw.addr()).unwrap();
    c.cmd("EHLO client.test").unwrap();
    c.starttls(&pki.ca_pem(), None).unwrap();
    c.cmd("EHLO client.test").unwrap();
    assert_eq!(c.auth_plain(b"frank", b"frankpw").unwrap().0, 235);
    let send = |c: &mut Client, id: &str| {
        c.send_mail("frank@example.org", "a@example.net", &body(id))
            .unwrap()
    };

    // 1. The first message opens the next hop connection; the session keeps it.
    let r = send(&mut c, "m1");
    assert_eq!(r.0, 250, "{r:?}\n{}", gw.log());
    assert_eq!(sink.wait_for(1, Duration::from_secs(5)).len(), 1);
    assert_eq!(proxy.connections(), 1);

    // 2. The next hop drops the idle connection without a word.
    proxy.cut_all(None);
    std::thread::sleep(Duration::from_millis(200));
    let r = send(&mut c, "m2");
    assert_eq!(r.0, 250, "{r:?}\n{}", gw.log());
    assert_eq!(sink.wait_for(2, Duration::from_secs(5)).len(), 2);
    assert_eq!(proxy.connections(), 2, "reconnected once");

    // 3. The next hop says 421 and closes, as Postfix's smtpd does at its idle timeout.
    proxy.cut_all(Some("421 4.4.2 sink.test Error: timeout exceeded\r\n"));
    std::thread::sleep(Duration::from_millis(200));
    let r = send(&mut c, "m3");
    assert_eq!(r.0, 250, "{r:?}\n{}", gw.log());
    assert_eq!(sink.wait_for(3, Duration::from_secs(5)).len(), 3);
    assert_eq!(proxy.connections(), 3, "reconnected once");

    // 4. The connection is cut after the end of data reached the next hop, before its
    //    reply came back: the gateway does not know the message was taken, so the
    //    client must not get 250 (it retries; a duplicate, never a loss).
    proxy.cut_after_next_dot();
    let r = send(&mut c, "m4");
    assert_eq!((r.0, &r.1[..9]), (451, "451 4.4.1"), "{r:?}\n{}", gw.log());

    // 5. The session goes on: the next message opens a new connection.
    let r = send(&mut c, "m5");
    assert_eq!(r.0, 250, "{r:?}\n{}", gw.log());
    assert_eq!(proxy.connections(), 4);
    // m4 reached the next hop (only its reply was lost); m5 is there too, in order.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !subjects(&sink).contains(&"m5".to_owned()) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let got: Vec<String> = subjects(&sink).into_iter().filter(|s| s != "m4").collect();
    assert_eq!(got, ["m1", "m2", "m3", "m5"], "{:?}", subjects(&sink));

    // 6. The next hop is gone for good: the reconnect fails, the client gets 451 (once,
    //    no retry loop), and nothing is acknowledged.
    drop(sink);
    proxy.cut_all(None);
    std::thread::sleep(Duration::from_millis(200));
    let r = send(&mut c, "m6");
    assert_eq!(r.0, 451, "{r:?}\n{}", gw.log());
    assert_eq!(proxy.connections(), 5, "one reconnect attempt");
    let _ = c.cmd("QUIT");

    let logs = gw.log();
    assert_eq!(
        logs.matches("recipient(s), next hop:").count(),
        4,
        "four messages relayed:\n{logs}"
    );
}
