//! The LDAP directories of a gateway process: one [`Directory`] (pool, cache, server
//! health) per LDAP profile, shared by every authentication profile that uses it.
//!
//! Built once at start-up and handed to every configuration the process builds (it
//! travels in [`runtime::Services`](crate::runtime::Services), like the AUTH throttles),
//! so a reload that leaves an LDAP profile unchanged keeps its directory warm — pooled
//! connections, cached results, which server is down — while a changed profile gets a new
//! one. Only weak references are kept: a directory lives as long as some running
//! configuration (or a session still holding one) uses it, and its connections close when
//! the last one lets go.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use super::directory::Directory;
use super::error::LdapSetupError;
use super::metrics::LdapMetrics;
use postern_config::GatewayConfig;

/// The directories of a gateway process, by LDAP profile name. Clones share them.
#[derive(Clone, Debug)]
pub struct LdapDirectories {
    metrics: LdapMetrics,
    live: Arc<Mutex<HashMap<String, Weak<Directory>>>>,
}

impl LdapDirectories {
    /// No directories yet; each is built on first use by [`directory`](Self::directory).
    /// Every directory counts into `metrics` (register them once).
    pub fn new(metrics: LdapMetrics) -> Self {
        Self {
            metrics,
            live: Arc::default(),
        }
    }

    /// The directory of LDAP profile `name` in `config`: the one already in use when the
    /// profile is the same as its, else a new one (which from now on is the one in use).
    pub fn directory(
        &self,
        config: &GatewayConfig,
        name: &str,
    ) -> Result<Arc<Directory>, LdapSetupError> {
        let profile = config
            .ldap_profiles
            .get(name)
            .ok_or_else(|| LdapSetupError::UnknownProfile(name.to_owned()))?;
        // Nothing in the map can be left half-updated by a panic: carry on.
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(existing) = live.get(name).and_then(Weak::upgrade)
            && existing.profile() == profile
        {
            return Ok(existing);
        }
        let directory = Arc::new(Directory::new(name, profile, self.metrics.clone())?);
        live.retain(|_, w| w.strong_count() > 0);
        live.insert(name.to_owned(), Arc::downgrade(&directory));
        Ok(directory)
    }

    /// The directories in use, by profile name.
    pub fn all(&self) -> BTreeMap<String, Arc<Directory>> {
        let live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        live.iter()
            .filter_map(|(name, w)| Some((name.clone(), w.upgrade()?)))
            .collect()
    }
}

/// A configuration with one LDAP profile, `corp`, on `url`; `more` is added to the
/// profile (YAML lines indented by four spaces).
#[cfg(test)]
pub(crate) fn test_config(url: &str, more: &str) -> GatewayConfig {
    let yaml = format!(
        "apiVersion: postern.dev/gateway/v1\nldapProfiles:\n  corp:\n    servers: [\"{url}\"]\n    baseDn: dc=example,dc=org\n{more}"
    );
    GatewayConfig::from_yaml(&yaml, "test").unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> GatewayConfig {
        test_config(url, "")
    }

    #[test]
    fn shared_while_in_use_rebuilt_when_changed_or_unused() {
        let dirs = LdapDirectories::new(LdapMetrics::new());
        let a = config("ldap://127.0.0.1:1");
        let d1 = dirs.directory(&a, "corp").unwrap();
        // Another user of the profile, and a clone of the set (a reload), get the same.
        assert!(Arc::ptr_eq(&d1, &dirs.directory(&a, "corp").unwrap()));
        assert!(Arc::ptr_eq(
            &d1,
            &dirs.clone().directory(&a, "corp").unwrap()
        ));
        assert_eq!(dirs.all().len(), 1);
        // A changed profile: a new directory, which later users then share.
        let b = config("ldap://127.0.0.1:2");
        let d2 = dirs.directory(&b, "corp").unwrap();
        assert!(!Arc::ptr_eq(&d1, &d2));
        assert!(Arc::ptr_eq(&d2, &dirs.directory(&b, "corp").unwrap()));
        // Nobody uses it any more: gone, and the next user gets a new one.
        let weak = Arc::downgrade(&d2);
        drop((d1, d2));
        assert!(weak.upgrade().is_none());
        assert!(dirs.all().is_empty());
        assert!(matches!(
            dirs.directory(&b, "missing"),
            Err(LdapSetupError::UnknownProfile(_))
        ));
    }
}
