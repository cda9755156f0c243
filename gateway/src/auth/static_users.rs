//! The `Static` backend: a fixed user list inside the configuration.
//!
//! For the embedded demo and for tests without a directory; the controller never produces
//! it. Passwords are compared in constant time; a user without a password cannot use AUTH.

use std::sync::Arc;

use super::{
    AddressBook, Allowance, AllowanceCheck, AuthError, AuthVerdict, BoxFuture, CertificateFacts,
    CertificateMapper, CertificateMapping, FoundUser, SmtpAuthenticator, UserLookup,
    password_refusal, user_refusal,
};
use postern_config::StaticUser;

/// A static user list, usable as both mapper and authenticator.
#[derive(Debug, Clone)]
pub struct StaticUsers {
    users: Arc<[StaticUser]>,
    /// The profile's allowance check: a user's `allowed` flag, before or after the
    /// password (see [`AllowanceCheck`]).
    allowance: AllowanceCheck,
}

impl AddressBook for StaticUsers {
    /// A static user's `addresses` (none for an unknown user).
    fn addresses<'a>(&'a self, user_id: &'a str) -> BoxFuture<'a, Result<Vec<String>, AuthError>> {
        let found = self
            .users
            .iter()
            .find(|u| u.user_id == user_id)
            .map(|u| {
                postern_config::sender::addresses_from_values(
                    u.addresses.iter().map(String::as_str),
                )
            })
            .unwrap_or_default();
        Box::pin(async move { Ok(found) })
    }
}

impl StaticUsers {
    /// Build from the configured users.
    pub fn new(users: &[StaticUser], allowance: AllowanceCheck) -> Self {
        Self {
            users: users.into(),
            allowance,
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

    fn find_now(&self, username: &str) -> UserLookup {
        if let Some(refusal) = user_refusal(username) {
            return UserLookup::Unknown {
                reason: refusal.to_string(),
            };
        }
        match self.users.iter().find(|u| u.user_id == username) {
            Some(u) => UserLookup::Found(FoundUser {
                user_id: u.user_id.clone(),
                dn: None,
            }),
            None => UserLookup::Unknown {
                reason: "unknown user".into(),
            },
        }
    }

    fn check_now(&self, found: &FoundUser, password: &str) -> AuthVerdict {
        let invalid = |reason: &str| AuthVerdict::InvalidCredentials {
            reason: reason.into(),
        };
        if let Some(refusal) = password_refusal(password) {
            return invalid(&refusal.to_string());
        }
        let Some(user) = self.users.iter().find(|u| u.user_id == found.user_id) else {
            return invalid("unknown user");
        };
        if self.allowance == AllowanceCheck::BeforePassword && !user.allowed {
            return AuthVerdict::NotAllowed {
                user_id: user.user_id.clone(),
            };
        }
        let Some(expected) = &user.password else {
            return invalid("user has no password (AUTH disabled for it)");
        };
        if !constant_time_eq(expected.as_bytes(), password.as_bytes()) {
            return invalid("wrong password");
        }
        let allowance = match (self.allowance, user.allowed) {
            (AllowanceCheck::Off, _) => Allowance::NotChecked,
            (_, true) => Allowance::Allowed,
            (_, false) => Allowance::Denied,
        };
        AuthVerdict::Authenticated {
            user_id: user.user_id.clone(),
            allowance,
        }
    }

    #[cfg(test)]
    fn authenticate_now(&self, username: &str, password: &str) -> AuthVerdict {
        if let Some(refusal) = super::local_refusal(username, password) {
            return AuthVerdict::InvalidCredentials {
                reason: refusal.to_string(),
            };
        }
        match self.find_now(username) {
            UserLookup::Unknown { reason } => AuthVerdict::InvalidCredentials { reason },
            UserLookup::Found(u) => self.check_now(&u, password),
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

    fn query(&self, cert: &CertificateFacts) -> String {
        match cert.common_name() {
            Some(cn) => format!("the static user whose certificateCn is {cn:?}"),
            None => format!(
                "nothing: the subject has {} common names (exactly one is needed)",
                cert.common_names.len()
            ),
        }
    }
}

impl SmtpAuthenticator for StaticUsers {
    fn find_user<'a>(&'a self, username: &'a str) -> BoxFuture<'a, Result<UserLookup, AuthError>> {
        Box::pin(async move { Ok(self.find_now(username)) })
    }

    fn check_password<'a>(
        &'a self,
        user: &'a FoundUser,
        password: &'a str,
    ) -> BoxFuture<'a, Result<AuthVerdict, AuthError>> {
        Box::pin(async move { Ok(self.check_now(user, password)) })
    }

    fn query(&self, username: &str) -> String {
        format!("the static user whose userId is {username:?}")
    }

    fn allowance_query(&self, user_id: &str) -> Option<String> {
        (self.allowance != AllowanceCheck::Off)
            .then(|| format!("the static user {user_id:?}'s allowed flag"))
    }

    fn allowance<'a>(&'a self, user: &'a FoundUser) -> BoxFuture<'a, Result<Allowance, AuthError>> {
        let allowed = self
            .users
            .iter()
            .find(|u| u.user_id == user.user_id)
            .is_some_and(|u| u.allowed);
        let answer = match (self.allowance, allowed) {
            (AllowanceCheck::Off, _) => Allowance::NotChecked,
            (_, true) => Allowance::Allowed,
            (_, false) => Allowance::Denied,
        };
        Box::pin(async move { Ok(answer) })
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
            addresses: Vec::new(),
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
            ..Default::default()
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
            AllowanceCheck::AfterPassword,
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
        let unchecked = StaticUsers::new(
            &[user("frank", Some("f"), None, false)],
            AllowanceCheck::Off,
        );
        assert!(matches!(
            unchecked.authenticate_now("frank", "f"),
            AuthVerdict::Authenticated {
                allowance: Allowance::NotChecked,
                ..
            }
        ));
    }

    #[test]
    fn refused_users_get_the_same_answer_for_any_password() {
        // Allowance action Reject: the password of a refused user is not even compared.
        let s = StaticUsers::new(
            &[
                user("frank", Some("frankpw"), None, false),
                user("carol", Some("carolpw"), None, true),
            ],
            AllowanceCheck::BeforePassword,
        );
        for pw in ["frankpw", "wrong"] {
            assert_eq!(
                s.authenticate_now("frank", pw),
                AuthVerdict::NotAllowed {
                    user_id: "frank".into()
                },
                "{pw}"
            );
        }
        assert!(matches!(
            s.authenticate_now("frank", ""),
            AuthVerdict::InvalidCredentials { .. }
        ));
        assert!(matches!(
            s.authenticate_now("carol", "carolpw"),
            AuthVerdict::Authenticated {
                allowance: Allowance::Allowed,
                ..
            }
        ));
        assert!(matches!(
            s.authenticate_now("carol", "wrong"),
            AuthVerdict::InvalidCredentials { .. }
        ));
        assert!(matches!(
            s.authenticate_now("carol", "carol\0pw"),
            AuthVerdict::InvalidCredentials { reason } if reason.contains("NUL")
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
            AllowanceCheck::Off,
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
