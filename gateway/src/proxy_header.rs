//! The PROXY protocol header (HAProxy's v1 text line and v2 binary block), parsed from
//! the bytes a load balancer sends before anything else on a connection.
//!
//! Written here rather than taken from the `ppp` or `proxy-protocol` crates: the gateway
//! needs only the framing (exactly how many bytes the header takes, so that not one byte
//! of the TLS handshake or SMTP that follows is consumed), the two addresses, and its own
//! hard size limit checked before anything is buffered; v2 TLVs are skipped unread (they
//! are inside the length the header declares). That is a small, pure function over a
//! byte slice, fuzzed in `fuzz/fuzz_targets/proxy_header.rs`, with no dependency to keep.
//!
//! Strict where the specification is: v1 is one line of at most 107 bytes ending in
//! CRLF, single spaces, addresses of the family named, decimal ports; v2 is version 2
//! with command LOCAL or PROXY. `LOCAL` (a proxy's own health check) and v1 `UNKNOWN`
//! carry no client: the connection is the proxy's own.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The v2 signature (12 bytes).
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Longest v1 line, CRLF included (the specification's limit).
pub const MAX_V1: usize = 107;
/// Longest v2 header accepted, the 16 fixed bytes included: the addresses (at most 216
/// bytes for AF_UNIX) and TLVs such as a cloud load balancer's endpoint id fit with room
/// to spare; a longer one is refused rather than buffered.
pub const MAX_V2: usize = 1024;
/// Longest header of either version: what a reader needs to buffer at most.
pub const MAX_HEADER: usize = MAX_V2;

/// Which version the header was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// The text line.
    V1,
    /// The binary block.
    V2,
}

impl Version {
    /// `v1` or `v2`, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1 => "v1",
            Self::V2 => "v2",
        }
    }
}

/// A complete header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// v1 or v2.
    pub version: Version,
    /// The original client and the address it connected to; `None` for v2 `LOCAL`, v1
    /// `UNKNOWN` and v2 families other than IPv4/IPv6 (the connection is the proxy's own).
    pub addresses: Option<Addresses>,
}

/// The connection as the proxy received it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Addresses {
    /// The original client.
    pub source: SocketAddr,
    /// The address the client connected to (the load balancer's).
    pub destination: SocketAddr,
}

/// Why bytes are not a PROXY header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The bytes start like neither version (e.g. the peer spoke SMTP or TLS).
    #[error("no PROXY protocol header (the connection did not start with one)")]
    NotProxy,
    /// A v1 line with no CRLF within 107 bytes.
    #[error("PROXY v1 line longer than 107 bytes")]
    V1TooLong,
    /// A v1 line that does not follow the grammar; says which part.
    #[error("malformed PROXY v1 line: {0}")]
    V1Malformed(&'static str),
    /// A v2 header whose version nibble is not 2.
    #[error("PROXY v2 header with version {0}, not 2")]
    V2Version(u8),
    /// A v2 command other than LOCAL (0) and PROXY (1).
    #[error("PROXY v2 header with unknown command {0}")]
    V2Command(u8),
    /// A v2 header longer than [`MAX_V2`].
    #[error("PROXY v2 header of {0} bytes, over the limit of {MAX_V2}")]
    V2TooLong(usize),
    /// A v2 header whose length is too short for the addresses of its family.
    #[error("PROXY v2 header too short for its address family")]
    V2Short,
    /// A v2 PROXY header for a datagram transport (this is a stream listener).
    #[error("PROXY v2 header for a datagram transport")]
    V2Datagram,
}

/// Parse a header at the start of `buf`. `Ok(None)`: `buf` is the start of a header but
/// not yet all of it (read more); `Ok(Some((header, n)))`: the header took exactly the
/// first `n` bytes.
pub fn parse(buf: &[u8]) -> Result<Option<(Header, usize)>, HeaderError> {
    const V1_PREFIX: &[u8] = b"PROXY ";
    if buf.len() < V1_PREFIX.len() && V1_PREFIX.starts_with(buf)
        || buf.len() < V2_SIGNATURE.len() && V2_SIGNATURE.starts_with(buf)
    {
        return Ok(None);
    }
    if buf.starts_with(V1_PREFIX) {
        return parse_v1(buf);
    }
    if buf.starts_with(&V2_SIGNATURE) {
        return parse_v2(buf);
    }
    Err(HeaderError::NotProxy)
}

