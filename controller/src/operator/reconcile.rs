//! One namespace, start to finish: snapshot → compile → validate → publish → status.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Client, Resource, ResourceExt};
use postern_config::protocol::{self, CrlFacts, RENDERED_LABEL};
use postern_config::{self as gw, GatewayConfig};
use postern_crds::{Condition, CrlInForce, CrlSourceStatus, condition_type};
use tokio::time::Instant;

use super::fleet::{self, Fleet};
use super::leader::Leadership;
use super::metrics::{ConditionLabels, GatewayLabels, Metrics};
use super::objects;
use super::publish::{self, Action, Desired};
use super::refs::RefWatches;
use super::status::{self, Cond};
use super::watch::Stores;
use crate::compile::{self, ConfigMapData, Kind, ObjectKey, Rendered, SecretData, Snapshot};

/// Field manager of every controller write.
pub const FIELD_MANAGER: &str = "postern-controller";

/// Why a reconcile failed (it is retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// An API call failed.
    #[error("{what}: {source}")]
    Api {
        /// What was being done.
        what: String,
        /// The client error.
        source: kube::Error,
    },
    /// This replica stopped leading in the middle.
    #[error("lost leadership during the reconcile")]
    NotLeader,
}

impl ReconcileError {
    /// Short CamelCase reason for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Api { source, .. } => match source {
                kube::Error::Api(e) if e.code == 409 => "Conflict",
                kube::Error::Api(e) if e.code == 403 => "Forbidden",
                kube::Error::Api(_) => "ApiError",
                _ => "ConnectionError",
            },
            Self::NotLeader => "NotLeader",
        }
    }
}

fn api_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> ReconcileError {
    let what = what.into();
    move |source| ReconcileError::Api { what, source }
}

/// What the controller remembers between reconciles (cleared when leadership changes).
#[derive(Debug, Default)]
pub struct Memory {
    /// Hash last published (or found in place) per namespace.
    last_published: HashMap<String, String>,
    /// Status last written per object UID, with the resourceVersion it produced.
    written: HashMap<String, (u64, CrlSourceStatus)>,
    /// Objects by kind and condition, per namespace (for the gauge).
    counts: HashMap<String, HashMap<ConditionLabels, i64>>,
    /// Gateway counts per namespace (for the gauge).
    gateways: HashMap<String, (i64, i64)>,
    /// Recent configurations per namespace by hash, newest last, to tell whether a
    /// gateway still running an older one already runs an object as it is now.
    configs: HashMap<String, Vec<(String, Arc<GatewayConfig>)>>,
    /// Ready gateways and what they ran at the last reconcile, per namespace.
    membership: HashMap<String, Vec<(String, Option<String>)>>,
    /// Since when status writes of a namespace wait for the gateways to pick up a
    /// configuration just published.
    deferred_since: HashMap<String, Instant>,
}

/// How long status writes may wait for gateways to apply a new configuration, so that
/// objects go straight to their final state instead of through `Pending`.
const PUBLISH_GRACE: Duration = Duration::from_secs(2);
/// How soon a deferred namespace is looked at again when no gateway reports earlier.
const DEFER_RETRY: Duration = Duration::from_millis(750);

fn membership(fleet: &Fleet) -> Vec<(String, Option<String>)> {
    fleet
        .ready
        .iter()
        .map(|m| (m.name.clone(), m.applied.clone()))
        .collect()
}

/// How many recent configurations are remembered per namespace.
const CONFIG_HISTORY: usize = 8;

impl Memory {
    fn remember_config(&mut self, namespace: &str, hash: &str, config: &Arc<GatewayConfig>) {
        let list = self.configs.entry(namespace.to_owned()).or_default();
        if list.last().is_some_and(|(h, _)| h == hash) {
            return;
        }
        list.retain(|(h, _)| h != hash);
        list.push((hash.to_owned(), config.clone()));
        if list.len() > CONFIG_HISTORY {
            list.remove(0);
        }
    }

    fn config(&self, namespace: &str, hash: &str) -> Option<Arc<GatewayConfig>> {
        self.configs
            .get(namespace)?
            .iter()
            .find(|(h, _)| h == hash)
            .map(|(_, c)| c.clone())
    }
}

