//! Watches on exactly the Secrets and ConfigMaps the resources reference.
//!
//! Each referenced object gets its own watch, selected by name
//! (`fieldSelector=metadata.name=NAME`), started when a reconcile first needs it and
//! stopped when nothing references it any more. No Secret the resources do not name is
//! ever read or cached. A change of a watched object marks its namespace for reconcile.
//!
//! A Secret's [`SECRET_USE_LABEL`] is part of its content here: adding or changing the
//! label is a change like any other (the compiler decides whether the use is allowed).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use tokio::sync::mpsc;

use crate::compile::SECRET_USE_LABEL;

/// Which kind of object a reference names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum RefKind {
    /// A core/v1 Secret.
    Secret,
    /// A core/v1 ConfigMap.
    ConfigMap,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct RefKey {
    kind: RefKind,
    namespace: String,
    name: String,
}

/// The content of a referenced object that matters (metadata changes do not).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Content {
    /// A Secret.
    Secret(Secret),
    /// A ConfigMap.
    ConfigMap(ConfigMap),
}

fn use_label(s: &Secret) -> Option<&String> {
    s.metadata.labels.as_ref()?.get(SECRET_USE_LABEL)
}

/// A referenced Secret as kept: no server-side apply bookkeeping or annotations.
fn secret_content(mut s: Secret) -> Content {
    s.metadata.managed_fields = None;
    s.metadata.annotations = None;
    Content::Secret(s)
}

/// A referenced ConfigMap as kept (as [`secret_content`]).
fn config_map_content(mut c: ConfigMap) -> Content {
    c.metadata.managed_fields = None;
    c.metadata.annotations = None;
    Content::ConfigMap(c)
}

/// How many referenced objects a reconcile reads at once when their watches have not
/// delivered them yet (a cold start reads every one).
const GET_CONCURRENCY: usize = 32;

impl Content {
    fn same_content(&self, other: &Content) -> bool {
        match (self, other) {
            (Content::Secret(a), Content::Secret(b)) => {
                a.type_ == b.type_
                    && a.data == b.data
                    && a.string_data == b.string_data
                    && use_label(a) == use_label(b)
            }
            (Content::ConfigMap(a), Content::ConfigMap(b)) => {
                a.data == b.data && a.binary_data == b.binary_data
            }
            _ => false,
        }
    }
}

/// `None` until known; `Some(None)` when the object does not exist.
type Slot = Arc<Mutex<Option<Option<Content>>>>;

struct Entry {
    slot: Slot,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The set of per-name watches.
pub(crate) struct RefWatches {
    client: Client,
    entries: Mutex<HashMap<RefKey, Entry>>,
    trigger: mpsc::UnboundedSender<String>,
}

impl std::fmt::Debug for RefWatches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefWatches")
            .field("watched", &self.entries.lock().expect("not poisoned").len())
            .finish()
    }
}

/// The referenced objects of one namespace, by name; absent ones are missing.
#[derive(Clone, Debug, Default)]
pub(crate) struct Resolved {
    /// Existing referenced Secrets.
    pub secrets: BTreeMap<String, Secret>,
    /// Existing referenced ConfigMaps.
    pub config_maps: BTreeMap<String, ConfigMap>,
}

impl RefWatches {
    /// Watches report changes by sending the namespace on `trigger`.
    pub(crate) fn new(client: Client, trigger: mpsc::UnboundedSender<String>) -> Self {
        Self {
            client,
            entries: Mutex::new(HashMap::new()),
            trigger,
        }
    }

