//! The edge of a listener: what it trusts in front of it (PROXY protocol). Kept apart
//! from `model.rs` so that these settings travel together.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::duration::Duration;

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

/// `MailFlowPolicy.rateLimits`: messages and recipients per window across sessions, per
/// authenticated user and per client address. Counted per gateway process (pod).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimits {
    /// Per authenticated user id (by certificate or AUTH); sessions without one are not
    /// counted here.
    #[serde(default)]
    pub per_user: RateLimit,
    /// Per client address (the original client behind PROXY protocol): an IPv4 address,
    /// or an IPv6 /64.
    #[serde(default)]
    pub per_client: RateLimit,
}

impl RateLimits {
    /// Whether neither limit counts anything (then the policy leaves it out).
    pub fn is_unlimited(&self) -> bool {
        self.per_user.is_unlimited() && self.per_client.is_unlimited()
    }
}

/// One sending limit: at most `messages` messages and `recipients` recipients per
/// `window`; `0` is unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimit {
    /// Messages (`MAIL` commands accepted) per window; `0`: unlimited.
    #[serde(default)]
    pub messages: u32,
    /// Recipients (`RCPT` commands accepted) per window; `0`: unlimited.
    #[serde(default)]
    pub recipients: u32,
    /// The period counted over.
    #[serde(default = "default_window")]
    pub window: Duration,
}

fn default_window() -> Duration {
    crate::defaults::RATE_LIMIT_WINDOW
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            messages: 0,
            recipients: 0,
            window: default_window(),
        }
    }
}

impl RateLimit {
    /// Whether this limit counts nothing.
    pub fn is_unlimited(&self) -> bool {
        self.messages == 0 && self.recipients == 0
    }
}