/// An object's entry in a configuration, for comparison.
fn rendering(config: &GatewayConfig, key: &ObjectKey) -> Option<serde_json::Value> {
    let name = key.name.as_str();
    match key.kind {
        Kind::Listener => config.listeners.get(name).map(serde_json::to_value),
        Kind::MailFlowPolicy => config.policies.get(name).map(serde_json::to_value),
        Kind::SmtpAuthProfile => config.auth_profiles.get(name).map(serde_json::to_value),
        Kind::LdapProfile => config.ldap_profiles.get(name).map(serde_json::to_value),
        Kind::CrlSource => config.crl_sources.get(name).map(serde_json::to_value),
    }
    .and_then(Result::ok)
}

impl Memory {
    /// Forgets what was learned while (not) leading.
    pub fn clear(&mut self) {
        self.last_published.clear();
        self.written.clear();
        self.configs.clear();
        self.membership.clear();
        self.deferred_since.clear();
    }
}

/// Everything a reconcile needs.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Name of the rendered Secret.
    pub secret_name: String,
    /// Watch stores.
    pub stores: Stores,
    /// Per-name watches of referenced Secrets/ConfigMaps.
    pub refs: RefWatches,
    /// Event recorder.
    pub recorder: Recorder,
    /// Leader election.
    pub leadership: Leadership,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// State kept between reconciles.
    pub memory: Mutex<Memory>,
    /// How many status writes run at once.
    pub write_concurrency: usize,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("secret_name", &self.secret_name)
            .finish_non_exhaustive()
    }
}

/// What a successful reconcile asks for.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Check the fleet again at this time (a gateway report expires then).
    pub expiry_check_at: Option<Instant>,
    /// Reconcile again at this time (statuses were deferred).
    pub retry_at: Option<Instant>,
    /// Status writes made.
    pub status_writes: usize,
    /// Whether a configuration was published.
    pub published: bool,
}

