//! The `Received` trace header the gateway prepends to every relayed message.
//!
//! It records the client, the protocol with RFC 3848/6531 names (`ESMTPSA` = ESMTP with
//! TLS and authentication), the TLS version and cipher, and the authenticated user and
//! method. Every value that came from the client is sanitised so that nothing can break
//! out of the header (no CR/LF, no parentheses or semicolons from user data).

use std::net::IpAddr;

use time::OffsetDateTime;
use time::macros::format_description;

/// What the header says about the session.
#[derive(Clone, Debug, Default)]
pub(crate) struct TraceInfo<'a> {
    /// The EHLO/HELO argument.
    pub helo: &'a str,
    /// Whether the client used EHLO (ESMTP) rather than HELO.
    pub esmtp: bool,
    /// The client's address.
    pub client_ip: Option<IpAddr>,
    /// The gateway's host name (from the listener).
    pub hostname: &'a str,
    /// TLS protocol version and cipher suite, when TLS is active.
    pub tls: Option<(&'a str, &'a str)>,
    /// Authenticated user and how (`PLAIN`, `LOGIN`, `certificate`).
    pub auth: Option<(&'a str, &'a str)>,
    /// The message (transaction) id.
    pub id: &'a str,
    /// The single recipient, when there is exactly one.
    pub for_rcpt: Option<&'a str>,
    /// Whether the transaction used SMTPUTF8.
    pub utf8: bool,
    /// The trusted proxy the client came through (PROXY protocol), if any.
    pub proxy_ip: Option<IpAddr>,
}

/// RFC 3848 / RFC 6531 protocol name for the `with` clause.
pub(crate) fn protocol(esmtp: bool, tls: bool, auth: bool, utf8: bool) -> &'static str {
    match (esmtp, utf8, tls, auth) {
        (false, _, _, _) => "SMTP",
        (true, false, false, false) => "ESMTP",
        (true, false, true, false) => "ESMTPS",
        (true, false, false, true) => "ESMTPA",
        (true, false, true, true) => "ESMTPSA",
        (true, true, false, false) => "UTF8SMTP",
        (true, true, true, false) => "UTF8SMTPS",
        (true, true, false, true) => "UTF8SMTPA",
        (true, true, true, true) => "UTF8SMTPSA",
    }
}

/// Keep only characters that are harmless inside a header comment or clause.
pub(crate) fn sanitize(value: &str, max: usize) -> String {
    let s: String = value
        .chars()
        .filter(|c| {
            c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    '.' | '-' | '_' | '@' | ':' | '[' | ']' | '+' | '=' | '/' | ','
                )
        })
        .take(max)
        .collect();
    if s.is_empty() { "unknown".into() } else { s }
}

/// Render the header, folded, ending in CRLF.
pub(crate) fn render(info: &TraceInfo<'_>, now: OffsetDateTime) -> String {
    let mut h = String::with_capacity(256);
    h.push_str("Received: from ");
    h.push_str(&sanitize(info.helo, 255));
    if let Some(ip) = info.client_ip {
        h.push_str(" (");
        h.push_str(&address_literal(ip));
        if let Some(proxy) = info.proxy_ip {
            h.push_str(" via proxy ");
            h.push_str(&address_literal(proxy));
        }
        h.push(')');
    }
    h.push_str("\r\n\tby ");
    h.push_str(&sanitize(info.hostname, 255));
    h.push_str(" (Postern) with ");
    h.push_str(protocol(
        info.esmtp,
        info.tls.is_some(),
        info.auth.is_some(),
        info.utf8,
    ));
    h.push_str(" id ");
    h.push_str(&sanitize(info.id, 64));
    if let Some((version, cipher)) = info.tls {
        h.push_str("\r\n\t(using ");
        h.push_str(&sanitize(version, 32));
        h.push_str(" with cipher ");
        h.push_str(&sanitize(cipher, 64));
        h.push(')');
    }
    if let Some((user, method)) = info.auth {
        h.push_str("\r\n\t(authenticated as ");
        h.push_str(&sanitize(user, 128));
        h.push_str(" by ");
        h.push_str(&sanitize(method, 32));
        h.push(')');
    }
    if let Some(rcpt) = info.for_rcpt {
        h.push_str("\r\n\tfor <");
        h.push_str(&sanitize(rcpt, 256));
        h.push('>');
    }
    h.push_str(";\r\n\t");
    h.push_str(&rfc5322_date(now));
    h.push_str("\r\n");
    h
}

/// An address as RFC 5321 writes it: `[192.0.2.7]`, `[IPv6:2001:db8::7]`; an
/// IPv4-mapped IPv6 address (a dual-stack listener) as the IPv4 address it carries.
pub(crate) fn address_literal(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => format!("[{v4}]"),
        IpAddr::V6(v6) => format!("[IPv6:{v6}]"),
    }
}

/// `Tue, 05 Mar 2024 14:03:07 +0000`.
pub(crate) fn rfc5322_date(now: OffsetDateTime) -> String {
    let fmt = format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] +0000"
    );
    now.to_offset(time::UtcOffset::UTC)
        .format(&fmt)
        .unwrap_or_else(|_| "Thu, 01 Jan 1970 00:00:00 +0000".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols() {
        assert_eq!(protocol(true, true, true, false), "ESMTPSA");
        assert_eq!(protocol(true, true, false, false), "ESMTPS");
        assert_eq!(protocol(true, false, true, false), "ESMTPA");
        assert_eq!(protocol(false, true, true, false), "SMTP");
        assert_eq!(protocol(true, true, true, true), "UTF8SMTPSA");
    }

    #[test]
    fn renders_and_sanitises() {
        let info = TraceInfo {
            helo: "evil\r\nBcc: x@y (z);",
            esmtp: true,
            client_ip: Some("127.0.0.1".parse().unwrap()),
            hostname: "mx.example.org",
            tls: Some(("TLSv1.3", "TLS13_AES_256_GCM_SHA384")),
            auth: Some(("alice)\r\nX: y", "PLAIN")),
            id: "0123ABC",
            for_rcpt: Some("b@example.net"),
            utf8: false,
            proxy_ip: None,
        };
        let h = render(&info, OffsetDateTime::UNIX_EPOCH);
        assert_eq!(
            h,
            "Received: from evilBcc:x@yz ([127.0.0.1])\r\n\tby mx.example.org (Postern) with ESMTPSA id 0123ABC\r\n\t(using TLSv1.3 with cipher TLS13_AES_256_GCM_SHA384)\r\n\t(authenticated as aliceX:y by PLAIN)\r\n\tfor <b@example.net>;\r\n\tThu, 01 Jan 1970 00:00:00 +0000\r\n"
        );
        for line in h.split("\r\n").skip(1) {
            assert!(
                line.is_empty() || line.starts_with('\t'),
                "unfolded line {line:?}"
            );
        }
    }

    #[test]
    fn ipv6_literal_and_proxy() {
        let info = TraceInfo {
            helo: "client",
            client_ip: Some("2001:db8::7".parse().unwrap()),
            hostname: "mx.example.org",
            id: "1",
            proxy_ip: Some("::ffff:10.0.0.5".parse().unwrap()),
            ..TraceInfo::default()
        };
        let h = render(&info, OffsetDateTime::UNIX_EPOCH);
        assert!(
            h.starts_with("Received: from client ([IPv6:2001:db8::7] via proxy [10.0.0.5])\r\n"),
            "{h}"
        );
    }
}
