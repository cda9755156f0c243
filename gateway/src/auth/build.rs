//! Building a listener's authentication runtime from its profile.

use std::sync::Arc;

use super::ldap;
use super::static_users::StaticUsers;
use super::throttle::{AuthThrottles, Throttle};
use super::{AddressBook, AllowanceCheck, CertificateMapper, SmtpAuthenticator};
use crate::ldap::{LdapDirectories, LdapSetupError};
use postern_config::{AuthBackend, GatewayConfig};

/// The SMTP AUTH side of a profile, ready to use.
#[derive(Debug, Clone)]
pub struct SmtpAuthRuntime {
    /// The profile name (the fallback profile's when reached through it), for logs.
    pub profile: String,
    /// Checks credentials.
    pub authenticator: Arc<dyn SmtpAuthenticator>,
    /// The allowance check's action and response, when enabled.
    pub allowance: Option<postern_config::Allowance>,
    /// The LDAP query's name (`smtpAuthQuery.name`), for the decision log; `static` for
    /// the Static backend.
    pub query: String,
    /// Failed-AUTH throttling, shared with every other session of this profile.
    pub throttle: Throttle,
    /// The addresses of the users it authenticates (`senderBinding`).
    pub addresses: Arc<dyn AddressBook>,
}

/// A profile's runtime: what the session uses to authenticate.
#[derive(Debug, Clone)]
pub struct AuthRuntime {
    /// The profile name (logs, metrics).
    pub profile: String,
    /// Maps verified client certificates to users (Certificate profiles).
    pub certificate: Option<Arc<dyn CertificateMapper>>,
    /// The certificate query's name (`certificateAuthQuery.name`), for the decision log.
    pub certificate_query: String,
    /// SMTP AUTH (Ldap profiles, or Certificate profiles with fallback).
    pub smtp_auth: Option<SmtpAuthRuntime>,
    /// Which certificates may be mapped at all (`requiredPolicies`, `requiredEkus`).
    pub certificate_gate: super::gate::CertificateGate,
    /// The addresses of the users certificates map to (`senderBinding`).
    pub certificate_addresses: Option<Arc<dyn AddressBook>>,
}

/// Why a profile could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AuthBuildError {
    /// The LDAP backend of a profile could not be set up.
    #[error("authProfiles.{profile}: {source}")]
    Ldap {
        /// The auth profile.
        profile: String,
        /// What is wrong with the LDAP profile.
        source: LdapSetupError,
    },
    /// A referenced LDAP profile does not exist (validation should have caught it).
    #[error("authProfiles.{profile}: LdapProfile {ldap_profile:?} not found")]
    LdapProfileNotFound {
        /// The auth profile.
        profile: String,
        /// The missing LDAP profile.
        ldap_profile: String,
    },
}

/// Build the runtime of auth profile `name`. `throttles` holds the process's failed-AUTH
/// counts and `directories` its LDAP directories (both kept across configurations).
pub fn build_auth_profile(
    config: &GatewayConfig,
    name: &str,
    profile: &postern_config::AuthProfile,
    throttles: &AuthThrottles,
    directories: &LdapDirectories,
) -> Result<AuthRuntime, AuthBuildError> {
    let certificate = match &profile.certificate {
        None => None,
        Some(c) => Some(match &c.backend {
            AuthBackend::Static { users } => {
                Arc::new(StaticUsers::new(users, AllowanceCheck::Off)) as Arc<dyn CertificateMapper>
            }
            AuthBackend::Ldap { ldap_profile } => {
                ldap_certificate_mapper(directories, config, name, ldap_profile)?
            }
        }),
    };
    let certificate_addresses = match &profile.certificate {
        None => None,
        Some(c) => Some(address_book(directories, config, name, &c.backend)?),
    };
    let smtp_auth = match &profile.smtp_auth {
        None => None,
        Some(a) => {
            let allowance = AllowanceCheck::for_action(a.allowance.as_ref().map(|a| a.action));
            let authenticator = match &a.backend {
                AuthBackend::Static { users } => {
                    Arc::new(StaticUsers::new(users, allowance)) as Arc<dyn SmtpAuthenticator>
                }
                AuthBackend::Ldap { ldap_profile } => {
                    ldap_authenticator(directories, config, &a.profile, ldap_profile, allowance)?
                }
            };
            Some(SmtpAuthRuntime {
                profile: a.profile.clone(),
                authenticator,
                allowance: a.allowance.clone(),
                query: query_name(config, &a.backend, false),
                // Keyed by the profile that checks AUTH: a fallback profile used by several
                // certificate profiles counts every guess against it once.
                throttle: throttles.throttle(&a.profile, &a.throttle),
                addresses: address_book(directories, config, &a.profile, &a.backend)?,
            })
        }
    };
    Ok(AuthRuntime {
        profile: name.to_owned(),
        certificate,
        certificate_query: profile
            .certificate
            .as_ref()
            .map(|c| query_name(config, &c.backend, true))
            .unwrap_or_default(),
        smtp_auth,
        certificate_gate: profile
            .certificate
            .as_ref()
            .map(super::gate::CertificateGate::new)
            .unwrap_or_default(),
        certificate_addresses,
    })
}

