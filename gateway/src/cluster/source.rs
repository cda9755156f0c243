//! The gateway's cluster config source: watches the namespace's rendered Secret through
//! the API (a mounted Secret volume lags by up to a minute), reads the further parts its
//! manifest lists by name, hands each new configuration to the reload path, and reports
//! what runs in the gateway's own `GatewayReport`.
//!
//! A configuration is applied only when every part matches the manifest (and the whole
//! its hash): while the controller is still writing a new generation's parts, or after
//! one was deleted by hand, the running configuration stays and the parts are read again
//! a moment later.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::runtime::Runtime;
use kube::api::ApiResource;
use postern_config::GatewayConfig;
use postern_config::protocol::{
    self, CrlFacts, DecodeError, GatewayReport, ListenerCoverage, Refusal, ReportSpec, SecretView,
};

/// How long to wait before reading the parts again when they do not match the manifest.
const PARTS_RETRY: Duration = Duration::from_millis(500);

/// The API resource of reports, for dynamic clients.
pub fn report_api_resource() -> ApiResource {
    ApiResource {
        group: protocol::REPORT_GROUP.into(),
        version: protocol::REPORT_VERSION.into(),
        api_version: format!("{}/{}", protocol::REPORT_GROUP, protocol::REPORT_VERSION),
        kind: protocol::REPORT_KIND.into(),
        plural: protocol::REPORT_PLURAL.into(),
    }
}

/// Field manager of the gateway's writes.
pub(crate) const FIELD_MANAGER: &str = "postern-gateway";

/// Where to find the configuration and how to report.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// The gateway's namespace (`POD_NAMESPACE`).
    pub namespace: String,
    /// The rendered Secret's name.
    pub secret_name: String,
    /// This gateway's name (`POD_NAME`); unique in the namespace.
    pub gateway_name: String,
    /// The Pod's UID (`POD_UID`), to make the report owned by the Pod.
    pub pod_uid: Option<String>,
    /// How often the report is renewed.
    pub heartbeat: Duration,
    /// How long a report stays valid without renewal (`ttlSeconds`).
    pub report_ttl: Duration,
}

impl ClusterOptions {
    /// Defaults: the standard Secret name, a 10 s heartbeat, a 30 s report lifetime.
    pub fn new(namespace: &str, gateway_name: &str) -> Self {
        Self {
            namespace: namespace.into(),
            secret_name: protocol::RENDERED_SECRET.into(),
            gateway_name: gateway_name.into(),
            pod_uid: None,
            heartbeat: Duration::from_secs(10),
            report_ttl: Duration::from_secs(30),
        }
    }
}

/// The gateway's reload path, as the cluster source sees it.
pub trait ConfigSink: Send + Sync + 'static {
    /// Validates, builds and atomically swaps in `config`. On `Err(why)` the running
    /// configuration stays in force.
    fn apply(&self, config: GatewayConfig) -> impl Future<Output = Result<(), String>> + Send;

    /// The runtime in force, followed: its refused Listeners go into the report, also
    /// when they change without a new configuration (a freed port lets one come up).
    /// By default nothing is followed (a sink without Listeners of its own).
    fn in_force(&self) -> watch::Receiver<Option<Arc<Runtime>>> {
        watch::channel(None).1
    }
}

/// The revocation facts of the running gateway, for the report.
pub type RevocationFactsFn = Arc<dyn Fn() -> RevocationFacts + Send + Sync>;

/// What the CRL store says for the report.
#[derive(Clone, Debug, Default)]
pub struct RevocationFacts {
    /// Per CRL source (copied into `CrlSource` status).
    pub crl_sources: Vec<CrlFacts>,
    /// Per Listener, how each CA of its client CA bundle is covered (copied into
    /// `Listener` status). `None` while a source's first fetch is under way: the report
    /// keeps the coverage it had, so each Listener's status changes once when a
    /// configuration's CRLs have loaded, not once per CRL as they come in.
    pub revocation: Option<Vec<ListenerCoverage>>,
}

