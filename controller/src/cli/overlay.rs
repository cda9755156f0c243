//! `plan --live` with a partial set of manifests: the files' objects override or add to
//! the namespace's live objects; live objects the files do not mention stay, unless
//! pruning (then the files are the whole set and the others are removed). Pure; also
//! says which objects the files add, change or remove, so the plan can print the
//! object-level change beside the configuration diff.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps;
use postern_crds::schema_defaults::{apply_defaults, spec_schema as spec_schema_of};
use sha2::{Digest, Sha256};

use crate::compile::{ConfigMapData, Kind, ObjectKey, SecretData, Snapshot};
use crate::diff::Change;

/// One object the files change: `Kind/name` and how.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ObjectChange {
    /// `Listener/submission`, `Secret/gateway-tls`.
    pub what: String,
    /// Added (not in the cluster yet), changed (another spec, or content for a Secret
    /// or ConfigMap) or removed (in the cluster, not in the files, and pruning).
    pub change: Change,
}

/// The merged snapshot and what the files change.
#[derive(Debug, Default)]
pub(crate) struct Overlay {
    /// The live objects with the files' over them (and without the pruned ones).
    pub snapshot: Snapshot,
    /// The objects the files add, change or remove, by kind and name.
    pub changes: Vec<ObjectChange>,
    /// Objects in the files identical to the cluster's.
    pub unchanged: usize,
    /// Live objects the files do not mention, kept (not pruning).
    pub kept: BTreeSet<ObjectKey>,
}

/// Runs `$m!(field, Kind)` for the five kinds' fields of a [`Snapshot`].
macro_rules! each_kind {
    ($m:ident) => {
        $m!(ldap_profiles, Kind::LdapProfile);
        $m!(smtp_auth_profiles, Kind::SmtpAuthProfile);
        $m!(mail_flow_policies, Kind::MailFlowPolicy);
        $m!(listeners, Kind::Listener);
        $m!(crl_sources, Kind::CrlSource);
    };
}

fn key(kind: Kind, name: Option<&String>) -> ObjectKey {
    ObjectKey::new(kind, name.cloned().unwrap_or_default())
}

/// The schema of a kind's `spec`, for its defaults.
fn spec_schema(kind: Kind) -> JSONSchemaProps {
    use postern_crds::{CrlSource, LdapProfile, Listener, MailFlowPolicy, SmtpAuthProfile};
    match kind {
        Kind::LdapProfile => spec_schema_of::<LdapProfile>(),
        Kind::SmtpAuthProfile => spec_schema_of::<SmtpAuthProfile>(),
        Kind::MailFlowPolicy => spec_schema_of::<MailFlowPolicy>(),
        Kind::Listener => spec_schema_of::<Listener>(),
        Kind::CrlSource => spec_schema_of::<CrlSource>(),
    }
}

/// Each object of a snapshot by key: its spec as JSON with the schema's defaults filled
/// in (a live object has them, stored by the API server; the same object in a file may
/// leave them out), `None` when unreadable.
fn specs(s: &Snapshot) -> BTreeMap<ObjectKey, Option<serde_json::Value>> {
    let mut out = BTreeMap::new();
    macro_rules! add {
        ($field:ident, $kind:expr) => {
            let schema = spec_schema($kind);
            for o in &s.$field {
                let spec = serde_json::to_value(&o.spec).ok().map(|mut v| {
                    apply_defaults(&schema, &mut v);
                    v
                });
                out.insert(key($kind, o.metadata.name.as_ref()), spec);
            }
        };
    }
    each_kind!(add);
    for u in &s.unreadable {
        out.insert(u.key.clone(), None);
    }
    out
}

/// Adds the live objects named in `keep` to `to`.
fn copy_objects(from: &Snapshot, keep: &BTreeSet<ObjectKey>, to: &mut Snapshot) {
    macro_rules! copy {
        ($field:ident, $kind:expr) => {
            let kept = from.$field.iter();
            let kept = kept.filter(|o| keep.contains(&key($kind, o.metadata.name.as_ref())));
            to.$field.extend(kept.cloned());
        };
    }
    each_kind!(copy);
    let kept = from.unreadable.iter().filter(|u| keep.contains(&u.key));
    to.unreadable.extend(kept.cloned());
}

