//! What a namespace runs now, for `postern plan --live`: the published configuration,
//! the gateways' reports, the Postern objects as the cluster has them, and the Secrets
//! and ConfigMaps they reference (read by name, only when the manifests lack them).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DynamicObject, ListParams};
use kube::{Api, Client};
use postern_config::GatewayConfig;
use postern_config::protocol::REPORT_LABEL;

use super::fleet::{self, GatewayState};
use super::{objects, publish};
use crate::compile::{ConfigMapData, Kind, SecretData, Snapshot};

/// The live state of a namespace.
#[derive(Debug)]
pub(crate) struct Live {
    /// The namespace read.
    pub namespace: String,
    /// The published configuration and its hash, if any.
    pub published: Option<(GatewayConfig, String)>,
    /// Why the published Secret could not be used, if it exists but is damaged.
    pub problem: Option<String>,
    /// Live, ready gateways: name and the hash each runs.
    pub gateways: Vec<(String, Option<String>)>,
    /// The namespace's Postern objects (no Secrets or ConfigMaps), read the way the
    /// controller reads them: an object the model cannot read is an `unreadable` entry.
    pub objects: Snapshot,
}

impl Live {
    /// A one-line summary: what is published and how many gateways run it.
    pub(crate) fn summary(&self) -> String {
        match &self.published {
            None => format!(
                "namespace {}: nothing is published yet{}",
                self.namespace,
                self.problem
                    .as_ref()
                    .map(|p| format!(" ({p})"))
                    .unwrap_or_default()
            ),
            Some((_, hash)) => {
                let running = self
                    .gateways
                    .iter()
                    .filter(|(_, h)| h.as_deref() == Some(hash.as_str()))
                    .count();
                format!(
                    "namespace {}: live configuration {}, {running}/{} ready gateways run it",
                    self.namespace,
                    fleet::short_hash(hash),
                    self.gateways.len()
                )
            }
        }
    }
}

/// Errors reading the live state.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LiveError {
    /// No usable kubeconfig or in-cluster credentials.
    #[error("cannot connect to the cluster: {0}")]
    Connect(String),
    /// An API call failed.
    #[error("reading {what} in namespace {namespace}: {source}")]
    Api {
        /// What was being read.
        what: String,
        /// The namespace.
        namespace: String,
        /// The client error.
        source: kube::Error,
    },
}

/// A connection to the cluster for the synchronous CLI: its own runtime, a client, and
/// the namespace read.
pub(crate) struct Session {
    runtime: tokio::runtime::Runtime,
    client: Client,
    namespace: String,
}

fn api_err(what: impl Into<String>, namespace: &str) -> impl FnOnce(kube::Error) -> LiveError {
    let what = what.into();
    let namespace = namespace.to_owned();
    move |source| LiveError::Api {
        what,
        namespace,
        source,
    }
}

impl Session {
    /// Connects with $KUBECONFIG or in-cluster credentials; `namespace` defaults to the
    /// kubeconfig's.
    pub(crate) fn connect(namespace: Option<&str>) -> Result<Self, LiveError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| LiveError::Connect(e.to_string()))?;
        let client = runtime
            .block_on(Client::try_default())
            .map_err(|e| LiveError::Connect(e.to_string()))?;
        let namespace = namespace
            .map(str::to_owned)
            .unwrap_or_else(|| client.default_namespace().to_owned());
        Ok(Self {
            runtime,
            client,
            namespace,
        })
    }

    /// The namespace read.
    pub(crate) fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The live state: published configuration (`secret_name`), gateways and objects.
    pub(crate) fn state(&self, secret_name: &str) -> Result<Live, LiveError> {
        self.runtime
            .block_on(read(&self.client, &self.namespace, secret_name))
    }

    /// The named Secrets as the compiler reads them; `None` for one that does not exist.
    pub(crate) fn secrets(
        &self,
        names: &BTreeSet<String>,
    ) -> Result<BTreeMap<String, Option<SecretData>>, LiveError> {
        self.get_each("secret", names, |s: &Secret| SecretData::from(s))
    }

    /// The named ConfigMaps as the compiler reads them; `None` for one that does not exist.
    pub(crate) fn config_maps(
        &self,
        names: &BTreeSet<String>,
    ) -> Result<BTreeMap<String, Option<ConfigMapData>>, LiveError> {
        self.get_each("configmap", names, |c: &ConfigMap| ConfigMapData::from(c))
    }

    /// Gets each named object of kind `K` (one request each: only these are read).
    fn get_each<K, T>(
        &self,
        what: &str,
        names: &BTreeSet<String>,
        convert: impl Fn(&K) -> T,
    ) -> Result<BTreeMap<String, Option<T>>, LiveError>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), &self.namespace);
        self.runtime.block_on(async {
            let mut out = BTreeMap::new();
            for name in names {
                let obj = api
                    .get_opt(name)
                    .await
                    .map_err(api_err(format!("{what} {name}"), &self.namespace))?;
                out.insert(name.clone(), obj.as_ref().map(&convert));
            }
            Ok(out)
        })
    }
}

/// Reads the live state of `namespace`.
async fn read(client: &Client, namespace: &str, secret_name: &str) -> Result<Live, LiveError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let current = publish::Current {
        head: secrets
            .get_opt(secret_name)
            .await
            .map_err(api_err(format!("secret {secret_name}"), namespace))?,
        parts: secrets
            .list(
                &ListParams::default().labels(&format!("{}={secret_name}", publish::PART_OF_LABEL)),
            )
            .await
            .map_err(api_err(
                format!("the parts of secret {secret_name}"),
                namespace,
            ))?
            .items,
    };
    let (published, problem) = match current.decode(secret_name) {
        None => (None, None),
        Some(Ok(v)) => (Some(v), None),
        Some(Err(e)) => (None, Some(format!("secret {namespace}/{secret_name}: {e}"))),
    };
    let reports: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        namespace,
        &postern_crds::report_api_resource(),
    );
    let reports = reports
        .list(&ListParams::default().labels(&format!("{REPORT_LABEL}=true")))
        .await
        .map_err(api_err("gateway reports", namespace))?;
    let now = Timestamp::now();
    let gateways = reports
        .items
        .iter()
        .map(GatewayState::from_object)
        .filter(|g| g.alive(now) && g.report.ready)
        .map(|g| (g.name, g.report.applied_hash))
        .collect();
    let mut snapshot = Snapshot {
        namespace: Some(namespace.to_owned()),
        ..Snapshot::default()
    };
    for kind in Kind::ALL {
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), namespace, &objects::api_resource(kind));
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(api_err(format!("{} objects", kind.as_str()), namespace))?;
        for obj in list.items {
            objects::StoredObject::read(kind, obj).add_to_snapshot(&mut snapshot);
        }
    }
    Ok(Live {
        namespace: namespace.to_owned(),
        published,
        problem,
        gateways,
        objects: snapshot,
    })
}