/// Where the users of `backend` have their addresses: a static user's `addresses`, or
/// the LDAP profile's `mailAttributes`.
fn address_book(
    directories: &LdapDirectories,
    config: &GatewayConfig,
    profile: &str,
    backend: &AuthBackend,
) -> Result<Arc<dyn AddressBook>, AuthBuildError> {
    match backend {
        AuthBackend::Static { users } => Ok(Arc::new(StaticUsers::new(users, AllowanceCheck::Off))),
        AuthBackend::Ldap { ldap_profile } => {
            ldap_profile_exists(config, profile, ldap_profile)?;
            ldap::address_book(directories, config, ldap_profile).map_err(|source| {
                AuthBuildError::Ldap {
                    profile: profile.to_owned(),
                    source,
                }
            })
        }
    }
}

/// The name of the LDAP query a backend uses (`static` for the Static backend).
fn query_name(config: &GatewayConfig, backend: &AuthBackend, certificate: bool) -> String {
    match backend {
        AuthBackend::Static { .. } => "static".into(),
        AuthBackend::Ldap { ldap_profile } => config
            .ldap_profiles
            .get(ldap_profile)
            .and_then(|p| {
                if certificate {
                    p.certificate_auth_query.as_ref().map(|q| q.name.clone())
                } else {
                    p.smtp_auth_query.as_ref().map(|q| q.name.clone())
                }
            })
            .unwrap_or_default(),
    }
}

// The LDAP backend (auth::ldap on crate::ldap): one directory client per LdapProfile,
// shared by every profile that uses it and kept across reloads while the LdapProfile is
// unchanged.

fn ldap_certificate_mapper(
    directories: &LdapDirectories,
    config: &GatewayConfig,
    profile: &str,
    ldap_profile: &str,
) -> Result<Arc<dyn CertificateMapper>, AuthBuildError> {
    ldap_profile_exists(config, profile, ldap_profile)?;
    ldap::certificate_mapper(directories, config, ldap_profile).map_err(|source| {
        AuthBuildError::Ldap {
            profile: profile.to_owned(),
            source,
        }
    })
}

fn ldap_authenticator(
    directories: &LdapDirectories,
    config: &GatewayConfig,
    profile: &str,
    ldap_profile: &str,
    allowance: AllowanceCheck,
) -> Result<Arc<dyn SmtpAuthenticator>, AuthBuildError> {
    ldap_profile_exists(config, profile, ldap_profile)?;
    ldap::smtp_authenticator(directories, config, ldap_profile, allowance).map_err(|source| {
        AuthBuildError::Ldap {
            profile: profile.to_owned(),
            source,
        }
    })
}

fn ldap_profile_exists(
    config: &GatewayConfig,
    profile: &str,
    ldap_profile: &str,
) -> Result<(), AuthBuildError> {
    if config.ldap_profiles.contains_key(ldap_profile) {
        Ok(())
    } else {
        Err(AuthBuildError::LdapProfileNotFound {
            profile: profile.to_owned(),
            ldap_profile: ldap_profile.to_owned(),
        })
    }
}
