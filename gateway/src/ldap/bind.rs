//! Password checks: an LDAP simple BIND as the user, on a connection of its own.
//!
//! Each check opens a new connection (same servers, order, TLS and timeouts as the
//! pool), binds once and closes it, so a user's identity never lingers on a connection
//! that searches for somebody else. An empty password is refused here, before any
//! network traffic: an empty simple bind is an anonymous bind (RFC 4513 section 5.1.2),
//! which many servers answer with "success". So is a password with a NUL byte, which a
//! server written in C may read as a shorter password.

use ldap3::LdapResult;

use super::conn::{Connector, op_error, result_error};
use super::error::DirectoryError;

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

/// Check `password` for `dn`. Returns the outcome and the index of the server asked
/// (`None` when nothing was sent).
pub(crate) async fn check_password(
    connector: &Connector,
    dn: &str,
    password: &str,
) -> Result<(BindOutcome, Option<usize>), DirectoryError> {
    if password.is_empty() {
        return Ok((
            BindOutcome::Invalid {
                reason: "empty password (never sent: it would be an anonymous bind)".into(),
            },
            None,
        ));
    }
    if password.contains('\0') {
        return Ok((
            BindOutcome::Invalid {
                reason: "the password contains a NUL byte (never sent)".into(),
            },
            None,
        ));
    }
    if dn.is_empty() {
        return Ok((
            BindOutcome::Invalid {
                reason: "the entry has an empty DN".into(),
            },
            None,
        ));
    }
    let mut conn = connector.open().await?;
    let server = connector.url(conn.server).to_owned();
    let op_timeout = connector.op_timeout;
    let answer = tokio::time::timeout(
        op_timeout,
        conn.ldap.with_timeout(op_timeout).simple_bind(dn, password),
    )
    .await;
    // Say goodbye in the background; the answer is what matters.
    let mut ldap = conn.ldap.clone();
    tokio::spawn(async move {
        let _ = ldap.unbind().await;
    });
    let result = match answer {
        Err(_) => Err(DirectoryError::Timeout {
            server,
            operation: "bind",
            timeout: op_timeout,
        }),
        Ok(Err(e)) => Err(op_error(&server, "bind", op_timeout, e)),
        Ok(Ok(result)) => outcome(&server, result),
    };
    if let Err(e) = &result
        && e.is_unavailable()
    {
        connector.server_failed(conn.server, &e.to_string());
    }
    result.map(|o| (o, Some(conn.server)))
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
