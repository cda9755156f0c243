//! The LDAP backend: the session's two questions answered by an LDAP profile's queries,
//! run on that profile's [`Directory`](crate::ldap::Directory).
//!
//! - [`LdapCertificateMapper`]: the Certificate Authentication Query;
//! - [`LdapAuthenticator`]: the SMTP Authentication Query (search, BIND as the user,
//!   allowance filter);
//! - [`LdapAddressBook`]: the user's addresses (`mailAttributes`), for sender binding;
//! - [`values`]: what fills the filter templates' placeholders.
//!
//! A directory that is down or slow makes authentication fail with
//! [`AuthError::Unavailable`] (`454 4.7.0`): never an accept, never a `535` that would
//! make a user doubt a correct password.

pub(crate) mod addresses;
pub(crate) mod authenticator;
pub(crate) mod certificate;
pub(crate) mod values;

use std::sync::Arc;

pub use addresses::LdapAddressBook;
pub use authenticator::LdapAuthenticator;
pub use certificate::LdapCertificateMapper;

use super::{AddressBook, AllowanceCheck, AuthError, CertificateMapper, SmtpAuthenticator};
use crate::ldap::{DirectoryError, LdapDirectories, LdapSetupError};
use postern_config::GatewayConfig;

/// A certificate mapper with LDAP profile `ldap_profile`'s `certificateAuthQuery`, on
/// that profile's directory in `directories`.
pub fn certificate_mapper(
    directories: &LdapDirectories,
    config: &GatewayConfig,
    ldap_profile: &str,
) -> Result<Arc<dyn CertificateMapper>, LdapSetupError> {
    let directory = directories.directory(config, ldap_profile)?;
    Ok(Arc::new(LdapCertificateMapper::new(directory)?))
}

/// An SMTP authenticator with LDAP profile `ldap_profile`'s `smtpAuthQuery` (and its
/// `allowanceFilter`, run as `allowance` says), on that profile's directory in
/// `directories`.
pub fn smtp_authenticator(
    directories: &LdapDirectories,
    config: &GatewayConfig,
    ldap_profile: &str,
    allowance: AllowanceCheck,
) -> Result<Arc<dyn SmtpAuthenticator>, LdapSetupError> {
    let directory = directories.directory(config, ldap_profile)?;
    Ok(Arc::new(LdapAuthenticator::new(directory, allowance)?))
}

/// The address book of LDAP profile `ldap_profile` (its `mailAttributes`), on that
/// profile's directory in `directories`.
pub fn address_book(
    directories: &LdapDirectories,
    config: &GatewayConfig,
    ldap_profile: &str,
) -> Result<Arc<dyn AddressBook>, LdapSetupError> {
    let directory = directories.directory(config, ldap_profile)?;
    Ok(Arc::new(LdapAddressBook::new(directory)))
}

impl From<DirectoryError> for AuthError {
    /// Down or slow is `Unavailable`; an answer that cannot be used (referral, size
    /// limit, refused service account...) is `Directory`. Both are `454 4.7.0`.
    fn from(e: DirectoryError) -> Self {
        if e.is_unavailable() {
            AuthError::Unavailable(e.to_string())
        } else {
            AuthError::Directory(e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ldap::LdapMetrics;
    use crate::ldap::directories::test_config;

    fn config(queries: bool) -> GatewayConfig {
        let queries = if queries {
            "    certificateAuthQuery: {name: c, filter: \"(cn={cn})\"}\n    \
             smtpAuthQuery: {name: a, filter: \"(uid={u})\", allowanceFilter: \"(uid={u})\"}\n"
        } else {
            ""
        };
        test_config("ldap://127.0.0.1:1", queries)
    }

    #[test]
    fn both_backends_share_their_profile_s_directory() {
        let dirs = LdapDirectories::new(LdapMetrics::new());
        let with = config(true);
        let _mapper = certificate_mapper(&dirs, &with, "corp").unwrap();
        let _auth =
            smtp_authenticator(&dirs, &with, "corp", AllowanceCheck::BeforePassword).unwrap();
        let _unchecked = smtp_authenticator(&dirs, &with, "corp", AllowanceCheck::Off).unwrap();
        assert_eq!(dirs.all().len(), 1);
        let without = config(false);
        assert!(matches!(
            certificate_mapper(&dirs, &without, "corp"),
            Err(LdapSetupError::MissingQuery {
                query: "certificateAuthQuery",
                ..
            })
        ));
        assert!(matches!(
            smtp_authenticator(&dirs, &without, "corp", AllowanceCheck::Off),
            Err(LdapSetupError::MissingQuery {
                query: "smtpAuthQuery",
                ..
            })
        ));
        assert!(matches!(
            certificate_mapper(&dirs, &with, "missing"),
            Err(LdapSetupError::UnknownProfile(_))
        ));
    }

    #[test]
    fn directory_errors_are_unavailable_or_not() {
        let down = DirectoryError::Unreachable {
            attempts: vec!["ldap://127.0.0.1:1: refused".into()],
        };
        assert!(matches!(AuthError::from(down), AuthError::Unavailable(_)));
        let odd = DirectoryError::SizeLimit {
            server: "ldap://127.0.0.1:1".into(),
        };
        assert!(matches!(AuthError::from(odd), AuthError::Directory(_)));
    }
}
