//! What the controller remembers between reconciles: one [`NamespaceState`] per
//! namespace (pure: no API calls). What was learned while leading is forgotten when
//! leadership changes; the gauges' bookkeeping is not (the gauges stay registered).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use postern_config::GatewayConfig;
use tokio::time::Instant;

use super::gauges::Gauges;
use super::objects::StoredObject;
use super::status::KindStatus;

/// How many recent configurations are remembered per namespace.
const CONFIG_HISTORY: usize = 8;
/// How long status writes may wait for gateways to apply a new configuration, so that
/// objects go straight to their final state instead of through `Pending`.
const PUBLISH_GRACE: Duration = Duration::from_secs(2);
/// How soon a deferred namespace is looked at again when no gateway reports earlier.
const DEFER_RETRY: Duration = Duration::from_millis(750);

/// Every namespace's state.
#[derive(Debug, Default)]
pub(crate) struct State {
    namespaces: HashMap<String, NamespaceState>,
}

impl State {
    /// The state of `namespace` (empty the first time).
    pub(crate) fn namespace(&mut self, namespace: &str) -> &mut NamespaceState {
        self.namespaces.entry(namespace.to_owned()).or_default()
    }

    /// The ready gateways of `namespace` and what they ran at its last reconcile.
    pub(crate) fn membership(&self, namespace: &str) -> Vec<(String, Option<String>)> {
        self.namespaces
            .get(namespace)
            .map(|n| n.membership.clone())
            .unwrap_or_default()
    }

    /// Forgets what was learned while (not) leading.
    pub(crate) fn forget_leadership(&mut self) {
        for ns in self.namespaces.values_mut() {
            *ns = NamespaceState {
                gauges: std::mem::take(&mut ns.gauges),
                ..NamespaceState::default()
            };
        }
    }
}

/// What the controller remembers about one namespace.
#[derive(Debug, Default)]
pub(crate) struct NamespaceState {
    /// Hash last published (or found in place) since leading.
    pub published: Option<String>,
    /// Status last written per object UID, with the resourceVersion it produced (the
    /// watch store may not have caught up with it yet).
    written: HashMap<String, (u64, KindStatus)>,
    /// Recent configurations by hash, newest last, to tell whether a gateway still
    /// running an older one already runs an object as it is now.
    recent: Vec<(String, Arc<GatewayConfig>)>,
    /// Ready gateways and what they ran at the last reconcile.
    pub membership: Vec<(String, Option<String>)>,
    /// Since when status writes wait for the gateways to pick up a configuration just
    /// published.
    deferred_since: Option<Instant>,
    /// What the namespace contributes to the gauges.
    pub gauges: Gauges,
}

fn resource_version(s: Option<&str>) -> u64 {
    s.and_then(|v| v.parse().ok()).unwrap_or(0)
}

impl NamespaceState {
    /// Remembers a configuration seen (published, or found in place).
    pub(crate) fn remember_config(&mut self, hash: &str, config: &Arc<GatewayConfig>) {
        let list = &mut self.recent;
        if list.last().is_some_and(|(h, _)| h == hash) {
            return;
        }
        list.retain(|(h, _)| h != hash);
        list.push((hash.to_owned(), config.clone()));
        if list.len() > CONFIG_HISTORY {
            list.remove(0);
        }
    }

    /// Recent configurations by hash, newest last.
    pub(crate) fn recent(&self) -> &[(String, Arc<GatewayConfig>)] {
        &self.recent
    }

    /// The status to merge into: what this controller last wrote, unless the object has
    /// moved on since (a newer resourceVersion in the watch store).
    pub(crate) fn old_status(&self, obj: &StoredObject) -> KindStatus {
        let meta = obj.metadata();
        let uid = meta.uid.clone().unwrap_or_default();
        match self.written.get(&uid) {
            Some((written, st))
                if *written > resource_version(meta.resource_version.as_deref()) =>
            {
                st.clone()
            }
            _ => obj.status().clone(),
        }
    }

    /// Remembers a status written to object `uid`, producing `resource_version`.
    pub(crate) fn record_written(
        &mut self,
        uid: &str,
        resource_version: Option<&str>,
        st: KindStatus,
    ) {
        self.written.insert(
            uid.to_owned(),
            (self::resource_version(resource_version), st),
        );
    }

