//! The process-wide LDAP directories that the gateway's runtime builder uses.
//!
//! Every authentication profile that names the same LDAP profile shares one
//! [`Directory`] (pool, cache, server health). A configuration reload that leaves an LDAP
//! profile unchanged keeps its directory, warm; a changed profile gets a new one. The
//! registry holds weak references only: a directory lives as long as some running
//! configuration uses it, and its connections close when the last one lets go.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use super::authenticator::LdapAuthenticator;
use super::cert_mapper::LdapCertificateMapper;
use super::directory::Directory;
use super::error::LdapSetupError;
use super::metrics::LdapMetrics;
use crate::auth::{AllowanceCheck, CertificateMapper, SmtpAuthenticator};
use postern_config::GatewayConfig;

fn registry() -> &'static Mutex<HashMap<String, Weak<Directory>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<String, Weak<Directory>>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// The LDAP metric families of this process; register them once with
/// [`LdapMetrics::register`].
pub fn metrics() -> &'static LdapMetrics {
    static METRICS: OnceLock<LdapMetrics> = OnceLock::new();
    METRICS.get_or_init(LdapMetrics::new)
}

/// The directory of LDAP profile `name` in `config`, shared with every other user of
/// the same profile.
pub fn directory(config: &GatewayConfig, name: &str) -> Result<Arc<Directory>, LdapSetupError> {
    let profile = config
        .ldap_profiles
        .get(name)
        .ok_or_else(|| LdapSetupError::UnknownProfile(name.to_owned()))?;
    let mut map = registry().lock().expect("ldap registry");
    if let Some(existing) = map.get(name).and_then(Weak::upgrade)
        && existing.profile() == profile
    {
        return Ok(existing);
    }
    let directory = Arc::new(Directory::new(name, profile, metrics().clone())?);
    map.retain(|_, w| w.strong_count() > 0);
    map.insert(name.to_owned(), Arc::downgrade(&directory));
    Ok(directory)
}

/// A certificate mapper with LDAP profile `name`'s `certificateAuthQuery`.
pub fn certificate_mapper(
    config: &GatewayConfig,
    name: &str,
) -> Result<Arc<dyn CertificateMapper>, LdapSetupError> {
    Ok(Arc::new(LdapCertificateMapper::new(directory(
        config, name,
    )?)?))
}

/// An SMTP authenticator with LDAP profile `name`'s `smtpAuthQuery` (and its
/// `allowanceFilter`, run as `allowance` says).
pub fn smtp_authenticator(
    config: &GatewayConfig,
    name: &str,
    allowance: AllowanceCheck,
) -> Result<Arc<dyn SmtpAuthenticator>, LdapSetupError> {
    Ok(Arc::new(LdapAuthenticator::new(
        directory(config, name)?,
        allowance,
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> GatewayConfig {
        let yaml = format!(
            "apiVersion: postern.dev/gateway/v1\nldapProfiles:\n  shared-test:\n    servers: [\"{url}\"]\n    baseDn: dc=example,dc=org\n    \
             certificateAuthQuery: {{name: c, filter: \"(cn={{cn}})\"}}\n    smtpAuthQuery: {{name: a, filter: \"(uid={{u}})\", allowanceFilter: \"(uid={{u}})\"}}\n"
        );
        GatewayConfig::from_yaml(&yaml, "test").unwrap()
    }

    #[test]
    fn shared_while_in_use_rebuilt_when_changed() {
        let a = config("ldap://127.0.0.1:1");
        let d1 = directory(&a, "shared-test").unwrap();
        let d2 = directory(&a, "shared-test").unwrap();
        assert!(Arc::ptr_eq(&d1, &d2));
        certificate_mapper(&a, "shared-test").unwrap();
        smtp_authenticator(&a, "shared-test", AllowanceCheck::BeforePassword).unwrap();
        let b = config("ldap://127.0.0.1:2");
        let d3 = directory(&b, "shared-test").unwrap();
        assert!(!Arc::ptr_eq(&d1, &d3));
        drop((d1, d2, d3));
        assert!(matches!(
            directory(&b, "missing"),
            Err(LdapSetupError::UnknownProfile(_))
        ));
    }
}
