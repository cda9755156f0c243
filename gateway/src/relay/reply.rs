//! The next hop's replies, parsed strictly (RFC 5321 section 4.2): every line starts with
//! the same three-digit code, the code is one RFC 5321 defines the shape of (first digit
//! 2 to 5, second 0 to 5), continuation lines say `-`, the last one a space or nothing,
//! and a reply has a bounded number of bounded lines. Anything else is an error, never
//! a guess: a reply the gateway misreads could acknowledge a message the next hop never
//! took.
//!
//! [`ReplyParser`] takes one line at a time (the connection's line reader splits them);
//! [`parse`] reads a whole buffer with the same rules, for tests and fuzzing.

use crate::wire::reply::sanitize_text;

/// Longest reply line accepted from the next hop, without its line ending.
pub const MAX_REPLY_LINE: usize = 4096;
/// Most lines in one reply (EHLO lists are the longest).
pub const MAX_REPLY_LINES: usize = 64;

/// A reply from the next hop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamReply {
    /// Reply code.
    pub code: u16,
    /// Enhanced status code (RFC 3463) of the first line, when it has one of the code's
    /// class.
    pub enhanced: Option<String>,
    /// Text of every line, without code and enhanced code.
    pub lines: Vec<String>,
}

impl UpstreamReply {
    /// The first line's text.
    pub fn text(&self) -> &str {
        self.lines.first().map(String::as_str).unwrap_or("")
    }

    /// For logs: `250 2.0.0 Ok`, reduced to printable ASCII.
    pub fn summary(&self) -> String {
        let s = match &self.enhanced {
            Some(e) => format!("{} {} {}", self.code, e, self.text()),
            None => format!("{} {}", self.code, self.text()),
        };
        sanitize_text(&s)
    }
}

/// Why bytes from the next hop are not a reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// A line does not start with a valid reply code followed by a space, a hyphen or
    /// the end of the line.
    #[error("malformed reply line {0:?}")]
    Malformed(String),
    /// A multi-line reply whose lines carry different codes (`250-ok` then `354 go`).
    #[error("reply code changed within a multi-line reply ({first} then {then})")]
    CodeChanged {
        /// The first line's code.
        first: u16,
        /// The differing code.
        then: u16,
    },
    /// More than [`MAX_REPLY_LINES`] lines.
    #[error("reply has more than {MAX_REPLY_LINES} lines")]
    TooManyLines,
    /// A line longer than [`MAX_REPLY_LINE`] bytes.
    #[error("reply line longer than {MAX_REPLY_LINE} bytes")]
    LineTooLong,
}

/// Reads one reply, line by line.
#[derive(Debug, Default)]
pub struct ReplyParser {
    code: Option<u16>,
    enhanced: Option<String>,
    lines: Vec<String>,
}

impl ReplyParser {
    /// Feed one line (without CRLF or LF). `Ok(Some(reply))` when it was the last line;
    /// `Ok(None)` when more lines follow. After an error or a complete reply, start a new
    /// parser.
    pub fn line(&mut self, line: &[u8]) -> Result<Option<UpstreamReply>, ReplyError> {
        if line.len() > MAX_REPLY_LINE {
            return Err(ReplyError::LineTooLong);
        }
        let (code, last, text) = split_line(line)
            .ok_or_else(|| ReplyError::Malformed(sanitize_text(&String::from_utf8_lossy(line))))?;
        let first = *self.code.get_or_insert(code);
        if first != code {
            return Err(ReplyError::CodeChanged { first, then: code });
        }
        if self.lines.len() == MAX_REPLY_LINES {
            return Err(ReplyError::TooManyLines);
        }
        let text = String::from_utf8_lossy(text);
        let rest = match split_enhanced(&text, code) {
            Some((e, rest)) => {
                if self.lines.is_empty() {
                    self.enhanced = Some(e.to_owned());
                }
                rest
            }
            None => &text,
        };
        self.lines.push(rest.to_owned());
        if !last {
            return Ok(None);
        }
        Ok(Some(UpstreamReply {
            code,
            enhanced: self.enhanced.take(),
            lines: std::mem::take(&mut self.lines),
        }))
    }
}

/// Parse the first reply in `buf`, splitting lines at LF (an optional CR before it is
/// dropped), as the connection's line reader does. `Ok(None)`: incomplete, read more.
/// `Ok(Some((reply, n)))`: the reply and the number of bytes it took.
pub fn parse(buf: &[u8]) -> Result<Option<(UpstreamReply, usize)>, ReplyError> {
    let mut parser = ReplyParser::default();
    let mut start = 0;
    while let Some(i) = buf[start..].iter().position(|&b| b == b'\n') {
        let end = start + i;
        let mut line = &buf[start..end];
        if let [head @ .., b'\r'] = line {
            line = head;
        }
        start = end + 1;
        if let Some(reply) = parser.line(line)? {
            return Ok(Some((reply, start)));
        }
    }
    if buf.len() - start > MAX_REPLY_LINE {
        return Err(ReplyError::LineTooLong);
    }
    Ok(None)
}