/// Lays `files` over `live` (the Postern objects; Secrets and ConfigMaps are the files'
/// only, see [`add_cluster_refs`]). With `prune`, live objects missing from the files
/// are removed.
pub(crate) fn overlay(live: &Snapshot, files: &Snapshot, prune: bool) -> Overlay {
    let live_specs = specs(live);
    let file_specs = specs(files);
    let mut out = Overlay {
        snapshot: files.clone(),
        ..Overlay::default()
    };
    for (key, spec) in &file_specs {
        let change = match live_specs.get(key) {
            None => Some(Change::Added),
            // Unreadable on either side: the specs cannot be compared, so it counts as
            // a change (the compiler reports the unreadable one).
            Some(live_spec) if live_spec.is_none() || spec.is_none() || live_spec != spec => {
                Some(Change::Changed)
            }
            Some(_) => None,
        };
        match change {
            Some(change) => out.changes.push(ObjectChange {
                what: key.to_string(),
                change,
            }),
            None => out.unchanged += 1,
        }
    }
    let mut keep = BTreeSet::new();
    for key in live_specs.keys().filter(|k| !file_specs.contains_key(*k)) {
        if prune {
            out.changes.push(ObjectChange {
                what: key.to_string(),
                change: Change::Removed,
            });
        } else {
            keep.insert(key.clone());
        }
    }
    copy_objects(live, &keep, &mut out.snapshot);
    out.kept = keep;
    out.changes.sort();
    out
}

/// What the plan may say about a Secret: its type and key names, never a value nor
/// anything computed from one. (A digest would do: a short one of a weak password, with
/// the key name and type beside it, can be matched against guesses offline, and plans
/// end up in CI logs.) Whether the files' version differs from the cluster's is
/// decided by comparing the content itself.
fn secret_outline(s: &SecretData) -> String {
    let keys: Vec<&str> = s.data.keys().map(String::as_str).collect();
    let keys = if keys.is_empty() {
        "no keys".to_owned()
    } else {
        format!("keys {}", keys.join(", "))
    };
    format!("{}; {keys}", s.type_.as_deref().unwrap_or("Opaque"))
}

/// A short digest of a ConfigMap's content: CA bundles and the like, public, so a
/// digest is safe to print and tells two versions apart.
fn config_map_digest(c: &ConfigMapData) -> String {
    let mut h = Sha256::new();
    for (k, v) in &c.data {
        h.update(k.as_bytes());
        h.update([0]);
        h.update((v.len() as u64).to_be_bytes());
        h.update(v);
    }
    format!("sha256:{}", &hex::encode(h.finalize())[..12])
}

/// Which version of a referenced Secret or ConfigMap is compiled, and how it compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RefSource {
    /// The files lack it: the cluster's (if any) is used.
    Cluster,
    /// The files define it and the cluster has none yet.
    FilesOnly,
    /// The files define it, the same as the cluster's.
    FilesSame,
    /// The files define it, unlike the cluster's.
    FilesDiffer,
}

/// How one referenced Secret or ConfigMap was found in the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ClusterRef {
    /// `Secret/name` or `ConfigMap/name`.
    pub what: String,
    /// Which version is compiled.
    pub source: RefSource,
    /// What the cluster's version is, safe to print (a Secret's type and key names, a
    /// ConfigMap's digest); `None` when it does not exist there.
    pub found: Option<String>,
}

impl ClusterRef {
    /// One line for the plan: presence and an outline, never content.
    pub(crate) fn line(&self) -> String {
        let mut line = format!("{}: ", self.what);
        match (&self.found, self.source) {
            (Some(d), RefSource::Cluster) => {
                let _ = write!(line, "read from the cluster ({d})");
            }
            (None, RefSource::Cluster) => line.push_str("in neither the files nor the cluster"),
            (Some(d), RefSource::FilesSame) => {
                let _ = write!(line, "from the files (the same as the cluster's: {d})");
            }
            (Some(d), RefSource::FilesDiffer) => {
                let _ = write!(line, "from the files (differs from the cluster's: {d})");
            }
            (None, _) | (Some(_), RefSource::FilesOnly) => {
                line.push_str("from the files (not in the cluster yet)");
            }
        }
        line
    }
}

/// Lays the cluster's version of `name` under the files' `files`: added when the files
/// lack it, else compared with theirs by content.
fn lay_under<T: PartialEq>(
    files: &mut BTreeMap<String, T>,
    name: &str,
    live: Option<T>,
) -> RefSource {
    match (files.get(name), live) {
        (None, Some(live)) => {
            files.insert(name.to_owned(), live);
            RefSource::Cluster
        }
        (None, None) => RefSource::Cluster,
        (Some(_), None) => RefSource::FilesOnly,
        (Some(f), Some(live)) if *f == live => RefSource::FilesSame,
        (Some(_), Some(_)) => RefSource::FilesDiffer,
    }
}

