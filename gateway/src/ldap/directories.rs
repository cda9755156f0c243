//! All LDAP profiles of a configuration: one [`Directory`] (pool, cache, health) per
//! profile, shared by every authentication profile that uses it.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::authenticator::LdapAuthenticator;
use super::cert_mapper::LdapCertificateMapper;
use super::directory::Directory;
use super::error::LdapSetupError;
use super::metrics::LdapMetrics;
use crate::auth::{AllowanceCheck, CertificateMapper, SmtpAuthenticator};
use postern_config::GatewayConfig;

/// The directories of one running configuration.
#[derive(Debug)]
pub struct LdapDirectories {
    metrics: LdapMetrics,
    directories: BTreeMap<String, Arc<Directory>>,
    previous: BTreeMap<String, Arc<Directory>>,
}

impl LdapDirectories {
    /// No directories yet; they are built on first use by the methods below.
    pub fn new(metrics: LdapMetrics) -> Self {
        Self {
            metrics,
            directories: BTreeMap::new(),
            previous: BTreeMap::new(),
        }
    }

    /// For a configuration reload: directories of `self` whose profile is unchanged are
    /// reused by the new set (warm pool and cache); changed ones are rebuilt.
    pub fn successor(&self) -> Self {
        Self {
            metrics: self.metrics.clone(),
            directories: BTreeMap::new(),
            previous: self.directories.clone(),
        }
    }

    /// The directory of LDAP profile `name` in `config`.
    pub fn directory(
        &mut self,
        config: &GatewayConfig,
        name: &str,
    ) -> Result<Arc<Directory>, LdapSetupError> {
        if let Some(d) = self.directories.get(name) {
            return Ok(d.clone());
        }
        let profile = config
            .ldap_profiles
            .get(name)
            .ok_or_else(|| LdapSetupError::UnknownProfile(name.to_owned()))?;
        let directory = match self.previous.get(name) {
            Some(old) if old.profile() == profile => old.clone(),
            _ => Arc::new(Directory::new(name, profile, self.metrics.clone())?),
        };
        self.directories.insert(name.to_owned(), directory.clone());
        Ok(directory)
    }

    /// A certificate mapper using LDAP profile `name`'s `certificateAuthQuery`.
    pub fn certificate_mapper(
        &mut self,
        config: &GatewayConfig,
        name: &str,
    ) -> Result<Arc<dyn CertificateMapper>, LdapSetupError> {
        let directory = self.directory(config, name)?;
        Ok(Arc::new(LdapCertificateMapper::new(directory)?))
    }

    /// An SMTP authenticator using LDAP profile `name`'s `smtpAuthQuery`, with its
    /// `allowanceFilter` run as `allowance` says.
    pub fn smtp_authenticator(
        &mut self,
        config: &GatewayConfig,
        name: &str,
        allowance: AllowanceCheck,
    ) -> Result<Arc<dyn SmtpAuthenticator>, LdapSetupError> {
        let directory = self.directory(config, name)?;
        Ok(Arc::new(LdapAuthenticator::new(directory, allowance)?))
    }

    /// The directories built so far, by profile name.
    pub fn all(&self) -> &BTreeMap<String, Arc<Directory>> {
        &self.directories
    }
}
