//! Watches that feed the controller: the five kinds, the rendered Secrets (by label) and
//! the gateway reports (by label). Each keeps an in-memory store and says which
//! namespace changed; changes that cannot affect the outcome (a status written by the
//! controller itself, a report that only renewed its heartbeat) trigger nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use postern_config::protocol::{RENDERED_LABEL, REPORT_LABEL};
use tokio::sync::mpsc;

use super::fleet::GatewayState;
use super::objects::{self, Objects, StoredObject};
use crate::compile::{Kind, ObjectKey};

/// What a watch says happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// Something in this namespace changed.
    Namespace(String),
    /// A watch (re)listed: every namespace may have changed.
    All,
    /// Every watch has listed once.
    Synced,
}

/// Where the watches run: every namespace, or a list.
#[derive(Clone, Debug)]
pub(crate) enum Scope {
    /// The whole cluster.
    All,
    /// These namespaces only.
    Namespaces(Vec<String>),
}

type NsMap<T> = Arc<RwLock<BTreeMap<String, BTreeMap<String, T>>>>;

/// The controller's view of the cluster.
#[derive(Clone, Debug, Default)]
pub(crate) struct Stores {
    objects: NsMap<(Kind, Arc<StoredObject>)>,
    rendered: NsMap<Arc<Secret>>,
    reports: NsMap<GatewayState>,
}

fn object_slot(kind: Kind, name: &str) -> String {
    format!("{}/{name}", kind.as_str())
}

