//! The search connections of one profile, bound as the service account.
//!
//! At most `maxConnections` searches run at once; a request that finds every connection
//! busy waits at most the operation timeout. Idle connections are reused as
//! [`IdleConns`] says. A reused connection that turns out to be dead is replaced once,
//! transparently; any other failure is the caller's answer.

use std::sync::Arc;
use std::time::Instant;

use ldap3::{Scope, SearchEntry, SearchResult};
use tokio::sync::Semaphore;

use super::conn::{Conn, Connector, op_error, result_error};
use super::error::DirectoryError;
use super::idle::{IdleConns, Pooled};
use postern_config::LdapBind;

/// A directory entry as found by a search.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its DN.
    pub dn: String,
    /// Requested attributes with textual values; names lower-cased.
    pub attrs: Vec<(String, Vec<String>)>,
}

impl Entry {
    /// The values of `name` (case-insensitive), empty when absent.
    pub fn values(&self, name: &str) -> &[String] {
        self.attrs
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
            .unwrap_or(&[])
    }

    fn from_ldap(e: SearchEntry) -> Self {
        let mut attrs: Vec<(String, Vec<String>)> = e
            .attrs
            .into_iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v))
            .collect();
        // Binary values cannot be user ids; keep the name so "present but binary" is visible.
        attrs.extend(
            e.bin_attrs
                .into_keys()
                .map(|n| (n.to_ascii_lowercase(), Vec::new())),
        );
        attrs.sort();
        Self { dn: e.dn, attrs }
    }
}

/// What a search returned.
#[derive(Clone, Debug)]
pub(crate) struct SearchOutput {
    /// The entries.
    pub entries: Vec<Entry>,
    /// Search continuation references returned beside them (not followed).
    pub references: usize,
    /// Index of the server that answered.
    pub server: usize,
}

/// The search connection pool of one profile.
pub(crate) struct Pool {
    connector: Arc<Connector>,
    bind: Option<LdapBind>,
    max: u32,
    permits: Semaphore,
    idle: IdleConns,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("profile", &self.connector.profile)
            .field("max", &self.max)
            .field("bind", &self.bind)
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// A pool of at most `max` connections, bound as `bind` (anonymous when `None`).
    pub(crate) fn new(connector: Arc<Connector>, bind: Option<LdapBind>, max: u32) -> Self {
        Self {
            idle: IdleConns::new(connector.clone(), max, |m| &m.pool_connections),
            connector,
            bind,
            max: max.max(1),
            permits: Semaphore::new(max.max(1) as usize),
        }
    }

    /// Number of idle connections (for tests and health).
    pub(crate) fn idle_connections(&self) -> usize {
        self.idle.len()
    }

    /// Subtree search under `base`.
    pub(crate) async fn search(
        &self,
        base: &str,
        filter: &str,
        attrs: &[&str],
    ) -> Result<SearchOutput, DirectoryError> {
        let op_timeout = self.connector.op_timeout;
        let waited = Instant::now();
        let _permit = match tokio::time::timeout(op_timeout, self.permits.acquire()).await {
            Ok(Ok(permit)) => permit,
            // The semaphore is never closed; treat it like exhaustion if it ever is.
            Ok(Err(_)) | Err(_) => {
                return Err(DirectoryError::PoolExhausted {
                    max: self.max,
                    waited: waited.elapsed(),
                });
            }
        };
        let (mut pooled, reused) = match self.idle.take() {
            Some(p) => (p, true),
            None => (self.fresh().await?, false),
        };
        match self.search_on(&mut pooled.conn, base, filter, attrs).await {
            Ok(out) => {
                self.idle.put_back(pooled);
                Ok(out)
            }
            Err(DirectoryError::ConnectionLost { detail, .. }) if reused => {
                tracing::debug!(profile = %self.connector.profile, server = %self.connector.url(pooled.conn.server),
                    reason = %detail, "pooled LDAP connection was dead; retrying on a new one");
                drop(pooled);
                let mut pooled = self.fresh().await?;
                match self.search_on(&mut pooled.conn, base, filter, attrs).await {
                    Ok(out) => {
                        self.idle.put_back(pooled);
                        Ok(out)
                    }
                    Err(e) => Err(self.failed(pooled, e)),
                }
            }
            Err(e) => Err(self.failed(pooled, e)),
        }
    }

    /// Handle a failed operation: a broken connection is dropped and its server marked
    /// down; an LDAP error answer leaves a healthy connection that goes back to the pool.
    fn failed(&self, pooled: Pooled, e: DirectoryError) -> DirectoryError {
        if e.is_unavailable() {
            self.connector
                .server_failed(pooled.conn.server, &e.to_string());
        } else {
            self.idle.put_back(pooled);
        }
        e
    }

    /// Open and (if configured) bind a new connection. A server that accepts the
    /// connection but fails the service bind for lack of an answer is marked down and
    /// the next one is tried.
    async fn fresh(&self) -> Result<Pooled, DirectoryError> {
        let mut last = None;
        for _ in 0..self.connector.servers.all().len() {
            let mut conn = self.connector.open().await?;
            match self.service_bind(&mut conn).await {
                Ok(()) => return Ok(self.idle.adopt(conn)),
                Err(e) if e.is_unavailable() => {
                    self.connector.server_failed(conn.server, &e.to_string());
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("at least one server was tried"))
    }

    async fn service_bind(&self, conn: &mut Conn) -> Result<(), DirectoryError> {
        let Some(bind) = &self.bind else {
            return Ok(());
        };
        let server = self.connector.url(conn.server).to_owned();
        let op_timeout = self.connector.op_timeout;
        if bind.password.is_empty() {
            // Validation refuses this; never let it become an anonymous bind.
            return Err(DirectoryError::ServiceBind {
                server,
                dn: bind.dn.clone(),
                rc: 49,
                text: "empty service password (not sent)".into(),
            });
        }
        let result = tokio::time::timeout(
            op_timeout,
            conn.ldap
                .with_timeout(op_timeout)
                .simple_bind(&bind.dn, &bind.password),
        )
        .await
        .map_err(|_| DirectoryError::Timeout {
            server: server.clone(),
            operation: "service bind",
            timeout: op_timeout,
        })?
        .map_err(|e| op_error(&server, "service bind", op_timeout, e))?;
        match result.rc {
            0 => Ok(()),
            51 | 52 => Err(result_error(&server, "service bind", result)),
            rc => Err(DirectoryError::ServiceBind {
                server,
                dn: bind.dn.clone(),
                rc,
                text: result.text,
            }),
        }
    }

    async fn search_on(
        &self,
        conn: &mut Conn,
        base: &str,
        filter: &str,
        attrs: &[&str],
    ) -> Result<SearchOutput, DirectoryError> {
        let server = self.connector.url(conn.server).to_owned();
        let op_timeout = self.connector.op_timeout;
        let attrs: Vec<&str> = attrs.to_vec();
        let SearchResult(raw, result) = tokio::time::timeout(
            op_timeout,
            conn.ldap
                .with_timeout(op_timeout)
                .search(base, Scope::Subtree, filter, attrs),
        )
        .await
        .map_err(|_| DirectoryError::Timeout {
            server: server.clone(),
            operation: "search",
            timeout: op_timeout,
        })?
        .map_err(|e| op_error(&server, "search", op_timeout, e))?;
        if result.rc != 0 {
            return Err(result_error(&server, "search", result));
        }
        Ok(SearchOutput {
            entries: raw
                .into_iter()
                .map(|e| Entry::from_ldap(SearchEntry::construct(e)))
                .collect(),
            references: result.refs.len(),
            server: conn.server,
        })
    }
}
