//! SMTP replies, including the ones whose code and enhanced code are a contract
//! (DESIGN.md section 3, the reply table).

use std::borrow::Cow;
use std::fmt;

/// One SMTP reply: a code, an optional RFC 3463 enhanced status code and text lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// Three-digit reply code.
    pub code: u16,
    /// Enhanced status code (`5.7.0`), written after the code on every line.
    pub enhanced: Option<Cow<'static, str>>,
    /// Text lines; at least one. Multi-line replies use `code-` continuation.
    pub lines: Vec<Cow<'static, str>>,
}

impl Reply {
    /// A single-line reply with an enhanced status code.
    pub fn new(code: u16, enhanced: &'static str, text: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            enhanced: Some(Cow::Borrowed(enhanced)),
            lines: vec![text.into()],
        }
    }

    /// A single-line reply without an enhanced code (greeting, EHLO, `334`).
    pub fn plain(code: u16, text: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            enhanced: None,
            lines: vec![text.into()],
        }
    }

    /// A reply with a caller-provided enhanced code and text (custom responses, replies
    /// passed through from the next hop). Text is sanitised to one printable line.
    pub fn custom(code: u16, enhanced: Option<String>, text: &str) -> Self {
        Self {
            code,
            enhanced: enhanced.map(Cow::Owned),
            lines: vec![Cow::Owned(sanitize_text(text))],
        }
    }

    /// Whether this is a success (2xx) or intermediate (3xx) reply.
    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    /// Whether the connection is closed after this reply (`421`, `221`, `521`).
    pub fn closes(&self) -> bool {
        matches!(self.code, 221 | 421 | 521)
    }

    /// Append the wire form (CRLF-terminated lines) to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            out.extend_from_slice(&digits3(self.code));
            out.push(if i == last { b' ' } else { b'-' });
            if let Some(e) = &self.enhanced {
                out.extend_from_slice(e.as_bytes());
                if !line.is_empty() {
                    out.push(b' ');
                }
            }
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if self.lines.is_empty() {
            out.extend_from_slice(&digits3(self.code));
            out.extend_from_slice(b" \r\n");
        }
    }

    /// The reply as one line of text for logs: `530 5.7.0 Must issue a STARTTLS command first`.
    pub fn summary(&self) -> String {
        let mut s = self.code.to_string();
        if let Some(e) = &self.enhanced {
            s.push(' ');
            s.push_str(e);
        }
        if let Some(first) = self.lines.first() {
            s.push(' ');
            s.push_str(first);
        }
        s
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary())
    }
}

/// `code` as three digits (`{:03}`), without formatting machinery: a reply line is
/// written for every command.
fn digits3(code: u16) -> [u8; 3] {
    let code = code.min(999);
    let digit = |n: u16| b'0' + (n % 10) as u8;
    [digit(code / 100), digit(code / 10), digit(code)]
}

/// Make `text` safe for one reply or header line: printable ASCII only, bounded length.
pub(crate) fn sanitize_text(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(400)
        .collect()
}

// --- The contract replies (DESIGN.md section 3) ------------------------------------------

