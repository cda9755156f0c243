//! Message data: decoding what the client sends after `354` (dot-unstuffing, end of data,
//! size limit, bare CR/LF and NUL detection) and encoding it again for the next hop.
//!
//! Both are byte-level state machines that work on arbitrary chunks, so a message is
//! streamed through without being held in memory and without a per-line allocation.
//!
//! End of data is only `CRLF . CRLF`. A bare LF or bare CR is refused outright (the
//! client is told and disconnected, as Postfix does): accepting them is how "SMTP
//! smuggling" hides a second message inside the first when two servers disagree about
//! where a message ends.

/// Decoder state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// At the start of a line.
    LineStart,
    /// A `.` at the start of a line.
    Dot,
    /// `.` CR at the start of a line.
    DotCr,
    /// Inside a line.
    Mid,
    /// CR inside a line.
    Cr,
    /// The terminating `.` CRLF was seen.
    Done,
    /// A bare CR or LF was seen.
    Broken,
}

/// What happened to a chunk fed to the decoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// More data is needed.
    NeedMore,
    /// The end of data was reached after `consumed` bytes of the chunk; the rest belongs
    /// to the next command (pipelining).
    End {
        /// Bytes of the chunk that were part of the message.
        consumed: usize,
    },
    /// A bare CR or LF: the message must be refused and the connection closed.
    BareNewline,
}

/// Decodes the client's dot-stuffed data stream into message content.
#[derive(Debug)]
pub struct DataDecoder {
    state: State,
    max_size: u64,
    size: u64,
    oversize: bool,
    nul: bool,
}

impl DataDecoder {
    /// A decoder that flags messages larger than `max_size` bytes of content.
    pub fn new(max_size: u64) -> Self {
        Self {
            state: State::LineStart,
            max_size,
            size: 0,
            oversize: false,
            nul: false,
        }
    }

    /// Content bytes seen so far (counted even past the limit).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether the content exceeded the size limit (content past it is not emitted).
    pub fn oversize(&self) -> bool {
        self.oversize
    }

    /// Whether the content contained a NUL byte.
    pub fn saw_nul(&self) -> bool {
        self.nul
    }

    /// Feed `input`; content (unstuffed, CRLF line endings) is appended to `out` while
    /// the message is within the size limit.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Progress {
        for (i, &b) in input.iter().enumerate() {
            let state = self.state;
            self.state = match (state, b) {
                (State::Done, _) | (State::Broken, _) => return self.finish_state(i),
                (State::LineStart, b'.') => State::Dot,
                (State::LineStart | State::Mid | State::Dot, b'\r') => {
                    if state == State::Dot {
                        State::DotCr
                    } else {
                        State::Cr
                    }
                }
                (State::LineStart | State::Mid | State::Dot, b'\n') => State::Broken,
                (State::LineStart | State::Mid | State::Dot, b) => {
                    // A leading dot is dropped (unstuffing); `..` becomes `.`.
                    self.emit(&[b], out);
                    State::Mid
                }
                (State::DotCr, b'\n') => State::Done,
                (State::Cr, b'\n') => {
                    self.emit(b"\r\n", out);
                    State::LineStart
                }
                (State::DotCr | State::Cr, _) => State::Broken,
            };
            match self.state {
                State::Done => return Progress::End { consumed: i + 1 },
                State::Broken => return Progress::BareNewline,
                _ => {}
            }
        }
        Progress::NeedMore
    }

    fn finish_state(&self, at: usize) -> Progress {
        match self.state {
            State::Done => Progress::End { consumed: at },
            _ => Progress::BareNewline,
        }
    }

    fn emit(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        if bytes.contains(&0) {
            self.nul = true;
        }
        self.size += bytes.len() as u64;
        if self.size > self.max_size {
            self.oversize = true;
        }
        if !self.oversize {
            out.extend_from_slice(bytes);
        }
    }
}

/// Re-stuffs content for the next hop: a `.` at the start of a line is doubled. The
/// terminating `.` CRLF is added by [`DataEncoder::finish`].
#[derive(Debug)]
pub struct DataEncoder {
    at_line_start: bool,
}

