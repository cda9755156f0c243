//! What a Monitor-mode session logs of each command (DESIGN.md section 3.4: "the session
//! is logged in full").
//!
//! The command is logged as the client sent it (the JSON log escapes control characters),
//! except that AUTH credentials are masked: the log must never hold a password, even a
//! base64 one.

/// How many commands before authentication are kept for a Monitor log. A session that
/// sends more before AUTH logs the first ones and a count of the rest.
const MAX_BEFORE_AUTH: usize = 32;

/// The longest command text logged (a command line is at most 512 octets by RFC 5321;
/// ours may be longer, up to the line limit).
const MAX_SHOWN: usize = 1024;

/// A command line as logged: lossy UTF-8, without its line ending, AUTH arguments after
/// the mechanism replaced by `***`, cut at [`MAX_SHOWN`] characters.
pub(crate) fn shown(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches(['\r', '\n']);
    let mut words = text.splitn(3, ' ');
    let verb = words.next().unwrap_or("");
    let mut out = if verb.eq_ignore_ascii_case("AUTH") {
        match (words.next(), words.next()) {
            (Some(mechanism), Some(_)) => format!("{verb} {mechanism} ***"),
            (Some(mechanism), None) => format!("{verb} {mechanism}"),
            _ => verb.to_owned(),
        }
    } else {
        text.to_owned()
    };
    if let Some((cut, _)) = out.char_indices().nth(MAX_SHOWN) {
        out.truncate(cut);
        out.push_str("...");
    }
    out
}

/// The commands of a session before it authenticated, bounded.
#[derive(Debug, Default)]
pub(crate) struct Recent {
    lines: Vec<String>,
    dropped: usize,
}

impl Recent {
    /// Remember one command line.
    pub(crate) fn push(&mut self, line: &[u8]) {
        if self.lines.len() < MAX_BEFORE_AUTH {
            self.lines.push(shown(line));
        } else {
            self.dropped += 1;
        }
    }

    /// Whether nothing is kept.
    pub(crate) fn is_empty(&self) -> bool {
        self.lines.is_empty() && self.dropped == 0
    }

    /// Forget everything (the session authenticated without Monitor).
    pub(crate) fn clear(&mut self) {
        self.lines = Vec::new();
        self.dropped = 0;
    }

    /// Take what is kept, in order, with a last line counting what was not kept.
    pub(crate) fn take(&mut self) -> Vec<String> {
        let mut out = std::mem::take(&mut self.lines);
        if self.dropped > 0 {
            out.push(format!("({} more commands not kept)", self.dropped));
        }
        self.dropped = 0;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_shown_as_sent_and_credentials_masked() {
        assert_eq!(
            shown(b"MAIL FROM:<a@x.test> SIZE=10\r\n"),
            "MAIL FROM:<a@x.test> SIZE=10"
        );
        assert_eq!(shown(b"RCPT TO:<b@y.test>"), "RCPT TO:<b@y.test>");
        assert_eq!(shown(b"AUTH PLAIN AGFsaWNlAHNlY3JldA=="), "AUTH PLAIN ***");
        assert_eq!(shown(b"auth login YWxpY2U="), "auth login ***");
        assert_eq!(shown(b"AUTH LOGIN"), "AUTH LOGIN");
        assert_eq!(shown(b"EHLO a\x00b\xff"), "EHLO a\u{0}b\u{fffd}");
        let long = shown(&[b'x'; 3000]);
        assert_eq!(long.len(), MAX_SHOWN + 3);
    }

    #[test]
    fn before_auth_is_bounded_and_counts_the_rest() {
        let mut r = Recent::default();
        assert!(r.is_empty());
        for i in 0..40 {
            r.push(format!("NOOP {i}").as_bytes());
        }
        let lines = r.take();
        assert_eq!(lines.len(), MAX_BEFORE_AUTH + 1);
        assert_eq!(lines[0], "NOOP 0");
        assert_eq!(lines[MAX_BEFORE_AUTH], "(8 more commands not kept)");
        assert!(r.is_empty());
    }
}
