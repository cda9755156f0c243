//! The controller's main loop: watches feed a debounced queue of namespaces; the leader
//! reconciles them; everything stops cleanly on shutdown.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use kube::Client;
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::admission::metrics::AdmissionMetrics;
use super::admission::server::{self as webhook, ServeError, WebhookOptions};
use super::cluster::Cluster;
use super::debounce::Debouncer;
use super::error::ReconcileError;
use super::http::{self, Health};
use super::leader::{self, Leadership, LeaseSettings};
use super::metrics::{Metrics, ResultLabel};
use super::reconcile::{Context, Outcome};
use super::refs::RefWatches;
use super::watch::{self, Scope, Stores, Trigger};

/// How the controller runs.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    /// Namespaces to manage; empty means all.
    pub namespaces: Vec<String>,
    /// Leader election; `None` runs as the only writer.
    pub lease: Option<LeaseSettings>,
    /// This replica's identity (Events' reporting instance).
    pub identity: String,
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub metrics_address: SocketAddr,
    /// Quiet time after a change before a namespace is reconciled.
    pub debounce: Duration,
    /// Longest a changing namespace waits.
    pub debounce_max: Duration,
    /// Every namespace is reconciled at least this often.
    pub resync: Duration,
    /// Name of the rendered Secret in each namespace.
    pub secret_name: String,
    /// How large a namespace's rendered configuration may be.
    pub config_limits: postern_config::protocol::Limits,
    /// How many status writes run at once.
    pub write_concurrency: usize,
    /// How many namespaces are reconciled at once.
    pub namespace_concurrency: usize,
    /// The admission webhook; `None`: not served.
    pub webhook: Option<WebhookOptions>,
}

impl Options {
    /// Defaults for `identity`.
    pub(crate) fn new(identity: &str) -> Self {
        Self {
            namespaces: Vec::new(),
            lease: None,
            identity: identity.into(),
            metrics_address: SocketAddr::from(([0, 0, 0, 0], 8080)),
            debounce: Duration::from_millis(100),
            debounce_max: Duration::from_secs(1),
            resync: Duration::from_secs(300),
            secret_name: postern_config::protocol::RENDERED_SECRET.into(),
            config_limits: postern_config::protocol::Limits::default(),
            write_concurrency: 32,
            namespace_concurrency: 4,
            webhook: None,
        }
    }
}

/// Errors that stop the controller.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RunError {
    /// The metrics address could not be bound.
    #[error("cannot bind the metrics address {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The admission webhook could not start.
    #[error(transparent)]
    Webhook(#[from] ServeError),
}

