//! The status writer: applies each object's desired status (server-side apply on the
//! status subresource, leader only, a few at a time), logs it, and emits the Events the
//! change deserves. What to write and which Events are decided in `status`.

use futures::StreamExt;
use kube::Api;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::runtime::events::EventType;
use postern_crds::condition_type;

use super::cluster::{Cluster, FIELD_MANAGER};
use super::error::ReconcileError;
use super::objects::{self, StoredObject};
use super::status::{self, DesiredStatus, Notice};
use crate::compile::ObjectKey;

/// One object and the status it should carry.
#[derive(Debug)]
pub(crate) struct Planned<'a> {
    /// The object.
    pub key: &'a ObjectKey,
    /// As the watch store has it.
    pub obj: &'a StoredObject,
    /// What its status should be.
    pub desired: DesiredStatus,
}

/// A status write made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Written {
    /// The object's resourceVersion after the write.
    pub resource_version: Option<String>,
}

/// Writes the status of objects.
#[derive(Clone, Debug)]
pub(crate) struct StatusWriter {
    cluster: Cluster,
    concurrency: usize,
}

impl StatusWriter {
    /// Writes up to `concurrency` statuses at once.
    pub(crate) fn new(cluster: Cluster, concurrency: usize) -> Self {
        Self {
            cluster,
            concurrency: concurrency.max(1),
        }
    }

    /// Writes every status that changed. Returns each object's result (by index into
    /// `planned`) in the order the writes finished; `None` when nothing was written.
    pub(crate) async fn write_all(
        &self,
        namespace: &str,
        planned: &[Planned<'_>],
    ) -> Vec<(usize, Result<Option<Written>, ReconcileError>)> {
        let jobs = planned
            .iter()
            .enumerate()
            .map(|(i, p)| async move { (i, self.write(namespace, p).await) });
        futures::stream::iter(jobs)
            .buffer_unordered(self.concurrency)
            .collect()
            .await
    }

    /// Writes one object's status if it changed, then its Events.
    async fn write(
        &self,
        namespace: &str,
        Planned { key, obj, desired }: &Planned<'_>,
    ) -> Result<Option<Written>, ReconcileError> {
        if !desired.changed {
            return Ok(None);
        }
        self.cluster.ensure_leader()?;
        let ar = objects::api_resource(key.kind);
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.cluster.client.clone(), namespace, &ar);
        let body = serde_json::json!({
            "apiVersion": postern_crds::API_VERSION,
            "kind": key.kind.as_str(),
            "metadata": {"name": key.name, "namespace": namespace},
            "status": desired.status,
        });
        let patched = api
            .patch_status(
                &key.name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await;
        let patched = match patched {
            Ok(p) => p,
            // Deleted meanwhile: nothing to report on.
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(None),
            Err(e) => {
                return Err(ReconcileError::Api {
                    what: format!("writing status of {key}"),
                    source: e,
                });
            }
        };
        self.cluster.metrics.status_writes.inc();
        let ready = status::conditions::find(desired.status.conditions(), condition_type::READY)
            .expect("conditions always carry Ready");
        tracing::info!(namespace, object = %key,
            generation = ?desired.status.common().observed_generation,
            ready = ?ready.status, reason = %ready.reason, message = %ready.message, "status written");
        if let Some(n) = &desired.ready_event {
            self.emit(key, obj, n).await;
        }
        if let Some(w) = &desired.warning {
            tracing::warn!(namespace, object = %key, reason = w.reason.as_str(), warning = %w.note,
                "object accepted with warnings");
            self.emit(key, obj, w).await;
        }
        Ok(Some(Written {
            resource_version: patched.metadata.resource_version,
        }))
    }

    async fn emit(&self, key: &ObjectKey, obj: &StoredObject, notice: &Notice) {
        let type_ = if notice.warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        self.cluster
            .emit(
                &objects::object_reference(key.kind, obj.metadata()),
                type_,
                &notice.reason,
                notice.note.clone(),
            )
            .await;
    }
}