impl Stores {
    /// The postern objects of `namespace`.
    pub(crate) fn objects(&self, namespace: &str) -> Objects {
        self.objects
            .read()
            .expect("not poisoned")
            .get(namespace)
            .map(|m| {
                m.values()
                    .map(|(k, o)| {
                        (
                            ObjectKey::new(*k, o.metadata().name.clone().unwrap_or_default()),
                            o.clone(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The gateway reports of `namespace`.
    pub(crate) fn reports(&self, namespace: &str) -> Vec<GatewayState> {
        self.reports
            .read()
            .expect("not poisoned")
            .get(namespace)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Every namespace with postern objects or a rendered Secret.
    pub(crate) fn namespaces(&self) -> BTreeSet<String> {
        let mut all: BTreeSet<String> = self
            .objects
            .read()
            .expect("not poisoned")
            .iter()
            .filter(|(_, m)| !m.is_empty())
            .map(|(k, _)| k.clone())
            .collect();
        all.extend(
            self.rendered
                .read()
                .expect("not poisoned")
                .iter()
                .filter(|(_, m)| !m.is_empty())
                .map(|(k, _)| k.clone()),
        );
        all
    }

    /// Number of postern objects known.
    pub(crate) fn object_count(&self) -> usize {
        self.objects
            .read()
            .expect("not poisoned")
            .values()
            .map(|m| m.len())
            .sum()
    }
}

/// Replaces the entries of one scope after a (re)list; returns the namespaces touched.
fn relist<T>(
    map: &NsMap<T>,
    scope_ns: Option<&str>,
    slot_filter: impl Fn(&str) -> bool,
    listed: Vec<(String, String, T)>,
) -> BTreeSet<String> {
    let mut m = map.write().expect("not poisoned");
    let mut touched = BTreeSet::new();
    for (ns, entries) in m.iter_mut() {
        if scope_ns.is_none_or(|s| s == ns) {
            let before = entries.len();
            entries.retain(|slot, _| !slot_filter(slot));
            if entries.len() != before {
                touched.insert(ns.clone());
            }
        }
    }
    for (ns, slot, v) in listed {
        touched.insert(ns.clone());
        m.entry(ns).or_default().insert(slot, v);
    }
    touched
}

/// Starts every watch; returns the stores they fill. `Trigger::Synced` is sent once all
/// have listed.
pub(crate) fn spawn(
    client: &Client,
    scope: &Scope,
    tx: mpsc::UnboundedSender<Trigger>,
) -> (Stores, Vec<tokio::task::JoinHandle<()>>) {
    let stores = Stores::default();
    let namespaces: Vec<Option<String>> = match scope {
        Scope::All => vec![None],
        Scope::Namespaces(list) => list.iter().cloned().map(Some).collect(),
    };
    let total = namespaces.len() * (Kind::ALL.len() + 2);
    let pending = Arc::new(AtomicUsize::new(total));
    let mut tasks = Vec::new();
    for ns in &namespaces {
        for kind in Kind::ALL {
            let ar = objects::api_resource(kind);
            let api: Api<DynamicObject> = match ns {
                Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
                None => Api::all_with(client.clone(), &ar),
            };
            tasks.push(tokio::spawn(watch_kind(
                api,
                ar,
                kind,
                ns.clone(),
                stores.objects.clone(),
                tx.clone(),
                pending.clone(),
            )));
        }
        let secrets: Api<Secret> = match ns {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        tasks.push(tokio::spawn(watch_rendered(
            secrets,
            ns.clone(),
            stores.rendered.clone(),
            tx.clone(),
            pending.clone(),
        )));
        let report_kind = postern_crds::report_api_resource();
        let reports: Api<DynamicObject> = match ns {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &report_kind),
            None => Api::all_with(client.clone(), &report_kind),
        };
        tasks.push(tokio::spawn(watch_reports(
            reports,
            ns.clone(),
            stores.reports.clone(),
            tx.clone(),
            pending.clone(),
        )));
    }
    (stores, tasks)
}

fn done_listing(first: &mut bool, pending: &AtomicUsize, tx: &mpsc::UnboundedSender<Trigger>) {
    if std::mem::take(first) && pending.fetch_sub(1, Ordering::AcqRel) == 1 {
        let _ = tx.send(Trigger::Synced);
    }
}

async fn watch_kind(
    api: Api<DynamicObject>,
    ar: ApiResource,
    kind: Kind,
    scope_ns: Option<String>,
    map: NsMap<(Kind, Arc<StoredObject>)>,
    tx: mpsc::UnboundedSender<Trigger>,
    pending: Arc<AtomicUsize>,
) {
    let _ = ar;
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    // (namespace, name) -> (uid, generation): status-only updates change neither.
    let mut seen: HashMap<(String, String), (Option<String>, Option<i64>)> = HashMap::new();
    let mut listing: Vec<(String, String, (Kind, Arc<StoredObject>))> = Vec::new();
    let mut first = true;
    let prefix = format!("{}/", kind.as_str());
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(Event::Init) => listing.clear(),
            Ok(Event::InitApply(o)) => {
                let ns = o.namespace().unwrap_or_default();
                let name = o.name_any();
                seen.insert(
                    (ns.clone(), name.clone()),
                    (o.metadata.uid.clone(), o.metadata.generation),
                );
                let stored = Arc::new(StoredObject::read(kind, o));
                listing.push((ns, object_slot(kind, &name), (kind, stored)));
            }
            Ok(Event::InitDone) => {
                relist(
                    &map,
                    scope_ns.as_deref(),
                    |slot| slot.starts_with(&prefix),
                    std::mem::take(&mut listing),
                );
                let _ = tx.send(Trigger::All);
                done_listing(&mut first, &pending, &tx);
            }
            Ok(Event::Apply(o)) => {
                let ns = o.namespace().unwrap_or_default();
                let name = o.name_any();
                let stamp = (o.metadata.uid.clone(), o.metadata.generation);
                let changed = seen.insert((ns.clone(), name.clone()), stamp.clone()) != Some(stamp);
                map.write()
                    .expect("not poisoned")
                    .entry(ns.clone())
                    .or_default()
                    .insert(
                        object_slot(kind, &name),
                        (kind, Arc::new(StoredObject::read(kind, o))),
                    );
                if changed {
                    let _ = tx.send(Trigger::Namespace(ns));
                }
            }
            Ok(Event::Delete(o)) => {
                let ns = o.namespace().unwrap_or_default();
                let name = o.name_any();
                seen.remove(&(ns.clone(), name.clone()));
                if let Some(m) = map.write().expect("not poisoned").get_mut(&ns) {
                    m.remove(&object_slot(kind, &name));
                }
                let _ = tx.send(Trigger::Namespace(ns));
            }
            Err(e) => tracing::warn!(kind = %kind, error = %e, "watch failed; retrying"),
        }
    }
}

async fn watch_rendered(
    api: Api<Secret>,
    scope_ns: Option<String>,
    map: NsMap<Arc<Secret>>,
    tx: mpsc::UnboundedSender<Trigger>,
    pending: Arc<AtomicUsize>,
) {
    let cfg = watcher::Config::default().labels(&format!("{RENDERED_LABEL}=true"));
    let mut stream = watcher::watcher(api, cfg).default_backoff().boxed();
    let mut listing = Vec::new();
    let mut first = true;
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(Event::Init) => listing.clear(),
            Ok(Event::InitApply(mut s)) => {
                objects::slim(&mut s.metadata);
                listing.push((s.namespace().unwrap_or_default(), s.name_any(), Arc::new(s)));
            }
            Ok(Event::InitDone) => {
                relist(
                    &map,
                    scope_ns.as_deref(),
                    |_| true,
                    std::mem::take(&mut listing),
                );
                let _ = tx.send(Trigger::All);
                done_listing(&mut first, &pending, &tx);
            }
            Ok(Event::Apply(mut s)) => {
                objects::slim(&mut s.metadata);
                let ns = s.namespace().unwrap_or_default();
                map.write()
                    .expect("not poisoned")
                    .entry(ns.clone())
                    .or_default()
                    .insert(s.name_any(), Arc::new(s));
                let _ = tx.send(Trigger::Namespace(ns));
            }
            Ok(Event::Delete(s)) => {
                let ns = s.namespace().unwrap_or_default();
                if let Some(m) = map.write().expect("not poisoned").get_mut(&ns) {
                    m.remove(&s.name_any());
                }
                let _ = tx.send(Trigger::Namespace(ns));
            }
            Err(e) => tracing::warn!(error = %e, "watch on rendered Secrets failed; retrying"),
        }
    }
}

async fn watch_reports(
    api: Api<DynamicObject>,
    scope_ns: Option<String>,
    map: NsMap<GatewayState>,
    tx: mpsc::UnboundedSender<Trigger>,
    pending: Arc<AtomicUsize>,
) {
    let cfg = watcher::Config::default().labels(&format!("{REPORT_LABEL}=true"));
    let mut stream = watcher::watcher(api, cfg).default_backoff().boxed();
    let mut listing = Vec::new();
    let mut first = true;
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(Event::Init) => listing.clear(),
            Ok(Event::InitApply(l)) => {
                listing.push((
                    l.namespace().unwrap_or_default(),
                    l.name_any(),
                    GatewayState::from_object(&l),
                ));
            }
            Ok(Event::InitDone) => {
                relist(
                    &map,
                    scope_ns.as_deref(),
                    |_| true,
                    std::mem::take(&mut listing),
                );
                let _ = tx.send(Trigger::All);
                done_listing(&mut first, &pending, &tx);
            }
            Ok(Event::Apply(l)) => {
                let ns = l.namespace().unwrap_or_default();
                let state = GatewayState::from_object(&l);
                let old: Option<GatewayState> = map
                    .write()
                    .expect("not poisoned")
                    .entry(ns.clone())
                    .or_default()
                    .insert(l.name_any(), state.clone());
                // A heartbeat alone changes nothing the controller decides on now
                // (expiries are re-checked on a timer), unless the report had expired.
                let now = k8s_openapi::jiff::Timestamp::now();
                let revived = old.as_ref().is_some_and(|o| !o.alive(now));
                if revived || old.map(|o| o.report).as_ref() != Some(&state.report) {
                    let _ = tx.send(Trigger::Namespace(ns));
                }
            }
            Ok(Event::Delete(l)) => {
                let ns = l.namespace().unwrap_or_default();
                if let Some(m) = map.write().expect("not poisoned").get_mut(&ns) {
                    m.remove(&l.name_any());
                }
                let _ = tx.send(Trigger::Namespace(ns));
            }
            Err(e) => tracing::warn!(error = %e, "watch on gateway reports failed; retrying"),
        }
    }
}
