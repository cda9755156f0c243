//! The session's authentication interface.
//!
//! The SMTP session knows nothing of LDAP: it asks a [`CertificateMapper`] who a verified
//! client certificate belongs to, and an [`SmtpAuthenticator`] whether an AUTH user name and
//! password are good (and whether the user is *allowed* to use AUTH). [`ldap`] implements
//! both with an LDAP profile's queries (on the directory client of `crate::ldap`);
//! [`static_users`] implements them from a fixed list for the embedded demo.

pub(crate) mod addresses;
pub(crate) mod build;
pub(crate) mod certificate;
pub(crate) mod credentials;
pub(crate) mod dn;
pub(crate) mod facts_cache;
pub mod gate;
pub mod ldap;
pub(crate) mod static_users;
pub(crate) mod strong;
pub(crate) mod throttle;

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;

pub use addresses::AddressBook;
pub use build::{AuthBuildError, AuthRuntime, SmtpAuthRuntime, build_auth_profile};
pub use certificate::CertificateFacts;
pub use credentials::{LocalRefusal, local_refusal, password_refusal, user_refusal};
pub use facts_cache::CertificateFactsCache;
pub use ldap::{LdapAuthenticator, LdapCertificateMapper};
pub use static_users::StaticUsers;
pub use throttle::{AuthThrottles, Throttle, ThrottleScope, Throttled};

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

/// When the allowance query runs, relative to the password check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllowanceCheck {
    /// No allowance query.
    Off,
    /// Before the password, for allowance action `Reject`: a user the query refuses gets
    /// [`AuthVerdict::NotAllowed`] whatever the password, so the reply (`525`) says
    /// nothing about whether the password was right, and that user's password is never
    /// sent to the directory.
    BeforePassword,
    /// After a correct password, for allowance action `Monitor` (the refused user is
    /// authenticated anyway, so the password must have been checked):
    /// [`AuthVerdict::Authenticated`] with [`Allowance::Denied`].
    AfterPassword,
}

impl AllowanceCheck {
    /// The check an authentication profile's allowance action needs.
    pub fn for_action(action: Option<postern_config::AllowanceAction>) -> Self {
        match action {
            None => Self::Off,
            Some(postern_config::AllowanceAction::Reject) => Self::BeforePassword,
            Some(postern_config::AllowanceAction::Monitor) => Self::AfterPassword,
        }
    }
}

/// A user an AUTH name belongs to; the password is not checked yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundUser {
    /// The user id the session is authenticated as if the password is right: the
    /// directory's `userIdAttribute` value (the Static list's `userId`), never the name
    /// as typed (`BOB` finds bob's entry and is `bob`).
    pub user_id: String,
    /// The directory entry, when there is one (the DN the password is checked against).
    pub dn: Option<String>,
}

/// The answer to "who is this AUTH user name?".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserLookup {
    /// Exactly one user.
    Found(FoundUser),
    /// Nobody (or several entries, or an entry without a user id): `535 5.7.8`, like a
    /// wrong password.
    Unknown {
        /// Why, for the decision log (never sent to the client).
        reason: String,
    },
}

/// The result of checking AUTH credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthVerdict {
    /// The password is right.
    Authenticated {
        /// The user id the session is authenticated as (see [`FoundUser::user_id`]).
        user_id: String,
        /// The allowance check's answer.
        allowance: Allowance,
    },
    /// Unknown user, wrong password, empty password: `535 5.7.8`.
    InvalidCredentials {
        /// Why, for the decision log (never sent to the client).
        reason: String,
    },
    /// The allowance query refused the user before the password was checked
    /// ([`AllowanceCheck::BeforePassword`]): the profile's response (`525 5.7.13`).
    NotAllowed {
        /// The user the name belongs to.
        user_id: String,
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

    /// What [`map`](Self::map) asks for `cert`, as sent (an LDAP filter after
    /// substitution and escaping), or why nothing is asked: for `postern-gateway explain`.
    fn query(&self, cert: &CertificateFacts) -> String;
}

/// Checks SMTP AUTH credentials, in two steps so that the session can consult its
/// throttle with the user's real id between them (before any password is checked).
pub trait SmtpAuthenticator: Send + Sync + Debug {
    /// Find the user an AUTH name belongs to. No password is involved.
    fn find_user<'a>(&'a self, username: &'a str) -> BoxFuture<'a, Result<UserLookup, AuthError>>;

    /// Check the password of a user [`find_user`](Self::find_user) found, and the
    /// allowance. Credentials that [`local_refusal`] refuses must be refused here too,
    /// without asking anybody.
    fn check_password<'a>(
        &'a self,
        user: &'a FoundUser,
        password: &'a str,
    ) -> BoxFuture<'a, Result<AuthVerdict, AuthError>>;

    /// What [`find_user`](Self::find_user) asks for `username`, as sent (an LDAP filter
    /// after substitution and escaping): for `postern-gateway explain`.
    fn query(&self, username: &str) -> String;

    /// What the allowance check asks for user `user_id`, as sent; `None` without one.
    fn allowance_query(&self, user_id: &str) -> Option<String>;

    /// The allowance check alone, for a user [`find_user`](Self::find_user) found,
    /// without a password ([`Allowance::NotChecked`] without one): for
    /// `postern-gateway explain`.
    fn allowance<'a>(&'a self, user: &'a FoundUser) -> BoxFuture<'a, Result<Allowance, AuthError>>;

    /// Both steps: refuse what [`local_refusal`] refuses (empty password — an empty LDAP
    /// bind would be an anonymous bind —, empty user name, NUL) without asking anybody,
    /// then find the user and check the password.
    fn authenticate<'a>(
        &'a self,
        username: &'a str,
        password: &'a str,
    ) -> BoxFuture<'a, Result<AuthVerdict, AuthError>> {
        Box::pin(async move {
            if let Some(refusal) = local_refusal(username, password) {
                return Ok(AuthVerdict::InvalidCredentials {
                    reason: refusal.to_string(),
                });
            }
            match self.find_user(username).await? {
                UserLookup::Unknown { reason } => Ok(AuthVerdict::InvalidCredentials { reason }),
                UserLookup::Found(user) => self.check_password(&user, password).await,
            }
        })
    }
}
