//! Applying configurations: validate and build completely, then swap atomically.
//!
//! [`Reloader::apply`] is the one entry point for every configuration source: the file
//! watcher here (`--config FILE`), and the Kubernetes Secret watcher beside it. A refused
//! configuration is logged with every problem and counted; the one in force keeps serving.
//! A configuration that validates is applied as far as it can run: a Listener that cannot
//! (its port in use, say) is refused on its own — one decision line and the
//! `postern_listener_refused` gauge each — and [`retry_refused_listeners`] brings it up
//! once its address is free.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::metrics::{HashLabels, ListenerRefusedLabels, ReloadLabels};
use crate::runtime::{self, Services};
use crate::server::{self, Server};
use postern_config::GatewayConfig;
use postern_config::protocol::{ListenerRefusal, ListenerRefusalReason, ListenerServing};

/// What happened to an applied configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// It is now in force.
    Installed {
        /// Its generation.
        generation: u64,
        /// Its hash.
        hash: String,
        /// Its Listeners that do not run as configured (the rest does).
        refused: Vec<ListenerRefusal>,
    },
    /// It is the one already in force.
    Unchanged {
        /// Its hash.
        hash: String,
    },
}

/// The outcome of the last attempt, for the admin endpoint.
#[derive(Clone, Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LastAttempt {
    /// Where the configuration came from.
    pub origin: String,
    /// Its hash, when it parsed.
    pub hash: Option<String>,
    /// Why it was refused, when it was.
    pub error: Option<String>,
    /// Listeners of it that do not run as configured, when it was applied.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub refused_listeners: Vec<ListenerRefusal>,
    /// When (RFC 3339).
    pub time: String,
}

/// Told about every configuration about to be put in force (it built; called just before
/// the swap; may block briefly).
pub type ApplyObserver = Box<dyn Fn(&GatewayConfig) + Send + Sync>;

/// Builds and installs configurations.
pub struct Reloader {
    server: Server,
    services: Services,
    generation: AtomicU64,
    lock: Mutex<()>,
    last: Mutex<LastAttempt>,
    observers: Vec<ApplyObserver>,
    /// The configuration in force and where it came from (re-applied to retry its
    /// refused Listeners).
    in_force: Mutex<Option<(GatewayConfig, String)>>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("server", &self.server)
            .field("generation", &self.generation)
            .field("observers", &self.observers.len())
            .finish_non_exhaustive()
    }
}

impl Reloader {
    /// A reloader for `server`.
    pub fn new(server: Server, services: Services) -> Self {
        Self {
            server,
            services,
            generation: AtomicU64::new(0),
            lock: Mutex::new(()),
            last: Mutex::new(LastAttempt::default()),
            observers: Vec::new(),
            in_force: Mutex::new(None),
        }
    }

    /// Also tell `observer` about every configuration put in force (e.g. the CRL sources).
    pub fn with_observer(mut self, observer: ApplyObserver) -> Self {
        self.observers.push(observer);
        self
    }

    /// The last attempt's outcome.
    pub fn last_attempt(&self) -> LastAttempt {
        self.last.lock().expect("last lock").clone()
    }

    /// The configuration in force (the last one applied), if any.
    pub fn config_in_force(&self) -> Option<GatewayConfig> {
        let in_force = self.in_force.lock().expect("in-force lock");
        in_force.as_ref().map(|(config, _)| config.clone())
    }

    /// The server it installs into.
    pub fn server(&self) -> &Server {
        &self.server
    }

    fn record(&self, origin: &str, hash: Option<String>, error: Option<String>) {
        let time = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        *self.last.lock().expect("last lock") = LastAttempt {
            origin: origin.to_owned(),
            hash,
            error,
            time,
            refused_listeners: Vec::new(),
        };
    }

    fn refused(&self, origin: &str, hash: Option<String>, why: String) -> String {
        self.services
            .metrics
            .config_reloads
            .get_or_create(&ReloadLabels {
                outcome: "refused".into(),
            })
            .inc();
        if self.server.current().is_some() {
            error!(target: "postern::decision", decision = "config", outcome = "refused", origin, reason = %why, "configuration refused; the one in force keeps serving");
        } else {
            error!(target: "postern::decision", decision = "config", outcome = "refused", origin, reason = %why, "configuration refused; no configuration is in force");
        }
        self.record(origin, hash, Some(why.clone()));
        why
    }

    /// Report a configuration that could not even be read or parsed.
    pub fn refuse_unreadable(&self, origin: &str, why: String) -> String {
        self.refused(origin, None, why)
    }