/// Errors that stop the cluster source.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The watch on the rendered Secret ended (the client was shut down).
    #[error("the watch on secret {namespace}/{name} ended")]
    WatchEnded {
        /// Namespace.
        namespace: String,
        /// Secret name.
        name: String,
    },
}

/// Runs until `shutdown`: applies every new rendered configuration and keeps the report
/// current; on shutdown deletes the report so the controller stops counting this
/// gateway at once.
pub async fn run<S: ConfigSink>(
    client: Client,
    opts: ClusterOptions,
    sink: S,
    revocation_facts: RevocationFactsFn,
    shutdown: CancellationToken,
) -> Result<(), ClusterError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &opts.namespace);
    let parts = secrets.clone();
    let mut reporter = Reporter {
        reports: Api::namespaced_with(client, &opts.namespace, &report_api_resource()),
        opts: opts.clone(),
        report: GatewayReport::default(),
        revocation_facts,
        written: None,
    };
    let mut in_force = sink.in_force();
    let selector = format!("metadata.name={}", opts.secret_name);
    let mut events = watcher::watcher(secrets, watcher::Config::default().fields(&selector))
        .default_backoff()
        .boxed();
    tracing::info!(namespace = %opts.namespace, secret = %opts.secret_name,
        gateway = %opts.gateway_name, "watching the rendered configuration");
    reporter.write().await;
    let mut heartbeat = tokio::time::interval(opts.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Whether the (re)list in progress has shown the Secret: a list that ends without it
    // means the namespace publishes nothing (no Postern objects yet).
    let mut listed_secret = false;
    // A head whose parts did not all match yet, read again at the deadline.
    let mut incomplete: Option<(Secret, tokio::time::Instant)> = None;
    loop {
        let retry_at = incomplete.as_ref().map(|(_, at)| *at);
        tokio::select! {
            () = shutdown.cancelled() => {
                reporter.withdraw().await;
                return Ok(());
            }
            _ = heartbeat.tick() => reporter.write().await,
            Ok(()) = in_force.changed() => {
                let refused = refused_listeners(&in_force.borrow_and_update(), reporter.report.applied_hash.as_deref());
                if let Some(refused) = refused.filter(|r| *r != reporter.report.refused_listeners) {
                    reporter.report.refused_listeners = refused;
                    reporter.write().await;
                }
            }
            () = sleep_until(retry_at) => {
                if let Some((s, _)) = incomplete.take() {
                    incomplete = handle_secret(s, &parts, &sink, &in_force, &mut reporter).await;
                }
            }
            ev = events.next() => match ev {
                None => {
                    return Err(ClusterError::WatchEnded {
                        namespace: opts.namespace.clone(),
                        name: opts.secret_name.clone(),
                    })
                }
                Some(Err(e)) => tracing::warn!(error = %e, "watch on the rendered configuration failed; retrying"),
                Some(Ok(Event::Apply(s) | Event::InitApply(s))) => {
                    listed_secret = true;
                    incomplete = handle_secret(s, &parts, &sink, &in_force, &mut reporter).await;
                }
                Some(Ok(Event::Delete(_))) => tracing::warn!(
                    namespace = %opts.namespace, secret = %opts.secret_name,
                    "rendered configuration deleted; the running configuration stays in force"),
                Some(Ok(Event::Init)) => listed_secret = false,
                Some(Ok(Event::InitDone)) => {
                    if !listed_secret && !reporter.report.ready {
                        run_nothing_published(&sink, &mut reporter).await;
                    }
                }
            }
        }
    }
}

