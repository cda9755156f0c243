//! The `Static` backend: a fixed user list inside the configuration.
//!
//! For the embedded demo and for tests without a directory; the controller never produces
//! it. Passwords are compared in constant time; a user without a password cannot use AUTH.

use std::sync::Arc;

use super::{
    Allowance, AuthError, AuthVerdict, BoxFuture, CertificateFacts, CertificateMapper,
    CertificateMapping, SmtpAuthenticator,
};
use crate::config::StaticUser;

/// A static user list, usable as both mapper and authenticator.
#[derive(Debug, Clone)]
pub struct StaticUsers {
    users: Arc<[StaticUser]>,
    /// Whether the profile has an allowance check (else the verdict says `NotChecked`).
    check_allowance: bool,
}

impl StaticUsers {
    /// Build from the configured users.
    pub fn new(users: &[StaticUser], check_allowance: bool) -> Self {
        Self {
            users: users.into(),
            check_allowance,
        }
    }

    fn map_now(&self, cert: &CertificateFacts) -> CertificateMapping {
        let Some(cn) = cert.common_name() else {
            return CertificateMapping::NotFound;
        };
        let mut found = self
            .users
            .iter()
            .filter(|u| u.certificate_cn.as_deref() == Some(cn));
        match (found.next(), found.count()) {
            (None, _) => CertificateMapping::NotFound,
            (Some(u), 0) => CertificateMapping::Mapped {
                user_id: u.user_id.clone(),
                dn: None,
            },
            (Some(_), more) => CertificateMapping::Ambiguous { count: more + 1 },
        }
    }

    fn authenticate_now(&self, username: &str, password: &str) -> AuthVerdict {
        if password.is_empty() {
            return AuthVerdict::InvalidCredentials {
                reason: "empty password".into(),
            };
        }
        let Some(user) = self.users.iter().find(|u| u.user_id == username) else {
            return AuthVerdict::InvalidCredentials {
                reason: "unknown user".into(),
            };
        };
        let Some(expected) = &user.password else {
            return AuthVerdict::InvalidCredentials {
                reason: "user has no password (AUTH disabled for it)".into(),
            };
        };
        if !constant_time_eq(expected.as_bytes(), password.as_bytes()) {
            return AuthVerdict::InvalidCredentials {
                reason: "wrong password".into(),
            };
        }
        let allowance = match (self.check_allowance, user.allowed) {
            (false, _) => Allowance::NotChecked,
            (true, true) => Allowance::Allowed,
            (true, false) => Allowance::Denied,
        };
        AuthVerdict::Authenticated {
            user_id: user.user_id.clone(),
            allowance,
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(!x));
    }
    diff == 0
}

impl CertificateMapper for StaticUsers {
    fn map<'a>(
        &'a self,
        cert: &'a CertificateFacts,
    ) -> BoxFuture<'a, Result<CertificateMapping, AuthError>> {
        Box::pin(async move { Ok(self.map_now(cert)) })
    }
}

impl SmtpAuthenticator for StaticUsers {
    fn authenticate<'a>(
        &'a self,
        username: &'a str,
        password: &'a str,
    ) -> BoxFuture<'a, Result<AuthVerdict, AuthError>> {
        Box::pin(async move { Ok(self.authenticate_now(username, password)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str, pw: Option<&str>, cn: Option<&str>, allowed: bool) -> StaticUser {
        StaticUser {
            user_id: id.into(),
            password: pw.map(Into::into),
            certificate_cn: cn.map(Into::into),
            allowed,
        }
    }

    fn facts(cn: &str) -> CertificateFacts {
        CertificateFacts {
            subject: format!("CN={cn}"),
            subject_dn: format!("CN={cn}"),
            common_names: vec![cn.into()],
            serial_hex: "01".into(),
            issuer: "CN=ca".into(),
            issuer_dn: "CN=ca".into(),
            email: None,
            upn: None,
            fingerprint_sha256: String::new(),
        }
    }

    #[test]
    fn authenticates() {
        let s = StaticUsers::new(
            &[
                user("alice", Some("pw"), Some("Alice"), true),
                user("frank", Some("frankpw"), None, false),
                user("nopw", None, None, true),
            ],
            true,
        );
        assert!(matches!(
            s.authenticate_now("alice", "pw"),
            AuthVerdict::Authenticated {
                allowance: Allowance::Allowed,
                ..
            }
        ));
        assert!(matches!(
            s.authenticate_now("frank", "frankpw"),
            AuthVerdict::Authenticated {
                allowance: Allowance::Denied,
                ..
            }
        ));
        for (u, p) in [
            ("alice", "x"),
            ("alice", ""),
            ("bob", "pw"),
            ("nopw", "x"),
            ("alice", "pwx"),
        ] {
            assert!(
                matches!(
                    s.authenticate_now(u, p),
                    AuthVerdict::InvalidCredentials { .. }
                ),
                "{u}/{p}"
            );
        }
        let unchecked = StaticUsers::new(&[user("frank", Some("f"), None, false)], false);
        assert!(matches!(
            unchecked.authenticate_now("frank", "f"),
            AuthVerdict::Authenticated {
                allowance: Allowance::NotChecked,
                ..
            }
        ));
    }

    #[test]
    fn maps_certificates() {
        let s = StaticUsers::new(
            &[
                user("alice", None, Some("Alice"), true),
                user("twin1", None, Some("Twin"), true),
                user("twin2", None, Some("Twin"), true),
            ],
            false,
        );
        assert_eq!(
            s.map_now(&facts("Alice")),
            CertificateMapping::Mapped {
                user_id: "alice".into(),
                dn: None
            }
        );
        assert_eq!(s.map_now(&facts("Bob")), CertificateMapping::NotFound);
        assert_eq!(
            s.map_now(&facts("Twin")),
            CertificateMapping::Ambiguous { count: 2 }
        );
    }
}
