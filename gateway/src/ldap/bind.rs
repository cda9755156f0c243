//! Password checks: an LDAP simple BIND as the user, on connections of their own.
//!
//! The connections that check passwords (same servers, order, TLS and timeouts as the
//! search pool) do nothing else: a user's identity never lingers on a connection that
//! searches for somebody else. They are kept between checks ([`IdleConns`]) and each
//! check is one BIND, which replaces whatever identity the connection had (RFC 4511
//! section 4.2.1) — as Dovecot's `auth_bind` connection does: opening a connection (and
//! with StartTLS or `ldaps://`, a TLS handshake) for every password cost more than the
//! check itself. A kept connection found dead is replaced once, transparently.
//!
//! An empty password is refused here, before any network traffic: an empty simple bind
//! is an anonymous bind (RFC 4513 section 5.1.2), which many servers answer with
//! "success". So is a password with a NUL byte, which a server written in C may read as
//! a shorter password.

use std::sync::Arc;

use ldap3::LdapResult;

use super::conn::{Conn, Connector, op_error, result_error};
use super::error::DirectoryError;
use super::idle::IdleConns;

/// The directory's answer to a password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BindOutcome {
    /// The password is right.
    Success,
    /// The password (or the account) is refused.
    Invalid {
        /// Why, for the decision log.
        reason: String,
    },
}

/// The password-checking connections of one profile.
pub(crate) struct BindConns {
    connector: Arc<Connector>,
    idle: IdleConns,
}

impl std::fmt::Debug for BindConns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BindConns")
            .field("profile", &self.connector.profile)
            .finish_non_exhaustive()
    }
}

impl BindConns {
    /// Keeps up to `max` connections between checks (as many as may check at once).
    pub(crate) fn new(connector: Arc<Connector>, max: u32) -> Self {
        Self {
            idle: IdleConns::new(connector.clone(), max, |m| &m.bind_connections),
            connector,
        }
    }

    /// Number of idle connections (for tests).
    pub(crate) fn idle_connections(&self) -> usize {
        self.idle.len()
    }

    /// Check `password` for `dn`. Returns the outcome and the index of the server asked
    /// (`None` when nothing was sent).
    pub(crate) async fn check_password(
        &self,
        dn: &str,
        password: &str,
    ) -> Result<(BindOutcome, Option<usize>), DirectoryError> {
        if let Some(refused) = refused_locally(dn, password) {
            return Ok((refused, None));
        }
        let (mut pooled, reused) = match self.idle.take() {
            Some(p) => (p, true),
            None => (self.idle.adopt(self.connector.open().await?), false),
        };
        let mut result = self.bind(&mut pooled.conn, dn, password).await;
        if reused && matches!(result, Err(DirectoryError::ConnectionLost { .. })) {
            // Closed by the server while it was kept (an idle timeout, a restart).
            tracing::debug!(profile = %self.connector.profile, server = %self.connector.url(pooled.conn.server),
                "kept LDAP bind connection was dead; checking on a new one");
            pooled = self.idle.adopt(self.connector.open().await?);
            result = self.bind(&mut pooled.conn, dn, password).await;
        }
        let server = pooled.conn.server;
        match &result {
            // A definite answer leaves a healthy connection.
            Ok(_) => self.idle.put_back(pooled),
            Err(e) if e.is_unavailable() => self.connector.server_failed(server, &e.to_string()),
            Err(_) => {}
        }
        result.map(|o| (o, Some(server)))
    }

    async fn bind(
        &self,
        conn: &mut Conn,
        dn: &str,
        password: &str,
    ) -> Result<BindOutcome, DirectoryError> {
        let server = self.connector.url(conn.server);
        let op_timeout = self.connector.op_timeout;
        let answer = tokio::time::timeout(
            op_timeout,
            conn.ldap.with_timeout(op_timeout).simple_bind(dn, password),
        )
        .await;
        match answer {
            Err(_) => Err(DirectoryError::Timeout {
                server: server.to_owned(),
                operation: "bind",
                timeout: op_timeout,
            }),
            Ok(Err(e)) => Err(op_error(server, "bind", op_timeout, e)),
            Ok(Ok(result)) => outcome(server, result),
        }
    }
}

/// Why `password` for `dn` is refused without asking the directory, if it is.
fn refused_locally(dn: &str, password: &str) -> Option<BindOutcome> {
    let reason = if password.is_empty() {
        "empty password (never sent: it would be an anonymous bind)"
    } else if password.contains('\0') {
        "the password contains a NUL byte (never sent)"
    } else if dn.is_empty() {
        "the entry has an empty DN"
    } else {
        return None;
    };
    Some(BindOutcome::Invalid {
        reason: reason.into(),
    })
}

/// Read a BIND result.
fn outcome(server: &str, r: LdapResult) -> Result<BindOutcome, DirectoryError> {
    let reason = |what: &str| BindOutcome::Invalid {
        reason: if r.text.is_empty() {
            format!("{what} (rc={})", r.rc)
        } else {
            format!("{what} (rc={}): {}", r.rc, r.text)
        },
    };
    match r.rc {
        0 => Ok(BindOutcome::Success),
        // invalidCredentials: wrong password, or (Active Directory) locked/expired account.
        49 => Ok(reason("invalid credentials")),
        // The account may not bind this way at all.
        48 => Ok(reason("inappropriate authentication")),
        50 => Ok(reason("insufficient access")),
        53 => Ok(reason("unwilling to perform")),
        _ => Err(result_error(server, "bind", r)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(rc: u32, text: &str) -> LdapResult {
        LdapResult {
            rc,
            matched: String::new(),
            text: text.into(),
            refs: vec![],
            ctrls: vec![],
        }
    }

    #[test]
    fn reads_bind_results() {
        assert_eq!(outcome("s", result(0, "")), Ok(BindOutcome::Success));
        assert!(matches!(
            outcome("s", result(49, "80090308: AcceptSecurityContext error, data 775")),
            Ok(BindOutcome::Invalid { reason }) if reason.contains("data 775")
        ));
        assert!(matches!(
            outcome("s", result(53, "")),
            Ok(BindOutcome::Invalid { .. })
        ));
        assert!(matches!(
            outcome("s", result(52, "shutting down")),
            Err(e) if e.is_unavailable()
        ));
        assert!(matches!(
            outcome("s", result(80, "other")),
            Err(e) if !e.is_unavailable()
        ));
    }
}