/// The namespace publishes no configuration (it has no Postern objects yet): the gateway
/// runs exactly that, the empty configuration with no listeners, and is ready. So a fresh
/// install is healthy (`helm install --wait`, Argo CD) before any object exists; readiness
/// still waits for this answer from the API server, and still drops while draining.
async fn run_nothing_published<S: ConfigSink>(sink: &S, reporter: &mut Reporter) {
    let config = GatewayConfig {
        source: Some(postern_config::Source {
            namespace: Some(reporter.opts.namespace.clone()),
        }),
        ..GatewayConfig::default()
    };
    match sink.apply(config).await {
        Ok(()) => {
            tracing::info!(namespace = %reporter.opts.namespace, secret = %reporter.opts.secret_name,
                "no configuration published in this namespace yet: running none (no listeners), ready");
            reporter.report.ready = true;
        }
        Err(why) => tracing::error!(namespace = %reporter.opts.namespace, error = %why,
            "the empty configuration was refused; not ready"),
    }
    reporter.write().await;
}

/// The refused Listeners of `runtime` when it runs the configuration `hash`.
fn refused_listeners(
    runtime: &Option<Arc<Runtime>>,
    hash: Option<&str>,
) -> Option<Vec<protocol::ListenerRefusal>> {
    runtime
        .as_ref()
        .filter(|rt| Some(rt.hash.as_str()) == hash)
        .map(|rt| rt.refused.clone())
}

/// Waits until `at`, or forever.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A borrowed view of a Secret, for the protocol's decoder.
fn view(secret: &Secret) -> SecretView<'_> {
    SecretView::of_map(
        secret.data.as_ref(),
        |b| &b.0,
        secret.metadata.annotations.as_ref(),
    )
}

/// Reads the parts after the head that its manifest lists (`None` for a missing one).
async fn read_parts(
    head: &Secret,
    name: &str,
    api: &Api<Secret>,
) -> Result<Vec<Option<Secret>>, kube::Error> {
    let count = protocol::read_head(&view(head), name).map_or(1, |h| h.parts());
    let mut parts = Vec::with_capacity(count.saturating_sub(1));
    for index in 1..count {
        parts.push(
            api.get_opt(&protocol::part_secret_name(name, index))
                .await?,
        );
    }
    Ok(parts)
}

/// Applies the configuration of the head Secret `secret` and its parts. Returns the
/// head again, with when to retry, if its parts do not all match its manifest yet.
async fn handle_secret<S: ConfigSink>(
    secret: Secret,
    api: &Api<Secret>,
    sink: &S,
    in_force: &watch::Receiver<Option<Arc<Runtime>>>,
    reporter: &mut Reporter,
) -> Option<(Secret, tokio::time::Instant)> {
    let name = reporter.opts.secret_name.clone();
    let origin = format!("secret {}/{name}", reporter.opts.namespace);
    let retry_at = tokio::time::Instant::now() + PARTS_RETRY;
    let parts = match read_parts(&secret, &name, api).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(secret = %origin, error = %e,
                "cannot read the parts of the rendered configuration; retrying");
            return Some((secret, retry_at));
        }
    };
    let head = view(&secret);
    let others: Vec<Option<SecretView<'_>>> = parts.iter().map(|p| p.as_ref().map(view)).collect();
    let (config, hash) = match protocol::decode(&head, &name, &others) {
        Ok(v) => v,
        Err(e @ (DecodeError::PartMissing { .. } | DecodeError::PartMismatch { .. })) => {
            tracing::info!(secret = %origin, waiting_for = %e,
                "the rendered configuration's parts do not all match its manifest yet; the running configuration stays in force");
            return Some((secret, retry_at));
        }
        Err(e) => {
            tracing::error!(secret = %origin, error = %e,
                "rendered configuration not applied; the running one stays in force");
            reporter.report.refusal = Some(Refusal {
                hash: head.hash().unwrap_or_default().to_owned(),
                message: e.to_string(),
            });
            reporter.write().await;
            return None;
        }
    };
    if reporter.report.applied_hash.as_deref() == Some(hash.as_str()) {
        // Same configuration (a resync, or a drift repair restoring it).
        if reporter.report.refusal.take().is_some() {
            reporter.write().await;
        }
        return None;
    }
    let started = std::time::Instant::now();
    match sink.apply(config).await {
        Ok(()) => {
            tracing::info!(secret = %origin, hash = %hash,
                took_ms = started.elapsed().as_millis() as u64, "applied configuration");
            reporter.report.refused_listeners =
                refused_listeners(&in_force.borrow(), Some(&hash)).unwrap_or_default();
            reporter.report.applied_hash = Some(hash);
            reporter.report.ready = true;
            reporter.report.refusal = None;
        }
        Err(why) => {
            tracing::error!(secret = %origin, hash = %hash, error = %why,
                "configuration refused; the running one stays in force");
            reporter.report.refusal = Some(Refusal { hash, message: why });
        }
    }
    reporter.write().await;
    None
}