    /// Whether status writes should wait a moment, and until when. When
    /// `gateways_to_update`, a configuration just went out and live gateways are there to
    /// take it: statuses wait until the gateways have `settled` on it (run it, and have
    /// the first outcome of its CRL sources' fetches; see `settle`), for
    /// [`PUBLISH_GRACE`] at most, so each is written once, in its final state. The
    /// gateways' reports trigger the next reconciles; without one, the retry looks
    /// again.
    pub(crate) fn defer_statuses(
        &mut self,
        gateways_to_update: bool,
        settled: bool,
        now: Instant,
    ) -> Option<Instant> {
        if gateways_to_update {
            self.deferred_since.get_or_insert(now);
        }
        if let Some(since) = self.deferred_since.filter(|_| !settled) {
            let until = since + PUBLISH_GRACE;
            if now < until {
                return Some((now + DEFER_RETRY).min(until));
            }
        }
        self.deferred_since = None;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::Kind;
    use crate::operator::objects;
    use kube::api::DynamicObject;
    use postern_crds::ObjectStatus;

    fn config(n: usize) -> (String, Arc<GatewayConfig>) {
        (format!("h{n}"), Arc::new(GatewayConfig::default()))
    }

    #[test]
    fn recent_configurations_are_bounded_and_newest_last() {
        let mut ns = NamespaceState::default();
        for n in 0..10 {
            let (h, c) = config(n);
            ns.remember_config(&h, &c);
        }
        let (h, c) = config(5);
        ns.remember_config(&h, &c);
        let hashes: Vec<&str> = ns.recent().iter().map(|(h, _)| h.as_str()).collect();
        assert_eq!(hashes, ["h2", "h3", "h4", "h6", "h7", "h8", "h9", "h5"]);
    }

    fn listener(rv: &str, status: serde_json::Value) -> StoredObject {
        let mut obj = DynamicObject::new("in", &objects::api_resource(Kind::Listener))
            .data(serde_json::json!({ "status": status }));
        obj.metadata.uid = Some("u1".into());
        obj.metadata.resource_version = Some(rv.into());
        StoredObject::read(Kind::Listener, obj)
    }

    #[test]
    fn the_old_status_is_what_was_written_until_the_store_catches_up() {
        let mut ns = NamespaceState::default();
        let stored = serde_json::json!({"observedGeneration": 1});
        let written = KindStatus::new(
            Kind::Listener,
            ObjectStatus {
                conditions: vec![],
                observed_generation: Some(2),
            },
        );
        ns.record_written("u1", Some("20"), written.clone());
        assert_eq!(ns.old_status(&listener("10", stored.clone())), written);
        let caught_up = ns.old_status(&listener("20", stored));
        assert_eq!(caught_up.common().observed_generation, Some(1));
    }

    #[test]
    fn statuses_wait_a_moment_after_a_publish_only() {
        let mut ns = NamespaceState::default();
        let t0 = Instant::now();
        assert_eq!(ns.defer_statuses(false, false, t0), None);
        assert_eq!(ns.defer_statuses(true, false, t0), Some(t0 + DEFER_RETRY));
        let later = t0 + Duration::from_secs(1);
        assert_eq!(
            ns.defer_statuses(true, false, later),
            Some(later + DEFER_RETRY)
        );
        // Never past the grace, counted from the first publish.
        let late = t0 + Duration::from_millis(1_800);
        assert_eq!(
            ns.defer_statuses(true, false, late),
            Some(t0 + PUBLISH_GRACE)
        );
        assert_eq!(ns.defer_statuses(true, false, t0 + PUBLISH_GRACE), None);
        // Waiting starts over at the next publish.
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(ns.defer_statuses(true, false, t1), Some(t1 + DEFER_RETRY));
        // Once the gateways have settled on it, statuses are written and waiting stops.
        assert_eq!(ns.defer_statuses(false, true, t1), None);
        assert_eq!(ns.defer_statuses(false, false, t1), None);
        let t2 = t1 + Duration::from_secs(1);
        assert_eq!(ns.defer_statuses(true, false, t2), Some(t2 + DEFER_RETRY));
    }

    /// A reconcile between the publish and the gateways' settling (another gateway
    /// report, a debounced change that compiled the same) keeps waiting: writing then
    /// would write `Pending` (or a CRL source not fetched yet) and write again moments
    /// later.
    #[test]
    fn statuses_keep_waiting_until_the_gateways_settle() {
        let mut ns = NamespaceState::default();
        let t0 = Instant::now();
        assert_eq!(ns.defer_statuses(true, false, t0), Some(t0 + DEFER_RETRY));
        let t = t0 + Duration::from_millis(300);
        assert_eq!(ns.defer_statuses(false, false, t), Some(t + DEFER_RETRY));
        let t = t0 + Duration::from_millis(900);
        assert_eq!(ns.defer_statuses(false, true, t), None);
        // Settled right away: written at once.
        assert_eq!(ns.defer_statuses(true, true, t), None);
    }

    #[test]
    fn leadership_changes_keep_only_the_gauges() {
        let mut state = State::default();
        let ns = state.namespace("mail");
        ns.published = Some("h1".into());
        ns.membership = vec![("gw-0".into(), None)];
        let (h, c) = config(1);
        ns.remember_config(&h, &c);
        state.forget_leadership();
        assert!(state.membership("mail").is_empty());
        let ns = state.namespace("mail");
        assert_eq!(ns.published, None);
        assert!(ns.recent().is_empty());
    }
}
