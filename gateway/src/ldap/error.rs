//! What can go wrong when talking to a directory, or when setting a profile's client up.
//!
//! Authentication turns every [`DirectoryError`] into `454 4.7.0` for the client (try
//! again later; see `auth::ldap`): a broken or slow directory never turns into an accept,
//! and never into a `535` that would make a user doubt a correct password. Only a clear
//! "invalid credentials" from a BIND is a `535`, and that is not an error (see `bind.rs`).

use std::time::Duration;

/// A directory operation that did not produce an answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    /// No server of the profile accepted a connection (refused, timed out, TLS failed).
    #[error("no LDAP server reachable ({})", attempts.join("; "))]
    Unreachable {
        /// One line per server tried, in order: URL and why it failed.
        attempts: Vec<String>,
    },
    /// An operation got no answer within the profile's operation timeout.
    #[error("{server}: {operation} timed out after {timeout:?}")]
    Timeout {
        /// The server URL.
        server: String,
        /// `search`, `bind` or `service bind`.
        operation: &'static str,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// The connection broke during an operation.
    #[error("{server}: connection lost during {operation}: {detail}")]
    ConnectionLost {
        /// The server URL.
        server: String,
        /// `search`, `bind` or `service bind`.
        operation: &'static str,
        /// The transport error.
        detail: String,
    },
    /// Every connection of the pool is busy and none was freed within the operation timeout.
    #[error("all {max} LDAP connections busy for {waited:?}")]
    PoolExhausted {
        /// The pool size (`maxConnections`).
        max: u32,
        /// How long the request waited.
        waited: Duration,
    },
    /// The server answered `busy` or `unavailable`.
    #[error("{server}: server {what} (rc={rc}): {text}")]
    ServerUnavailable {
        /// The server URL.
        server: String,
        /// `busy` or `unavailable`.
        what: &'static str,
        /// The LDAP result code (51 or 52).
        rc: u32,
        /// The server's diagnostic message.
        text: String,
    },
    /// The service account (`bind.dn`) was refused: a configuration problem.
    #[error("{server}: service account {dn:?} could not bind (rc={rc}): {text}")]
    ServiceBind {
        /// The server URL.
        server: String,
        /// The bind DN.
        dn: String,
        /// The LDAP result code.
        rc: u32,
        /// The server's diagnostic message.
        text: String,
    },
    /// The server answered with a referral instead of results; referrals are not followed.
    #[error("{server}: referral to {} (not followed; point baseDn/servers at the server holding the entries)", refs.join(" "))]
    Referral {
        /// The server URL.
        server: String,
        /// The referral URLs.
        refs: Vec<String>,
    },
    /// More entries matched than the server is willing to return.
    #[error("{server}: size limit exceeded (the filter matches too many entries)")]
    SizeLimit {
        /// The server URL.
        server: String,
    },
    /// Any other LDAP result code (no such base DN, insufficient access, protocol error...).
    #[error("{server}: {operation} failed (rc={rc}): {text}")]
    Result {
        /// The server URL.
        server: String,
        /// `search` or `bind`.
        operation: &'static str,
        /// The LDAP result code.
        rc: u32,
        /// The server's diagnostic message.
        text: String,
    },
}

impl DirectoryError {
    /// Whether the directory is down or slow (rather than answering something unusable).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Unreachable { .. }
                | Self::Timeout { .. }
                | Self::ConnectionLost { .. }
                | Self::PoolExhausted { .. }
                | Self::ServerUnavailable { .. }
        )
    }

    /// A short label for metrics and logs.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Unreachable { .. } => "unreachable",
            Self::Timeout { .. } => "timeout",
            Self::ConnectionLost { .. } => "connection_lost",
            Self::PoolExhausted { .. } => "pool_exhausted",
            Self::ServerUnavailable { .. } => "server_unavailable",
            Self::ServiceBind { .. } => "service_bind_failed",
            Self::Referral { .. } => "referral",
            Self::SizeLimit { .. } => "size_limit",
            Self::Result { .. } => "error",
        }
    }
}

/// Why an LDAP profile could not be turned into a working client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LdapSetupError {
    /// The configuration names an LDAP profile that does not exist.
    #[error("LdapProfile {0:?} not found")]
    UnknownProfile(String),
    /// The profile lacks the query the authentication profile needs.
    #[error("LdapProfile {profile:?} has no {query}")]
    MissingQuery {
        /// The LDAP profile.
        profile: String,
        /// `certificateAuthQuery`, `smtpAuthQuery` or `smtpAuthQuery.allowanceFilter`.
        query: &'static str,
    },
    /// A filter template does not parse (validation should have caught it).
    #[error("LdapProfile {profile:?} {field}: {source}")]
    Filter {
        /// The LDAP profile.
        profile: String,
        /// The field holding the filter.
        field: &'static str,
        /// The parse error.
        source: postern_config::filter::FilterError,
    },
    /// A server URL is not `ldap://host[:port]` or `ldaps://host[:port]`.
    #[error("LdapProfile {profile:?} servers: {reason}")]
    Server {
        /// The LDAP profile.
        profile: String,
        /// What is wrong.
        reason: String,
    },
    /// The CA bundle or the TLS client configuration could not be built.
    #[error("LdapProfile {profile:?} caBundle: {reason}")]
    Tls {
        /// The LDAP profile.
        profile: String,
        /// What is wrong.
        reason: String,
    },
}
