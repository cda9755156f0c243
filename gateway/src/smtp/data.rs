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

impl Progress {
    /// Whether the end of data was reached.
    pub fn is_end(self) -> bool {
        matches!(self, Self::End { .. })
    }
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
        self.decode::<false>(input, out)
    }

    /// Feed `input` as [`DataDecoder::feed`] does, appending the content to `out` in its
    /// transmission form instead: stuffed again (a line's leading `.` doubled) without
    /// the terminating `.` line, which is what [`DataEncoder::encode`] makes of the
    /// content. A message's body goes to the next hop this way in one pass: a client's
    /// well-formed stream is copied as it came, run by run.
    pub fn feed_stuffed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Progress {
        self.decode::<true>(input, out)
    }

    /// Whether the content so far ends at a line's start (or nothing was emitted yet).
    pub fn at_line_start(&self) -> bool {
        matches!(
            self.state,
            State::LineStart | State::Dot | State::DotCr | State::Done
        )
    }

    fn decode<const STUFFED: bool>(&mut self, input: &[u8], out: &mut Vec<u8>) -> Progress {
        let mut i = 0;
        while i < input.len() {
            // Well-formed lines that do not start with a dot are content exactly as they
            // came, in both forms: copy every such line up to the next byte that needs a
            // look (a line-start dot, a CR without its LF in this chunk, a bare LF, a NUL)
            // at once. The byte-by-byte path below costs ~30 instructions per byte, and
            // one emit per line was still the largest item of a large message's relay.
            if matches!(self.state, State::Mid | State::LineStart) {
                let (run, state) = clean_run(&input[i..], self.state == State::LineStart);
                if run > 0 {
                    self.emit(&input[i..i + run], out);
                    self.state = state;
                    i += run;
                    continue;
                }
            }
            let b = input[i];
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
                    self.nul |= b == 0;
                    // A leading dot is dropped (unstuffing); `..` becomes `.`, which
                    // the transmission form stuffs again.
                    if STUFFED && state == State::Dot && b == b'.' {
                        self.emit_stuffed_dot(out);
                    } else {
                        self.emit(&[b], out);
                    }
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
            i += 1;
        }
        Progress::NeedMore
    }

    fn finish_state(&self, at: usize) -> Progress {
        match self.state {
            State::Done => Progress::End { consumed: at },
            _ => Progress::BareNewline,
        }
    }

    /// Content bytes, none of them a NUL (the caller has looked).
    fn emit(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        let before = self.size;
        self.size += bytes.len() as u64;
        if self.oversize {
            return;
        }
        if self.size > self.max_size {
            // Keep exactly the first max_size bytes (the message is refused anyway).
            self.oversize = true;
            let room = self.max_size.saturating_sub(before) as usize;
            out.extend_from_slice(&bytes[..room.min(bytes.len())]);
        } else {
            out.extend_from_slice(bytes);
        }
    }

    /// A content line's leading `.`, in its transmission form `..`: one byte of content.
    fn emit_stuffed_dot(&mut self, out: &mut Vec<u8>) {
        self.size += 1;
        if self.oversize {
            return;
        }
        if self.size > self.max_size {
            self.oversize = true;
        } else {
            out.extend_from_slice(b"..");
        }
    }
}

