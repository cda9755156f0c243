//! The DATA reader (dot-unstuffing, end of data, bare CR/LF, NUL and size checks) never
//! panics; it reads a stream the same whether it arrives at once or in small pieces (as
//! the network delivers it); data ends only at `CRLF . CRLF`; and what it decodes
//! re-encodes to a stream that decodes to the same content (the relay's dot-stuffing is
//! lossless); and the one-pass transmission form (`feed_stuffed`, what the relay sends
//! for a message's body) is the encoded content.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_gateway::smtp::data::{DataDecoder, DataEncoder, Progress};

/// Feed `data` in pieces of `piece` bytes, the way the session does: stop at the end
/// of data or a bare newline.
fn decode(data: &[u8], piece: usize, max: u64) -> (Progress, Vec<u8>, DataDecoder) {
    let mut d = DataDecoder::new(max);
    let mut content = Vec::new();
    let mut offset = 0;
    let mut last = Progress::NeedMore;
    for chunk in data.chunks(piece.max(1)) {
        match d.feed(chunk, &mut content) {
            Progress::End { consumed } => {
                assert!(consumed <= chunk.len());
                return (
                    Progress::End {
                        consumed: offset + consumed,
                    },
                    content,
                    d,
                );
            }
            Progress::BareNewline => return (Progress::BareNewline, content, d),
            Progress::NeedMore => last = Progress::NeedMore,
        }
        offset += chunk.len();
    }
    (last, content, d)
}

fuzz_target!(|input: &[u8]| {
    let Some((&control, data)) = input.split_first() else {
        return;
    };
    let piece = usize::from(control & 0x3f) + 1;
    let max = if control & 0x40 != 0 { 64 } else { 1 << 20 };

    let (whole, content, d) = decode(data, data.len(), max);
    let (pieces, content_p, d_p) = decode(data, piece, max);
    assert_eq!(whole, pieces);
    assert_eq!(d.size(), d_p.size());
    assert_eq!(d.oversize(), d_p.oversize());
    assert_eq!(d.saw_nul(), d_p.saw_nul());
    if !d.oversize() {
        assert_eq!(content, content_p);
        assert_eq!(content.len() as u64, d.size());
    }

    if let Progress::End { consumed } = whole {
        let message = &data[..consumed];
        assert!(message == b".\r\n" || message.ends_with(b"\r\n.\r\n"));
        if d.oversize() {
            return;
        }
        let mut wire = Vec::new();
        let mut e = DataEncoder::default();
        for chunk in content.chunks(piece) {
            e.encode(chunk, &mut wire);
        }
        e.finish(&mut wire);

        let mut s = DataDecoder::new(max);
        let mut stuffed = Vec::new();
        for chunk in data[..consumed].chunks(piece) {
            if s.feed_stuffed(chunk, &mut stuffed) != Progress::NeedMore {
                break;
            }
        }
        let mut e = DataEncoder::default();
        e.resume(s.at_line_start());
        e.finish(&mut stuffed);
        assert_eq!(stuffed, wire);
        assert_eq!(s.size(), d.size());

        let (again, decoded, _) = decode(&wire, wire.len(), max);
        assert_eq!(
            again,
            Progress::End {
                consumed: wire.len()
            }
        );
        assert_eq!(decoded, content);
    }
});
