//! The Secrets and ConfigMaps the resources reference, read by name and kept current.
//!
//! Per namespace with references, one metadata-only watch of its Secrets and one of its
//! ConfigMaps (`PartialObjectMeta`: names and resourceVersions, never `data`) say which
//! objects exist and when each changed. Only the objects the resources name are read in
//! full, with a GET by name, when first needed and again when their resourceVersion
//! moves; nothing else of them is kept. So a Secret's data is read only when a resource
//! names it, and the controller holds two watches per namespace however many Secrets
//! are referenced (a watch per referenced Secret cost a connection each).
//!
//! A Secret's [`SECRET_USE_LABEL`] is part of its content here: adding or changing the
//! label moves the resourceVersion like any other change (the compiler decides whether
//! the use is allowed).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::mpsc;

#[cfg(doc)]
use crate::compile::SECRET_USE_LABEL;

/// Which kind of object a reference names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum RefKind {
    /// A core/v1 Secret.
    Secret,
    /// A core/v1 ConfigMap.
    ConfigMap,
}

type Key = (RefKind, String);

/// A referenced object as read: no server-side apply bookkeeping or annotations.
#[derive(Clone, Debug)]
enum Content {
    /// A Secret.
    Secret(Secret),
    /// A ConfigMap.
    ConfigMap(ConfigMap),
}

/// How many referenced objects a reconcile reads at once (a cold start reads every one).
const GET_CONCURRENCY: usize = 32;

/// What one namespace's metadata watches and GETs know.
#[derive(Debug, Default)]
struct NsRefs {
    /// The resourceVersion of every object of the namespace, once that kind has listed.
    versions: HashMap<Key, String>,
    /// Which kinds have listed (`[Secret, ConfigMap]`).
    listed: [bool; 2],
    /// The objects the resources name now.
    wanted: BTreeSet<Key>,
    /// What was read of the wanted ones: `(resourceVersion, content)`, `None` if absent.
    read: HashMap<Key, Option<(String, Content)>>,
}

fn kind_index(kind: RefKind) -> usize {
    match kind {
        RefKind::Secret => 0,
        RefKind::ConfigMap => 1,
    }
}

impl NsRefs {
    /// Whether `key`, as the watch now sees it (`version`), differs from what was read.
    fn stale(&self, key: &Key, version: Option<&str>) -> bool {
        if !self.wanted.contains(key) {
            return false;
        }
        match (self.read.get(key), version) {
            // Never read: the next reconcile reads it anyway; make sure one comes.
            (None, _) => true,
            (Some(None), None) => false,
            (Some(Some((rv, _))), Some(v)) => rv != v,
            _ => true,
        }
    }

    /// What a reconcile can use without reading: `Some(content)` when known current.
    fn known(&self, key: &Key) -> Option<Option<Content>> {
        let read = self.read.get(key);
        if !self.listed[kind_index(key.0)] {
            // The watch has not listed yet: what was read is the best there is; its end
            // of list triggers a reconcile if anything moved since.
            return read.map(|r| r.as_ref().map(|(_, c)| c.clone()));
        }
        match (self.versions.get(key), read) {
            (None, _) => Some(None),
            (Some(v), Some(Some((rv, c)))) if v == rv => Some(Some(c.clone())),
            _ => None,
        }
    }
}

type Shared = Arc<Mutex<NsRefs>>;