/// Runs the controller until `shutdown`. Returns the bound metrics address through
/// `bound` as soon as it is known (useful with port 0).
pub(crate) async fn run(
    client: Client,
    opts: Options,
    shutdown: CancellationToken,
    bound: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
) -> Result<(), RunError> {
    let mut registry = Registry::default();
    let metrics = Arc::new(Metrics::new(&mut registry));
    let admission_metrics = Arc::new(AdmissionMetrics::new(&mut registry));
    let health = Arc::new(Health::default());
    let endpoints = Endpoints::start(opts.metrics_address, registry, health.clone()).await?;
    if let Some(tx) = bound {
        let _ = tx.send(endpoints.address);
    }
    tracing::info!(metrics = %endpoints.address, identity = %opts.identity,
        namespaces = ?opts.namespaces, "controller starting");
    let election = Election::start(&client, opts.lease.as_ref());

    let (tx, rx) = mpsc::unbounded_channel::<Trigger>();
    let scope = if opts.namespaces.is_empty() {
        Scope::All
    } else {
        Scope::Namespaces(opts.namespaces.clone())
    };
    let (stores, watch_tasks) = watch::spawn(&client, &scope, tx);
    let webhook_stop = CancellationToken::new();
    let webhook_task = match opts.webhook.clone() {
        Some(w) => Some(
            webhook::start(
                client.clone(),
                stores.clone(),
                health.clone(),
                admission_metrics,
                w,
                webhook_stop.clone(),
            )
            .await?
            .1,
        ),
        None => None,
    };
    let (ref_tx, ref_rx) = mpsc::unbounded_channel::<String>();
    let cluster = Cluster::new(
        client.clone(),
        election.leadership.clone(),
        &opts.identity,
        metrics.clone(),
    );
    let ctx = Context::new(
        cluster,
        stores.clone(),
        RefWatches::new(client, ref_tx),
        opts.secret_name.clone(),
        opts.write_concurrency,
        opts.config_limits,
    );
    let scheduler = Scheduler {
        ctx: Arc::new(ctx),
        stores,
        leadership: election.leadership.clone(),
        metrics,
        health: health.clone(),
        queue: Debouncer::new(opts.debounce, opts.debounce_max),
        synced: false,
        failures: HashMap::new(),
        expiry: HashMap::new(),
        namespace_concurrency: opts.namespace_concurrency.max(1),
    };
    scheduler.run(&shutdown, rx, ref_rx, opts.resync).await;

    tracing::info!("shutting down");
    health.stopping.store(true, Ordering::Relaxed);
    for t in watch_tasks {
        t.abort();
    }
    webhook_stop.cancel();
    if let Some(t) = webhook_task {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
    election.stop().await;
    endpoints.stop().await;
    tracing::info!("stopped");
    Ok(())
}

/// `/metrics`, `/healthz` and `/readyz`, served until stopped.
struct Endpoints {
    address: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl Endpoints {
    async fn start(
        address: SocketAddr,
        registry: Registry,
        health: Arc<Health>,
    ) -> Result<Self, RunError> {
        let bind_err = |source| RunError::Bind { address, source };
        let listener = http::bind(address).await.map_err(bind_err)?;
        let address = listener.local_addr().map_err(bind_err)?;
        let stop = CancellationToken::new();
        let task = tokio::spawn(http::serve(
            listener,
            Arc::new(registry),
            health,
            stop.clone(),
        ));
        Ok(Self {
            address,
            stop,
            task,
        })
    }

    async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.task).await;
    }
}

