//! The publisher: carries out [`publish`]'s plan for a namespace's rendered Secrets
//! (leader only), and removes them once the namespace has no objects left; with the log
//! lines, Events and metrics of each.

use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use postern_config::protocol::RENDERED_LABEL;

use super::cluster::Cluster;
use super::error::{ReconcileError, api_err};
use super::fleet;
use super::publish::{self, Action, Current, Desired, PART_OF_LABEL};

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

    /// The name of the head Secret.
    pub(crate) fn secret_name(&self) -> &str {
        &self.secret_name
    }

    /// The rendered Secrets of `namespace`, read fresh: the watch store may lag our own
    /// last write.
    pub(crate) async fn current(&self, namespace: &str) -> Result<Current, ReconcileError> {
        let api = self.api(namespace);
        let head = api
            .get_opt(&self.secret_name)
            .await
            .map_err(api_err(format!(
                "reading secret {namespace}/{}",
                self.secret_name
            )))?;
        let selector = format!("{RENDERED_LABEL}=true,{PART_OF_LABEL}={}", self.secret_name);
        let parts = api
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(api_err(format!(
                "listing the parts of secret {namespace}/{}",
                self.secret_name
            )))?
            .items;
        Ok(Current { head, parts })
    }

    /// Publishes (or repairs) the rendered Secrets, given the hash this controller last
    /// published there. Returns whether a new configuration went out.
    pub(crate) async fn publish(
        &self,
        namespace: &str,
        current: &Current,
        desired: &Desired,
        last_published: Option<&str>,
    ) -> Result<bool, ReconcileError> {
        let plan = publish::plan(current, &self.secret_name, desired, last_published);
        if plan.action == Action::UpToDate {
            return Ok(false);
        }
        self.cluster.ensure_leader()?;
        let api = self.api(namespace);
        let mut head_ref = current.head.as_ref().map(|s| s.object_ref(&()));
        for &index in &plan.write {
            let name = postern_config::protocol::part_secret_name(&self.secret_name, index);
            let existing = if index == 0 {
                current.head.as_ref()
            } else {
                current.parts.iter().find(|s| s.name_any() == name)
            };
            let secret = publish::render(namespace, &self.secret_name, index, desired, existing);
            let written = match existing {
                None => api.create(&PostParams::default(), &secret).await,
                Some(_) => api.replace(&name, &PostParams::default(), &secret).await,
            }
            .map_err(api_err(format!("writing secret {namespace}/{name}")))?;
            if index == 0 {
                head_ref = Some(written.object_ref(&()));
            }
        }
        for name in &plan.delete {
            self.cluster.ensure_leader()?;
            match api.delete(name, &DeleteParams::default()).await {
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Ok(_) => {}
                Err(e) => return Err(api_err(format!("deleting secret {namespace}/{name}"))(e)),
            }
        }
        let reference = head_ref.unwrap_or_default();
        Ok(self
            .announce(namespace, plan.action, desired, &reference)
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
            Action::Refresh { what } => {
                tracing::info!(namespace, hash = %short, what = %what, "tidied the rendered Secrets");
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
                    listeners = desired.listeners,
                    bytes = desired.encoded.compressed_bytes(),
                    secrets = desired.encoded.parts.len(), "published configuration");
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

    /// Deletes the rendered Secrets of a namespace left without postern objects (only
    /// those labelled as rendered by the controller).
    pub(crate) async fn withdraw(
        &self,
        namespace: &str,
        current: Current,
    ) -> Result<(), ReconcileError> {
        let ours: Vec<Secret> = current
            .head
            .into_iter()
            .chain(current.parts)
            .filter(|s| s.labels().get(RENDERED_LABEL).is_some_and(|v| v == "true"))
            .collect();
        if ours.is_empty() {
            return Ok(());
        }
        self.cluster.ensure_leader()?;
        for s in &ours {
            self.api(namespace)
                .delete(&s.name_any(), &DeleteParams::default())
                .await
                .map_err(api_err("deleting the rendered secret"))?;
        }
        tracing::info!(namespace, secret = %self.secret_name,
            "no postern objects left; removed the rendered configuration");
        Ok(())
    }
}
