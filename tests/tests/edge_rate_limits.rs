//! `MailFlowPolicy.rateLimits` end to end with the real `postern-gateway`, Python smtplib
//! clients from several loopback addresses and smtp-sink as the next hop: messages per
//! authenticated user across sessions and addresses (`451 4.7.1` at MAIL), recipients per
//! client address across sessions and users (`452 4.5.3` at RCPT), and the same per
//! original client behind HAProxy's PROXY protocol; decision lines and the metric.

use std::time::Duration;

use postern_config::{self as cfg, RateLimit, RateLimits, TlsMode};
use postern_testkit::ports::free_port;
use postern_testkit::sink::Sink;
use postern_tests::clients::python;
use postern_tests::front::{Front, Proxy};
use postern_tests::gate::static_profile;
use postern_tests::gateway::{listener, policy, single, start_gateway};

/// One session from `source` to 127.0.0.1:`port`: AUTH PLAIN as `login` (when given),
/// then one transaction with `rcpts`. Prints each reply as `CMD code text`.
fn session(port: u16, source: &str, login: Option<(&str, &str)>, rcpts: &[&str]) -> String {
    let login = match login {
        Some((u, p)) => format!("s.login({u:?}, {p:?})"),
        None => String::new(),
    };
    let script = format!(
        r#"
import smtplib
s = smtplib.SMTP("127.0.0.1", {port}, local_hostname="client.test", source_address=("{source}", 0), timeout=10)
s.ehlo()
{login}
code, text = s.mail("sender@example.org")
print("MAIL", code, text.decode())
ok = 0
if code == 250:
    for r in {rcpts:?}:
        code, text = s.rcpt(r)
        print("RCPT", code, text.decode())
        ok += code == 250
    if ok:
        code, text = s.data(b"Subject: rate\r\n\r\nhello\r\n")
        print("DATA", code, text.decode())
s.quit()
"#
    );
    python(&script).unwrap().output
}

fn limits(per_user: (u32, u32), per_client: (u32, u32)) -> RateLimits {
    let one = |(messages, recipients)| RateLimit {
        messages,
        recipients,
        window: cfg::Duration::from_secs(3600),
    };
    RateLimits {
        per_user: one(per_user),
        per_client: one(per_client),
    }
}

fn metric(gw: &postern_testkit::gateway::Gateway, scope: &str, counted: &str) -> String {
    let (_, text) = gw.http_get("/metrics").unwrap();
    let prefix = format!(
        "postern_rate_limited_total{{listener=\"smtp\",policy=\"relayed\",scope=\"{scope}\",counted=\"{counted}\"}} "
    );
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or("absent")
        .to_owned()
}

#[test]
fn messages_per_user_and_recipients_per_client() {
    let sink = Sink::start(&[]).unwrap();
    let mut p = policy(TlsMode::Disabled, false, false, false);
    p.rate_limits = limits((2, 0), (0, 3));
    let port = free_port();
    let config = single(
        listener(port, sink.port, "relayed"),
        p,
        Some(static_profile(false, true)),
    );
    let gw = start_gateway(&config).unwrap();
    let frank = Some(("frank", "frankpw"));

    // frank: two messages from two addresses, the third from a third address is refused.
    for source in ["127.0.0.2", "127.0.0.3"] {
        let out = session(port, source, frank, &["a@example.net"]);
        assert!(out.contains("DATA 250"), "{out}\n{}", gw.log_tail(30));
    }
    let out = session(port, "127.0.0.4", frank, &["a@example.net"]);
    assert!(out.contains("MAIL 451 4.7.1"), "{out}");
    // Without a login, the user's limit is not the session's.
    let out = session(port, "127.0.0.4", None, &["a@example.net"]);
    assert!(out.contains("DATA 250"), "{out}");
    assert_eq!(sink.wait_for(3, Duration::from_secs(10)).len(), 3);

    // 127.0.0.5: three recipients (one message), then the fourth, in a new session and
    // as another user, is refused; 127.0.0.6 is not affected.
    let out = session(
        port,
        "127.0.0.5",
        None,
        &["a@example.net", "b@example.net", "c@example.net"],
    );
    assert_eq!(out.matches("RCPT 250").count(), 3, "{out}");
    let out = session(port, "127.0.0.5", frank, &["d@example.net"]);
    // frank's message budget is spent too: MAIL is refused before RCPT is counted.
    assert!(out.contains("MAIL 451 4.7.1"), "{out}");
    let out = session(port, "127.0.0.5", None, &["d@example.net", "e@example.net"]);
    assert!(out.contains("RCPT 452 4.5.3"), "{out}");
    assert!(!out.contains("RCPT 250"), "{out}");
    let out = session(port, "127.0.0.6", None, &["d@example.net"]);
    assert!(out.contains("DATA 250"), "{out}");

    let d = gw.decisions();
    let user_line = d
        .iter()
        .find(|v| v["decision"] == "mail" && v["outcome"] == "rate_limited_user")
        .unwrap_or_else(|| panic!("{d:?}"));
    assert_eq!(user_line["user"], "frank");
    assert_eq!(user_line["client_ip"], "127.0.0.4");
    let reason = user_line["reason"].as_str().unwrap();
    assert!(
        reason
            .starts_with("rate limit of this user reached (rateLimits.perUser: 2 messages per 1h)"),
        "{reason}"
    );
    let client_line = d
        .iter()
        .find(|v| v["decision"] == "rcpt" && v["outcome"] == "rate_limited_client")
        .unwrap_or_else(|| panic!("{d:?}"));
    assert_eq!(client_line["client_ip"], "127.0.0.5");
    assert!(
        client_line["reason"]
            .as_str()
            .unwrap()
            .contains("rateLimits.perClient: 3 recipients per 1h"),
        "{client_line}"
    );
    assert_eq!(metric(&gw, "user", "messages"), "2");
    assert_eq!(metric(&gw, "client", "recipients"), "2");
}

/// Behind a load balancer every connection comes from the proxy: the per-client budget
/// is the original client's (from the PROXY header), not the proxy's.
#[test]
fn per_client_behind_proxy_protocol_is_the_original_client() {
    let sink = Sink::start(&[]).unwrap();
    let mut p = policy(TlsMode::Disabled, false, false, false);
    p.rate_limits = limits((0, 0), (1, 0));
    let port = free_port();
    let mut l = listener(port, sink.port, "relayed");
    l.proxy_protocol = Some(cfg::ProxyProtocol {
        trusted_cidrs: vec!["127.0.0.1/32".parse().unwrap()],
    });
    let gw = start_gateway(&single(l, p, None)).unwrap();
    let proxy = Proxy::start(Front::HaproxyV2, ([127, 0, 0, 1], port).into()).unwrap();

    let out = session(proxy.port, "127.0.0.7", None, &["a@example.net"]);
    assert!(out.contains("DATA 250"), "{out}\n{}", gw.log_tail(30));
    let out = session(proxy.port, "127.0.0.7", None, &["a@example.net"]);
    assert!(out.contains("MAIL 451 4.7.1"), "{out}");
    let out = session(proxy.port, "127.0.0.8", None, &["a@example.net"]);
    assert!(out.contains("DATA 250"), "{out}");

    let d = gw.decisions();
    let line = d
        .iter()
        .find(|v| v["outcome"] == "rate_limited_client")
        .unwrap_or_else(|| panic!("{d:?}"));
    assert_eq!(line["client_ip"], "127.0.0.7");
    assert_eq!(line["proxy_ip"], "127.0.0.1");
}
