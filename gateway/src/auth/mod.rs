//! The session's authentication interface.
//!
//! The SMTP session knows nothing of LDAP: it asks a [`CertificateMapper`] who a verified
//! client certificate belongs to, and an [`SmtpAuthenticator`] whether an AUTH user name and
//! password are good (and whether the user is *allowed* to use AUTH). The LDAP directory
//! implements both; [`static_users`] implements them from a fixed list for the embedded demo.

pub mod build;
pub mod certificate;
pub mod dn;
pub mod static_users;

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;

pub use build::{AuthBuildError, AuthRuntime, SmtpAuthRuntime, build_auth_profile};
pub use certificate::CertificateFacts;
pub use static_users::StaticUsers;

/// A boxed, sendable future (the traits here are used as trait objects).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Who a verified client certificate belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertificateMapping {
    /// Exactly one user: the session is authenticated as `user_id`.
    Mapped {
        /// The value of the query's `userIdAttribute`.
        user_id: String,
        /// The directory entry, when there is one.
        dn: Option<String>,
    },
    /// No user: the session is not authenticated.
    NotFound,
    /// Several entries matched: refused, because a certificate must identify one person.
    Ambiguous {
        /// How many entries matched.
        count: usize,
    },
}

/// Whether an authenticated user is allowed to use SMTP AUTH (the allowance query).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Allowance {
    /// No allowance check is configured.
    NotChecked,
    /// The allowance filter matched the user.
    Allowed,
    /// The allowance filter did not match; the profile's action decides what happens.
    Denied,
}

/// The result of checking AUTH credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthVerdict {
    /// The password is right.
    Authenticated {
        /// The user id the session is authenticated as.
        user_id: String,
        /// The allowance check's answer.
        allowance: Allowance,
    },
    /// Unknown user, wrong password, empty password: `535 5.7.8`.
    InvalidCredentials {
        /// Why, for the decision log (never sent to the client).
        reason: String,
    },
}

/// A failure that is nobody's fault but the infrastructure's: `454 4.7.0`, try later.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The directory could not be reached or did not answer in time.
    #[error("directory unavailable: {0}")]
    Unavailable(String),
    /// The directory answered with an error that is not about the credentials
    /// (size limit, referral, protocol error).
    #[error("directory error: {0}")]
    Directory(String),
}

/// Maps a verified client certificate to a user.
pub trait CertificateMapper: Send + Sync + Debug {
    /// Look the certificate up. Only called for certificates that passed verification.
    fn map<'a>(
        &'a self,
        cert: &'a CertificateFacts,
    ) -> BoxFuture<'a, Result<CertificateMapping, AuthError>>;
}

/// Checks SMTP AUTH credentials.
pub trait SmtpAuthenticator: Send + Sync + Debug {
    /// Check `username`/`password`. An empty password must be refused without asking
    /// anybody (an empty LDAP bind would be an anonymous bind).
    fn authenticate<'a>(
        &'a self,
        username: &'a str,
        password: &'a str,
    ) -> BoxFuture<'a, Result<AuthVerdict, AuthError>>;
}
