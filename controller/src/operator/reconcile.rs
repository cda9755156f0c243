//! One namespace, start to finish: snapshot → compile → validate → publish → status.
//!
//! This is the sequence only; each step's work is elsewhere: the watch stores
//! (`watch`, `refs`) give the inputs, the compiler the configuration, the publisher
//! writes it, `status` computes what each object should say and the status writer writes
//! it. What is remembered between reconciles is in `state`.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use postern_config::protocol::{Limits, TooLarge};
use postern_config::{self as gw, GatewayConfig};
use tokio::time::Instant;

use super::cluster::Cluster;
use super::error::{ReconcileError, api_err};
use super::fleet::{self, Fleet};
use super::gauges::{self, Counts};
use super::metrics::Metrics;
use super::objects::Objects;
use super::publish::{self, Current, Desired};
use super::publisher::Publisher;
use super::refs::RefWatches;
use super::settle;
use super::state::State;
use super::status::{self, NamespaceInputs, ObjectInputs, Published};
use super::status_writer::{Planned, StatusWriter};
use super::watch::Stores;
use crate::compile::{self, ConfigMapData, SecretData, Snapshot};

/// Everything a reconcile needs.
#[derive(Debug)]
pub(crate) struct Context {
    /// What the watches see.
    stores: Stores,
    /// Per-name watches of referenced Secrets/ConfigMaps.
    refs: RefWatches,
    /// What is remembered between reconciles, per namespace.
    state: Mutex<State>,
    /// Writes the rendered Secrets.
    publisher: Publisher,
    /// Writes status and its Events.
    status_writer: StatusWriter,
    /// Metrics.
    metrics: Arc<Metrics>,
    /// How large a published configuration may be.
    limits: Limits,
}

/// What a successful reconcile asks for.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// Check the fleet again at this time (a gateway report expires then).
    pub expiry_check_at: Option<Instant>,
    /// Reconcile again at this time (statuses were deferred).
    pub retry_at: Option<Instant>,
    /// Status writes made.
    pub status_writes: usize,
    /// Whether a configuration was published.
    pub published: bool,
}

/// What publishing did.
#[derive(Debug, Default)]
struct PublishOutcome {
    /// The hash in force, if the configuration is published (or already was).
    hash: Option<String>,
    /// Whether a new configuration went out.
    went_out: bool,
    /// Why it was not published, when it is too large.
    too_large: Option<TooLarge>,
}

