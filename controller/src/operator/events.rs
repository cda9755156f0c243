//! Events with the note they were emitted with: repeats of one Event (same object, type,
//! reason *and note*) are counted in its `series`, as kube's `Recorder` does, but a new
//! note is a new Event.
//!
//! kube's `Recorder` keys its series on object, type, action and reason only: a repeated
//! `DriftRepaired` or `ConfigPublished` with a new note bumps the first Event's count and
//! keeps its first note, so the latest note is never seen. Updating the note in place is
//! no way out either: `events.k8s.io/v1` makes `note` immutable.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::EventType;
use kube::{Client, ResourceExt};
use tokio::sync::Mutex;

/// How long a repeat still joins its Event's series (kube's value).
const SERIES_WINDOW: SignedDuration = SignedDuration::from_mins(6);

/// What makes two Events one series.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct SeriesKey {
    warning: bool,
    reason: String,
    note: String,
    kind: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
    uid: Option<String>,
}

/// Publishes Events as `controller`/`instance`.
#[derive(Clone)]
pub(crate) struct EventRecorder {
    client: Client,
    controller: String,
    instance: String,
    series: std::sync::Arc<Mutex<HashMap<SeriesKey, K8sEvent>>>,
}

/// One Event to emit.
#[derive(Clone, Debug)]
pub(crate) struct Notice<'a> {
    /// Normal or Warning.
    pub type_: EventType,
    /// CamelCase reason.
    pub reason: &'a str,
    /// For a human.
    pub note: String,
    /// What the controller was doing.
    pub action: &'a str,
}

impl EventRecorder {
    /// A recorder reporting as `controller` (`reportingController`) and `instance`.
    pub(crate) fn new(client: Client, controller: &str, instance: &str) -> Self {
        Self {
            client,
            controller: controller.to_owned(),
            instance: instance.to_owned(),
            series: Default::default(),
        }
    }

    /// Emits `notice` about `regarding`: a new Event, or the next of the series of the
    /// same Event (same note) emitted within the last few minutes.
    pub(crate) async fn publish(
        &self,
        notice: &Notice<'_>,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        let key = SeriesKey {
            warning: matches!(notice.type_, EventType::Warning),
            reason: notice.reason.to_owned(),
            note: notice.note.clone(),
            kind: regarding.kind.clone(),
            namespace: regarding.namespace.clone(),
            name: regarding.name.clone(),
            uid: regarding.uid.clone(),
        };
        let mut series = self.series.lock().await;
        series.retain(|_, e| last_seen(e).is_some_and(|t| t + SERIES_WINDOW > now));
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let events: Api<K8sEvent> = Api::namespaced(self.client.clone(), namespace);
        let event = match series.get(&key) {
            Some(first) => {
                let mut event = first.clone();
                event.series = Some(EventSeries {
                    count: first.series.as_ref().map_or(2, |s| s.count + 1),
                    last_observed_time: MicroTime(now),
                });
                events
                    .patch(
                        &event.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&event),
                    )
                    .await?;
                event
            }
            None => {
                let event = self.new_event(notice, regarding, now);
                events.create(&PostParams::default(), &event).await?
            }
        };
        series.insert(key, event);
        Ok(())
    }

    fn new_event(
        &self,
        notice: &Notice<'_>,
        regarding: &ObjectReference,
        now: Timestamp,
    ) -> K8sEvent {
        K8sEvent {
            action: Some(notice.action.to_owned()),
            reason: Some(notice.reason.to_owned()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            note: Some(notice.note.clone()),
            metadata: ObjectMeta {
                namespace: regarding.namespace.clone(),
                name: Some(format!(
                    "{}.{:x}",
                    regarding.name.as_deref().unwrap_or(&self.controller),
                    now.as_nanosecond()
                )),
                ..Default::default()
            },
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(
                match notice.type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .to_owned(),
            ),
            ..Default::default()
        }
    }
}

/// When an Event was last seen.
fn last_seen(e: &K8sEvent) -> Option<Timestamp> {
    e.series
        .as_ref()
        .map(|s| s.last_observed_time.0)
        .or_else(|| e.event_time.as_ref().map(|t| t.0))
}