/// Whether `code` is a reply code RFC 5321 gives a meaning to: first digit 2 (positive
/// completion) to 5 (permanent negative), second digit 0 to 5.
pub fn valid_code(code: u16) -> bool {
    (200..=599).contains(&code) && (code / 10) % 10 <= 5
}

/// `250-text` → (250, false, "text"); `250 text` and `250` → (250, true, ...).
fn split_line(line: &[u8]) -> Option<(u16, bool, &[u8])> {
    let digits = line.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let code = digits
        .iter()
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    if !valid_code(code) {
        return None;
    }
    match line.get(3) {
        None => Some((code, true, &[])),
        Some(b' ') => Some((code, true, &line[4..])),
        Some(b'-') => Some((code, false, &line[4..])),
        Some(_) => None,
    }
}

/// Split a leading enhanced status code whose class matches the reply code.
fn split_enhanced(text: &str, code: u16) -> Option<(&str, &str)> {
    let (first, rest) = text.split_once(' ').unwrap_or((text, ""));
    let mut parts = first.split('.');
    let class = parts.next()?;
    let ok = class == (code / 100).to_string()
        && parts.clone().count() == 2
        && parts.all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()));
    ok.then_some((first, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Result<Option<(UpstreamReply, usize)>, ReplyError> {
        parse(text.as_bytes())
    }

    #[test]
    fn single_and_multi_line() {
        let (r, n) = one("250 2.1.0 Sender ok\r\n").unwrap().unwrap();
        assert_eq!(
            (r.code, r.enhanced.as_deref(), r.text()),
            (250, Some("2.1.0"), "Sender ok")
        );
        assert_eq!(n, 21);
        let (r, n) = one("250-hop\r\n250-PIPELINING\n250 SIZE 10\r\nextra")
            .unwrap()
            .unwrap();
        assert_eq!(r.lines, ["hop", "PIPELINING", "SIZE 10"]);
        assert_eq!(n, 37);
        let (r, _) = one("354\r\n").unwrap().unwrap();
        assert_eq!((r.code, r.text()), (354, ""));
        assert_eq!(one("250-hop\r\n250 SIZ").unwrap(), None);
        assert_eq!(one("").unwrap(), None);
    }

    #[test]
    fn strictness() {
        for bad in [
            "25x ok\r\n",
            "hello\r\n",
            "250_ok\r\n",
            "25\r\n",
            "199 x\r\n",
            "600 x\r\n",
            "260 x\r\n",
            "\r\n",
        ] {
            assert!(matches!(one(bad), Err(ReplyError::Malformed(_))), "{bad:?}");
        }
        assert_eq!(
            one("250-ok\r\n354 go ahead\r\n"),
            Err(ReplyError::CodeChanged {
                first: 250,
                then: 354
            })
        );
        let long = "250-x\r\n".repeat(MAX_REPLY_LINES + 1);
        assert_eq!(one(&long), Err(ReplyError::TooManyLines));
        let wide = format!("250 {}\r\n", "x".repeat(MAX_REPLY_LINE));
        assert_eq!(one(&wide), Err(ReplyError::LineTooLong));
        assert_eq!(
            one(&wide[..MAX_REPLY_LINE + 2]),
            Err(ReplyError::LineTooLong)
        );
    }

    #[test]
    fn enhanced_codes() {
        assert_eq!(
            split_enhanced("5.1.1 no such user", 550),
            Some(("5.1.1", "no such user"))
        );
        assert_eq!(split_enhanced("4.1.1 x", 550), None);
        assert_eq!(split_enhanced("5.1 x", 550), None);
        assert_eq!(split_enhanced("5.1.1.1 x", 550), None);
        assert_eq!(split_enhanced("Ok", 250), None);
        let (r, _) = one("550-5.1.1 no\r\n550 5.1.1 such user\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            (r.enhanced.as_deref(), r.lines.as_slice()),
            (
                Some("5.1.1"),
                &["no".to_owned(), "such user".to_owned()][..]
            )
        );
    }

    #[test]
    fn codes() {
        assert!(valid_code(250) && valid_code(354) && valid_code(421) && valid_code(555));
        assert!(!valid_code(199) && !valid_code(260) && !valid_code(600) && !valid_code(390));
    }
}