struct NsEntry {
    refs: Shared,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for NsEntry {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The referenced objects of every namespace, and the watches that keep them current.
pub(crate) struct RefWatches {
    client: Client,
    namespaces: Mutex<HashMap<String, NsEntry>>,
    trigger: mpsc::UnboundedSender<String>,
}

impl std::fmt::Debug for RefWatches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefWatches")
            .field(
                "namespaces",
                &self.namespaces.lock().expect("not poisoned").len(),
            )
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
            namespaces: Mutex::new(HashMap::new()),
            trigger,
        }
    }

    /// Makes the referenced set of `namespace` exactly `secrets` + `config_maps` and
    /// returns their current content, reading (GET by name) those not known current.
    pub(crate) async fn resolve(
        &self,
        namespace: &str,
        secrets: &BTreeSet<String>,
        config_maps: &BTreeSet<String>,
    ) -> Result<Resolved, kube::Error> {
        let wanted: BTreeSet<Key> = secrets
            .iter()
            .map(|n| (RefKind::Secret, n.clone()))
            .chain(config_maps.iter().map(|n| (RefKind::ConfigMap, n.clone())))
            .collect();
        let refs = {
            let mut all = self.namespaces.lock().expect("not poisoned");
            if wanted.is_empty() {
                all.remove(namespace);
                return Ok(Resolved::default());
            }
            all.entry(namespace.to_owned())
                .or_insert_with(|| self.start(namespace))
                .refs
                .clone()
        };
        let (mut have, missing) = {
            let mut r = refs.lock().expect("not poisoned");
            r.read.retain(|k, _| wanted.contains(k));
            r.wanted = wanted;
            let mut have = Vec::new();
            let mut missing = Vec::new();
            for key in &r.wanted {
                match r.known(key) {
                    Some(c) => have.push(c),
                    None => missing.push(key.clone()),
                }
            }
            (have, missing)
        };
        // Read together, a few at a time: one by one, a cold start would wait for
        // hundreds of round trips.
        let fetched: Vec<(Key, Option<Content>)> =
            futures::stream::iter(missing.into_iter().map(|key| async move {
                let content = self.get(namespace, &key).await?;
                Ok::<_, kube::Error>((key, content))
            }))
            .buffer_unordered(GET_CONCURRENCY)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        {
            let mut r = refs.lock().expect("not poisoned");
            for (key, content) in fetched {
                let entry = content.as_ref().map(|c| (version(c), c.clone()));
                if r.wanted.contains(&key) {
                    r.read.insert(key, entry);
                }
                have.push(content);
            }
        }
        let mut out = Resolved::default();
        for content in have.into_iter().flatten() {
            match content {
                Content::Secret(s) => {
                    out.secrets.insert(s.name_any(), s);
                }
                Content::ConfigMap(c) => {
                    out.config_maps.insert(c.name_any(), c);
                }
            }
        }
        Ok(out)
    }

    /// Stops the watches of `namespace` and drops what was read there.
    pub(crate) fn forget(&self, namespace: &str) {
        self.namespaces
            .lock()
            .expect("not poisoned")
            .remove(namespace);
    }

    async fn get(&self, namespace: &str, key: &Key) -> Result<Option<Content>, kube::Error> {
        Ok(match key.0 {
            RefKind::Secret => Api::<Secret>::namespaced(self.client.clone(), namespace)
                .get_opt(&key.1)
                .await?
                .map(|mut s| {
                    slim(s.meta_mut());
                    Content::Secret(s)
                }),
            RefKind::ConfigMap => Api::<ConfigMap>::namespaced(self.client.clone(), namespace)
                .get_opt(&key.1)
                .await?
                .map(|mut c| {
                    slim(c.meta_mut());
                    Content::ConfigMap(c)
                }),
        })
    }

    fn start(&self, namespace: &str) -> NsEntry {
        let refs = Shared::default();
        let tasks = vec![
            self.spawn_follow::<Secret>(namespace, RefKind::Secret, &refs),
            self.spawn_follow::<ConfigMap>(namespace, RefKind::ConfigMap, &refs),
        ];
        NsEntry { refs, tasks }
    }

    fn spawn_follow<K>(
        &self,
        namespace: &str,
        kind: RefKind,
        refs: &Shared,
    ) -> tokio::task::JoinHandle<()>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug
            + Send
            + Sync
            + 'static,
    {
        let api = Api::<PartialObjectMeta<K>>::namespaced(self.client.clone(), namespace);
        let task = follow(
            api,
            kind,
            namespace.to_owned(),
            refs.clone(),
            self.trigger.clone(),
        );
        tokio::spawn(task)
    }
}

