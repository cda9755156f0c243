//! What a namespace runs now, for `postern plan --live`: the published configuration and
//! the gateways' reports.

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DynamicObject, ListParams};
use kube::{Api, Client};
use postern_config::GatewayConfig;
use postern_config::protocol::REPORT_LABEL;

use super::fleet::{self, GatewayState};
use super::publish;

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

/// Reads the live state of `namespace` (default: the kubeconfig's namespace).
pub(crate) async fn read(namespace: Option<&str>, secret_name: &str) -> Result<Live, LiveError> {
    let client = Client::try_default()
        .await
        .map_err(|e| LiveError::Connect(e.to_string()))?;
    let namespace = namespace
        .map(str::to_owned)
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let api_err = |what: &str, namespace: &str| {
        let what = what.to_owned();
        let namespace = namespace.to_owned();
        move |source| LiveError::Api {
            what,
            namespace,
            source,
        }
    };
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let current = publish::Current {
        head: secrets
            .get_opt(secret_name)
            .await
            .map_err(api_err(&format!("secret {secret_name}"), &namespace))?,
        parts: secrets
            .list(
                &ListParams::default().labels(&format!("{}={secret_name}", publish::PART_OF_LABEL)),
            )
            .await
            .map_err(api_err(
                &format!("the parts of secret {secret_name}"),
                &namespace,
            ))?
            .items,
    };
    let (published, problem) = match current.decode(secret_name) {
        None => (None, None),
        Some(Ok(v)) => (Some(v), None),
        Some(Err(e)) => (None, Some(format!("secret {namespace}/{secret_name}: {e}"))),
    };
    let reports: Api<DynamicObject> =
        Api::namespaced_with(client, &namespace, &postern_crds::report_api_resource());
    let reports = reports
        .list(&ListParams::default().labels(&format!("{REPORT_LABEL}=true")))
        .await
        .map_err(api_err("gateway reports", &namespace))?;
    let now = Timestamp::now();
    let gateways = reports
        .items
        .iter()
        .map(GatewayState::from_object)
        .filter(|g| g.alive(now) && g.report.ready)
        .map(|g| (g.name, g.report.applied_hash))
        .collect();
    Ok(Live {
        namespace,
        published,
        problem,
        gateways,
    })
}

/// [`read`] on a runtime of its own, for the synchronous CLI.
pub(crate) fn read_blocking(namespace: Option<&str>, secret_name: &str) -> Result<Live, LiveError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| LiveError::Connect(e.to_string()))?
        .block_on(read(namespace, secret_name))
}