    /// Validate, build and install `config`. Blocking (builds TLS configurations): call
    /// from a blocking-safe context or accept the short pause. `Err` when it does not
    /// validate (nothing changes); otherwise it is in force, except the Listeners in
    /// `Applied::Installed::refused`. The configuration in force is applied again (not
    /// `Unchanged`) while some of its Listeners are refused: that is the retry.
    pub fn apply(&self, config: &GatewayConfig, origin: &str) -> Result<Applied, String> {
        let _serial = self.lock.lock().expect("reload lock");
        let hash = config.hash();
        let current = self.server.current();
        if current
            .as_ref()
            .is_some_and(|rt| rt.hash == hash && rt.refused.is_empty())
        {
            self.services
                .metrics
                .config_reloads
                .get_or_create(&ReloadLabels {
                    outcome: "unchanged".into(),
                })
                .inc();
            self.record(origin, Some(hash.clone()), None);
            return Ok(Applied::Unchanged { hash });
        }
        let generation = self.generation.load(Ordering::Acquire) + 1;
        let rt = match runtime::build(config, generation, &self.services) {
            Ok(rt) => rt,
            Err(e) => return Err(self.refused(origin, Some(hash), e.to_string())),
        };
        // Before the swap: the new listeners must not accept a connection before, e.g., the
        // CRLs of the new configuration are in force.
        for observe in &self.observers {
            observe(config);
        }
        let old_hash = current.as_ref().map(|r| r.hash.clone());
        let was_refused = current.map(|r| r.refused.clone()).unwrap_or_default();
        let refused = match self.server.install(rt) {
            Ok(refused) => refused,
            Err(e) => return Err(self.refused(origin, Some(hash), e.to_string())),
        };
        self.generation.store(generation, Ordering::Release);
        *self.in_force.lock().expect("in-force lock") = Some((config.clone(), origin.to_owned()));
        let m = &self.services.metrics;
        if let Some(old) = old_hash.filter(|old| *old != hash) {
            m.config_info.remove(&HashLabels { hash: old });
        }
        m.config_info
            .get_or_create(&HashLabels { hash: hash.clone() })
            .set(1);
        m.config_generation.set(generation as i64);
        m.in_force.set(config);
        m.config_reloads
            .get_or_create(&ReloadLabels {
                outcome: "applied".into(),
            })
            .inc();
        self.report_listeners(config, &was_refused, &refused);
        if refused.is_empty() {
            info!(target: "postern::decision", decision = "config", outcome = "applied", origin, generation, hash = %hash, listeners = config.listeners.len(), "configuration applied");
        } else {
            warn!(target: "postern::decision", decision = "config", outcome = "applied", origin, generation, hash = %hash, listeners = config.listeners.len(), refused_listeners = refused.len(), "configuration applied except the refused listeners");
        }
        self.record(origin, Some(hash.clone()), None);
        self.last.lock().expect("last lock").refused_listeners = refused.clone();
        Ok(Applied::Installed {
            generation,
            hash,
            refused,
        })
    }

    /// One decision line per Listener refused now (or refused differently), one per
    /// Listener that was refused and now runs; the `listener_refused` gauge follows.
    fn report_listeners(
        &self,
        config: &GatewayConfig,
        before: &[ListenerRefusal],
        now: &[ListenerRefusal],
    ) {
        let gauge = &self.services.metrics.listener_refused;
        for r in before {
            gauge.remove(&ListenerRefusedLabels::of(r));
            if !now.iter().any(|n| n.listener == r.listener) {
                if config.listeners.contains_key(&r.listener) {
                    info!(target: "postern::decision", decision = "listener", outcome = "serving", listener = %r.listener, "listener runs as configured now");
                } else {
                    info!(target: "postern::decision", decision = "listener", outcome = "removed", listener = %r.listener, "refused listener removed from the configuration");
                }
            }
        }
        for r in now {
            gauge.get_or_create(&ListenerRefusedLabels::of(r)).set(1);
            if before.contains(r) {
                continue;
            }
            let (serving, serving_address) = match &r.serving {
                ListenerServing::NotServed => ("not_served", "-"),
                ListenerServing::PreviousVersion { address } => {
                    ("previous_version", address.as_str())
                }
            };
            warn!(target: "postern::decision", decision = "listener", outcome = "refused",
                listener = %r.listener, address = %r.address, reason = r.reason.as_str(),
                error = %r.message, serving, serving_address,
                "listener refused: {}", r.describe());
        }
    }

