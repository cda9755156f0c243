//! Runs the CRL sources of the configuration in force: one fetch task per enabled source,
//! restarted when its spec changes, stopped when it is removed or disabled; the disk cache
//! is read before the first fetch so a restart enforces the last good CRLs at once.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use super::disk::DiskCache;
use super::fetch::{FetchError, FetchSettings, HttpFetcher, Validators};
use super::schedule::{self, Ctx, InForce};
use super::store::{CrlStore, Reconfigured};
use super::unix_now;
use crate::config::GatewayConfig;

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

/// The running CRL sources.
#[derive(Debug)]
pub struct CrlService {
    ctx: Arc<Ctx>,
    tasks: Mutex<HashMap<String, CancellationToken>>,
    root: CancellationToken,
}

impl CrlService {
    /// A service feeding `store`. Call [`CrlService::apply`] with each configuration.
    pub fn new(store: Arc<CrlStore>, settings: ServiceSettings) -> Result<Self, ServiceError> {
        let fetcher = HttpFetcher::new(&settings.fetch)?;
        let cache = match &settings.cache_dir {
            Some(dir) => Some(DiskCache::new(dir).map_err(|source| ServiceError::Cache {
                path: dir.display().to_string(),
                source,
            })?),
            None => None,
        };
        Ok(Self {
            ctx: Arc::new(Ctx {
                store,
                settings: settings.fetch,
                fetcher,
                cache,
            }),
            tasks: Mutex::new(HashMap::new()),
            root: CancellationToken::new(),
        })
    }

    /// The store the TLS verifiers ask.
    pub fn store(&self) -> &Arc<CrlStore> {
        &self.ctx.store
    }

    /// Take in a configuration: trusted CAs, sources added, changed, disabled or removed.
    /// New sources are first restored from the disk cache (awaited, so the caller can
    /// start accepting connections with the last good CRLs already in force).
    pub async fn apply(&self, config: &GatewayConfig) -> Reconfigured {
        let r = self.ctx.store.configure(config);
        for (source, issuer) in &r.untrusted {
            tracing::warn!(source = %source, issuer = %issuer, "CRL taken out of force: its CA is no longer trusted by any listener");
        }
        {
            let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
            for name in &r.stop {
                if let Some(t) = tasks.remove(name) {
                    t.cancel();
                }
                if !config.crl_sources.contains_key(name)
                    && let Some(cache) = &self.ctx.cache
                {
                    cache.remove(name);
                }
            }
        }
        for (name, generation) in &r.start {
            let in_force = self.restore(name, *generation).await;
            let token = self.root.child_token();
            self.tasks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(name.clone(), token.clone());
            tracing::info!(source = %name, generation, "CRL source started");
            tokio::spawn(schedule::run(
                Arc::clone(&self.ctx),
                name.clone(),
                *generation,
                in_force,
                token,
            ));
        }
        r
    }

    /// Put the cached file of a source in force, if it has none in force yet.
    async fn restore(&self, name: &str, generation: u64) -> InForce {
        let (current, _) = self.ctx.store.in_force(name);
        let Some(cache) = self.ctx.cache.clone() else {
            return InForce::default();
        };
        let Some((spec, _)) = self.ctx.store.spec(name) else {
            return InForce::default();
        };
        let source = name.to_owned();
        let read = tokio::task::spawn_blocking(move || cache.load(&source)).await;
        let (bytes, meta) = match read {
            Ok(Ok(Some(found))) => found,
            Ok(Ok(None)) => return InForce::default(),
            Ok(Err(e)) => {
                tracing::warn!(source = name, error = %e, "CRL disk cache unreadable; waiting for the network");
                return InForce::default();
            }
            Err(e) => {
                tracing::warn!(source = name, error = %e, "CRL disk cache unreadable; waiting for the network");
                return InForce::default();
            }
        };
        let url_still_configured = meta.url == spec.primary_url
            || spec.secondary_url.as_deref() == Some(meta.url.as_str());
        if meta.format != spec.format || !url_still_configured {
            tracing::info!(source = name, cached_url = %meta.url, "CRL disk cache is for another URL or format; ignored");
            return InForce::default();
        }
        if !current.is_empty() {
            // Already in force (a spec change that kept the URL): just reuse the validators.
            return InForce {
                url: Some(meta.url),
                validators: meta.validators,
            };
        }
        let validators: Validators = meta.validators.clone();
        match schedule::accept(
            &self.ctx,
            name,
            generation,
            &spec,
            meta.served_by,
            &meta.url,
            bytes,
            Validators::default(),
            true,
            unix_now(),
        )
        .await
        {
            Ok(()) => InForce {
                url: Some(meta.url),
                validators,
            },
            Err(refusal) => {
                tracing::warn!(source = name, url = %meta.url, reason = refusal.code(), error = %refusal, "cached CRL refused; waiting for the network");
                InForce::default()
            }
        }
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
