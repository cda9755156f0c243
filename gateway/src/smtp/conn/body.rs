//! One message's bytes on their way through the gateway: the client's dot-stuffed stream
//! decoded ([`DataDecoder`]: end of data, size limit, bare CR/LF, NUL), encoded again for
//! the next hop ([`DataEncoder`]) behind the `Received` header, and handed out in chunks
//! of about [`DATA_CHUNK`] bytes, so a message is never held whole.

use crate::smtp::data::{DataDecoder, DataEncoder, Progress};
use crate::smtp::identity_header::StripFilter;
use crate::wire::io::DATA_CHUNK;

use super::outcome::TransactionOutcome;

/// A message between the client and the next hop.
#[derive(Debug)]
pub(super) struct Body {
    decoder: DataDecoder,
    encoder: DataEncoder,
    /// Content decoded from the last input, before it is encoded.
    content: Vec<u8>,
    /// Removes the client's own `X-Postern-Authenticated-User` fields.
    strip: StripFilter,
    /// The content the filter kept, to be encoded.
    kept: Vec<u8>,
    /// Encoded bytes not sent yet.
    wire: Vec<u8>,
}

impl Body {
    /// A message of at most `max_size` content bytes, after `header`.
    pub(super) fn new(max_size: u64, header: &[u8]) -> Self {
        let mut body = Self {
            decoder: DataDecoder::new(max_size),
            encoder: DataEncoder::default(),
            content: Vec::with_capacity(DATA_CHUNK),
            strip: StripFilter::default(),
            kept: Vec::with_capacity(DATA_CHUNK),
            wire: Vec::with_capacity(DATA_CHUNK + 1024),
        };
        body.encoder.encode(header, &mut body.wire);
        body
    }

    /// Decode `input`, what the client has sent so far, and return the progress and how
    /// many of its bytes belong to the message. The content is encoded for the next hop
    /// only while it is `relaying` and the message is within the size limit: a message
    /// that will be refused is read to its end but not kept.
    pub(super) fn feed(&mut self, input: &[u8], relaying: bool) -> (Progress, usize) {
        if relaying && self.strip.in_body() && !self.decoder.oversize() {
            // Past the header section nothing is filtered: the content goes straight
            // into its transmission form, in one pass over the client's bytes instead of
            // decode, filter and encode one after the other.
            let progress = self.decoder.feed_stuffed(input, &mut self.wire);
            self.encoder.resume(self.decoder.at_line_start());
            return (progress, Self::consumed(progress, input));
        }
        let progress = self.decoder.feed(input, &mut self.content);
        let consumed = Self::consumed(progress, input);
        if !self.content.is_empty() {
            if relaying && !self.decoder.oversize() {
                self.strip.feed(&self.content, &mut self.kept);
                self.encoder.encode(&self.kept, &mut self.wire);
                self.kept.clear();
            }
            self.content.clear();
        }
        (progress, consumed)
    }

    /// How many bytes of `input` the message took.
    fn consumed(progress: Progress, input: &[u8]) -> usize {
        match progress {
            Progress::End { consumed } => consumed,
            _ => input.len(),
        }
    }

    /// Enough encoded bytes to be worth a write to the next hop.
    pub(super) fn chunk_ready(&self) -> bool {
        self.wire.len() >= DATA_CHUNK
    }

    /// The encoded bytes not sent yet.
    pub(super) fn chunk(&self) -> &[u8] {
        &self.wire
    }

    /// The chunk went out (or was given up on).
    pub(super) fn sent(&mut self) {
        self.wire.clear();
    }

    /// The rest of the message with the final dot, once the client's end of data was seen.
    pub(super) fn last(&mut self) -> &[u8] {
        self.encoder.finish(&mut self.wire);
        &self.wire
    }

    /// Content bytes the client sent (counted past the limit too).
    pub(super) fn size(&self) -> u64 {
        self.decoder.size()
    }

    /// Why the complete message is refused whatever the next hop would say: over the size
    /// limit, or a NUL byte in it.
    pub(super) fn refusal(&self, max_size: u64) -> Option<TransactionOutcome> {
        if self.decoder.oversize() {
            Some(TransactionOutcome::TooBig {
                size: self.decoder.size(),
                limit: max_size,
            })
        } else if self.decoder.saw_nul() {
            Some(TransactionOutcome::Nul)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(input: &[u8], max: u64) -> (Body, Progress, Vec<u8>) {
        let mut body = Body::new(max, b"Received: x\r\n");
        let (progress, consumed) = body.feed(input, true);
        assert_eq!(
            consumed,
            match progress {
                Progress::End { consumed } => consumed,
                _ => input.len(),
            }
        );
        let wire = body.last().to_vec();
        (body, progress, wire)
    }

    #[test]
    fn a_message_is_restuffed_behind_its_header() {
        let (body, progress, wire) = relay(b"..dot\r\nend\r\n.\r\nQUIT\r\n", 100);
        assert_eq!(progress, Progress::End { consumed: 15 });
        assert_eq!(wire, b"Received: x\r\n..dot\r\nend\r\n.\r\n");
        assert_eq!(body.size(), 11);
        assert!(body.refusal(100).is_none());
    }

    #[test]
    fn refused_content() {
        // Content past the limit is not sent on (the message is refused).
        let (body, _, wire) = relay(b"0123456789\r\n.\r\n", 4);
        assert_eq!(wire, b"Received: x\r\n.\r\n");
        assert!(matches!(
            body.refusal(4),
            Some(TransactionOutcome::TooBig { size: 12, limit: 4 })
        ));
        let (body, _, _) = relay(b"a\0b\r\n.\r\n", 100);
        assert!(matches!(body.refusal(100), Some(TransactionOutcome::Nul)));
    }

    #[test]
    fn any_chunking_relays_the_same_bytes() {
        // The header section goes through the filter; the body, once the filter has let
        // it pass, is put into its transmission form in one pass: the next hop gets the
        // same bytes however the client's stream was cut.
        let input = b"Subject: x\r\nX-Postern-Authenticated-User: forged\r\n\r\n\
            ..leading dot\r\n.sloppy\r\nline\r\n...\r\nlast\r\n.\r\nQUIT\r\n";
        let want = b"Received: x\r\nSubject: x\r\n\r\n..leading dot\r\nsloppy\r\nline\r\n\
            ...\r\nlast\r\n.\r\n";
        for chunk in 1..input.len() {
            let mut body = Body::new(1 << 20, b"Received: x\r\n");
            let mut wire = Vec::new();
            let mut offset = 0;
            for c in input.chunks(chunk) {
                let (progress, consumed) = body.feed(c, true);
                if let Progress::End { .. } = progress {
                    assert_eq!(offset + consumed, input.len() - 6, "chunk {chunk}");
                    break;
                }
                wire.extend_from_slice(body.chunk());
                body.sent();
                offset += c.len();
            }
            wire.extend_from_slice(body.last());
            assert_eq!(
                String::from_utf8_lossy(&wire),
                String::from_utf8_lossy(want),
                "chunk {chunk}"
            );
            // Content as the client sent it, its forged header included.
            assert_eq!(body.size(), 90, "chunk {chunk}");
        }
    }

    #[test]
    fn nothing_is_kept_once_the_next_hop_is_gone() {
        let mut body = Body::new(100, b"H\r\n");
        body.sent();
        body.feed(b"text\r\n", false);
        assert!(body.chunk().is_empty() && !body.chunk_ready());
        assert_eq!(body.size(), 6);
    }
}