impl Default for DataEncoder {
    fn default() -> Self {
        Self {
            at_line_start: true,
        }
    }
}

impl DataEncoder {
    /// Append the stuffed form of `content` to `out`. `content` uses CRLF line endings
    /// (as the decoder produces).
    pub fn encode(&mut self, content: &[u8], out: &mut Vec<u8>) {
        out.reserve(content.len() + 8);
        for &b in content {
            if self.at_line_start && b == b'.' {
                out.push(b'.');
            }
            out.push(b);
            self.at_line_start = b == b'\n';
        }
    }

    /// Append the end of data: CRLF first when the content did not end with one.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.at_line_start {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_chunks(input: &[u8], chunk: usize, max: u64) -> (Vec<u8>, Progress, DataDecoder) {
        let mut d = DataDecoder::new(max);
        let mut out = Vec::new();
        let mut last = Progress::NeedMore;
        let mut offset = 0;
        for c in input.chunks(chunk) {
            last = d.feed(c, &mut out);
            if let Progress::End { consumed } = last {
                return (
                    out,
                    Progress::End {
                        consumed: offset + consumed,
                    },
                    d,
                );
            }
            if last == Progress::BareNewline {
                break;
            }
            offset += c.len();
        }
        (out, last, d)
    }

    #[test]
    fn unstuffs_and_finds_the_end_in_any_chunking() {
        let input =
            b"Subject: x\r\n\r\n..leading dot\r\n\r\n...two\r\nend\r\n.\r\nMAIL FROM:<a@b>\r\n";
        for chunk in 1..input.len() {
            let (out, p, _) = decode_in_chunks(input, chunk, 1 << 20);
            assert_eq!(
                out, b"Subject: x\r\n\r\n.leading dot\r\n\r\n..two\r\nend\r\n",
                "chunk {chunk}"
            );
            assert_eq!(
                p,
                Progress::End {
                    consumed: input.len() - 17
                },
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn empty_message() {
        let (out, p, _) = decode_in_chunks(b".\r\n", 3, 10);
        assert!(out.is_empty());
        assert_eq!(p, Progress::End { consumed: 3 });
    }

    #[test]
    fn bare_newlines_are_refused() {
        for input in [
            &b"a\nb\r\n.\r\n"[..],
            b"a\rb\r\n.\r\n",
            b"\n.\n",
            b"x\r\n.\n",
            b"x\r\n.\rx",
        ] {
            let (_, p, _) = decode_in_chunks(input, 2, 100);
            assert_eq!(p, Progress::BareNewline, "{input:?}");
        }
    }

    #[test]
    fn size_limit_and_nul() {
        let (out, p, d) = decode_in_chunks(b"0123456789\r\n.\r\n", 4, 5);
        assert_eq!(p, Progress::End { consumed: 15 });
        assert!(d.oversize());
        assert_eq!(out, b"01234");
        let (_, _, d) = decode_in_chunks(b"a\0b\r\n.\r\n", 4, 100);
        assert!(d.saw_nul());
    }

    #[test]
    fn encoder_round_trips() {
        let content = b"Subject: x\r\n\r\n.leading\r\n..two\r\n.\r\nlast";
        let mut e = DataEncoder::default();
        let mut wire = Vec::new();
        for c in content.chunks(3) {
            e.encode(c, &mut wire);
        }
        e.finish(&mut wire);
        assert_eq!(
            wire,
            b"Subject: x\r\n\r\n..leading\r\n...two\r\n..\r\nlast\r\n.\r\n"
        );
        let (out, p, _) = decode_in_chunks(&wire, 5, 1 << 20);
        assert_eq!(
            p,
            Progress::End {
                consumed: wire.len()
            }
        );
        assert_eq!(out, b"Subject: x\r\n\r\n.leading\r\n..two\r\n.\r\nlast\r\n");

        let mut e = DataEncoder::default();
        let mut wire = Vec::new();
        e.encode(b"a\r\n", &mut wire);
        e.finish(&mut wire);
        assert_eq!(wire, b"a\r\n.\r\n");
    }
}
