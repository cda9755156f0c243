//! The controller's hands on the API server: the client, the leadership every write is
//! checked against just before it is made, and the Event recorder (`events`).

use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::EventType;

use super::error::ReconcileError;
use super::events::{EventRecorder, Notice};
use super::leader::Leadership;
use super::metrics::Metrics;

/// Field manager of every controller write.
pub(crate) const FIELD_MANAGER: &str = "postern-controller";

/// Longest Event note, in bytes.
const NOTE_MAX: usize = 1000;

/// API access for the leader's writes.
#[derive(Clone)]
pub(crate) struct Cluster {
    /// API client.
    pub client: Client,
    /// Leader election.
    leadership: Leadership,
    /// Event recorder.
    recorder: EventRecorder,
    /// Metrics (Events emitted and failed).
    pub metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").finish_non_exhaustive()
    }
}

impl Cluster {
    /// Writes as `identity` (the Events' reporting instance) while `leadership` holds.
    pub(crate) fn new(
        client: Client,
        leadership: Leadership,
        identity: &str,
        metrics: Arc<Metrics>,
    ) -> Self {
        let recorder = EventRecorder::new(client.clone(), "postern-controller", identity);
        Self {
            client,
            leadership,
            recorder,
            metrics,
        }
    }

    /// Fails unless this replica leads (checked before every write).
    pub(crate) fn ensure_leader(&self) -> Result<(), ReconcileError> {
        if self.leadership.is_leader() {
            Ok(())
        } else {
            Err(ReconcileError::NotLeader)
        }
    }

    /// Emits an Event about `reference` (only while leading). A failure is counted and
    /// logged, not returned: Events are for people, the status says it all.
    pub(crate) async fn emit(
        &self,
        reference: &ObjectReference,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        if !self.leadership.is_leader() {
            return;
        }
        let ev = Notice {
            type_,
            reason,
            note: truncate(note, NOTE_MAX),
            action: "Reconcile",
        };
        match self.recorder.publish(&ev, reference).await {
            Ok(()) => {
                self.metrics.events.inc();
            }
            Err(e) => {
                self.metrics.error("EventFailed");
                tracing::warn!(error = %e, reason, "cannot emit an Event");
            }
        }
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_notes_are_cut_on_a_character_boundary() {
        assert_eq!(truncate("short".into(), 10), "short");
        assert_eq!(truncate("ééé".into(), 3), "é…");
    }
}
