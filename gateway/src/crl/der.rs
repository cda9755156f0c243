//! A minimal DER reader for the parts of a CRL that are too big for a general parser.
//!
//! x509-parser turns every revoked entry into an owned structure (a big integer, a parsed
//! time, a vector of extensions); at a million entries that is hundreds of megabytes of
//! garbage. The revoked list is walked with this reader instead: it only borrows slices.

/// Why DER could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed DER: {0}")]
pub(super) struct DerError(pub &'static str);

/// DER tags used by CRLs.
pub(crate) mod tag {
    pub(crate) const BOOLEAN: u8 = 0x01;
    pub(crate) const INTEGER: u8 = 0x02;
    pub(crate) const BIT_STRING: u8 = 0x03;
    pub(crate) const OCTET_STRING: u8 = 0x04;
    pub(crate) const OID: u8 = 0x06;
    pub(crate) const ENUMERATED: u8 = 0x0a;
    pub(crate) const UTC_TIME: u8 = 0x17;
    pub(crate) const GENERALIZED_TIME: u8 = 0x18;
    pub(crate) const SEQUENCE: u8 = 0x30;
    /// `[0]` constructed, context-specific (explicit tagging).
    pub(crate) const CONTEXT_0: u8 = 0xa0;
}

/// One tag-length-value element.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tlv<'a> {
    /// The value bytes.
    pub content: &'a [u8],
    /// The whole element, header included.
    pub raw: &'a [u8],
}

/// Reads consecutive elements from a byte slice.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The tag of the next element, if any.
    pub(super) fn peek_tag(&self) -> Option<u8> {
        self.buf.first().copied()
    }

    /// Read the next element, whatever its tag.
    pub(super) fn read(&mut self) -> Result<Tlv<'a>, DerError> {
        let buf = self.buf;
        let (&tag, rest) = buf
            .split_first()
            .ok_or(DerError("unexpected end of data"))?;
        if tag & 0x1f == 0x1f {
            return Err(DerError("multi-byte tags are not used in CRLs"));
        }
        let (&first, rest) = rest
            .split_first()
            .ok_or(DerError("unexpected end of data in a length"))?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 {
                return Err(DerError("indefinite length is not DER"));
            }
            if n > 4 {
                return Err(DerError("length over 4 GiB"));
            }
            if rest.len() < n {
                return Err(DerError("unexpected end of data in a length"));
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            (len, &rest[n..])
        };
        if rest.len() < len {
            return Err(DerError("element longer than its container"));
        }
        let header = buf.len() - rest.len();
        let raw = &buf[..header + len];
        self.buf = &buf[header + len..];
        Ok(Tlv {
            content: &rest[..len],
            raw,
        })
    }

    /// Read the next element and check its tag.
    pub(super) fn expect(&mut self, tag: u8, what: &'static str) -> Result<Tlv<'a>, DerError> {
        match self.peek_tag() {
            Some(t) if t == tag => self.read(),
            _ => Err(DerError(what)),
        }
    }

    /// Read the next element if it has `tag`.
    pub(super) fn optional(&mut self, tag: u8) -> Result<Option<Tlv<'a>>, DerError> {
        if self.peek_tag() == Some(tag) {
            self.read().map(Some)
        } else {
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_short_and_long_lengths() {
        let mut long = vec![0x04, 0x82, 0x01, 0x00];
        long.extend(std::iter::repeat_n(7u8, 256));
        long.extend([0x02, 0x01, 0x05]);
        let mut r = Reader::new(&long);
        let a = r.expect(tag::OCTET_STRING, "octets").unwrap();
        assert_eq!(a.content.len(), 256);
        assert_eq!(a.raw.len(), 260);
        let b = r.expect(tag::INTEGER, "int").unwrap();
        assert_eq!(b.content, &[5]);
        assert!(r.is_empty());
    }

    #[test]
    fn refuses_truncated_and_indefinite() {
        assert!(Reader::new(&[0x30, 0x05, 0x01]).read().is_err());
        assert!(Reader::new(&[0x30, 0x80, 0x00, 0x00]).read().is_err());
        assert!(Reader::new(&[0x30]).read().is_err());
        assert!(Reader::new(&[0x1f, 0x01, 0x00]).read().is_err());
        assert_eq!(
            Reader::new(&[0x02, 0x01, 0x00])
                .expect(tag::SEQUENCE, "a SEQUENCE")
                .unwrap_err(),
            DerError("a SEQUENCE")
        );
    }
}