    /// Makes the watched set of `namespace` exactly `secrets` + `config_maps` and returns
    /// their current content, reading any not yet known with a GET.
    pub(crate) async fn resolve(
        &self,
        namespace: &str,
        secrets: &BTreeSet<String>,
        config_maps: &BTreeSet<String>,
    ) -> Result<Resolved, kube::Error> {
        let wanted: BTreeSet<RefKey> = secrets
            .iter()
            .map(|n| (RefKind::Secret, n))
            .chain(config_maps.iter().map(|n| (RefKind::ConfigMap, n)))
            .map(|(kind, name)| RefKey {
                kind,
                namespace: namespace.to_owned(),
                name: name.clone(),
            })
            .collect();
        let slots: Vec<(RefKey, Slot)> = {
            let mut entries = self.entries.lock().expect("not poisoned");
            entries.retain(|k, _| k.namespace != namespace || wanted.contains(k));
            wanted
                .iter()
                .map(|k| {
                    let e = entries
                        .entry(k.clone())
                        .or_insert_with(|| self.start(k.clone()));
                    (k.clone(), e.slot.clone())
                })
                .collect()
        };
        // The ones not known yet are read together, a few at a time: one by one, a cold
        // start would wait for hundreds of round trips.
        let fetched: Vec<(RefKey, Option<Content>)> =
            futures::stream::iter(slots.into_iter().map(|(key, slot)| async move {
                let known = slot.lock().expect("not poisoned").clone();
                let content = match known {
                    Some(c) => c,
                    None => {
                        let fetched = self.get(&key).await?;
                        let mut s = slot.lock().expect("not poisoned");
                        // The watch may have filled it meanwhile; it is at least as new.
                        s.get_or_insert(fetched).clone()
                    }
                };
                Ok::<_, kube::Error>((key, content))
            }))
            .buffered(GET_CONCURRENCY)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        let mut out = Resolved::default();
        for (key, content) in fetched {
            match content {
                Some(Content::Secret(s)) => {
                    out.secrets.insert(key.name, s);
                }
                Some(Content::ConfigMap(c)) => {
                    out.config_maps.insert(key.name, c);
                }
                None => {}
            }
        }
        Ok(out)
    }

    /// Stops every watch of `namespace`.
    pub(crate) fn forget(&self, namespace: &str) {
        self.entries
            .lock()
            .expect("not poisoned")
            .retain(|k, _| k.namespace != namespace);
    }

    async fn get(&self, key: &RefKey) -> Result<Option<Content>, kube::Error> {
        Ok(match key.kind {
            RefKind::Secret => Api::<Secret>::namespaced(self.client.clone(), &key.namespace)
                .get_opt(&key.name)
                .await?
                .map(secret_content),
            RefKind::ConfigMap => Api::<ConfigMap>::namespaced(self.client.clone(), &key.namespace)
                .get_opt(&key.name)
                .await?
                .map(config_map_content),
        })
    }

    fn start(&self, key: RefKey) -> Entry {
        let slot: Slot = Arc::new(Mutex::new(None));
        let cfg = watcher::Config::default().fields(&format!("metadata.name={}", key.name));
        let trigger = self.trigger.clone();
        let task = match key.kind {
            RefKind::Secret => {
                let api = Api::<Secret>::namespaced(self.client.clone(), &key.namespace);
                tokio::spawn(follow(api, cfg, key, slot.clone(), trigger, secret_content))
            }
            RefKind::ConfigMap => {
                let api = Api::<ConfigMap>::namespaced(self.client.clone(), &key.namespace);
                tokio::spawn(follow(
                    api,
                    cfg,
                    key,
                    slot.clone(),
                    trigger,
                    config_map_content,
                ))
            }
        };
        Entry { slot, task }
    }
}

async fn follow<K>(
    api: Api<K>,
    cfg: watcher::Config,
    key: RefKey,
    slot: Slot,
    trigger: mpsc::UnboundedSender<String>,
    wrap: fn(K) -> Content,
) where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let mut stream = watcher::watcher(api, cfg).default_backoff().boxed();
    // Objects seen during a (re)list; the list's end says whether it exists.
    let mut listing: Option<Option<Content>> = None;
    while let Some(ev) = stream.next().await {
        let update = match ev {
            Ok(Event::Init) => {
                listing = Some(None);
                None
            }
            Ok(Event::InitApply(o)) => {
                listing = Some(Some(wrap(o)));
                None
            }
            Ok(Event::InitDone) => listing.take(),
            Ok(Event::Apply(o)) => Some(Some(wrap(o))),
            Ok(Event::Delete(_)) => Some(None),
            Err(e) => {
                tracing::debug!(kind = ?key.kind, namespace = %key.namespace, name = %key.name,
                    error = %e, "reference watch failed; retrying");
                None
            }
        };
        let Some(new) = update else { continue };
        let changed = {
            let mut s = slot.lock().expect("not poisoned");
            let changed = match (&*s, &new) {
                (None, _) => false,
                (Some(None), None) => false,
                (Some(Some(a)), Some(b)) => !a.same_content(b),
                _ => true,
            };
            *s = Some(new);
            changed
        };
        if changed {
            tracing::info!(kind = ?key.kind, namespace = %key.namespace, name = %key.name,
                "referenced object changed");
            let _ = trigger.send(key.namespace.clone());
        }
    }
}
