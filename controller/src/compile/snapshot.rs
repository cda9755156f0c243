//! The compiler's input: one namespace's resources and the Secrets/ConfigMaps they
//! reference, as plain data. Building it (from a cluster cache or from manifest files)
//! is the caller's job; the compiler makes no API calls.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::report::{ObjectKey, Reason};
use super::secret_use::SECRET_USE_LABEL;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use postern_crds::{CaBundle, CrlSource, LdapProfile, Listener, MailFlowPolicy, SmtpAuthProfile};

/// Everything `compile` reads. The objects are shared (`Arc`): the controller's store
/// lends them to each snapshot instead of copying every object at every compile.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// The namespace the objects live in (recorded in the rendered configuration).
    pub namespace: Option<String>,
    /// `LdapProfile` objects.
    pub ldap_profiles: Vec<Arc<LdapProfile>>,
    /// `SmtpAuthProfile` objects.
    pub smtp_auth_profiles: Vec<Arc<SmtpAuthProfile>>,
    /// `MailFlowPolicy` objects.
    pub mail_flow_policies: Vec<Arc<MailFlowPolicy>>,
    /// `Listener` objects.
    pub listeners: Vec<Arc<Listener>>,
    /// `CrlSource` objects.
    pub crl_sources: Vec<Arc<CrlSource>>,
    /// Objects that exist but could not be read (unknown field, bad enum value...). They
    /// are reported, keep their previous rendering, and refs to them are "not accepted"
    /// rather than "not found".
    pub unreadable: Vec<Unreadable>,
    /// Secrets by name (only the referenced ones are needed).
    pub secrets: BTreeMap<String, SecretData>,
    /// ConfigMaps by name (only the referenced ones are needed).
    pub config_maps: BTreeMap<String, ConfigMapData>,
}

/// An object that exists but could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unreadable {
    /// Its kind and name.
    pub key: ObjectKey,
    /// Its `metadata.generation`, when known.
    pub generation: Option<i64>,
    /// The field that could not be read, e.g. `spec.tls`.
    pub field: String,
    /// `UnknownField` or `InvalidValue`.
    pub reason: Reason,
    /// What is wrong.
    pub message: String,
}

/// The parts of a Secret the compiler reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecretData {
    /// `type`, e.g. `kubernetes.io/tls` (absent means `Opaque`).
    pub type_: Option<String>,
    /// Decoded `data`, with `stringData` merged over it as the API server does.
    pub data: BTreeMap<String, Vec<u8>>,
    /// The value of its [`SECRET_USE_LABEL`]: what its owner lets Postern use it for.
    pub use_label: Option<String>,
}

impl From<&Secret> for SecretData {
    fn from(secret: &Secret) -> Self {
        let mut data: BTreeMap<String, Vec<u8>> = secret
            .data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect();
        for (k, v) in secret.string_data.iter().flatten() {
            data.insert(k.clone(), v.clone().into_bytes());
        }
        Self {
            type_: secret.type_.clone(),
            data,
            use_label: secret
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SECRET_USE_LABEL))
                .cloned(),
        }
    }
}

/// The parts of a ConfigMap the compiler reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigMapData {
    /// `data`, and `binaryData` decoded, merged.
    pub data: BTreeMap<String, Vec<u8>>,
}

impl From<&ConfigMap> for ConfigMapData {
    fn from(cm: &ConfigMap) -> Self {
        let mut data: BTreeMap<String, Vec<u8>> = cm
            .binary_data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect();
        for (k, v) in cm.data.iter().flatten() {
            data.insert(k.clone(), v.clone().into_bytes());
        }
        Self { data }
    }
}

impl Snapshot {
    /// Names of the Secrets the resources reference (what a controller needs to watch).
    pub fn referenced_secrets(&self) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        let ca = |names: &mut BTreeSet<String>, ca: &Option<CaBundle>| {
            if let Some(r) = ca.as_ref().and_then(|c| c.secret_ref.as_ref()) {
                names.insert(r.name.clone());
            }
        };
        for p in &self.ldap_profiles {
            ca(&mut names, &p.spec.ca_bundle);
            if let Some(b) = &p.spec.bind {
                names.insert(b.password_secret_ref.name.clone());
            }
        }
        for l in &self.listeners {
            if let Some(tls) = &l.spec.tls {
                names.insert(tls.certificate_secret_ref.name.clone());
                if let Some(r) = &tls.client_ca_secret_ref {
                    names.insert(r.name.clone());
                }
            }
            ca(&mut names, &l.spec.next_hop.ca_bundle);
        }
        for c in &self.crl_sources {
            if let Some(b) = c
                .spec
                .discovery
                .as_ref()
                .and_then(|d| d.from_ca_bundle.as_ref())
            {
                names.insert(b.secret_ref.name.clone());
            }
        }
        names
    }

    /// Names of the ConfigMaps the resources reference.
    pub fn referenced_config_maps(&self) -> BTreeSet<String> {
        let bundles = self
            .ldap_profiles
            .iter()
            .map(|p| &p.spec.ca_bundle)
            .chain(self.listeners.iter().map(|l| &l.spec.next_hop.ca_bundle));
        bundles
            .filter_map(|c| c.as_ref().and_then(|c| c.config_map_ref.as_ref()))
            .map(|r| r.name.clone())
            .collect()
    }
}