fn now_rfc3339() -> String {
    Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn rv(s: Option<&String>) -> u64 {
    s.and_then(|v| v.parse().ok()).unwrap_or(0)
}

impl Context {
    fn ensure_leader(&self) -> Result<(), ReconcileError> {
        if self.leadership.is_leader() {
            Ok(())
        } else {
            Err(ReconcileError::NotLeader)
        }
    }

    async fn emit(
        &self,
        reference: &ObjectReference,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        if !self.leadership.is_leader() {
            return;
        }
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(truncate(note, 1000)),
            action: "Reconcile".into(),
            secondary: None,
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

    /// Reconciles `namespace`.
    pub async fn reconcile(&self, namespace: &str) -> Result<Outcome, ReconcileError> {
        let objects = self.stores.objects(namespace);
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        // Read the rendered Secret fresh: the watch store may lag our own last write.
        let current = secrets
            .get_opt(&self.secret_name)
            .await
            .map_err(api_err(format!(
                "reading secret {namespace}/{}",
                self.secret_name
            )))?;
        if objects.is_empty() {
            self.refs.forget(namespace);
            self.forget_counts(namespace);
            if let Some(s) =
                current.filter(|s| s.labels().get(RENDERED_LABEL).is_some_and(|v| v == "true"))
            {
                self.ensure_leader()?;
                secrets
                    .delete(&s.name_any(), &DeleteParams::default())
                    .await
                    .map_err(api_err("deleting the rendered secret"))?;
                tracing::info!(namespace, secret = %self.secret_name,
                    "no postern objects left; removed the rendered configuration");
            }
            self.memory
                .lock()
                .expect("not poisoned")
                .last_published
                .remove(namespace);
            return Ok(Outcome::default());
        }

        // 1. Snapshot.
        let mut snapshot = Snapshot {
            namespace: Some(namespace.to_owned()),
            ..Default::default()
        };
        for (key, obj) in &objects {
            objects::add_to_snapshot(&mut snapshot, key.kind, obj);
        }
        let resolved = self
            .refs
            .resolve(
                namespace,
                &snapshot.referenced_secrets(),
                &snapshot.referenced_config_maps(),
            )
            .await
            .map_err(api_err("reading referenced secrets and config maps"))?;
        snapshot.secrets = resolved
            .secrets
            .iter()
            .map(|(n, s)| (n.clone(), SecretData::from(s)))
            .collect();
        snapshot.config_maps = resolved
            .config_maps
            .iter()
            .map(|(n, c)| (n.clone(), ConfigMapData::from(c)))
            .collect();

        // 2. Compile against what runs now, so a broken object keeps its last good form.
        let previous: Option<GatewayConfig> = current.as_ref().and_then(|s| {
            let data = s
                .data
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            protocol::decode_rendered(&data, &s.annotations().clone(), "rendered secret")
                .ok()
                .map(|(c, _)| c)
        });
        let compiled = compile::compile(&snapshot, previous.as_ref());
        let report = compiled.report;
        let config = Arc::new(compiled.config);
        let hash = config.hash();
        if let Some(p) = previous {
            let h = p.hash();
            self.memory
                .lock()
                .expect("not poisoned")
                .remember_config(namespace, &h, &Arc::new(p));
        }

        // 3. Validate with the gateway's own validator; never publish what it refuses.
        let mut outcome = Outcome::default();
        let published_hash: Option<String> = match gw::validate(&config) {
            Err(errors) => {
                self.metrics.error("InvalidConfig");
                tracing::error!(namespace, hash = %hash, errors = %errors,
                    "compiled configuration does not validate; the previous one stays published");
                None
            }
            Ok(()) => {
                let owners = objects
                    .iter()
                    .filter(|(k, _)| k.kind == Kind::Listener)
                    .filter_map(|(_, o)| listener_owner(o))
                    .collect();
                let desired = Desired {
                    config: (*config).clone(),
                    hash: hash.clone(),
                    owners,
                };
                outcome.published = self
                    .publish(namespace, &secrets, current.as_ref(), &desired)
                    .await?;
                self.memory
                    .lock()
                    .expect("not poisoned")
                    .remember_config(namespace, &hash, &config);
                Some(hash.clone())
            }
        };

        // 4. Where the fleet stands.
        let now = Timestamp::now();
        let gateways = self.stores.reports(namespace);
        let fleet = fleet::fleet(&gateways, now);
        self.count_gateways(namespace, &fleet, published_hash.as_deref());
        outcome.expiry_check_at = expiry_instant(fleet.next_expiry, now);
        {
            let mut mem = self.memory.lock().expect("not poisoned");
            mem.membership
                .insert(namespace.to_owned(), membership(&fleet));
            // A configuration just went out and gateways are there to take it: give them
            // a moment, so statuses are written once, in their final state. Their reports
            // trigger the next reconcile; without one, the retry writes what stands then.
            let gateways_live = gateways.iter().any(|g| g.alive(now));
            if outcome.published && gateways_live {
                let since = *mem
                    .deferred_since
                    .entry(namespace.to_owned())
                    .or_insert_with(Instant::now);
                if since.elapsed() < PUBLISH_GRACE {
                    outcome.retry_at = Some(Instant::now() + DEFER_RETRY);
                    return Ok(outcome);
                }
            }
            mem.deferred_since.remove(namespace);
        }

        // 5. Status of every object.
        let stamp = now_rfc3339();
        let jobs = objects.iter().map(|(key, obj)| {
            let desired = self.desired_status(
                namespace,
                key,
                obj,
                &report,
                &fleet,
                published_hash.as_deref().map(|h| (h, config.as_ref())),
                &gateways,
                now,
                &stamp,
            );
            async move { self.write_status(namespace, key, obj, desired).await }
        });
        let mut writes = futures::stream::iter(jobs).buffer_unordered(self.write_concurrency);
        let mut counts: HashMap<ConditionLabels, i64> = HashMap::new();
        let mut first_err = None;
        while let Some(r) = writes.next().await {
            match r {
                Ok((wrote, conditions, kind)) => {
                    outcome.status_writes += usize::from(wrote);
                    for c in conditions {
                        *counts
                            .entry(ConditionLabels {
                                kind: kind.as_str().into(),
                                condition: c.type_.clone(),
                                status: format!("{:?}", c.status),
                            })
                            .or_default() += 1;
                    }
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        drop(writes);
        self.set_counts(namespace, counts);
        if let Some(e) = first_err {
            return Err(e);
        }
        Ok(outcome)
    }

    /// Publishes (or repairs) the rendered Secret. Returns whether a new configuration
    /// went out.
    async fn publish(
        &self,
        namespace: &str,
        secrets: &Api<Secret>,
        current: Option<&Secret>,
        desired: &Desired,
    ) -> Result<bool, ReconcileError> {
        let last = self
            .memory
            .lock()
            .expect("not poisoned")
            .last_published
            .get(namespace)
            .cloned();
        let action = publish::plan(current, desired, last.as_deref());
        if action == Action::UpToDate {
            self.remember_published(namespace, &desired.hash);
            return Ok(false);
        }
        self.ensure_leader()?;
        let written = publish::write(secrets, namespace, &self.secret_name, desired, current)
            .await
            .map_err(api_err(format!(
                "writing secret {namespace}/{}",
                self.secret_name
            )))?;
        self.remember_published(namespace, &desired.hash);
        let reference = written.object_ref(&());
        let short = fleet::short_hash(&desired.hash).to_owned();
        match action {
            Action::UpToDate => unreachable!("returned above"),
            Action::RefreshMetadata => {
                tracing::info!(namespace, hash = %short, "refreshed the rendered Secret's labels and owners");
                Ok(false)
            }
            Action::Create | Action::Publish { .. } => {
                let previous = match &action {
                    Action::Publish { previous: Some(p) } => {
                        format!(" (was {})", fleet::short_hash(p))
                    }
                    _ => String::new(),
                };
                self.metrics.published.inc();
                tracing::info!(namespace, hash = %desired.hash, previous = %previous,
                    listeners = desired.config.listeners.len(), "published configuration");
                self.emit(
                    &reference,
                    EventType::Normal,
                    "ConfigPublished",
                    format!("published gateway configuration {short}{previous}"),
                )
                .await;
                Ok(true)
            }
            Action::RepairDrift { what } => {
                self.metrics.drift_repairs.inc();
                tracing::warn!(namespace, hash = %desired.hash, drift = %what,
                    "restored the rendered configuration");
                self.emit(
                    &reference,
                    EventType::Warning,
                    "DriftRepaired",
                    format!("{what}; restored configuration {short}"),
                )
                .await;
                Ok(false)
            }
        }
    }

    fn remember_published(&self, namespace: &str, hash: &str) {
        self.memory
            .lock()
            .expect("not poisoned")
            .last_published
            .insert(namespace.to_owned(), hash.to_owned());
    }

    #[allow(clippy::too_many_arguments)]
    fn desired_status(
        &self,
        namespace: &str,
        key: &ObjectKey,
        obj: &DynamicObject,
        report: &compile::Report,
        fleet: &Fleet,
        published: Option<(&str, &GatewayConfig)>,
        gateways: &[fleet::GatewayState],
        now: Timestamp,
        stamp: &str,
    ) -> DesiredStatus {
        let generation = obj.metadata.generation;
        let old = self.old_status(obj);
        let (accepted, resolved, rendered) = match report.get(key.kind, &key.name) {
            Some(r) => {
                let [a, b] = r.conditions();
                (
                    Cond::new(a.status, a.reason, a.message),
                    Cond::new(b.status, b.reason, b.message),
                    r.rendered,
                )
            }
            None => (
                Cond::new(false, "NotCompiled", "the compiler did not see this object"),
                Cond::new(false, "NotCompiled", "the compiler did not see this object"),
                Rendered::Absent,
            ),
        };
        // Warnings of an object in service: an Event when they change (they are in the
        // Accepted message, so a restart or an unchanged status emits nothing).
        let warning = report
            .get(key.kind, &key.name)
            .filter(|r| r.rendered == Rendered::Current)
            .and_then(|r| {
                let first = r.warnings().next()?;
                let accepted_before = status::find(&old.conditions, condition_type::ACCEPTED);
                if accepted_before.is_some_and(|c| c.message == accepted.message) {
                    return None;
                }
                Some(WarningEvent {
                    reason: first.reason.as_str(),
                    note: r
                        .warnings()
                        .map(|d| format!("{}: {}", d.field, d.message))
                        .collect::<Vec<_>>()
                        .join("; "),
                })
            });
        let programmed = match (published, rendered) {
            (None, _) => Cond::new(
                false,
                "NotPublished",
                "the namespace's configuration does not validate, so it was not published; the gateways keep the previous one",
            ),
            (Some((h, config)), Rendered::Current) => {
                let v = fleet.programmed_verdict(
                    namespace,
                    h,
                    self.same_rendering(namespace, config, key),
                );
                Cond::new(v.status, v.reason, v.message)
            }
            (Some((h, config)), Rendered::Previous) => {
                let v = fleet.programmed_verdict(
                    namespace,
                    h,
                    self.same_rendering(namespace, config, key),
                );
                Cond::new(
                    false,
                    "PreviousVersionServing",
                    format!(
                        "this version is not in service; the gateways run its last accepted version ({})",
                        v.message
                    ),
                )
            }
            (Some(_), Rendered::Absent) => Cond::new(
                false,
                "NotInConfiguration",
                "not in the gateway configuration until it is accepted",
            ),
        };
        let facts = (key.kind == Kind::CrlSource)
            .then(|| fleet::crl_facts(gateways, &key.name, now))
            .flatten();
        let health = (key.kind == Kind::CrlSource && programmed.status)
            .then(|| crl_health(obj, facts.as_ref()))
            .flatten();
        let conditions = status::conditions(
            &old.conditions,
            accepted,
            resolved,
            programmed,
            health,
            generation,
            stamp,
        );
        let mut st = CrlSourceStatus {
            conditions,
            observed_generation: generation,
            ..Default::default()
        };
        if let Some(f) = facts {
            st.last_fetch_time = f.last_fetch_time;
            st.served_by = f.served_by;
            st.this_update = f.this_update;
            st.next_update = f.next_update;
            st.entries = Some(f.entries);
            st.issuer = f.issuer;
            st.crls = f.crls.into_iter().map(CrlInForce::from).collect();
        }
        let old_ready = status::find(&old.conditions, condition_type::READY).cloned();
        DesiredStatus {
            status: st,
            old_ready,
            warning,
        }
    }

    /// Whether a configuration (by hash) renders `key` as `desired` does.
    fn same_rendering<'a>(
        &'a self,
        namespace: &'a str,
        desired: &'a GatewayConfig,
        key: &'a ObjectKey,
    ) -> impl Fn(&str) -> bool + 'a {
        let want = rendering(desired, key);
        move |hash: &str| {
            let other = self
                .memory
                .lock()
                .expect("not poisoned")
                .config(namespace, hash);
            other.is_some_and(|c| rendering(&c, key) == want)
        }
    }

    /// The status to merge into: what this controller last wrote, unless the object has
    /// moved on since (a newer resourceVersion in the watch store).
    fn old_status(&self, obj: &DynamicObject) -> CrlSourceStatus {
        let stored: CrlSourceStatus = obj
            .data
            .get("status")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default();
        let uid = obj.metadata.uid.clone().unwrap_or_default();
        let mem = self.memory.lock().expect("not poisoned");
        match mem.written.get(&uid) {
            Some((written_rv, st)) if *written_rv > rv(obj.metadata.resource_version.as_ref()) => {
                st.clone()
            }
            _ => stored,
        }
    }

    async fn write_status(
        &self,
        namespace: &str,
        key: &ObjectKey,
        obj: &DynamicObject,
        DesiredStatus {
            status: desired,
            old_ready,
            warning,
        }: DesiredStatus,
    ) -> Result<(bool, Vec<Condition>, Kind), ReconcileError> {
        let old = self.old_status(obj);
        let same = !status::differ(&old.conditions, &desired.conditions)
            && old.observed_generation == desired.observed_generation
            && CrlSourceStatus {
                conditions: vec![],
                ..old.clone()
            } == CrlSourceStatus {
                conditions: vec![],
                ..desired.clone()
            };
        if same {
            return Ok((false, desired.conditions, key.kind));
        }
        self.ensure_leader()?;
        let ar = objects::api_resource(key.kind);
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), namespace, &ar);
        let body = serde_json::json!({
            "apiVersion": postern_crds::API_VERSION,
            "kind": key.kind.as_str(),
            "metadata": {"name": key.name, "namespace": namespace},
            "status": desired,
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
            Err(kube::Error::Api(e)) if e.code == 404 => {
                return Ok((false, desired.conditions, key.kind));
            }
            Err(e) => {
                return Err(ReconcileError::Api {
                    what: format!("writing status of {key}"),
                    source: e,
                });
            }
        };
        self.metrics.status_writes.inc();
        if let Some(uid) = &obj.metadata.uid {
            self.memory.lock().expect("not poisoned").written.insert(
                uid.clone(),
                (
                    rv(patched.metadata.resource_version.as_ref()),
                    desired.clone(),
                ),
            );
        }
        let ready = status::find(&desired.conditions, condition_type::READY)
            .cloned()
            .expect("conditions always carry Ready");
        tracing::info!(namespace, object = %key, generation = ?desired.observed_generation,
            ready = ?ready.status, reason = %ready.reason, message = %ready.message, "status written");
        if status::event_worthy(old_ready.as_ref(), &ready) {
            let type_ = if status::is_warning(&ready) {
                EventType::Warning
            } else {
                EventType::Normal
            };
            self.emit(
                &objects::object_reference(key.kind, obj),
                type_,
                &ready.reason,
                ready.message.clone(),
            )
            .await;
        }
        if let Some(w) = warning {
            tracing::warn!(namespace, object = %key, reason = w.reason, warning = %w.note,
                "object accepted with warnings");
            self.emit(
                &objects::object_reference(key.kind, obj),
                EventType::Warning,
                w.reason,
                w.note,
            )
            .await;
        }
        Ok((true, desired.conditions, key.kind))
    }

    fn set_counts(&self, namespace: &str, counts: HashMap<ConditionLabels, i64>) {
        let mut mem = self.memory.lock().expect("not poisoned");
        let old = mem.counts.insert(namespace.to_owned(), counts.clone());
        for (labels, n) in old.unwrap_or_default() {
            self.metrics.objects.get_or_create(&labels).dec_by(n);
        }
        for (labels, n) in counts {
            self.metrics.objects.get_or_create(&labels).inc_by(n);
        }
    }

    fn forget_counts(&self, namespace: &str) {
        self.set_counts(namespace, HashMap::new());
        let mut mem = self.memory.lock().expect("not poisoned");
        mem.counts.remove(namespace);
        if mem.gateways.remove(namespace).is_some() {
            for state in ["ready", "programmed"] {
                self.metrics.gateways.remove(&GatewayLabels {
                    namespace: namespace.into(),
                    state: state.into(),
                });
            }
        }
    }

    fn count_gateways(&self, namespace: &str, fleet: &Fleet, desired: Option<&str>) {
        let ready = fleet.ready.len() as i64;
        let programmed = desired.map_or(0, |h| fleet.programmed_count(h)) as i64;
        self.memory
            .lock()
            .expect("not poisoned")
            .gateways
            .insert(namespace.to_owned(), (ready, programmed));
        for (state, n) in [("ready", ready), ("programmed", programmed)] {
            self.metrics
                .gateways
                .get_or_create(&GatewayLabels {
                    namespace: namespace.into(),
                    state: state.into(),
                })
                .set(n);
        }
    }
}

/// The status an object should carry, and what to tell about the change.
struct DesiredStatus {
    /// Conditions (and CRL facts).
    status: CrlSourceStatus,
    /// `Ready` as it was, to decide on an Event.
    old_ready: Option<Condition>,
    /// Warnings that are new since the last status: a Warning Event.
    warning: Option<WarningEvent>,
}

/// A Warning Event about an object that is in service but probably not as meant.
struct WarningEvent {
    /// The first warning's reason (e.g. `IssuerNotBound`).
    reason: &'static str,
    /// Every warning: field and message.
    note: String,
}

/// Whether a CRL source's CRL is in force and fresh on the gateways (`None` for a
/// disabled source: nothing to enforce).
fn crl_health(obj: &DynamicObject, facts: Option<&CrlFacts>) -> Option<Cond> {
    let enabled = obj
        .data
        .pointer("/spec/enabled")
        .and_then(|v| v.as_bool())
        .unwrap_or(true);
    if !enabled {
        return None;
    }
    let fail_open = obj
        .data
        .pointer("/spec/failurePolicy")
        .and_then(|v| v.as_str())
        == Some("Open");
    let error = |f: &CrlFacts| {
        f.last_error
            .as_ref()
            .map(|e| format!("; last fetch failed at {}: {}", e.time, e.message))
            .unwrap_or_default()
    };
    // No CRL in force: what the gateways do meanwhile depends on the failure policy.
    let nothing_in_force = |closed_reason: &str, why: String| {
        if fail_open {
            Cond::new(
                false,
                "FailOpen",
                format!(
                    "{why}; failurePolicy Open: certificates this CRL may be for are accepted without a revocation check until it is in force"
                ),
            )
        } else {
            Cond::new(
                false,
                closed_reason,
                format!(
                    "{why}; certificates this CRL may be for are refused as unverifiable (crl_missing) until it is in force"
                ),
            )
        }
    };
    Some(match facts {
        None => nothing_in_force(
            "NotFetched",
            "no gateway reports a CRL for this source yet".to_owned(),
        ),
        Some(f) if f.stale => Cond::new(
            false,
            "CrlStale",
            format!(
                "the CRL in force{} is past its nextUpdate {}: certificates of its issuer are refused until a fresh CRL is fetched{}",
                f.issuer
                    .as_ref()
                    .map(|i| format!(" (issuer {i})"))
                    .unwrap_or_default(),
                f.next_update.as_deref().unwrap_or("(none)"),
                error(f)
            ),
        ),
        Some(f) if f.this_update.is_none() => match &f.last_error {
            Some(e) => nothing_in_force(
                "FetchFailed",
                format!("no CRL in force: {} ({})", e.message, e.reason),
            ),
            None => nothing_in_force(
                "NotFetched",
                "the gateways have not fetched this CRL yet".to_owned(),
            ),
        },
        Some(f) => Cond::new(
            true,
            "CrlInForce",
            format!(
                "{} entries from {}, next update {}{}",
                f.entries,
                f.served_by.map_or("?", |s| s.as_str()),
                f.next_update.as_deref().unwrap_or("(none)"),
                error(f)
            ),
        ),
    })
}

/// When a report expiring at `at` (API time) is due on the local clock.
fn expiry_instant(at: Option<Timestamp>, now: Timestamp) -> Option<Instant> {
    at.map(|t| {
        let wait = t.duration_since(now).unsigned_abs();
        Instant::now() + wait + Duration::from_millis(50)
    })
}

impl Context {
    /// Whether the ready gateways of `namespace` (or what they run) differ from what the
    /// last reconcile saw, e.g. because a report expired; and when to check next.
    pub fn fleet_changed(&self, namespace: &str) -> (bool, Option<Instant>) {
        let now = Timestamp::now();
        let fleet = fleet::fleet(&self.stores.reports(namespace), now);
        let seen = self
            .memory
            .lock()
            .expect("not poisoned")
            .membership
            .get(namespace)
            .cloned()
            .unwrap_or_default();
        (
            membership(&fleet) != seen,
            expiry_instant(fleet.next_expiry, now),
        )
    }
}

fn listener_owner(
    obj: &DynamicObject,
) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference> {
    Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: postern_crds::API_VERSION.into(),
            kind: "Listener".into(),
            name: obj.metadata.name.clone()?,
            uid: obj.metadata.uid.clone()?,
            controller: None,
            block_owner_deletion: None,
        },
    )
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
    use postern_config::protocol::CrlError;

    fn source(spec: serde_json::Value) -> DynamicObject {
        DynamicObject::new("root", &objects::api_resource(Kind::CrlSource))
            .data(serde_json::json!({ "spec": spec }))
    }

    fn failed() -> CrlFacts {
        CrlFacts {
            name: "root".into(),
            last_error: Some(CrlError {
                time: "2025-01-01T00:00:00Z".into(),
                reason: "network".into(),
                message: "connection refused".into(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn crl_sources_without_a_crl_say_what_the_gateways_do_meanwhile() {
        let closed = source(serde_json::json!({"format": "Asn1"}));
        let c = crl_health(&closed, None).unwrap();
        assert_eq!((c.status, c.reason.as_str()), (false, "NotFetched"));
        assert!(
            c.message.contains("refused as unverifiable (crl_missing)"),
            "{}",
            c.message
        );
        let c = crl_health(&closed, Some(&failed())).unwrap();
        assert_eq!(c.reason, "FetchFailed");
        assert!(
            c.message.contains("connection refused (network)"),
            "{}",
            c.message
        );

        // Open: a warning while nothing is in force, whatever the reason.
        let open = source(serde_json::json!({"format": "Asn1", "failurePolicy": "Open"}));
        for facts in [None, Some(failed())] {
            let c = crl_health(&open, facts.as_ref()).unwrap();
            assert_eq!((c.status, c.reason.as_str()), (false, "FailOpen"));
            assert!(
                c.message.contains("accepted without a revocation check"),
                "{}",
                c.message
            );
            let ready = Condition {
                type_: "Ready".into(),
                status: postern_crds::ConditionStatus::False,
                reason: c.reason.clone(),
                message: c.message.clone(),
                last_transition_time: String::new(),
                observed_generation: None,
            };
            assert!(status::is_warning(&ready));
        }
        // In force: ready either way.
        let in_force = CrlFacts {
            this_update: Some("2025-01-01T00:00:00Z".into()),
            entries: 2,
            ..failed()
        };
        assert!(crl_health(&open, Some(&in_force)).unwrap().status);
        assert!(crl_health(&closed, Some(&in_force)).unwrap().status);
    }
}