/// Completes `overlay` with the referenced Secrets and ConfigMaps read from the cluster:
/// the ones the files lack are added to the snapshot; the ones the files define are
/// compared by content (a new or different one is an object change).
pub(crate) fn add_cluster_refs(
    overlay: &mut Overlay,
    secrets: BTreeMap<String, Option<SecretData>>,
    config_maps: BTreeMap<String, Option<ConfigMapData>>,
) -> Vec<ClusterRef> {
    let mut refs = Vec::new();
    for (name, live) in secrets {
        let found = live.as_ref().map(secret_outline);
        let source = lay_under(&mut overlay.snapshot.secrets, &name, live);
        refs.push(ClusterRef {
            what: format!("Secret/{name}"),
            source,
            found,
        });
    }
    for (name, live) in config_maps {
        let found = live.as_ref().map(config_map_digest);
        let source = lay_under(&mut overlay.snapshot.config_maps, &name, live);
        refs.push(ClusterRef {
            what: format!("ConfigMap/{name}"),
            source,
            found,
        });
    }
    for r in &refs {
        let change = match r.source {
            RefSource::FilesOnly => Change::Added,
            RefSource::FilesDiffer => Change::Changed,
            RefSource::FilesSame => {
                overlay.unchanged += 1;
                continue;
            }
            RefSource::Cluster => continue,
        };
        overlay.changes.push(ObjectChange {
            what: r.what.clone(),
            change,
        });
    }
    overlay.changes.sort();
    refs
}