impl Context {
    /// A context writing through `cluster`: the rendered configuration into the Secrets
    /// `secret_name` (and its parts, within `limits`) of each namespace, up to
    /// `write_concurrency` statuses at once.
    pub(crate) fn new(
        cluster: Cluster,
        stores: Stores,
        refs: RefWatches,
        secret_name: String,
        write_concurrency: usize,
        limits: Limits,
    ) -> Self {
        Self {
            stores,
            refs,
            state: Mutex::default(),
            metrics: cluster.metrics.clone(),
            publisher: Publisher::new(cluster.clone(), secret_name),
            status_writer: StatusWriter::new(cluster, write_concurrency),
            limits,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("not poisoned")
    }

    /// Forgets what was learned while (not) leading.
    pub(crate) fn forget_leadership(&self) {
        self.state().forget_leadership();
    }

    /// Reconciles `namespace`.
    pub(crate) async fn reconcile(&self, namespace: &str) -> Result<Outcome, ReconcileError> {
        let objects = self.stores.objects(namespace);
        let current = self.publisher.current(namespace).await?;
        if objects.is_empty() {
            self.withdraw(namespace, current).await?;
            return Ok(Outcome::default());
        }
        let snapshot = self.snapshot(namespace, &objects).await?;
        let compiled = self.compile(namespace, snapshot, &current).await;
        let config = Arc::new(compiled.config);
        let PublishOutcome {
            hash: published_hash,
            went_out: published,
            too_large,
        } = self.publish(namespace, &objects, &current, &config).await?;

        let now = Timestamp::now();
        let gateways = self.stores.reports(namespace);
        let fleet = fleet::fleet(&gateways, now);
        let gateways_to_update = published && gateways.iter().any(|g| g.alive(now));
        let settled = published_hash
            .as_deref()
            .is_none_or(|h| settle::settled(&gateways, h, &config, now));
        let outcome = Outcome {
            expiry_check_at: expiry_instant(fleet.next_expiry, now),
            retry_at: self.fleet_seen(
                namespace,
                &fleet,
                published_hash.as_deref(),
                gateways_to_update,
                settled,
            ),
            published,
            status_writes: 0,
        };
        if outcome.retry_at.is_some() {
            return Ok(outcome);
        }
        let recent = self.state().namespace(namespace).recent().to_vec();
        let inputs = NamespaceInputs {
            namespace,
            report: &compiled.report,
            published: published_hash.as_deref().map(|hash| Published {
                hash,
                config: &config,
                recent: &recent,
            }),
            too_large: too_large.as_ref(),
            fleet: &fleet,
            gateways: &gateways,
            now,
        };
        Ok(Outcome {
            status_writes: self.write_statuses(&objects, &inputs).await?,
            ..outcome
        })
    }

    /// A namespace without postern objects: forget it and remove its rendered Secrets.
    async fn withdraw(&self, namespace: &str, current: Current) -> Result<(), ReconcileError> {
        self.refs.forget(namespace);
        self.state()
            .namespace(namespace)
            .gauges
            .withdraw(&self.metrics, namespace);
        self.publisher.withdraw(namespace, current).await?;
        self.state().namespace(namespace).published = None;
        Ok(())
    }

    /// The compiler's input: the objects, and the Secrets and ConfigMaps they reference.
    async fn snapshot(
        &self,
        namespace: &str,
        objects: &Objects,
    ) -> Result<Snapshot, ReconcileError> {
        let mut snapshot = Snapshot {
            namespace: Some(namespace.to_owned()),
            ..Default::default()
        };
        for obj in objects.values() {
            obj.add_to_snapshot(&mut snapshot);
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
        Ok(snapshot)
    }

    /// Compiles against what runs now, so a broken object keeps its last good form.
    /// What runs now is decoded from the Secrets only when it is not a configuration
    /// this controller remembers (by the hash their manifest claims).
    async fn compile(
        &self,
        namespace: &str,
        snapshot: Snapshot,
        current: &Current,
    ) -> compile::Compiled {
        let head = self.publisher.secret_name();
        let remembered = current.claimed_hash(head).and_then(|h| {
            let mut state = self.state();
            let recent = state.namespace(namespace).recent();
            recent.iter().find(|(r, _)| *r == h).map(|(_, c)| c.clone())
        });
        let previous = remembered.or_else(|| {
            let (config, hash) = current.decode(head)?.ok()?;
            let config = Arc::new(config);
            self.state()
                .namespace(namespace)
                .remember_config(&hash, &config);
            Some(config)
        });
        blocking(move || compile::compile(&snapshot, previous.as_deref())).await
    }

    /// Records where the fleet stands (gauges, membership). Returns when to reconcile
    /// again if status writes wait a moment for live gateways to take the
    /// configuration just published (until they have `settled` on it).
    fn fleet_seen(
        &self,
        namespace: &str,
        fleet: &Fleet,
        published_hash: Option<&str>,
        gateways_to_update: bool,
        settled: bool,
    ) -> Option<Instant> {
        let mut state = self.state();
        let ns = state.namespace(namespace);
        ns.gauges
            .set_gateways(&self.metrics, namespace, fleet, published_hash);
        ns.membership = fleet.membership();
        ns.defer_statuses(gateways_to_update, settled, Instant::now())
    }

    /// Validates `config` with the gateway's own validator and publishes it; never what
    /// it refuses, nor what does not fit the Secrets it may use.
    async fn publish(
        &self,
        namespace: &str,
        objects: &Objects,
        current: &Current,
        config: &Arc<GatewayConfig>,
    ) -> Result<PublishOutcome, ReconcileError> {
        let (hash, checked) = {
            let (config, owners, limits) = (config.clone(), publish::owners(objects), self.limits);
            blocking(move || {
                let hash = config.hash();
                let checked = gw::validate(&config)
                    .map(|()| Desired::new(&config, hash.clone(), owners, &limits));
                (hash, checked)
            })
            .await
        };
        let desired = match checked {
            Err(errors) => {
                self.metrics.error("InvalidConfig");
                tracing::error!(namespace, hash = %hash, errors = %errors,
                    "compiled configuration does not validate; the previous one stays published");
                return Ok(PublishOutcome::default());
            }
            Ok(Ok(d)) => d,
            Ok(Err(too_large)) => {
                self.metrics.error("ConfigTooLarge");
                tracing::error!(namespace, hash = %hash, error = %too_large,
                    "compiled configuration is too large to publish; the previous one stays published");
                return Ok(PublishOutcome {
                    too_large: Some(too_large),
                    ..PublishOutcome::default()
                });
            }
        };
        let last = self.state().namespace(namespace).published.clone();
        let went_out = self
            .publisher
            .publish(namespace, current, &desired, last.as_deref())
            .await?;
        let mut state = self.state();
        let ns = state.namespace(namespace);
        ns.published = Some(hash.clone());
        ns.remember_config(&hash, config);
        Ok(PublishOutcome {
            hash: Some(hash),
            went_out,
            too_large: None,
        })
    }

    /// Computes every object's status and writes those that changed; counts them into
    /// the gauges. Returns how many were written.
    async fn write_statuses(
        &self,
        objects: &Objects,
        inputs: &NamespaceInputs<'_>,
    ) -> Result<usize, ReconcileError> {
        let namespace = inputs.namespace;
        let planned = self.plan_statuses(objects, inputs);
        let results = self.status_writer.write_all(namespace, &planned).await;
        let mut state = self.state();
        let ns = state.namespace(namespace);
        let (mut counts, mut writes, mut first_err) = (Counts::new(), 0, None);
        for (i, result) in results {
            let Planned { key, obj, desired } = &planned[i];
            match result {
                Ok(written) => {
                    if let (Some(w), Some(uid)) = (&written, &obj.metadata().uid) {
                        ns.record_written(
                            uid,
                            w.resource_version.as_deref(),
                            desired.status.clone(),
                        );
                    }
                    writes += usize::from(written.is_some());
                    gauges::count(&mut counts, key.kind, desired.status.conditions());
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        ns.gauges.set_objects(&self.metrics, counts);
        first_err.map_or(Ok(writes), Err)
    }

    /// The status each object should carry, merged into what it carries now.
    fn plan_statuses<'a>(
        &self,
        objects: &'a Objects,
        inputs: &NamespaceInputs<'_>,
    ) -> Vec<Planned<'a>> {
        let mut state = self.state();
        let ns = state.namespace(inputs.namespace);
        objects
            .iter()
            .map(|(key, obj)| {
                let old = ns.old_status(obj);
                let object = ObjectInputs {
                    key,
                    generation: obj.metadata().generation,
                    crl: obj.crl_settings(),
                    old: &old,
                };
                Planned {
                    key,
                    obj,
                    desired: status::desired(inputs, &object),
                }
            })
            .collect()
    }

    /// Whether the ready gateways of `namespace` (or what they run) differ from what the
    /// last reconcile saw, e.g. because a report expired; and when to check next.
    pub(crate) fn fleet_changed(&self, namespace: &str) -> (bool, Option<Instant>) {
        let now = Timestamp::now();
        let fleet = fleet::fleet(&self.stores.reports(namespace), now);
        let seen = self.state().membership(namespace);
        (
            fleet.membership() != seen,
            expiry_instant(fleet.next_expiry, now),
        )
    }
}

/// Runs CPU-heavy work (compile, validate, pack) off the async workers, so that lease
/// renewal and the watches are never starved by a large namespace.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// When a report expiring at `at` (API time) is due on the local clock.
fn expiry_instant(at: Option<Timestamp>, now: Timestamp) -> Option<Instant> {
    at.map(|t| {
        let wait = t.duration_since(now).unsigned_abs();
        Instant::now() + wait + Duration::from_millis(50)
    })
}
