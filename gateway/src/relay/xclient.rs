//! Postfix's `XCLIENT` command: the gateway tells a next hop that trusts it
//! (`smtpd_authorized_xclient_hosts`) who the client really is — its address and port,
//! the HELO name, the protocol and the authenticated login — so that the next hop's
//! logs, `Received` header and policies (DKIM signing, spam filtering, archiving) see the
//! original client and user rather than the gateway.
//!
//! The next hop lists the attributes it takes in its EHLO reply (`250-XCLIENT NAME ADDR
//! PORT PROTO HELO LOGIN`); only those are sent. Values are xtext (RFC 3461); an IPv6
//! address carries Postfix's `IPV6:` prefix; `[UNAVAILABLE]` is Postfix's word for an
//! unknown value. A `220` reply is a new greeting: the client must say EHLO again.

use std::net::IpAddr;

/// The client as the next hop is told about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientOrigin {
    /// The original client's address (behind PROXY protocol, the one its header named).
    pub addr: IpAddr,
    /// The client's port.
    pub port: u16,
    /// The EHLO/HELO name the client gave.
    pub helo: String,
    /// Whether the client used EHLO (`ESMTP`) rather than HELO (`SMTP`).
    pub esmtp: bool,
    /// The authenticated user id, if any.
    pub login: Option<String>,
}

/// The `XCLIENT` attributes a next hop accepts (from its EHLO reply).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct XclientAttributes(Vec<String>);

impl XclientAttributes {
    /// From the words after `XCLIENT` in an EHLO reply line.
    pub(super) fn parse(words: &str) -> Self {
        Self(
            words
                .split_ascii_whitespace()
                .map(str::to_ascii_uppercase)
                .collect(),
        )
    }

    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|a| a == name)
    }
}

/// The `XCLIENT` command line (with CRLF) telling a next hop that takes `attributes`
/// about `origin`; `None` when it takes none of those the gateway knows.
pub fn command(origin: &ClientOrigin, attributes: &XclientAttributes) -> Option<String> {
    let addr = match origin.addr.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("IPV6:{v6}"),
    };
    let helo = if origin.helo.is_empty() {
        "[UNAVAILABLE]".to_owned()
    } else {
        xtext(&origin.helo)
    };
    let login = match &origin.login {
        Some(user) => xtext(user),
        None => "[UNAVAILABLE]".to_owned(),
    };
    let proto = if origin.esmtp { "ESMTP" } else { "SMTP" };
    // NAME: the gateway does not look up client names; the next hop may.
    let values = [
        ("NAME", "[UNAVAILABLE]".to_owned()),
        ("ADDR", addr),
        ("PORT", origin.port.to_string()),
        ("PROTO", proto.to_owned()),
        ("HELO", helo),
        ("LOGIN", login),
    ];
    let mut line = String::from("XCLIENT");
    for (name, value) in values {
        if attributes.has(name) {
            line.push(' ');
            line.push_str(name);
            line.push('=');
            line.push_str(&value);
        }
    }
    (line.len() > "XCLIENT".len()).then(|| line + "\r\n")
}

/// RFC 3461 xtext: printable ASCII other than `+` and `=` as is, every other byte as
/// `+XX` (upper-case hex).
pub(crate) fn xtext(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(addr: &str, login: Option<&str>) -> ClientOrigin {
        ClientOrigin {
            addr: addr.parse().unwrap(),
            port: 40123,
            helo: "client.example.org".into(),
            esmtp: true,
            login: login.map(Into::into),
        }
    }

    #[test]
    fn every_attribute_the_next_hop_takes() {
        let all = XclientAttributes::parse("NAME ADDR PORT PROTO HELO LOGIN DESTADDR DESTPORT");
        assert_eq!(
            command(&origin("192.0.2.7", Some("frank")), &all).unwrap(),
            "XCLIENT NAME=[UNAVAILABLE] ADDR=192.0.2.7 PORT=40123 PROTO=ESMTP \
             HELO=client.example.org LOGIN=frank\r\n"
        );
        let some = XclientAttributes::parse("addr login");
        assert_eq!(
            command(&origin("2001:db8::7", None), &some).unwrap(),
            "XCLIENT ADDR=IPV6:2001:db8::7 LOGIN=[UNAVAILABLE]\r\n"
        );
        // IPv4-mapped (a dual-stack listener) is IPv4.
        assert!(
            command(&origin("::ffff:192.0.2.7", None), &some)
                .unwrap()
                .contains("ADDR=192.0.2.7 ")
        );
        assert_eq!(
            command(&origin("192.0.2.7", None), &XclientAttributes::parse("FOO")),
            None
        );
    }

    #[test]
    fn values_are_xtext() {
        assert_eq!(xtext("frank"), "frank");
        assert_eq!(xtext("a+b=c d\u{e9}"), "a+2Bb+3Dc+20d+C3+A9");
        assert_eq!(xtext("x\r\nMAIL"), "x+0D+0AMAIL");
    }
}
