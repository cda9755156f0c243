//! The edge of a listener: what it trusts in front of it (PROXY protocol). Kept apart
//! from `model.rs` so that these settings travel together.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// PROXY protocol (HAProxy's v1 text and v2 binary header) on a listener: peers in
/// `trusted_cidrs` (the load balancers) must open every connection with a header naming
/// the original client, which the listener then uses for everything (host access table,
/// per-client caps, throttles, logs, `Received`). A peer outside them is served as itself
/// and may not send one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyProtocol {
    /// The proxies' networks. At least one.
    pub trusted_cidrs: Vec<IpNet>,
}

impl ProxyProtocol {
    /// Whether `peer` (the TCP peer, before any header) is one of the trusted proxies.
    /// IPv4-mapped IPv6 peers (a dual-stack listener) count as their IPv4 address.
    pub fn trusts(&self, peer: std::net::IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.trusted_cidrs.iter().any(|net| net.contains(&peer))
    }
}