struct Reporter {
    reports: Api<DynamicObject>,
    opts: ClusterOptions,
    report: GatewayReport,
    revocation_facts: RevocationFactsFn,
    written: Option<GatewayReport>,
}

impl Reporter {
    fn name(&self) -> String {
        protocol::report_name(&self.opts.gateway_name)
    }

    /// Writes the report and renews the heartbeat (server-side apply: creates or updates).
    async fn write(&mut self) {
        let facts = (self.revocation_facts)();
        self.report.crl_sources = facts.crl_sources;
        if let Some(revocation) = facts.revocation {
            self.report.revocation = revocation;
        }
        let mut metadata = json!({
            "name": self.name(),
            "namespace": self.opts.namespace,
            "labels": {
                protocol::REPORT_LABEL: "true",
                "app.kubernetes.io/name": "postern-gateway",
                "app.kubernetes.io/managed-by": "postern",
            },
        });
        if let Some(uid) = &self.opts.pod_uid {
            metadata["ownerReferences"] = json!([{
                "apiVersion": "v1", "kind": "Pod", "name": self.opts.gateway_name, "uid": uid,
            }]);
        }
        let spec = ReportSpec {
            gateway: self.opts.gateway_name.clone(),
            renew_time: Timestamp::now().to_string(),
            ttl_seconds: u32::try_from(self.opts.report_ttl.as_secs().max(1)).unwrap_or(u32::MAX),
            report: self.report.clone(),
        };
        let object = json!({
            "apiVersion": format!("{}/{}", protocol::REPORT_GROUP, protocol::REPORT_VERSION),
            "kind": protocol::REPORT_KIND,
            "metadata": metadata,
            "spec": spec,
        });
        let params = PatchParams::apply(FIELD_MANAGER).force();
        match self
            .reports
            .patch(&self.name(), &params, &Patch::Apply(&object))
            .await
        {
            Ok(_) => {
                if self.written.as_ref() != Some(&self.report) {
                    tracing::info!(report = %self.name(),
                        applied_hash = self.report.applied_hash.as_deref().unwrap_or("-"),
                        ready = self.report.ready,
                        refused = self.report.refusal.as_ref().map(|r| r.hash.as_str()).unwrap_or("-"),
                        refused_listeners = self.report.refused_listeners.len(),
                        "reported to the controller");
                    self.written = Some(self.report.clone());
                }
            }
            Err(kube::Error::Api(e)) if e.code == 404 => tracing::warn!(report = %self.name(),
                error = %e.message,
                "cannot write the gateway report: the GatewayReport kind is not installed (apply charts/postern/crds/); retrying at the next heartbeat"),
            Err(e) => tracing::warn!(report = %self.name(), error = %e,
                "cannot write the gateway report; retrying at the next heartbeat"),
        }
    }

    /// Removes the report at shutdown.
    async fn withdraw(&mut self) {
        match self
            .reports
            .delete(&self.name(), &DeleteParams::default())
            .await
        {
            Ok(_) => tracing::info!(report = %self.name(), "withdrew the gateway report"),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => tracing::warn!(report = %self.name(), error = %e,
                "cannot withdraw the gateway report; it expires on its own"),
        }
    }
}
