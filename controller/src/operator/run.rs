//! The controller's main loop: watches feed a debounced queue of namespaces; the leader
//! reconciles them; everything stops cleanly on shutdown.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::debounce::Debouncer;
use super::http::{self, Health};
use super::leader::{self, Leadership, LeaseSettings};
use super::metrics::{Metrics, ResultLabel};
use super::reconcile::{Context, Memory};
use super::refs::RefWatches;
use super::watch::{self, Scope, Trigger};

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct Options {
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
    /// How many status writes run at once.
    pub write_concurrency: usize,
    /// How many namespaces are reconciled at once.
    pub namespace_concurrency: usize,
}

impl Options {
    /// Defaults for `identity`.
    pub fn new(identity: &str) -> Self {
        Self {
            namespaces: Vec::new(),
            lease: None,
            identity: identity.into(),
            metrics_address: SocketAddr::from(([0, 0, 0, 0], 8080)),
            debounce: Duration::from_millis(100),
            debounce_max: Duration::from_secs(1),
            resync: Duration::from_secs(300),
            secret_name: postern_config::protocol::RENDERED_SECRET.into(),
            write_concurrency: 32,
            namespace_concurrency: 4,
        }
    }
}

/// Errors that stop the controller.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The metrics address could not be bound.
    #[error("cannot bind the metrics address {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Runs the controller until `shutdown`. Returns the bound metrics address through