    /// Re-apply the configuration in force when one of its Listeners was refused for an
    /// address that can be bound now. `None` when there is nothing to retry (or still
    /// nothing free).
    pub fn retry_refused_listeners(&self) -> Option<Result<Applied, String>> {
        let rt = self.server.current()?;
        let free = rt
            .refused
            .iter()
            .filter(|r| r.reason == ListenerRefusalReason::PortUnavailable)
            .filter_map(|r| r.address.parse().ok())
            .any(server::can_bind);
        if !free {
            return None;
        }
        let (config, origin) = self.in_force.lock().expect("in-force lock").clone()?;
        (config.hash() == rt.hash).then(|| self.apply(&config, &origin))
    }

    /// Read, parse and apply a configuration file.
    pub fn apply_file(&self, path: &Path) -> Result<Applied, String> {
        let origin = path.display().to_string();
        match GatewayConfig::load(path) {
            Ok(config) => self.apply(&config, &origin),
            Err(e) => Err(self.refuse_unreadable(&origin, e.to_string())),
        }
    }
}

/// Every `every`, bring up the refused Listeners of the configuration in force whose
/// address has become free (whatever the configuration's source: the file or the
/// cluster Secret do not change when another process lets go of a port).
pub async fn retry_refused_listeners(reloader: Arc<Reloader>, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let r = reloader.clone();
        let _ = tokio::task::spawn_blocking(move || r.retry_refused_listeners()).await;
    }
}

/// Whether a file-system event in the configuration's directory can mean the file
/// changed. Opening, reading and closing without writing cannot — and must not count:
/// the watcher's own read of the file raises exactly those events, so counting them made
/// an idle gateway re-read and hash its configuration ten times a second, forever.
fn may_change(event: &notify::Result<notify::Event>) -> bool {
    use notify::EventKind;
    use notify::event::{AccessKind, AccessMode};
    match event {
        Ok(e) => match e.kind {
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
            EventKind::Access(_) => false,
            _ => true,
        },
        // An error may hide a change: look at the file.
        Err(_) => true,
    }
}

/// Watch `path` and apply it whenever its content changes (inotify through `notify`, plus
/// polling every `poll` as a safety net, e.g. for Kubernetes' symlink-swapped volumes on
/// file systems without events). Also reloads on SIGHUP.
pub async fn watch_file(reloader: Arc<Reloader>, path: PathBuf, poll: Duration) {
    let (tx, mut rx) = mpsc::channel::<()>(16);
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let notify_tx = tx.clone();
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if may_change(&res) {
            let _ = notify_tx.try_send(());
        }
    });
    let _watcher = match watcher {
        Ok(mut w) => match w.watch(&dir, RecursiveMode::NonRecursive) {
            Ok(()) => Some(w),
            Err(e) => {
                warn!(dir = %dir.display(), error = %e, "cannot watch the configuration directory; polling only");
                None
            }
        },
        Err(e) => {
            warn!(error = %e, "file watching unavailable; polling only");
            None
        }
    };
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    // Not the file's digest now: it may already differ from what the caller applied (a
    // change between the first load and this point would be missed until the next one).
    // The first tick re-reads it; the same content is applied as `Unchanged`, a no-op.
    let mut last_seen: Option<Vec<u8>> = None;
    let mut ticker = tokio::time::interval(poll);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let forced = tokio::select! {
            _ = rx.recv() => false,
            _ = ticker.tick() => false,
            Some(_) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
        };
        // Let a burst of events (write, rename, chmod) settle.
        tokio::time::sleep(Duration::from_millis(100)).await;
        while rx.try_recv().is_ok() {}
        let digest = match tokio::fs::read(&path).await {
            Ok(bytes) => Some(Sha256::digest(&bytes).to_vec()),
            Err(_) => None,
        };
        if digest.is_none() || (digest == last_seen && !forced) {
            continue;
        }
        last_seen = digest;
        let r = reloader.clone();
        let p = path.clone();
        let _ = tokio::task::spawn_blocking(move || r.apply_file(&p)).await;
    }
}

#[cfg(test)]
mod tests {
    use notify::event::{
        AccessKind, AccessMode, CreateKind, DataChange, Event, EventKind, ModifyKind, RemoveKind,
        RenameMode,
    };

    use super::may_change;

    fn ev(kind: EventKind) -> notify::Result<Event> {
        Ok(Event::new(kind))
    }

    #[test]
    fn reads_do_not_trigger_a_reload_but_writes_do() {
        for kind in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Read),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Access(AccessKind::Any),
        ] {
            assert!(!may_change(&ev(kind)), "{kind:?}");
        }
        for kind in [
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Create(CreateKind::File),
            EventKind::Remove(RemoveKind::File),
            EventKind::Any,
            EventKind::Other,
        ] {
            assert!(may_change(&ev(kind)), "{kind:?}");
        }
        assert!(may_change(&Err(notify::Error::generic("queue overflow"))));
    }
}