/// No server-side apply bookkeeping, and no annotations (kubectl's
/// `last-applied-configuration` of a Secret is a second copy of its data).
fn slim(meta: &mut kube::api::ObjectMeta) {
    meta.managed_fields = None;
    meta.annotations = None;
}

fn version(c: &Content) -> String {
    match c {
        Content::Secret(s) => s.resource_version(),
        Content::ConfigMap(c) => c.resource_version(),
    }
    .unwrap_or_default()
}

/// Follows the names and resourceVersions of one kind in one namespace; sends the
/// namespace when an object the resources name appears, moves or goes.
async fn follow<K>(
    api: Api<PartialObjectMeta<K>>,
    kind: RefKind,
    namespace: String,
    refs: Shared,
    trigger: mpsc::UnboundedSender<String>,
) where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    // `Api<PartialObjectMeta<_>>` lists and watches metadata only: no `data` crosses.
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut listing: HashMap<Key, String> = HashMap::new();
    while let Some(ev) = stream.next().await {
        let changed = match ev {
            Ok(Event::Init) => {
                listing.clear();
                false
            }
            Ok(Event::InitApply(m)) => {
                let rv = m.resource_version().unwrap_or_default();
                listing.insert((kind, m.name_any()), rv);
                false
            }
            Ok(Event::InitDone) => {
                let mut r = refs.lock().expect("not poisoned");
                r.versions.retain(|k, _| k.0 != kind);
                r.versions.extend(std::mem::take(&mut listing));
                r.listed[kind_index(kind)] = true;
                let r = &*r;
                r.wanted
                    .iter()
                    .filter(|k| k.0 == kind)
                    .any(|k| r.stale(k, r.versions.get(k).map(String::as_str)))
            }
            Ok(Event::Apply(m)) => {
                let key = (kind, m.name_any());
                let rv = m.resource_version().unwrap_or_default();
                let mut r = refs.lock().expect("not poisoned");
                let changed = r.stale(&key, Some(&rv));
                r.versions.insert(key, rv);
                changed
            }
            Ok(Event::Delete(m)) => {
                let key = (kind, m.name_any());
                let mut r = refs.lock().expect("not poisoned");
                r.versions.remove(&key);
                r.stale(&key, None)
            }
            Err(e) => {
                tracing::debug!(kind = ?kind, namespace = %namespace, error = %e,
                    "reference watch failed; retrying");
                false
            }
        };
        if changed {
            tracing::info!(kind = ?kind, namespace = %namespace, "referenced object changed");
            let _ = trigger.send(namespace.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(name: &str, rv: &str) -> Content {
        let mut s = Secret::default();
        s.metadata.name = Some(name.into());
        s.metadata.resource_version = Some(rv.into());
        Content::Secret(s)
    }

    fn key(name: &str) -> Key {
        (RefKind::Secret, name.into())
    }

    #[test]
    fn only_named_objects_whose_version_moved_need_a_read() {
        let mut r = NsRefs::default();
        r.wanted.insert(key("tls"));
        // Before the list: never read, so read it.
        assert!(r.known(&key("tls")).is_none());
        r.read
            .insert(key("tls"), Some(("5".into(), secret("tls", "5"))));
        r.listed[0] = true;
        r.versions.insert(key("tls"), "5".into());
        r.versions.insert(key("other"), "9".into());
        assert!(matches!(r.known(&key("tls")), Some(Some(_))));
        assert!(!r.stale(&key("tls"), Some("5")));
        // An object no resource names never triggers, whatever happens to it.
        assert!(!r.stale(&key("other"), Some("10")));
        assert!(!r.stale(&key("other"), None));
        // A move or a delete of a named one does; the next reconcile reads it again.
        assert!(r.stale(&key("tls"), Some("6")));
        assert!(r.stale(&key("tls"), None));
        r.versions.insert(key("tls"), "6".into());
        assert!(r.known(&key("tls")).is_none());
        // A named object the list does not hold is missing, without a read.
        r.wanted.insert(key("absent"));
        assert!(matches!(r.known(&key("absent")), Some(None)));
    }
}
