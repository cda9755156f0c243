//! Opening connections: server order, failover, timeouts, TLS; and reading LDAP errors.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, LdapResult, StdStream};
use prometheus_client::metrics::gauge::Gauge;
use rustls::ClientConfig;

use super::error::DirectoryError;
use super::metrics::{LdapMetrics, ServerLabels};
use super::servers::ServerSet;

/// How connections of one profile are opened.
#[derive(Debug)]
pub(crate) struct Connector {
    /// LDAP profile name (logs, metrics).
    pub profile: String,
    /// The servers, in order, with their health marks.
    pub servers: ServerSet,
    /// TLS settings for `ldaps://` and StartTLS (built when any server needs TLS).
    pub tls: Option<Arc<ClientConfig>>,
    /// Upgrade `ldap://` connections with StartTLS.
    pub start_tls: bool,
    /// TCP + TLS (+ StartTLS) connect timeout.
    pub connect_timeout: Duration,
    /// Timeout of each operation.
    pub op_timeout: Duration,
    /// Metric families.
    pub metrics: LdapMetrics,
}

/// An open connection and where it goes.
#[derive(Debug)]
pub(crate) struct Conn {
    /// The operation handle (the connection closes when the last handle is dropped).
    pub ldap: Ldap,
    /// Index of the server in the profile's list.
    pub server: usize,
    /// When it was opened.
    pub opened: Instant,
}

impl Connector {
    /// The URL of server `index`, for messages.
    pub(crate) fn url(&self, index: usize) -> &str {
        &self.servers.get(index).url
    }

    fn server_labels(&self, index: usize) -> ServerLabels {
        ServerLabels {
            profile: self.profile.clone(),
            server: self.url(index).to_owned(),
        }
    }

    fn up_gauge(&self, index: usize) -> Gauge {
        self.metrics
            .server_up
            .get_or_create_owned(&self.server_labels(index))
    }

    /// Record that server `index` works (it may have been marked down before).
    pub(crate) fn server_ok(&self, index: usize) {
        if self.servers.mark_up(index) {
            tracing::info!(profile = %self.profile, server = %self.url(index), "LDAP server answers again");
        }
        self.up_gauge(index).set(1);
    }

    /// Record that server `index` failed: new connections prefer the others for a while.
    pub(crate) fn server_failed(&self, index: usize, why: &str) {
        self.servers.mark_down(index, Instant::now());
        self.up_gauge(index).set(0);
        tracing::warn!(profile = %self.profile, server = %self.url(index), reason = %why, "LDAP server failed");
    }

    /// Open a connection to the first server that accepts one, in the order of
    /// [`ServerSet::order`]. Each attempt is bounded by the connect timeout.
    pub(crate) async fn open(&self) -> Result<Conn, DirectoryError> {
        let order = self.servers.order(Instant::now());
        let mut attempts = Vec::new();
        for (n, &index) in order.iter().enumerate() {
            match self.open_one(index).await {
                Ok(ldap) => {
                    self.server_ok(index);
                    return Ok(Conn {
                        ldap,
                        server: index,
                        opened: Instant::now(),
                    });
                }
                Err(why) => {
                    self.server_failed(index, &why);
                    if n + 1 < order.len() {
                        self.metrics
                            .failovers
                            .get_or_create(&self.server_labels(index))
                            .inc();
                    }
                    attempts.push(format!("{}: {why}", self.url(index)));
                }
            }
        }
        Err(DirectoryError::Unreachable { attempts })
    }

    async fn open_one(&self, index: usize) -> Result<Ldap, String> {
        let server = self.servers.get(index);
        let use_tls = server.implicit_tls || self.start_tls;
        let mut settings =
            LdapConnSettings::new().set_starttls(self.start_tls && !server.implicit_tls);
        if use_tls {
            let tls = self
                .tls
                .clone()
                .ok_or("TLS is needed but no TLS configuration was built")?;
            settings = settings.set_config(tls);
        }
        let url = server.connect_url();
        let connect = async {
            let tcp = tokio::net::TcpStream::connect((server.host.as_str(), server.port))
                .await
                .map_err(|e| format!("TCP connect: {e}"))?;
            // LDAP is request/response with small messages: without NODELAY the TLS
            // handshake and binds stall on delayed ACKs (40 ms each on Linux).
            tcp.set_nodelay(true)
                .map_err(|e| format!("TCP_NODELAY: {e}"))?;
            let std = tcp.into_std().map_err(|e| format!("TCP socket: {e}"))?;
            LdapConnAsync::with_settings(settings.set_std_stream(StdStream::Tcp(std)), &url)
                .await
                .map_err(|e| describe_connect_error(&e))
        };
        let (conn, ldap) = tokio::time::timeout(self.connect_timeout, connect)
            .await
            .map_err(|_| format!("connect timed out after {:?}", self.connect_timeout))??;
        let profile = self.profile.clone();
        let url_for_log = server.url.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!(profile = %profile, server = %url_for_log, error = %e, "LDAP connection closed");
            }
        });
        Ok(ldap)
    }
}

fn describe_connect_error(e: &LdapError) -> String {
    match e {
        LdapError::LdapResult { result } => {
            format!("StartTLS refused (rc={}): {}", result.rc, result.text)
        }
        other => other.to_string(),
    }
}

/// Turn an ldap3 error of `operation` on `server` into a [`DirectoryError`].
pub(crate) fn op_error(
    server: &str,
    operation: &'static str,
    timeout: Duration,
    e: LdapError,
) -> DirectoryError {
    match e {
        LdapError::Timeout { .. } => DirectoryError::Timeout {
            server: server.to_owned(),
            operation,
            timeout,
        },
        LdapError::LdapResult { result } => result_error(server, operation, result),
        // Never sent: our filters always parse, but a library disagreement must not look
        // like a dead server.
        LdapError::FilterParsing => DirectoryError::Result {
            server: server.to_owned(),
            operation,
            rc: 87,
            text: "the LDAP library could not encode the filter".into(),
        },
        other => DirectoryError::ConnectionLost {
            server: server.to_owned(),
            operation,
            detail: other.to_string(),
        },
    }
}

/// Turn a non-success LDAP result into a [`DirectoryError`].
pub(crate) fn result_error(server: &str, operation: &'static str, r: LdapResult) -> DirectoryError {
    let server = server.to_owned();
    match r.rc {
        4 => DirectoryError::SizeLimit { server },
        10 => DirectoryError::Referral {
            server,
            refs: r.refs,
        },
        51 | 52 => DirectoryError::ServerUnavailable {
            server,
            what: if r.rc == 51 { "busy" } else { "unavailable" },
            rc: r.rc,
            text: r.text,
        },
        rc => DirectoryError::Result {
            server,
            operation,
            rc,
            text: r.text,
        },
    }
}
