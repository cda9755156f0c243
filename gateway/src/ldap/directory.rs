//! One LDAP profile at run time: its servers, search pool, result cache and metrics.
//!
//! Every search and every bind is one structured log line (`target: postern::ldap`) with
//! the profile, the query name, the kind, the filter as sent (values already escaped),
//! the outcome, the number of entries, whether the cache answered, the server and the
//! latency.

use std::sync::Arc;
use std::time::Instant;

use super::bind::{BindConns, BindOutcome};
use super::cache::{DEFAULT_CAPACITY, TtlCache};
use super::conn::Connector;
use super::error::{DirectoryError, LdapSetupError};
use super::metrics::{CacheLabels, LdapMetrics, OutcomeLabels, QueryLabels};
use super::pool::{Entry, Pool};
use super::servers::{ServerSet, ServerUrl};
use super::tls;
use postern_config::LdapProfile;

/// What a search is for (metric label and log field; also selects the outcome names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QueryKind {
    /// The certificate authentication query.
    Certificate,
    /// The SMTP authentication query's user search.
    User,
    /// The SMTP authentication query's allowance filter.
    Allowance,
    /// The user's addresses (`mailAttributes`), for sender binding.
    Addresses,
}

impl QueryKind {
    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::Certificate => "certificate",
            Self::User => "user",
            Self::Allowance => "allowance",
            Self::Addresses => "addresses",
        }
    }

    fn outcome(self, entries: usize) -> &'static str {
        match (self, entries) {
            (Self::Allowance, 0) => "denied",
            (Self::Allowance, _) => "allowed",
            (_, 0) => "not_found",
            (_, 1) => "found",
            (_, _) => "ambiguous",
        }
    }
}

/// The entries a search found.
#[derive(Clone, Debug)]
pub struct Found {
    /// The entries (shared with the cache).
    pub entries: Arc<[Entry]>,
    /// Whether the cache answered.
    pub cached: bool,
}

/// The run-time client of one LDAP profile. Shared (`Arc`) by every authentication
/// profile that uses it.
#[derive(Debug)]
pub struct Directory {
    name: String,
    profile: LdapProfile,
    connector: Arc<Connector>,
    pool: Pool,
    /// Caps concurrent password checks (each on a connection of its own) at the pool size.
    binds: tokio::sync::Semaphore,
    bind_conns: BindConns,
    cache: TtlCache<Arc<[Entry]>>,
    metrics: LdapMetrics,
}