fn parse_v1(buf: &[u8]) -> Result<Option<(Header, usize)>, HeaderError> {
    let window = &buf[..buf.len().min(MAX_V1)];
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        return if buf.len() >= MAX_V1 {
            Err(HeaderError::V1TooLong)
        } else {
            Ok(None)
        };
    };
    let line = window[..lf]
        .strip_suffix(b"\r")
        .ok_or(HeaderError::V1Malformed("line does not end in CRLF"))?;
    let line = std::str::from_utf8(line).map_err(|_| HeaderError::V1Malformed("not ASCII"))?;
    let mut parts = line.split(' ');
    parts.next(); // "PROXY"
    let header = |addresses| Header {
        version: Version::V1,
        addresses,
    };
    let family = parts.next().unwrap_or("");
    if family == "UNKNOWN" {
        // The rest of the line is to be ignored.
        return Ok(Some((header(None), lf + 1)));
    }
    let v6 = match family {
        "TCP4" => false,
        "TCP6" => true,
        _ => {
            return Err(HeaderError::V1Malformed(
                "protocol is not TCP4, TCP6 or UNKNOWN",
            ));
        }
    };
    let mut field = |what| parts.next().filter(|p| !p.is_empty()).ok_or(what);
    let src = field(HeaderError::V1Malformed("no source address"))?;
    let dst = field(HeaderError::V1Malformed("no destination address"))?;
    let sport = field(HeaderError::V1Malformed("no source port"))?;
    let dport = field(HeaderError::V1Malformed("no destination port"))?;
    if parts.next().is_some() {
        return Err(HeaderError::V1Malformed("extra fields"));
    }
    let addr = |text: &str| -> Result<IpAddr, HeaderError> {
        let ip = if v6 {
            text.parse::<Ipv6Addr>().map(IpAddr::V6)
        } else {
            text.parse::<Ipv4Addr>().map(IpAddr::V4)
        };
        ip.map_err(|_| HeaderError::V1Malformed("address not of the family named"))
    };
    let source = SocketAddr::new(addr(src)?, v1_port(sport)?);
    let destination = SocketAddr::new(addr(dst)?, v1_port(dport)?);
    Ok(Some((
        header(Some(Addresses {
            source,
            destination,
        })),
        lf + 1,
    )))
}

/// A decimal port, 0–65535, digits only (no sign, at most 5 digits).
fn v1_port(text: &str) -> Result<u16, HeaderError> {
    if text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HeaderError::V1Malformed("port is not a decimal number"));
    }
    text.parse()
        .map_err(|_| HeaderError::V1Malformed("port above 65535"))
}

fn parse_v2(buf: &[u8]) -> Result<Option<(Header, usize)>, HeaderError> {
    if buf.len() < 16 {
        return Ok(None);
    }
    let version = buf[12] >> 4;
    if version != 2 {
        return Err(HeaderError::V2Version(version));
    }
    let command = buf[12] & 0x0f;
    if command > 1 {
        return Err(HeaderError::V2Command(command));
    }
    let total = 16 + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if total > MAX_V2 {
        return Err(HeaderError::V2TooLong(total));
    }
    if buf.len() < total {
        return Ok(None);
    }
    let header = |addresses| Header {
        version: Version::V2,
        addresses,
    };
    if command == 0 {
        // LOCAL: the proxy's own connection; whatever follows is ignored.
        return Ok(Some((header(None), total)));
    }
    let (family, transport) = (buf[13] >> 4, buf[13] & 0x0f);
    if transport == 2 {
        return Err(HeaderError::V2Datagram);
    }
    let body = &buf[16..total];
    // TLVs follow the addresses inside `body`; they are skipped, never parsed.
    let addresses = match family {
        1 => {
            let a = body.get(..12).ok_or(HeaderError::V2Short)?;
            let ip = |at: usize| IpAddr::from([a[at], a[at + 1], a[at + 2], a[at + 3]]);
            let port = |at: usize| u16::from_be_bytes([a[at], a[at + 1]]);
            Some(Addresses {
                source: SocketAddr::new(ip(0), port(8)),
                destination: SocketAddr::new(ip(4), port(10)),
            })
        }
        2 => {
            let a = body.get(..36).ok_or(HeaderError::V2Short)?;
            let ip = |at: usize| {
                let mut o = [0u8; 16];
                o.copy_from_slice(&a[at..at + 16]);
                IpAddr::from(o)
            };
            let port = |at: usize| u16::from_be_bytes([a[at], a[at + 1]]);
            Some(Addresses {
                source: SocketAddr::new(ip(0), port(32)),
                destination: SocketAddr::new(ip(16), port(34)),
            })
        }
        // AF_UNSPEC, AF_UNIX: no IP client to take; the connection is the proxy's.
        _ => None,
    };
    Ok(Some((header(addresses), total)))
}

