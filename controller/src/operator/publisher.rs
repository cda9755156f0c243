//! The publisher: carries out [`publish`]'s plan for a namespace's rendered Secret
//! (leader only), and removes the Secret once the namespace has no objects left; with
//! the log lines, Events and metrics of each.

use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use kube::api::DeleteParams;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use postern_config::protocol::RENDERED_LABEL;

use super::cluster::Cluster;
use super::error::{ReconcileError, api_err};
use super::fleet;
use super::publish::{self, Action, Desired};

/// Writes the rendered Secret of each namespace.
#[derive(Clone, Debug)]
pub(crate) struct Publisher {
    cluster: Cluster,
    secret_name: String,
}

impl Publisher {
    /// Publishes into the Secret `secret_name` of each namespace.
    pub(crate) fn new(cluster: Cluster, secret_name: String) -> Self {
        Self {
            cluster,
            secret_name,
        }
    }

    fn api(&self, namespace: &str) -> Api<Secret> {
        Api::namespaced(self.cluster.client.clone(), namespace)
    }

    /// The rendered Secret of `namespace`, read fresh: the watch store may lag our own
    /// last write.
    pub(crate) async fn current(&self, namespace: &str) -> Result<Option<Secret>, ReconcileError> {
        self.api(namespace)
            .get_opt(&self.secret_name)
            .await
            .map_err(api_err(format!(
                "reading secret {namespace}/{}",
                self.secret_name
            )))
    }

    /// Publishes (or repairs) the rendered Secret, given the hash this controller last
    /// published there. Returns whether a new configuration went out.
    pub(crate) async fn publish(
        &self,
        namespace: &str,
        current: Option<&Secret>,
        desired: &Desired,
        last_published: Option<&str>,
    ) -> Result<bool, ReconcileError> {
        let action = publish::plan(current, desired, last_published);
        if action == Action::UpToDate {
            return Ok(false);
        }
        self.cluster.ensure_leader()?;
        let written = publish::write(
            &self.api(namespace),
            namespace,
            &self.secret_name,
            desired,
            current,
        )
        .await
        .map_err(api_err(format!(
            "writing secret {namespace}/{}",
            self.secret_name
        )))?;
        Ok(self
            .announce(namespace, action, desired, &written.object_ref(&()))
            .await)
    }

    /// Logs, counts and tells in an Event what a write did. Returns whether a new
    /// configuration went out.
    async fn announce(
        &self,
        namespace: &str,
        action: Action,
        desired: &Desired,
        reference: &ObjectReference,
    ) -> bool {
        let short = fleet::short_hash(&desired.hash).to_owned();
        let metrics = &self.cluster.metrics;
        match action {
            Action::UpToDate => false,
            Action::RefreshMetadata => {
                tracing::info!(namespace, hash = %short, "refreshed the rendered Secret's labels and owners");
                false
            }
            Action::Create | Action::Publish { .. } => {
                let previous = match &action {
                    Action::Publish { previous: Some(p) } => {
                        format!(" (was {})", fleet::short_hash(p))
                    }
                    _ => String::new(),
                };
                metrics.published.inc();
                tracing::info!(namespace, hash = %desired.hash, previous = %previous,
                    listeners = desired.config.listeners.len(), "published configuration");
                self.cluster
                    .emit(
                        reference,
                        EventType::Normal,
                        "ConfigPublished",
                        format!("published gateway configuration {short}{previous}"),
                    )
                    .await;
                true
            }
            Action::RepairDrift { what } => {
                metrics.drift_repairs.inc();
                tracing::warn!(namespace, hash = %desired.hash, drift = %what,
                    "restored the rendered configuration");
                self.cluster
                    .emit(
                        reference,
                        EventType::Warning,
                        "DriftRepaired",
                        format!("{what}; restored configuration {short}"),
                    )
                    .await;
                false
            }
        }
    }

    /// Deletes the rendered Secret of a namespace left without postern objects (only one
    /// labelled as rendered by the controller).
    pub(crate) async fn withdraw(
        &self,
        namespace: &str,
        current: Option<Secret>,
    ) -> Result<(), ReconcileError> {
        let Some(s) =
            current.filter(|s| s.labels().get(RENDERED_LABEL).is_some_and(|v| v == "true"))
        else {
            return Ok(());
        };
        self.cluster.ensure_leader()?;
        self.api(namespace)
            .delete(&s.name_any(), &DeleteParams::default())
            .await
            .map_err(api_err("deleting the rendered secret"))?;
        tracing::info!(namespace, secret = %self.secret_name,
            "no postern objects left; removed the rendered configuration");
        Ok(())
    }
}