/// `530 5.7.0`: MAIL or AUTH before STARTTLS where the policy requires TLS.
pub(crate) fn tls_required() -> Reply {
    Reply::new(530, "5.7.0", "Must issue a STARTTLS command first")
}
/// `530 5.7.0`: MAIL without authentication where the policy requires it.
pub(crate) fn auth_required() -> Reply {
    Reply::new(530, "5.7.0", "Authentication required")
}
/// `538 5.7.11`: AUTH is offered only over TLS and was sent before it.
pub(crate) fn encryption_required_for_auth() -> Reply {
    Reply::new(
        538,
        "5.7.11",
        "Encryption required for requested authentication mechanism",
    )
}
/// `535 5.7.8`: wrong password or unknown user.
pub(crate) fn invalid_credentials() -> Reply {
    Reply::new(535, "5.7.8", "Authentication credentials invalid")
}
/// `454 4.7.0`: the directory could not answer.
pub(crate) fn temporary_auth_failure() -> Reply {
    Reply::new(
        454,
        "4.7.0",
        "Temporary authentication failure, try again later",
    )
}
/// `552 5.3.4`: message over the size limit.
pub(crate) fn message_too_big() -> Reply {
    Reply::new(
        552,
        "5.3.4",
        "Message size exceeds fixed maximum message size",
    )
}
/// `452 4.5.3`: too many recipients.
pub(crate) fn too_many_recipients() -> Reply {
    Reply::new(452, "4.5.3", "Too many recipients")
}
/// `451 4.7.1`: the sender's message rate limit (`rateLimits.*.messages`) is reached.
pub(crate) fn message_rate_limited() -> Reply {
    Reply::new(451, "4.7.1", "Message rate limit exceeded, try again later")
}
/// `452 4.5.3`: the sender's recipient rate limit (`rateLimits.*.recipients`) is reached.
pub(crate) fn recipient_rate_limited() -> Reply {
    Reply::new(
        452,
        "4.5.3",
        "Recipient rate limit exceeded, try again later",
    )
}
/// `451 4.4.1`: the next hop refused temporarily or could not be reached.
pub(crate) fn next_hop_unavailable() -> Reply {
    Reply::new(
        451,
        "4.4.1",
        "Next hop temporarily unavailable, try again later",
    )
}
/// `421 4.4.2`: idle timeout.
pub(crate) fn idle_timeout() -> Reply {
    Reply::new(421, "4.4.2", "Idle timeout, closing connection")
}
/// `421 4.3.2`: the gateway is shutting down.
pub(crate) fn shutting_down() -> Reply {
    Reply::new(421, "4.3.2", "Service shutting down, closing connection")
}
/// `554 5.7.1`: the mail flow policy rejects this client.
pub(crate) fn policy_reject() -> Reply {
    Reply::new(554, "5.7.1", "Access denied by mail flow policy")
}
/// `421 4.7.0`: the listener is at its connection cap.
pub(crate) fn too_many_connections() -> Reply {
    Reply::new(421, "4.7.0", "Too many connections, try again later")
}
/// `421 4.7.0`: a connection broke the listener's PROXY protocol rule (a trusted proxy
/// sent no valid header, or another peer sent one).
pub(crate) fn proxy_protocol_refused() -> Reply {
    Reply::new(421, "4.7.0", "PROXY protocol violation, closing connection")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(r: &Reply) -> String {
        let mut out = Vec::new();
        r.write_to(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn single_and_multi_line() {
        assert_eq!(
            wire(&tls_required()),
            "530 5.7.0 Must issue a STARTTLS command first\r\n"
        );
        let r = Reply {
            code: 250,
            enhanced: None,
            lines: vec!["mx".into(), "PIPELINING".into(), "8BITMIME".into()],
        };
        assert_eq!(wire(&r), "250-mx\r\n250-PIPELINING\r\n250 8BITMIME\r\n");
    }

    #[test]
    fn codes_are_three_digits() {
        for code in [0, 7, 42, 250, 421, 999, 1000, u16::MAX] {
            let expected = format!("{:03}", code.min(999));
            assert_eq!(digits3(code), expected.as_bytes(), "{code}");
        }
    }

    #[test]
    fn custom_text_cannot_inject_lines() {
        let r = Reply::custom(525, Some("5.7.13".into()), "bad\r\n250 ok");
        assert_eq!(wire(&r), "525 5.7.13 bad??250 ok\r\n");
    }

    #[test]
    fn contract_codes() {
        for (r, code, enh) in [
            (tls_required(), 530, "5.7.0"),
            (auth_required(), 530, "5.7.0"),
            (encryption_required_for_auth(), 538, "5.7.11"),
            (invalid_credentials(), 535, "5.7.8"),
            (temporary_auth_failure(), 454, "4.7.0"),
            (message_too_big(), 552, "5.3.4"),
            (too_many_recipients(), 452, "4.5.3"),
            (message_rate_limited(), 451, "4.7.1"),
            (recipient_rate_limited(), 452, "4.5.3"),
            (next_hop_unavailable(), 451, "4.4.1"),
            (idle_timeout(), 421, "4.4.2"),
            (shutting_down(), 421, "4.3.2"),
            (policy_reject(), 554, "5.7.1"),
        ] {
            assert_eq!((r.code, r.enhanced.as_deref()), (code, Some(enh)));
        }
    }
}
