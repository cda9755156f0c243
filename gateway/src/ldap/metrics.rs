//! Prometheus metrics of the LDAP client.
//!
//! | metric | labels | meaning |
//! |---|---|---|
//! | `postern_ldap_queries_total` | profile, query, kind, outcome | every search and bind, cached or not |
//! | `postern_ldap_query_duration_seconds` | profile, query, kind | round trips to the directory (cache hits excluded) |
//! | `postern_ldap_cache_hits_total` / `_misses_total` | profile, query | search result cache |
//! | `postern_ldap_failovers_total` | profile, server | a server failed and the next one was tried |
//! | `postern_ldap_server_up` | profile, server | 1 while the server answers, 0 after it failed |
//! | `postern_ldap_pool_connections` | profile | open search connections |
//! | `postern_ldap_bind_connections` | profile | open password-checking connections |

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of one query.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueryLabels {
    /// LDAP profile name.
    pub profile: String,
    /// Query name (`certificateAuthQuery.name` / `smtpAuthQuery.name`).
    pub query: String,
    /// `certificate`, `user`, `bind` or `allowance`.
    pub kind: &'static str,
}

/// Labels of one query's outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// LDAP profile name.
    pub profile: String,
    /// Query name.
    pub query: String,
    /// `certificate`, `user`, `bind` or `allowance`.
    pub kind: &'static str,
    /// `found`, `not_found`, `ambiguous`, `allowed`, `denied`, `success`,
    /// `invalid_credentials`, or an error label (`timeout`, `unreachable`, ...).
    pub outcome: &'static str,
}

/// Labels of the cache counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    /// LDAP profile name.
    pub profile: String,
    /// Query name.
    pub query: String,
}

/// Labels of one server.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabels {
    /// LDAP profile name.
    pub profile: String,
    /// Server URL.
    pub server: String,
}

/// Labels of one profile.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProfileLabels {
    /// LDAP profile name.
    pub profile: String,
}

fn latency_histogram() -> Histogram {
    // Loopback answers take well under a millisecond; timeouts are seconds.
    Histogram::new([
        0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

/// The LDAP metric families. Cheap to clone (shared handles); create once, register
/// once, and hand clones to every directory.
#[derive(Clone, Debug)]
pub struct LdapMetrics {
    /// `postern_ldap_queries_total`.
    pub queries: Family<OutcomeLabels, Counter>,
    /// `postern_ldap_query_duration_seconds`.
    pub latency: Family<QueryLabels, Histogram, fn() -> Histogram>,
    /// `postern_ldap_cache_hits_total`.
    pub cache_hits: Family<CacheLabels, Counter>,
    /// `postern_ldap_cache_misses_total`.
    pub cache_misses: Family<CacheLabels, Counter>,
    /// `postern_ldap_failovers_total`.
    pub failovers: Family<ServerLabels, Counter>,
    /// `postern_ldap_server_up`.
    pub server_up: Family<ServerLabels, Gauge>,
    /// `postern_ldap_pool_connections`.
    pub pool_connections: Family<ProfileLabels, Gauge>,
    /// `postern_ldap_bind_connections`.
    pub bind_connections: Family<ProfileLabels, Gauge>,
}

impl Default for LdapMetrics {
    fn default() -> Self {
        Self {
            queries: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            cache_hits: Family::default(),
            cache_misses: Family::default(),
            failovers: Family::default(),
            server_up: Family::default(),
            pool_connections: Family::default(),
            bind_connections: Family::default(),
        }
    }
}

impl LdapMetrics {
    /// New, unregistered metric families.
    pub fn new() -> Self {
        Self::default()
    }

    /// Register every family under its full `postern_ldap_*` name in `registry` (pass
    /// the root registry, not one with a prefix).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "postern_ldap_queries",
            "LDAP searches and binds by profile, query, kind and outcome (cache hits included)",
            self.queries.clone(),
        );
        registry.register(
            "postern_ldap_query_duration_seconds",
            "Round-trip time of LDAP searches and binds that reached the directory",
            self.latency.clone(),
        );
        registry.register(
            "postern_ldap_cache_hits",
            "LDAP search results served from the cache",
            self.cache_hits.clone(),
        );
        registry.register(
            "postern_ldap_cache_misses",
            "LDAP searches that were not in the cache (or caching is off)",
            self.cache_misses.clone(),
        );
        registry.register(
            "postern_ldap_failovers",
            "A connection to this LDAP server failed and the next server was tried",
            self.failovers.clone(),
        );
        registry.register(
            "postern_ldap_server_up",
            "1 while the LDAP server answers, 0 after a connection to it failed",
            self.server_up.clone(),
        );
        registry.register(
            "postern_ldap_pool_connections",
            "Open LDAP search connections of a profile",
            self.pool_connections.clone(),
        );
        registry.register(
            "postern_ldap_bind_connections",
            "Open LDAP connections of a profile that check passwords (BIND as the user)",
            self.bind_connections.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_and_encodes() {
        let m = LdapMetrics::new();
        let mut registry = Registry::default();
        m.register(&mut registry);
        m.queries
            .get_or_create(&OutcomeLabels {
                profile: "corp".into(),
                query: "cac-auth".into(),
                kind: "bind",
                outcome: "success",
            })
            .inc();
        m.latency
            .get_or_create(&QueryLabels {
                profile: "corp".into(),
                query: "cac-auth".into(),
                kind: "bind",
            })
            .observe(0.0004);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        assert!(out.contains(
            "postern_ldap_queries_total{profile=\"corp\",query=\"cac-auth\",kind=\"bind\",outcome=\"success\"} 1"
        ), "{out}");
        assert!(
            out.contains("postern_ldap_query_duration_seconds_bucket"),
            "{out}"
        );
    }
}
