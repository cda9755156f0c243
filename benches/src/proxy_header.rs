//! The PROXY protocol header the load client sends first on a connection when it plays
//! the load balancer (HAProxy's v1 text line or v2 binary block), with a made-up original
//! client from the documentation networks 198.51.100.0/24 and 2001:db8::/32.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The v2 signature (12 bytes).
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Which header the client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProxyVersion {
    /// `PROXY TCP4 ...\r\n` / `PROXY TCP6 ...\r\n`.
    V1,
    /// The binary header, command PROXY, family INET/INET6 over STREAM.
    V2,
}

impl ProxyVersion {
    /// Label for tables.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::V1 => "PROXY v1",
            Self::V2 => "PROXY v2",
        }
    }
}

/// Which family the original client's address is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    /// 198.51.100.0/24.
    V4,
    /// 2001:db8::/32.
    V6,
}

impl Family {
    /// The network the original clients come from, for the host access table.
    pub(crate) fn network(self) -> &'static str {
        match self {
            Self::V4 => "198.51.100.0/24",
            Self::V6 => "2001:db8::/32",
        }
    }

    /// Label for tables.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::V4 => "IPv4 client",
            Self::V6 => "IPv6 client",
        }
    }
}

/// The header the load client sends on every connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Proxy {
    /// v1 or v2.
    pub version: ProxyVersion,
    /// The original clients' address family.
    pub family: Family,
}

impl Proxy {
    /// The header of session `i`.
    pub(crate) fn header(self, i: u64) -> Vec<u8> {
        let (source, destination) = addresses(self.family, i);
        header(self.version, source, destination)
    }

    /// Label for tables.
    pub(crate) fn label(self) -> String {
        format!("{}, {}", self.version.label(), self.family.label())
    }
}

/// What the load balancer in front would say about session `i`: the original client
/// (one of 250 addresses, ephemeral ports) and the address it connected to.
pub(crate) fn addresses(family: Family, i: u64) -> (SocketAddr, SocketAddr) {
    let host = 1 + (i % 250) as u8;
    let port = 1024 + (i % 60_000) as u16;
    match family {
        Family::V4 => (
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, host)), port),
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 25)), 587),
        ),
        Family::V6 => (
            SocketAddr::new(
                IpAddr::V6(Ipv6Addr::new(
                    0x2001,
                    0xdb8,
                    0,
                    0x51,
                    0,
                    0,
                    0,
                    u16::from(host),
                )),
                port,
            ),
            SocketAddr::new(
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0x113, 0, 0, 0, 25)),
                587,
            ),
        ),
    }
}

/// The header for a connection from `source` to `destination` (both of one family).
pub(crate) fn header(
    version: ProxyVersion,
    source: SocketAddr,
    destination: SocketAddr,
) -> Vec<u8> {
    match version {
        ProxyVersion::V1 => {
            let proto = if source.is_ipv4() { "TCP4" } else { "TCP6" };
            format!(
                "PROXY {proto} {} {} {} {}\r\n",
                source.ip(),
                destination.ip(),
                source.port(),
                destination.port()
            )
            .into_bytes()
        }
        ProxyVersion::V2 => {
            let mut body = Vec::with_capacity(36);
            let family = match (source.ip(), destination.ip()) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    body.extend_from_slice(&s.octets());
                    body.extend_from_slice(&d.octets());
                    0x11
                }
                (s, d) => {
                    body.extend_from_slice(&v6(s).octets());
                    body.extend_from_slice(&v6(d).octets());
                    0x21
                }
            };
            body.extend_from_slice(&source.port().to_be_bytes());
            body.extend_from_slice(&destination.port().to_be_bytes());
            let mut h = Vec::with_capacity(16 + body.len());
            h.extend_from_slice(&V2_SIGNATURE);
            // Version 2, command PROXY; then the family and transport, then the length.
            h.push(0x21);
            h.push(family);
            h.extend_from_slice(&(body.len() as u16).to_be_bytes());
            h.extend_from_slice(&body);
            h
        }
    }
}

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_gateway::proxy_header::{Version, parse};

    #[test]
    fn the_gateway_reads_what_the_client_sends() {
        for family in [Family::V4, Family::V6] {
            for (version, want) in [
                (ProxyVersion::V1, Version::V1),
                (ProxyVersion::V2, Version::V2),
            ] {
                let (src, dst) = addresses(family, 1234);
                let mut bytes = header(version, src, dst);
                let len = bytes.len();
                bytes.extend_from_slice(b"EHLO x\r\n");
                let (h, used) = parse(&bytes).unwrap().expect("complete header");
                assert_eq!(used, len);
                assert_eq!(h.version, want);
                let a = h.addresses.expect("addresses");
                assert_eq!((a.source, a.destination), (src, dst));
                let clients = postern_config::ProxyProtocol {
                    trusted_cidrs: vec![family.network().parse().unwrap()],
                };
                assert!(clients.trusts(src.ip()), "{src} in {}", family.network());
            }
        }
    }
}
