//! Connection slots of one bound address: the listener's cap (`maxConnections`) and the
//! cap per client (`maxConnectionsPerClient`), taken together at accept time and given
//! back together when the session ends, however it ends (the [`Slot`] guard).
//!
//! A client is an IPv4 address or an IPv6 /64. Counting IPv6 per address would be no
//! limit at all: a single host routinely holds a whole /64 (SLAAC, privacy addresses) and
//! can bind any of its 2^64 addresses, so the /64 is the smallest unit one machine cannot
//! multiply. A /64 is one network segment, so its hosts share one budget, as hosts behind
//! one IPv4 NAT do. IPv4-mapped IPv6 addresses (a dual-stack listener on `::`) count as
//! the IPv4 address they carry.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};

/// Whose connections count together against `maxConnectionsPerClient`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientKey {
    /// One IPv4 address.
    V4(Ipv4Addr),
    /// One IPv6 /64 (the address with its low 64 bits cleared).
    V6Net(Ipv6Addr),
}

impl ClientKey {
    /// The key a client address counts under.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(v4),
                None => Self::V6Net(Ipv6Addr::from_bits(v6.to_bits() & !u128::from(u64::MAX))),
            },
        }
    }
}

impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V4(a) => write!(f, "{a}"),
            Self::V6Net(n) => write!(f, "{n}/64"),
        }
    }
}

/// Why a connection got no slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// The client already holds `maxConnectionsPerClient` connections.
    ClientLimit,
    /// The listener already holds `maxConnections` connections.
    ListenerFull,
}

#[derive(Debug, Default)]
struct Counts {
    total: u32,
    per_client: HashMap<ClientKey, u32>,
}

/// The connections in progress on one bound address. Kept across configuration reloads
/// (sessions keep their old configuration, and still hold their slots).
#[derive(Debug, Default)]
pub(super) struct Slots {
    // One lock for both counts: taking a slot is a check of both and two increments, all
    // or nothing, and the critical section is a hash map lookup.
    counts: Mutex<Counts>,
}

impl Slots {
    /// Take a slot for a connection from `ip`, or say which cap is reached.
    pub(super) fn try_acquire(
        self: &Arc<Self>,
        ip: IpAddr,
        max_total: u32,
        max_per_client: u32,
    ) -> Result<Slot, Refusal> {
        let key = ClientKey::of(ip);
        let mut c = self.counts.lock().expect("slots lock");
        let held = c.per_client.get(&key).copied().unwrap_or(0);
        // The client's own cap first: a client flooding a full listener is told (and
        // logged) as the one over its limit.
        if held >= max_per_client {
            return Err(Refusal::ClientLimit);
        }
        if c.total >= max_total {
            return Err(Refusal::ListenerFull);
        }
        c.total += 1;
        c.per_client.insert(key, held + 1);
        Ok(Slot {
            slots: self.clone(),
            key,
        })
    }

    /// Connections in progress in total and from `ip`'s client.
    #[cfg(test)]
    fn held(&self, ip: IpAddr) -> (u32, u32) {
        let c = self.counts.lock().expect("slots lock");
        let key = ClientKey::of(ip);
        (c.total, c.per_client.get(&key).copied().unwrap_or(0))
    }
}

/// One connection's slot; dropping it gives the slot back.
#[derive(Debug)]
pub(super) struct Slot {
    slots: Arc<Slots>,
    key: ClientKey,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.slots.counts.lock().expect("slots lock");
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_client.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                // Only clients with a connection open are kept: the map is bounded by
                // `maxConnections`, however many addresses have come and gone.
                c.per_client.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn client_keys() {
        assert_eq!(ClientKey::of(ip("192.0.2.7")).to_string(), "192.0.2.7");
        assert_eq!(
            ClientKey::of(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")).to_string(),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            ClientKey::of(ip("2001:db8:1:2::1")),
            ClientKey::of(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            ClientKey::of(ip("2001:db8:1:2::1")),
            ClientKey::of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            ClientKey::of(ip("::ffff:192.0.2.7")),
            ClientKey::of(ip("192.0.2.7"))
        );
    }

    #[test]
    fn per_client_and_total_caps() {
        let slots = Arc::new(Slots::default());
        let a = ip("10.0.0.1");
        let b = ip("10.0.0.2");
        let held_a: Vec<_> = (0..3)
            .map(|_| slots.try_acquire(a, 5, 3).unwrap())
            .collect();
        assert_eq!(
            slots.try_acquire(a, 5, 3).unwrap_err(),
            Refusal::ClientLimit
        );
        // Another client still gets in while the first is at its cap.
        let b1 = slots.try_acquire(b, 5, 3).unwrap();
        let b2 = slots.try_acquire(b, 5, 3).unwrap();
        assert_eq!(slots.held(a), (5, 3));
        assert_eq!(
            slots.try_acquire(ip("10.0.0.3"), 5, 3).unwrap_err(),
            Refusal::ListenerFull
        );
        drop(b1);
        assert!(slots.try_acquire(ip("10.0.0.3"), 5, 3).is_ok());
        drop(held_a);
        drop(b2);
        assert_eq!(slots.held(a), (0, 0));
        assert!(slots.counts.lock().unwrap().per_client.is_empty());
    }

    #[test]
    fn an_ipv6_host_cannot_multiply_itself_within_its_64() {
        let slots = Arc::new(Slots::default());
        let _held: Vec<_> = (1..=2)
            .map(|i| {
                slots
                    .try_acquire(ip(&format!("2001:db8::{i:x}")), 10, 2)
                    .unwrap()
            })
            .collect();
        assert_eq!(
            slots
                .try_acquire(ip("2001:db8::ffff:1"), 10, 2)
                .unwrap_err(),
            Refusal::ClientLimit
        );
        assert!(slots.try_acquire(ip("2001:db8:0:1::1"), 10, 2).is_ok());
    }
}