/// The longest start of `input` that is content as it stands: whole CRLF-terminated
/// lines that do not start with `.`, then possibly the start of a line, up to (not
/// including) the first CR whose LF is not in `input`, bare LF, NUL, or line-start `.`.
/// `at_line_start`: whether `input` starts a line. Returns the length and the decoder's
/// state after it (`LineStart` or `Mid`).
fn clean_run(input: &[u8], at_line_start: bool) -> (usize, State) {
    let mut at = 0;
    let mut line_start = at_line_start;
    loop {
        let state = if line_start {
            State::LineStart
        } else {
            State::Mid
        };
        if line_start && input.get(at) == Some(&b'.') {
            return (at, state);
        }
        let rest = &input[at..];
        let Some(special) = memchr::memchr3(b'\r', b'\n', 0, rest) else {
            let state = if rest.is_empty() { state } else { State::Mid };
            return (input.len(), state);
        };
        if rest[special] == b'\r' && rest.get(special + 1) == Some(&b'\n') {
            at += special + 2;
            line_start = true;
            continue;
        }
        let state = if special == 0 { state } else { State::Mid };
        return (at + special, state);
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
        // Line by line: only a line's first byte can need stuffing.
        let mut rest = content;
        while !rest.is_empty() {
            if self.at_line_start && rest[0] == b'.' {
                out.push(b'.');
            }
            match memchr::memchr(b'\n', rest) {
                Some(p) => {
                    out.extend_from_slice(&rest[..=p]);
                    rest = &rest[p + 1..];
                    self.at_line_start = true;
                }
                None => {
                    out.extend_from_slice(rest);
                    rest = &[];
                    self.at_line_start = false;
                }
            }
        }
    }

    /// Go on after content that was put into its transmission form elsewhere
    /// ([`DataDecoder::feed_stuffed`]), which ended at a line's start or not.
    pub fn resume(&mut self, at_line_start: bool) {
        self.at_line_start = at_line_start;
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

    /// The byte-at-a-time decoder the fast path replaced, kept as the reference.
    fn reference_decode(input: &[u8], max: u64) -> (Vec<u8>, Progress, bool, bool) {
        fn emit(bytes: &[u8], out: &mut Vec<u8>, size: &mut u64, nul: &mut bool, max: u64) {
            for &b in bytes {
                *nul |= b == 0;
                *size += 1;
                if *size <= max {
                    out.push(b);
                }
            }
        }
        let (mut state, mut out, mut size, mut nul) = (State::LineStart, Vec::new(), 0u64, false);
        for (i, &b) in input.iter().enumerate() {
            state = match (state, b) {
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
                    emit(&[b], &mut out, &mut size, &mut nul, max);
                    State::Mid
                }
                (State::DotCr, b'\n') => State::Done,
                (State::Cr, b'\n') => {
                    emit(b"\r\n", &mut out, &mut size, &mut nul, max);
                    State::LineStart
                }
                _ => State::Broken,
            };
            match state {
                State::Done => return (out, Progress::End { consumed: i + 1 }, size > max, nul),
                State::Broken => return (out, Progress::BareNewline, size > max, nul),
                _ => {}
            }
        }
        (out, Progress::NeedMore, size > max, nul)
    }

    #[test]
    fn fast_path_matches_the_byte_at_a_time_reference() {
        // Pseudo-random inputs over the bytes that matter, in every chunking up to 7.
        let alphabet = b"ab.\r\n\0";
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let (mut ended, mut broken, mut open, mut over) = (0, 0, 0, 0);
        for case in 0..3000 {
            let len = (case % 60) + 1;
            let mut input = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Mostly ordinary bytes and CRLFs, so messages get long enough to end.
                let b = match x % 10 {
                    0..=4 => b'a',
                    5 | 6 => {
                        input.push(b'\r');
                        b'\n'
                    }
                    n => alphabet[(n as usize) % alphabet.len()],
                };
                input.push(b);
            }
            let max = (x % 40) + 1;
            let (want_out, want_p, want_over, want_nul) = reference_decode(&input, max);
            match want_p {
                Progress::End { .. } => ended += 1,
                Progress::BareNewline => broken += 1,
                Progress::NeedMore => open += 1,
            }
            over += usize::from(want_over);
            for chunk in (1..=7).chain([16, 64, usize::MAX]) {
                let (out, p, d) = decode_in_chunks(&input, chunk, max);
                assert_eq!(p, want_p, "{input:?} chunk {chunk}");
                if want_p != Progress::BareNewline {
                    assert_eq!(out, want_out, "{input:?} chunk {chunk} max {max}");
                    assert_eq!(d.oversize(), want_over, "{input:?}");
                    assert_eq!(d.saw_nul(), want_nul, "{input:?}");
                }
            }
        }
        // Every outcome was exercised.
        assert!(
            ended > 50 && broken > 50 && open > 50 && over > 50,
            "{ended} {broken} {open} {over}"
        );
    }

    #[test]
    fn the_stuffed_form_is_the_encoded_content() {
        // Inputs as in the test above, sloppy stuffing (`.x` for `x`) included: what
        // `feed_stuffed` writes is what encoding the decoded content writes.
        let alphabet = b"ab..\r\n\0";
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for case in 0..3000 {
            let len = (case % 80) + 1;
            let mut input = Vec::with_capacity(len + 2);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                match x % 10 {
                    0..=3 => input.push(b'a'),
                    4 | 5 => input.extend_from_slice(b"\r\n"),
                    n => input.push(alphabet[(n as usize) % alphabet.len()]),
                }
            }
            let max = if case % 3 == 0 { (x % 40) + 1 } else { 1 << 20 };
            let (content, want_p, _, _) = reference_decode(&input, max);
            let mut encoded = Vec::new();
            DataEncoder::default().encode(&content, &mut encoded);
            for chunk in (1..=7).chain([16, 64, usize::MAX]) {
                let mut d = DataDecoder::new(max);
                let mut out = Vec::new();
                let mut p = Progress::NeedMore;
                for c in input.chunks(chunk) {
                    p = d.feed_stuffed(c, &mut out);
                    if p != Progress::NeedMore {
                        break;
                    }
                }
                assert_eq!(p.is_end(), want_p.is_end(), "{input:?} chunk {chunk}");
                if !d.oversize() && p != Progress::BareNewline {
                    assert_eq!(out, encoded, "{input:?} chunk {chunk}");
                }
                if p.is_end() {
                    assert!(d.at_line_start());
                }
            }
        }
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