impl Directory {
    /// Build the client of profile `name`. Opens nothing yet: connections are made on
    /// first use, so a directory that is down at start-up does not stop the gateway.
    pub fn new(
        name: &str,
        profile: &LdapProfile,
        metrics: LdapMetrics,
    ) -> Result<Self, LdapSetupError> {
        let servers = profile
            .servers
            .iter()
            .map(|u| ServerUrl::parse(u))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|reason| LdapSetupError::Server {
                profile: name.to_owned(),
                reason,
            })?;
        if servers.is_empty() {
            return Err(LdapSetupError::Server {
                profile: name.to_owned(),
                reason: "no server configured".into(),
            });
        }
        let needs_tls = profile.start_tls || servers.iter().any(|s| s.implicit_tls);
        let tls = if needs_tls {
            Some(
                tls::client_config(profile.ca_pem.as_deref()).map_err(|reason| {
                    LdapSetupError::Tls {
                        profile: name.to_owned(),
                        reason,
                    }
                })?,
            )
        } else {
            None
        };
        let connector = Arc::new(Connector {
            profile: name.to_owned(),
            servers: ServerSet::new(servers),
            tls,
            start_tls: profile.start_tls,
            connect_timeout: profile.timeouts.connect.get(),
            op_timeout: profile.timeouts.operation.get(),
            metrics: metrics.clone(),
        });
        let pool = Pool::new(
            connector.clone(),
            profile.bind.clone(),
            profile.max_connections,
        );
        let cache = TtlCache::new(
            profile.cache.ttl.get(),
            profile.cache.negative_ttl.get(),
            DEFAULT_CAPACITY,
        );
        Ok(Self {
            binds: tokio::sync::Semaphore::new(profile.max_connections.max(1) as usize),
            bind_conns: BindConns::new(connector.clone(), profile.max_connections),
            name: name.to_owned(),
            profile: profile.clone(),
            connector,
            pool,
            cache,
            metrics,
        })
    }

    /// The profile name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The profile this directory was built from.
    pub fn profile(&self) -> &LdapProfile {
        &self.profile
    }

    /// Idle search connections (for tests and health).
    pub fn idle_connections(&self) -> usize {
        self.pool.idle_connections()
    }

    /// Idle password-checking connections (for tests).
    pub fn idle_bind_connections(&self) -> usize {
        self.bind_conns.idle_connections()
    }

    /// Number of cached search results.
    pub fn cached_results(&self) -> usize {
        self.cache.len()
    }

    /// Each server's URL and whether it is usable now (not marked down after a failure),
    /// in configured order (the status page).
    pub fn server_states(&self) -> Vec<(String, bool)> {
        self.connector.servers.states(Instant::now())
    }

    fn query_labels(&self, query: &str, kind: &'static str) -> QueryLabels {
        QueryLabels {
            profile: self.name.clone(),
            query: query.to_owned(),
            kind,
        }
    }

    fn count(&self, query: &str, kind: &'static str, outcome: &'static str) {
        self.metrics
            .queries
            .get_or_create(&OutcomeLabels {
                profile: self.name.clone(),
                query: query.to_owned(),
                kind,
                outcome,
            })
            .inc();
    }

    /// Subtree search under `baseDn` with `filter` (already rendered and escaped),
    /// answered from the cache under `cache_key` when possible.
    pub async fn search(
        &self,
        kind: QueryKind,
        query: &str,
        filter: &str,
        cache_key: &str,
        attrs: &[&str],
    ) -> Result<Found, DirectoryError> {
        let started = Instant::now();
        let cache_labels = CacheLabels {
            profile: self.name.clone(),
            query: query.to_owned(),
        };
        let key = format!("{}\0{query}\0{cache_key}", kind.label());
        if self.cache.enabled()
            && let Some(entries) = self.cache.get(&key, started)
        {
            self.metrics.cache_hits.get_or_create(&cache_labels).inc();
            let outcome = kind.outcome(entries.len());
            self.count(query, kind.label(), outcome);
            tracing::info!(
                target: "postern::ldap",
                profile = %self.name, query, kind = kind.label(), filter, outcome,
                entries = entries.len(), cached = true,
                latency_us = started.elapsed().as_micros() as u64,
                "LDAP search"
            );
            return Ok(Found {
                entries,
                cached: true,
            });
        }
        self.metrics.cache_misses.get_or_create(&cache_labels).inc();
        let result = self.pool.search(&self.profile.base_dn, filter, attrs).await;
        let elapsed = started.elapsed();
        self.metrics
            .latency
            .get_or_create(&self.query_labels(query, kind.label()))
            .observe(elapsed.as_secs_f64());
        match result {
            Ok(out) => {
                let entries: Arc<[Entry]> = out.entries.into();
                let outcome = kind.outcome(entries.len());
                self.count(query, kind.label(), outcome);
                tracing::info!(
                    target: "postern::ldap",
                    profile = %self.name, query, kind = kind.label(), filter, outcome,
                    entries = entries.len(), references = out.references, cached = false,
                    server = %self.connector.url(out.server),
                    latency_us = elapsed.as_micros() as u64,
                    "LDAP search"
                );
                self.cache
                    .insert(key, entries.clone(), entries.is_empty(), Instant::now());
                Ok(Found {
                    entries,
                    cached: false,
                })
            }
            Err(e) => {
                self.count(query, kind.label(), e.outcome());
                tracing::warn!(
                    target: "postern::ldap",
                    profile = %self.name, query, kind = kind.label(), filter,
                    outcome = e.outcome(), error = %e, cached = false,
                    latency_us = elapsed.as_micros() as u64,
                    "LDAP search failed"
                );
                Err(e)
            }
        }
    }

    /// Check `password` by a BIND as `dn` on a connection that only checks passwords.
    /// Never cached.
    pub async fn check_password(
        &self,
        query: &str,
        dn: &str,
        password: &str,
    ) -> Result<BindOutcome, DirectoryError> {
        let started = Instant::now();
        let result =
            match tokio::time::timeout(self.connector.op_timeout, self.binds.acquire()).await {
                Ok(Ok(_permit)) => self.bind_conns.check_password(dn, password).await,
                Ok(Err(_)) | Err(_) => Err(DirectoryError::PoolExhausted {
                    max: self.profile.max_connections,
                    waited: started.elapsed(),
                }),
            };
        let elapsed = started.elapsed();
        match &result {
            Ok((outcome, server)) => {
                let label = match (outcome, server) {
                    (BindOutcome::Success, _) => "success",
                    (BindOutcome::Invalid { .. }, Some(_)) => "invalid_credentials",
                    (BindOutcome::Invalid { .. }, None) => "refused_locally",
                };
                if server.is_some() {
                    self.metrics
                        .latency
                        .get_or_create(&self.query_labels(query, "bind"))
                        .observe(elapsed.as_secs_f64());
                }
                self.count(query, "bind", label);
                let reason = match outcome {
                    BindOutcome::Invalid { reason } => reason.as_str(),
                    BindOutcome::Success => "",
                };
                tracing::info!(
                    target: "postern::ldap",
                    profile = %self.name, query, kind = "bind", dn, outcome = label, reason,
                    server = server.map(|s| self.connector.url(s)).unwrap_or("-"),
                    latency_us = elapsed.as_micros() as u64,
                    "LDAP bind"
                );
            }
            Err(e) => {
                self.metrics
                    .latency
                    .get_or_create(&self.query_labels(query, "bind"))
                    .observe(elapsed.as_secs_f64());
                self.count(query, "bind", e.outcome());
                tracing::warn!(
                    target: "postern::ldap",
                    profile = %self.name, query, kind = "bind", dn, outcome = e.outcome(),
                    error = %e, latency_us = elapsed.as_micros() as u64,
                    "LDAP bind failed"
                );
            }
        }
        result.map(|(outcome, _)| outcome)
    }
}