impl Overlay {
    /// The object-level change, terraform style; `live_ns` names the namespace.
    pub(crate) fn render(&self, live_ns: &str, prune: bool) -> String {
        let mut out = String::new();
        let count = |c: Change| self.changes.iter().filter(|o| o.change == c).count();
        let _ = writeln!(
            out,
            "Objects (the files against namespace {live_ns}): {} to add, {} to change, {} to remove; {} unchanged; {}.",
            count(Change::Added),
            count(Change::Changed),
            count(Change::Removed),
            self.unchanged,
            if prune {
                "objects not in the files are removed (--prune)".to_owned()
            } else {
                format!(
                    "{} live object(s) not in the files kept (--prune removes them)",
                    self.kept.len()
                )
            }
        );
        for o in &self.changes {
            let (mark, note) = o.change.mark();
            let _ = writeln!(out, "  {mark} {}{note}", o.what);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::{Reason, Unreadable};
    use postern_crds::{MailFlowPolicy, MailFlowPolicySpec};

    fn policy(name: &str, action: &str) -> MailFlowPolicy {
        let spec: MailFlowPolicySpec =
            serde_json::from_value(serde_json::json!({"action": action})).unwrap();
        MailFlowPolicy::new(name, spec)
    }

    fn snapshot(policies: Vec<MailFlowPolicy>) -> Snapshot {
        Snapshot {
            mail_flow_policies: policies.into_iter().map(std::sync::Arc::new).collect(),
            ..Snapshot::default()
        }
    }

    /// A live object carries the schema's defaults (the API server stored them); the
    /// same object in a file leaves them out: unchanged. A value other than the default
    /// is a change.
    #[test]
    fn schema_defaults_are_no_change() {
        let with = |spec: serde_json::Value| {
            MailFlowPolicy::new(
                "p",
                serde_json::from_value::<MailFlowPolicySpec>(spec).unwrap(),
            )
        };
        let live = snapshot(vec![with(serde_json::json!({
            "action": "Relay", "senderBinding": "Off",
            "rateLimits": {"perUser": {"messages": 5, "recipients": 0, "window": "1h"}}
        }))]);
        let same = snapshot(vec![with(serde_json::json!({
            "action": "Relay", "rateLimits": {"perUser": {"messages": 5}}
        }))]);
        let o = overlay(&live, &same, false);
        assert_eq!((o.unchanged, o.changes.len()), (1, 0), "{:?}", o.changes);
        let other = snapshot(vec![with(serde_json::json!({
            "action": "Relay", "rateLimits": {"perUser": {"messages": 5, "window": "2h"}}
        }))]);
        let o = overlay(&live, &other, false);
        assert_eq!((o.unchanged, o.changes.len()), (0, 1));
    }

    #[test]
    fn files_override_and_add_and_the_rest_is_kept_unless_pruned() {
        let live = snapshot(vec![
            policy("a", "Relay"),
            policy("b", "Relay"),
            policy("c", "Relay"),
        ]);
        let files = snapshot(vec![
            policy("b", "Reject"),
            policy("c", "Relay"),
            policy("d", "Relay"),
        ]);
        let o = overlay(&live, &files, false);
        let names: Vec<_> = o
            .snapshot
            .mail_flow_policies
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["b", "c", "d", "a"]);
        assert_eq!(o.kept.len(), 1);
        assert_eq!(o.unchanged, 1);
        let changes: Vec<_> = o
            .changes
            .iter()
            .map(|c| (c.what.as_str(), c.change))
            .collect();
        assert_eq!(
            changes,
            [
                ("MailFlowPolicy/b", Change::Changed),
                ("MailFlowPolicy/d", Change::Added),
            ]
        );
        let text = o.render("mail", false);
        assert!(text.contains("1 to add, 1 to change, 0 to remove; 1 unchanged; 1 live object(s) not in the files kept"), "{text}");

        let pruned = overlay(&live, &files, true);
        assert_eq!(pruned.snapshot.mail_flow_policies.len(), 3);
        assert!(pruned.changes.contains(&ObjectChange {
            what: "MailFlowPolicy/a".into(),
            change: Change::Removed
        }));
    }

    #[test]
    fn an_unreadable_object_in_the_files_replaces_the_live_one() {
        let live = snapshot(vec![policy("a", "Relay")]);
        let mut files = Snapshot::default();
        files.unreadable.push(Unreadable {
            key: ObjectKey::new(Kind::MailFlowPolicy, "a"),
            generation: None,
            field: "spec.tls".into(),
            reason: Reason::InvalidValue,
            message: "bad".into(),
        });
        let o = overlay(&live, &files, false);
        assert!(o.snapshot.mail_flow_policies.is_empty());
        assert_eq!(o.snapshot.unreadable.len(), 1);
        assert_eq!(o.changes[0].change, Change::Changed);
    }

    #[test]
    fn secrets_come_from_the_cluster_when_the_files_lack_them_and_print_no_content() {
        let mut o = overlay(&Snapshot::default(), &Snapshot::default(), false);
        let secret = |v: &str| SecretData {
            type_: None,
            data: [("password".to_owned(), v.as_bytes().to_vec())].into(),
            use_label: None,
        };
        o.snapshot.secrets.insert("in-both".into(), secret("new"));
        o.snapshot.secrets.insert("same".into(), secret("kept"));
        o.snapshot
            .secrets
            .insert("files-only".into(), secret("fresh"));
        let refs = add_cluster_refs(
            &mut o,
            [
                ("in-both".to_owned(), Some(secret("old"))),
                ("live-only".to_owned(), Some(secret("hunter2"))),
                ("missing".to_owned(), None),
                ("same".to_owned(), Some(secret("kept"))),
                ("files-only".to_owned(), None),
            ]
            .into(),
            BTreeMap::new(),
        );
        assert_eq!(o.snapshot.secrets["live-only"], secret("hunter2"));
        assert!(!o.snapshot.secrets.contains_key("missing"));
        assert_eq!(
            o.changes,
            [
                ObjectChange {
                    what: "Secret/files-only".into(),
                    change: Change::Added
                },
                ObjectChange {
                    what: "Secret/in-both".into(),
                    change: Change::Changed
                }
            ]
        );
        assert_eq!(o.unchanged, 1);
        let line = |name: &str| {
            refs.iter()
                .find(|r| r.what == format!("Secret/{name}"))
                .map(ClusterRef::line)
                .unwrap()
        };
        assert_eq!(
            line("same"),
            "Secret/same: from the files (the same as the cluster's: Opaque; keys password)"
        );
        assert_eq!(
            line("files-only"),
            "Secret/files-only: from the files (not in the cluster yet)"
        );
        let lines: Vec<String> = ["in-both", "live-only", "missing"].map(line).to_vec();
        assert_eq!(
            lines[0],
            "Secret/in-both: from the files (differs from the cluster's: Opaque; keys password)"
        );
        assert_eq!(
            lines[1],
            "Secret/live-only: read from the cluster (Opaque; keys password)"
        );
        assert_eq!(
            lines[2],
            "Secret/missing: in neither the files nor the cluster"
        );
        assert!(refs.iter().map(ClusterRef::line).all(|l| {
            !["hunter2", "old", "new", "kept", "fresh"]
                .iter()
                .any(|v| l.contains(v))
        }));
    }
}