/// Leader election, or none (the only writer).
struct Election {
    leadership: Leadership,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Election {
    fn start(client: &Client, lease: Option<&LeaseSettings>) -> Self {
        let stop = CancellationToken::new();
        let (leadership, task) = match lease {
            Some(settings) => {
                let (l, task) = leader::spawn(client.clone(), settings.clone(), stop.clone());
                (l, Some(task))
            }
            None => (Leadership::always(), None),
        };
        Self {
            leadership,
            stop,
            task,
        }
    }

    async fn stop(self) {
        self.stop.cancel();
        if let Some(task) = self.task {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

/// Which namespace is reconciled when: the debounced queue, fed by the watches, the
/// resync timer and the gateway reports' expiries; and the failures' backoff.
struct Scheduler {
    ctx: Arc<Context>,
    stores: Stores,
    leadership: Leadership,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    queue: Debouncer<String>,
    /// Every watch has listed once.
    synced: bool,
    /// Consecutive failures per namespace.
    failures: HashMap<String, u32>,
    /// Namespaces whose gateway reports expire at a time: checked cheaply, reconciled
    /// only when the fleet changed.
    expiry: HashMap<String, Instant>,
    namespace_concurrency: usize,
}

impl Scheduler {
    async fn run(
        mut self,
        shutdown: &CancellationToken,
        mut triggers: mpsc::UnboundedReceiver<Trigger>,
        mut refs: mpsc::UnboundedReceiver<String>,
        resync: Duration,
    ) {
        let mut resync = tokio::time::interval(resync);
        resync.tick().await;
        self.metrics
            .leader
            .set(i64::from(self.leadership.is_leader()));
        loop {
            let due = [self.queue.next_due(), self.expiry.values().min().copied()]
                .into_iter()
                .flatten()
                .min();
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                leading = self.leadership.changed() => self.leadership_changed(leading),
                Some(t) = triggers.recv() => self.triggered(t),
                Some(ns) = refs.recv() => self.queue.touch(ns, Instant::now()),
                _ = resync.tick() => {
                    for ns in self.stores.namespaces() {
                        self.queue.schedule(ns, Instant::now());
                    }
                }
                () = sleep_until(due) => self.due().await,
            }
        }
    }

    fn touch_all(&mut self) {
        for ns in self.stores.namespaces() {
            self.queue.touch(ns, Instant::now());
        }
    }

    fn leadership_changed(&mut self, leading: bool) {
        self.metrics.leader.set(i64::from(leading));
        self.ctx.forget_leadership();
        if leading {
            tracing::info!("leading: reconciling every namespace");
            self.touch_all();
        }
    }

    fn triggered(&mut self, trigger: Trigger) {
        match trigger {
            Trigger::Namespace(ns) => self.queue.touch(ns, Instant::now()),
            Trigger::All => self.touch_all(),
            Trigger::Synced => {
                self.synced = true;
                self.health.synced.store(true, Ordering::Relaxed);
                tracing::info!(objects = self.stores.object_count(), "caches synced");
                self.touch_all();
            }
        }
    }

    /// Something is due: expiries to check, namespaces to reconcile.
    async fn due(&mut self) {
        let now = Instant::now();
        let expired: Vec<String> = self
            .expiry
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(ns, _)| ns.clone())
            .collect();
        for ns in expired {
            self.expiry.remove(&ns);
            match self.ctx.fleet_changed(&ns) {
                (true, _) => self.queue.schedule(ns, now),
                (false, Some(at)) => {
                    self.expiry.insert(ns, at);
                }
                (false, None) => {}
            }
        }
        let batch = self.queue.take_due(now);
        if batch.is_empty() {
            return;
        }
        if !self.synced || !self.leadership.is_leader() {
            // Standby (or still listing): nothing is written. Becoming leader
            // or finishing the lists queues every namespace again.
            return;
        }
        let results: Vec<(String, Result<Outcome, ReconcileError>, Duration)> =
            futures::stream::iter(batch.into_iter().map(|ns| {
                let ctx = self.ctx.clone();
                async move {
                    let started = std::time::Instant::now();
                    let r = ctx.reconcile(&ns).await;
                    (ns, r, started.elapsed())
                }
            }))
            .buffer_unordered(self.namespace_concurrency)
            .collect()
            .await;
        for (ns, result, took) in results {
            self.reconciled(ns, result, took);
        }
    }

    /// Books a reconcile's result: metrics, log, and when to look at the namespace again.
    fn reconciled(&mut self, ns: String, result: Result<Outcome, ReconcileError>, took: Duration) {
        let metrics = &self.metrics;
        metrics.reconcile_duration.observe(took.as_secs_f64());
        match result {
            Ok(outcome) => {
                self.failures.remove(&ns);
                metrics
                    .reconciles
                    .get_or_create(&ResultLabel {
                        result: "ok".into(),
                    })
                    .inc();
                tracing::info!(namespace = %ns, took_ms = took.as_millis() as u64,
                    status_writes = outcome.status_writes, published = outcome.published,
                    "reconciled");
                if let Some(at) = outcome.retry_at {
                    self.queue.schedule(ns.clone(), at);
                }
                match outcome.expiry_check_at {
                    Some(at) => self.expiry.insert(ns, at),
                    None => self.expiry.remove(&ns),
                };
            }
            Err(e) => {
                metrics
                    .reconciles
                    .get_or_create(&ResultLabel {
                        result: "error".into(),
                    })
                    .inc();
                metrics.error(e.reason());
                let n = self.failures.entry(ns.clone()).or_default();
                *n += 1;
                let backoff =
                    Duration::from_millis(200 * 2u64.pow((*n).min(8))).min(Duration::from_secs(30));
                tracing::warn!(namespace = %ns, error = %e, retry_in_ms = backoff.as_millis() as u64,
                    "reconcile failed");
                self.queue.schedule(ns, Instant::now() + backoff);
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
