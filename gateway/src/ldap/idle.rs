//! Open connections kept for reuse: the search pool's and the password checks'.
//!
//! The most recently used is taken first. A connection is not kept when it is closed,
//! older than [`AGE_LIMIT`] or goes to a server that is no longer the preferred one (so
//! connections drift back to the primary once it recovers), and not taken when it has
//! been idle for [`IDLE_LIMIT`]. Each open connection counts in a gauge while it lives.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::conn::{Conn, Connector};
use super::metrics::{LdapMetrics, ProfileLabels};

/// An idle connection is closed after this long (servers and firewalls drop idle
/// connections silently; a fresh one is cheaper than a timeout).
pub(crate) const IDLE_LIMIT: Duration = Duration::from_secs(60);
/// A connection is closed after this age, so load spreads again after a failover.
pub(crate) const AGE_LIMIT: Duration = Duration::from_secs(600);

/// A connection in use or kept, counted in its gauge.
pub(crate) struct Pooled {
    /// The connection.
    pub conn: Conn,
    last_used: Instant,
    _open: OpenGuard,
}

/// Counts an open connection in the gauge for as long as it lives.
struct OpenGuard(Gauge);

impl OpenGuard {
    fn new(g: Gauge) -> Self {
        g.inc();
        Self(g)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Up to `max` idle connections of one profile.
pub(crate) struct IdleConns {
    connector: Arc<Connector>,
    max: usize,
    idle: Mutex<Vec<Pooled>>,
    open_gauge: Gauge,
}

impl IdleConns {
    /// Keeps at most `max` idle connections; open ones count in the connector's
    /// profile's gauge of the family `gauges` picks from its metrics.
    pub(crate) fn new(
        connector: Arc<Connector>,
        max: u32,
        gauges: fn(&LdapMetrics) -> &Family<ProfileLabels, Gauge>,
    ) -> Self {
        let open_gauge = gauges(&connector.metrics).get_or_create_owned(&ProfileLabels {
            profile: connector.profile.clone(),
        });
        Self {
            connector,
            max: max.max(1) as usize,
            idle: Mutex::new(Vec::new()),
            open_gauge,
        }
    }

    /// Number of idle connections.
    pub(crate) fn len(&self) -> usize {
        self.idle.lock().expect("ldap idle connections").len()
    }

    /// A newly opened connection, counted from now on.
    pub(crate) fn adopt(&self, conn: Conn) -> Pooled {
        Pooled {
            conn,
            last_used: Instant::now(),
            _open: OpenGuard::new(self.open_gauge.clone()),
        }
    }

    /// The most recently used idle connection that is still fit for use.
    pub(crate) fn take(&self) -> Option<Pooled> {
        let now = Instant::now();
        let mut idle = self.idle.lock().expect("ldap idle connections");
        while let Some(mut p) = idle.pop() {
            if !p.conn.ldap.is_closed() && now.duration_since(p.last_used) < IDLE_LIMIT {
                return Some(p);
            }
        }
        None
    }

    /// Keeps `pooled` for the next operation, unless it is unfit or enough are kept.
    pub(crate) fn put_back(&self, mut pooled: Pooled) {
        let now = Instant::now();
        if pooled.conn.ldap.is_closed()
            || now.duration_since(pooled.conn.opened) >= AGE_LIMIT
            || pooled.conn.server != self.connector.servers.preferred(now)
        {
            return;
        }
        pooled.last_used = now;
        let mut idle = self.idle.lock().expect("ldap idle connections");
        if idle.len() < self.max {
            idle.push(pooled);
        }
    }
}