/// Whether the first line a client sent (CRLF removed) and the bytes after it look like
/// a PROXY header: how a listener that expects none from this peer recognises one.
pub fn sniff(first_line: &[u8], rest: &[u8]) -> bool {
    first_line.starts_with(b"PROXY ")
        || first_line.is_empty()
            && !rest.is_empty()
            && V2_SIGNATURE[2..].starts_with(&rest[..rest.len().min(10)])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut b = V2_SIGNATURE.to_vec();
        b.push(0x20 | command);
        b.push(family);
        b.extend_from_slice(&(body.len() as u16).to_be_bytes());
        b.extend_from_slice(body);
        b
    }

    #[test]
    fn v1_tcp4_and_tcp6_take_exactly_the_line() {
        let buf = b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 587\r\nEHLO x\r\n";
        let (h, n) = parse(buf).unwrap().unwrap();
        assert_eq!(n, 45);
        let a = h.addresses.unwrap();
        assert_eq!(a.source, "192.0.2.7:40000".parse().unwrap());
        assert_eq!(a.destination, "198.51.100.1:587".parse().unwrap());
        let buf = b"PROXY TCP6 2001:db8::7 2001:db8::1 1 65535\r\n";
        let (h, n) = parse(buf).unwrap().unwrap();
        assert_eq!(n, buf.len());
        assert_eq!(
            h.addresses.unwrap().source,
            "[2001:db8::7]:1".parse().unwrap()
        );
        let (h, _) = parse(b"PROXY UNKNOWN whatever\r\n").unwrap().unwrap();
        assert_eq!(h.addresses, None);
    }

    #[test]
    fn v1_incomplete_and_errors() {
        assert_eq!(parse(b""), Ok(None));
        assert_eq!(parse(b"PRO"), Ok(None));
        assert_eq!(parse(b"PROXY TCP4 192.0.2.7"), Ok(None));
        assert_eq!(parse(b"EHLO x\r\n"), Err(HeaderError::NotProxy));
        assert_eq!(parse(&[b'P'; 3][..]).unwrap_err(), HeaderError::NotProxy);
        let long = [b"PROXY ".as_slice(), &[b'1'; 120]].concat();
        assert_eq!(parse(&long), Err(HeaderError::V1TooLong));
        for bad in [
            &b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 587\n"[..],
            b"PROXY TCP4 2001:db8::1 198.51.100.1 1 2\r\n",
            b"PROXY TCP4 192.0.2.7 198.51.100.1 +1 2\r\n",
            b"PROXY TCP4 192.0.2.7 198.51.100.1 65536 2\r\n",
            b"PROXY TCP4 192.0.2.7  198.51.100.1 1 2\r\n",
            b"PROXY TCP4 192.0.2.7 198.51.100.1 1 2 3\r\n",
            b"PROXY UDP4 192.0.2.7 198.51.100.1 1 2\r\n",
        ] {
            assert!(
                matches!(parse(bad), Err(HeaderError::V1Malformed(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn v2_addresses_tlvs_local() {
        let mut body = vec![192, 0, 2, 7, 198, 51, 100, 1, 0x9c, 0x40, 0x02, 0x4b];
        body.extend_from_slice(&[0x20, 0x00, 0x03, 1, 2, 3]); // a TLV, skipped
        let mut buf = v2(1, 0x11, &body);
        let len = buf.len();
        buf.extend_from_slice(b"\x16\x03\x01"); // a TLS ClientHello follows
        let (h, n) = parse(&buf).unwrap().unwrap();
        assert_eq!(n, len);
        assert_eq!(
            h.addresses.unwrap().source,
            "192.0.2.7:40000".parse().unwrap()
        );
        assert_eq!(parse(&buf[..len - 1]), Ok(None));
        assert_eq!(parse(&buf[..5]), Ok(None));

        let mut body6 = [0u8; 36];
        body6[15] = 1; // ::1
        body6[31] = 2;
        body6[32..34].copy_from_slice(&25u16.to_be_bytes());
        let (h, _) = parse(&v2(1, 0x21, &body6)).unwrap().unwrap();
        assert_eq!(h.addresses.unwrap().source, "[::1]:25".parse().unwrap());

        let (h, n) = parse(&v2(0, 0x00, &[])).unwrap().unwrap();
        assert_eq!((h.addresses, n), (None, 16));
        assert_eq!(parse(&v2(1, 0x11, &[1, 2, 3])), Err(HeaderError::V2Short));
        assert_eq!(parse(&v2(1, 0x12, &body)), Err(HeaderError::V2Datagram));
        assert_eq!(parse(&v2(2, 0x11, &body)), Err(HeaderError::V2Command(2)));
        let mut big = v2(1, 0x11, &[]);
        big[14..16].copy_from_slice(&2000u16.to_be_bytes());
        assert_eq!(parse(&big), Err(HeaderError::V2TooLong(2016)));
        let mut v3 = v2(1, 0x11, &body);
        v3[12] = 0x31;
        assert_eq!(parse(&v3), Err(HeaderError::V2Version(3)));
    }

    #[test]
    fn sniffing_a_header_sent_as_smtp() {
        assert!(sniff(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2", b""));
        assert!(sniff(b"", b"\r\n\0\r\nQUIT\n\x21\x11"));
        assert!(!sniff(b"EHLO x", b""));
        assert!(!sniff(b"", b"EHLO x\r\n"));
        assert!(!sniff(b"", b""));
    }
}