/// `bound` as soon as it is known (useful with port 0).
pub async fn run(
    client: Client,
    opts: Options,
    shutdown: CancellationToken,
    bound: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
) -> Result<(), RunError> {
    let mut registry = Registry::default();
    let metrics = Arc::new(Metrics::new(&mut registry));
    let health = Arc::new(Health::default());
    let listener = http::bind(opts.metrics_address)
        .await
        .map_err(|source| RunError::Bind {
            address: opts.metrics_address,
            source,
        })?;
    let address = listener.local_addr().map_err(|source| RunError::Bind {
        address: opts.metrics_address,
        source,
    })?;
    if let Some(tx) = bound {
        let _ = tx.send(address);
    }
    let http_stop = CancellationToken::new();
    let http_task = tokio::spawn(http::serve(
        listener,
        Arc::new(registry),
        health.clone(),
        http_stop.clone(),
    ));
    tracing::info!(metrics = %address, identity = %opts.identity,
        namespaces = ?opts.namespaces, "controller starting");

    let election_stop = CancellationToken::new();
    let (mut leadership, election) = match &opts.lease {
        Some(settings) => {
            let (l, task) = leader::spawn(client.clone(), settings.clone(), election_stop.clone());
            (l, Some(task))
        }
        None => (Leadership::always(), None),
    };

    let (tx, mut rx) = mpsc::unbounded_channel::<Trigger>();
    let scope = if opts.namespaces.is_empty() {
        Scope::All
    } else {
        Scope::Namespaces(opts.namespaces.clone())
    };
    let (stores, watch_tasks) = watch::spawn(&client, &scope, tx.clone());
    let (ref_tx, mut ref_rx) = mpsc::unbounded_channel::<String>();
    let ctx = Arc::new(Context {
        client: client.clone(),
        secret_name: opts.secret_name.clone(),
        stores: stores.clone(),
        refs: RefWatches::new(client.clone(), ref_tx),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "postern-controller".into(),
                instance: Some(opts.identity.clone()),
            },
        ),
        leadership: leadership.clone(),
        metrics: metrics.clone(),
        memory: Mutex::new(Memory::default()),
        write_concurrency: opts.write_concurrency.max(1),
    });

    let mut queue: Debouncer<String> = Debouncer::new(opts.debounce, opts.debounce_max);
    let mut synced = false;
    metrics.leader.set(i64::from(leadership.is_leader()));
    let mut failures: std::collections::HashMap<String, u32> = Default::default();
    let mut resync = tokio::time::interval(opts.resync);
    resync.tick().await;
    // Namespaces whose gateway reports expire at a time: checked cheaply, reconciled
    // only when the fleet changed.
    let mut expiry: std::collections::HashMap<String, Instant> = Default::default();

    loop {
        let due = [queue.next_due(), expiry.values().min().copied()]
            .into_iter()
            .flatten()
            .min();
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            leading = leadership.changed() => {
                metrics.leader.set(i64::from(leading));
                ctx.memory.lock().expect("not poisoned").clear();
                if leading {
                    tracing::info!("leading: reconciling every namespace");
                    for ns in stores.namespaces() {
                        queue.touch(ns, Instant::now());
                    }
                }
            }
            Some(t) = rx.recv() => match t {
                Trigger::Namespace(ns) => queue.touch(ns, Instant::now()),
                Trigger::All => {
                    for ns in stores.namespaces() {
                        queue.touch(ns, Instant::now());
                    }
                }
                Trigger::Synced => {
                    synced = true;
                    health.synced.store(true, Ordering::Relaxed);
                    tracing::info!(objects = stores.object_count(), "caches synced");
                    for ns in stores.namespaces() {
                        queue.touch(ns, Instant::now());
                    }
                }
            },
            Some(ns) = ref_rx.recv() => queue.touch(ns, Instant::now()),
            _ = resync.tick() => {
                for ns in stores.namespaces() {
                    queue.schedule(ns, Instant::now());
                }
            }
            () = sleep_until(due) => {
                let now = Instant::now();
                let expired: Vec<String> = expiry
                    .iter()
                    .filter(|(_, at)| **at <= now)
                    .map(|(ns, _)| ns.clone())
                    .collect();
                for ns in expired {
                    expiry.remove(&ns);
                    match ctx.fleet_changed(&ns) {
                        (true, _) => queue.schedule(ns, now),
                        (false, Some(at)) => {
                            expiry.insert(ns, at);
                        }
                        (false, None) => {}
                    }
                }
                let batch = queue.take_due(now);
                if batch.is_empty() {
                    continue;
                }
                if !synced || !leadership.is_leader() {
                    // Standby (or still listing): nothing is written. Becoming leader
                    // or finishing the lists queues every namespace again.
                    continue;
                }
                let results: Vec<(String, Result<super::reconcile::Outcome, super::reconcile::ReconcileError>, Duration)> =
                    futures::stream::iter(batch.into_iter().map(|ns| {
                        let ctx = ctx.clone();
                        async move {
                            let started = std::time::Instant::now();
                            let r = ctx.reconcile(&ns).await;
                            (ns, r, started.elapsed())
                        }
                    }))
                    .buffer_unordered(opts.namespace_concurrency.max(1))
                    .collect()
                    .await;
                for (ns, result, took) in results {
                    metrics.reconcile_duration.observe(took.as_secs_f64());
                    match result {
                        Ok(outcome) => {
                            failures.remove(&ns);
                            metrics.reconciles.get_or_create(&ResultLabel { result: "ok".into() }).inc();
                            tracing::info!(namespace = %ns, took_ms = took.as_millis() as u64,
                                status_writes = outcome.status_writes, published = outcome.published,
                                "reconciled");
                            if let Some(at) = outcome.retry_at {
                                queue.schedule(ns.clone(), at);
                            }
                            match outcome.expiry_check_at {
                                Some(at) => expiry.insert(ns, at),
                                None => expiry.remove(&ns),
                            };
                        }
                        Err(e) => {
                            metrics.reconciles.get_or_create(&ResultLabel { result: "error".into() }).inc();
                            metrics.error(e.reason());
                            let n = failures.entry(ns.clone()).or_default();
                            *n += 1;
                            let backoff = Duration::from_millis(200 * 2u64.pow((*n).min(8)))
                                .min(Duration::from_secs(30));
                            tracing::warn!(namespace = %ns, error = %e, retry_in_ms = backoff.as_millis() as u64,
                                "reconcile failed");
                            queue.schedule(ns, Instant::now() + backoff);
                        }
                    }
                }
            }
        }
    }

    tracing::info!("shutting down");
    health.stopping.store(true, Ordering::Relaxed);
    for t in watch_tasks {
        t.abort();
    }
    election_stop.cancel();
    if let Some(task) = election {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    http_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), http_task).await;
    tracing::info!("stopped");
    Ok(())
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
