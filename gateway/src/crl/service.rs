//! Runs the CRL sources of the configuration in force: one fetch task per enabled source,
//! restarted when its spec changes, stopped when it is removed or disabled; the disk cache
//! is read before the first fetch so a restart enforces the last good CRLs at once.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use super::accept::{self, Ctx};
use super::budget::LoadBudget;
use super::disk::DiskCache;
use super::fetch::{FetchError, FetchSettings, HttpFetcher};
use super::schedule::{self, InForce};
use super::store::{CrlStore, Reconfigured};
use super::unix_now;
use postern_config::GatewayConfig;

/// Settings of the CRL service (from the gateway's command line).
#[derive(Clone, Debug, Default)]
pub struct ServiceSettings {
    /// Fetch limits and timings.
    pub fetch: FetchSettings,
    /// Where to keep the last good file of each source; `None`: no disk cache.
    pub cache_dir: Option<PathBuf>,
}

/// Why the CRL service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The HTTP client could not be built.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The cache directory is unusable.
    #[error("CRL cache directory {path}: {source}")]
    Cache {
        /// The directory.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The fetch task of each running source, by store key.
type Tasks = Mutex<HashMap<String, CancellationToken>>;

/// The running CRL sources.
#[derive(Debug)]
pub struct CrlService {
    ctx: Arc<Ctx>,
    tasks: Arc<Tasks>,
    root: CancellationToken,
    handle: tokio::runtime::Handle,
}

impl CrlService {
    /// A service feeding `store`. Call [`CrlService::apply`] with each configuration.
    /// Must be called within a Tokio runtime (the fetch tasks run on it).
    pub fn new(store: Arc<CrlStore>, settings: ServiceSettings) -> Result<Self, ServiceError> {
        let fetcher = HttpFetcher::new(&settings.fetch)?;
        let cache = match &settings.cache_dir {
            Some(dir) => Some(DiskCache::new(dir).map_err(|source| ServiceError::Cache {
                path: dir.display().to_string(),
                source,
            })?),
            None => None,
        };
        let ctx = Arc::new(Ctx {
            store,
            budget: LoadBudget::new(settings.fetch.load_budget),
            settings: settings.fetch,
            fetcher,
            cache,
        });
        let tasks = Arc::new(Tasks::default());
        let root = CancellationToken::new();
        let handle = tokio::runtime::Handle::current();
        // URLs discovered in presented certificates are started as they come.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, u64)>();
        ctx.store.on_discovery(tx);
        let (c, t, r, h) = (
            Arc::clone(&ctx),
            Arc::clone(&tasks),
            root.clone(),
            handle.clone(),
        );
        handle.spawn(async move {
            loop {
                let (name, generation) = tokio::select! {
                    () = r.cancelled() => return,
                    next = rx.recv() => match next {
                        Some(n) => n,
                        None => return,
                    },
                };
                let (ctx2, n) = (Arc::clone(&c), name.clone());
                let in_force = tokio::task::spawn_blocking(move || restore(&ctx2, &n, generation))
                    .await
                    .unwrap_or_default();
                start_task(&c, &t, &r, &h, &name, generation, in_force);
            }
        });
        Ok(Self {
            ctx,
            tasks,
            root,
            handle,
        })
    }

    /// The store the TLS verifiers ask.
    pub fn store(&self) -> &Arc<CrlStore> {
        &self.ctx.store
    }

    /// Take in a configuration: trusted CAs, sources added, changed, disabled or removed.
    /// New sources are first restored from the disk cache (so the caller can start
    /// accepting connections with the last good CRLs already in force).
    pub async fn apply(&self, config: &GatewayConfig) -> Reconfigured {
        let r = self.reconfigure(config);
        for (name, generation) in &r.start {
            let ctx = Arc::clone(&self.ctx);
            let (n, g) = (name.clone(), *generation);
            let in_force = tokio::task::spawn_blocking(move || restore(&ctx, &n, g))
                .await
                .unwrap_or_default();
            self.spawn(name, *generation, in_force);
        }
        r
    }

    /// [`CrlService::apply`] for synchronous callers (the configuration reloader): reads
    /// the disk cache on the calling thread.
    pub fn apply_blocking(&self, config: &GatewayConfig) -> Reconfigured {
        let r = self.reconfigure(config);
        for (name, generation) in &r.start {
            let in_force = restore(&self.ctx, name, *generation);
            self.spawn(name, *generation, in_force);
        }
        r
    }

    fn reconfigure(&self, config: &GatewayConfig) -> Reconfigured {
        let r = self.ctx.store.configure(config);
        for (source, issuer) in &r.untrusted {
            tracing::warn!(source = %source, issuer = %issuer, "CRL taken out of force: its CA is no longer trusted by any listener");
        }
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        for name in &r.stop {
            if let Some(t) = tasks.remove(name) {
                t.cancel();
            }
            match config.crl_sources.get(name) {
                // A discovered URL that its source keeps (restarted with a new spec).
                None if r.start.iter().any(|(n, _)| n == name) => {}
                None => {
                    tracing::info!(source = %name, "CRL source removed");
                    if let Some(cache) = &self.ctx.cache {
                        cache.remove(name);
                    }
                }
                Some(s) if !s.enabled => {
                    tracing::info!(source = %name, "CRL source disabled: not fetched, not enforced");
                }
                Some(_) => {}
            }
        }
        r
    }

    fn spawn(&self, name: &str, generation: u64, in_force: InForce) {
        start_task(
            &self.ctx,
            &self.tasks,
            &self.root,
            &self.handle,
            name,
            generation,
            in_force,
        );
    }

    /// Stop every fetch task.
    pub fn shutdown(&self) {
        self.root.cancel();
    }
}

impl Drop for CrlService {
    fn drop(&mut self) {
        self.root.cancel();
    }
}

/// Start (or restart) the fetch task of a source or discovered URL.
fn start_task(
    ctx: &Arc<Ctx>,
    tasks: &Tasks,
    root: &CancellationToken,
    handle: &tokio::runtime::Handle,
    name: &str,
    generation: u64,
    in_force: InForce,
) {
    let token = root.child_token();
    if let Some(old) = tasks
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(name.to_owned(), token.clone())
    {
        old.cancel();
    }
    tracing::info!(source = %name, generation, "CRL source started");
    handle.spawn(schedule::run(
        Arc::clone(ctx),
        name.to_owned(),
        generation,
        in_force,
        token,
    ));
}

/// Put the cached file of a source in force, if it has none in force yet (blocking).
fn restore(ctx: &Ctx, name: &str, generation: u64) -> InForce {
    let Some(cache) = &ctx.cache else {
        return InForce::default();
    };
    let Some((spec, _)) = ctx.store.spec(name) else {
        return InForce::default();
    };
    let (file, len, meta) = match cache.open(name) {
        Ok(Some(found)) => found,
        Ok(None) => return InForce::default(),
        Err(e) => {
            tracing::warn!(source = name, dir = %cache.dir().display(), error = %e, "CRL disk cache unreadable; waiting for the network");
            return InForce::default();
        }
    };
    // Restores run one after the other; this waits for the loads of fetched files.
    let _share = ctx.budget.take_blocking(Some(len));
    let url_still_configured = spec.primary_url.as_deref() == Some(meta.url.as_str())
        || spec.secondary_url.as_deref() == Some(meta.url.as_str());
    if meta.format != spec.format || !url_still_configured {
        tracing::info!(source = name, cached_url = %meta.url, "CRL disk cache is for another URL or format; ignored");
        return InForce::default();
    }
    let in_force = InForce {
        url: Some(meta.url.clone()),
        validators: meta.validators.clone(),
        sha256: Some(meta.sha256.clone()),
    };
    if !ctx.store.in_force(name).0.is_empty() {
        // Already in force (the spec changed but kept the URL): reuse the validators.
        return in_force;
    }
    let mut whole = Vec::new();
    let input = match accept::cached_input(file, spec.format, &mut whole) {
        Ok(input) => input,
        Err(e) => {
            tracing::warn!(source = name, dir = %cache.dir().display(), error = %e, "CRL disk cache unreadable; waiting for the network");
            return InForce::default();
        }
    };
    match accept::load_and_install(
        ctx,
        name,
        generation,
        &spec,
        meta.served_by,
        &meta.url,
        input,
        true,
        unix_now(),
    ) {
        Ok(_) => in_force,
        Err(refusal) => {
            tracing::warn!(source = name, url = %meta.url, reason = refusal.code(), error = %refusal, "cached CRL refused; waiting for the network");
            InForce::default()
        }
    }
}
