//! The `X-Postern-Authenticated-User` header: who the gateway authenticated, for the
//! next hop (DKIM signer, spam filter, archive), and the filter that removes every copy
//! of it a client wrote into its own message, so that the one the next hop sees is
//! always the gateway's (no forgery, also of sessions that did not authenticate).
//!
//! The filter works on the decoded content as it streams past, in bounded memory: at
//! each line start of the header section it holds back at most the header name's length
//! before deciding whether the line (and its continuation lines) is dropped; after the
//! empty line that ends the header section, everything passes.

/// The header name (RFC 5322 field names compare case-insensitively).
pub(crate) const NAME: &str = "X-Postern-Authenticated-User";

/// `X-Postern-Authenticated-User: user=<id>; method=<method>` with CRLF; the values are
/// sanitised as in `Received`.
pub(crate) fn render(user: &str, method: &str) -> String {
    format!(
        "{NAME}: user={}; method={}\r\n",
        super::received::sanitize(user, 128),
        super::received::sanitize(method, 32)
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// At the start of a header line (or of a continuation line); `held` bytes of
    /// `NAME:` matched so far are held back.
    LineStart {
        held: usize,
        continuation_of_dropped: bool,
    },
    /// Inside a header line that is kept.
    Keep,
    /// Inside a header line that is dropped.
    Drop,
    /// Past the header section.
    Body,
}

/// Removes the client's `X-Postern-Authenticated-User` header fields.
#[derive(Debug)]
pub(crate) struct StripFilter {
    state: State,
}

impl Default for StripFilter {
    fn default() -> Self {
        Self {
            state: State::LineStart {
                held: 0,
                continuation_of_dropped: false,
            },
        }
    }
}

impl StripFilter {
    /// Whether the header section has ended: from here on everything passes.
    pub(crate) fn in_body(&self) -> bool {
        self.state == State::Body
    }

    /// Pass `input` (decoded content, in order) through, appending what is kept to `out`.
    pub(crate) fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let name = NAME.as_bytes();
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Body => {
                    out.extend_from_slice(&input[i..]);
                    return;
                }
                State::Keep | State::Drop => {
                    let end = input[i..].iter().position(|&c| c == b'\n');
                    let upto = end.map_or(input.len(), |p| i + p + 1);
                    if self.state == State::Keep {
                        out.extend_from_slice(&input[i..upto]);
                    }
                    if end.is_some() {
                        self.state = State::LineStart {
                            held: 0,
                            continuation_of_dropped: self.state == State::Drop,
                        };
                    }
                    i = upto;
                }
                State::LineStart {
                    held,
                    continuation_of_dropped,
                } => {
                    if held == 0 && (b == b' ' || b == b'\t') {
                        // A continuation line belongs to the field before it.
                        self.state = if continuation_of_dropped {
                            State::Drop
                        } else {
                            State::Keep
                        };
                        continue;
                    }
                    if held == 0 && (b == b'\r' || b == b'\n') {
                        // The empty line: the header section ends.
                        self.state = State::Body;
                        continue;
                    }
                    let want = if held < name.len() { name[held] } else { b':' };
                    if b.eq_ignore_ascii_case(&want) {
                        if held == name.len() {
                            self.state = State::Drop;
                        } else {
                            self.state = State::LineStart {
                                held: held + 1,
                                continuation_of_dropped: false,
                            };
                        }
                        i += 1;
                    } else {
                        // Another field: give back what was held.
                        out.extend_from_slice(&name[..held]);
                        self.state = State::Keep;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip_in_pieces(input: &str, piece: usize) -> String {
        let mut f = StripFilter::default();
        let mut out = Vec::new();
        for chunk in input.as_bytes().chunks(piece) {
            f.feed(chunk, &mut out);
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_clients_copies_go_the_rest_stays() {
        let input = "Subject: hi\r\n\
                     x-postern-authenticated-user: user=ceo; method=PLAIN\r\n\
                     \tmore forged\r\n\
                     X-Postern-Authenticated-User-Note: kept (another field)\r\n\
                     X-Postern-Authenticated-Use: kept\r\n\
                     To: b@example.net\r\n \
                     X-Postern-Authenticated-User: kept (a continuation of To)\r\n\
                     X-POSTERN-AUTHENTICATED-USER:no space\r\n\
                     \r\n\
                     X-Postern-Authenticated-User: kept (body)\r\n";
        let want = "Subject: hi\r\n\
                    X-Postern-Authenticated-User-Note: kept (another field)\r\n\
                    X-Postern-Authenticated-Use: kept\r\n\
                    To: b@example.net\r\n \
                    X-Postern-Authenticated-User: kept (a continuation of To)\r\n\
                    \r\n\
                    X-Postern-Authenticated-User: kept (body)\r\n";
        for piece in [1, 2, 3, 7, 29, 1000] {
            assert_eq!(strip_in_pieces(input, piece), want, "pieces of {piece}");
        }
    }

    #[test]
    fn a_message_that_starts_with_the_body() {
        assert_eq!(
            strip_in_pieces("\r\nX-Postern-Authenticated-User: x\r\n", 4),
            "\r\nX-Postern-Authenticated-User: x\r\n"
        );
    }

    #[test]
    fn rendered() {
        assert_eq!(
            render("frank\r\nBcc: x", "PLAIN"),
            "X-Postern-Authenticated-User: user=frankBcc:x; method=PLAIN\r\n"
        );
    }
}
