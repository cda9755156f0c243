//! Reading manifests from files, directories and stdin into a compiler [`Snapshot`].
//!
//! Multi-document YAML (and JSON); directories are read recursively (`*.yaml`, `*.yml`,
//! `*.json`, in name order); `-` is stdin. Postern resources are parsed strictly: an
//! unknown field or a bad enum value is an error naming the file, line, object and
//! field. Secrets and ConfigMaps are read with `data` (base64) and `stringData`. Other
//! kinds are skipped and listed, and so are kustomize's own files (`kustomization.yaml`,
//! often without `apiVersion`/`kind`): a GitOps directory holds them beside the objects.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::ObjectMeta;
use postern_crds::{
    API_VERSION, CrlSource, CrlSourceSpec, LdapProfile, LdapProfileSpec, Listener, ListenerSpec,
    MailFlowPolicy, MailFlowPolicySpec, SmtpAuthProfile, SmtpAuthProfileSpec,
};
use serde::Deserialize;

use super::yaml;
use crate::compile::{ConfigMapData, Kind, ObjectKey, SecretData, Snapshot, Unreadable};

/// Where a document starts: file (or `<stdin>`) and 1-based line.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Origin {
    /// The file as given on the command line (or found under a directory).
    pub file: String,
    /// 1-based line; 0 for an object that comes from no file (a live object `plan
    /// --live` keeps).
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            return write!(f, "{}", self.file);
        }
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// A problem found while reading, before compiling.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LoadProblem {
    /// Where.
    pub origin: Origin,
    /// `Kind/name`, when known.
    pub object: Option<String>,
    /// The field, when known.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// Everything read from the manifests.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The compiler's input.
    pub snapshot: Snapshot,
    /// Where each Postern object (and each Secret/ConfigMap, as kind `Secret`/`ConfigMap`)
    /// was defined.
    pub origins: BTreeMap<ObjectKey, Origin>,
    /// Where Secrets and ConfigMaps were defined, by `Secret/name` or `ConfigMap/name`.
    pub other_origins: BTreeMap<String, Origin>,
    /// Problems that concern no object the compiler sees (syntax, duplicates, ...).
    pub problems: Vec<LoadProblem>,
    /// Documents of other kinds, skipped: (where, `apiVersion kind/name`).
    pub skipped: Vec<(Origin, String)>,
}

/// Why reading could not even start.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// A path could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A directory held no manifest files.
    #[error("{0}: no *.yaml, *.yml or *.json files found")]
    EmptyDirectory(String),
}

/// Read every input (`-` for stdin) into (name, text) pairs, directories recursively.
pub fn read_inputs(inputs: &[String]) -> Result<Vec<(String, String)>, InputError> {
    let mut out = Vec::new();
    for input in inputs {
        if input == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|source| InputError::Read {
                    path: "<stdin>".into(),
                    source,
                })?;
            out.push(("<stdin>".to_owned(), text));
            continue;
        }
        let path = Path::new(input);
        let read_err = |source| InputError::Read {
            path: input.clone(),
            source,
        };
        if path.metadata().map_err(read_err)?.is_dir() {
            let mut files = Vec::new();
            walk(path, &mut files).map_err(|source| InputError::Read {
                path: input.clone(),
                source,
            })?;
            if files.is_empty() {
                return Err(InputError::EmptyDirectory(input.clone()));
            }
            for f in files {
                let text = std::fs::read_to_string(&f).map_err(|source| InputError::Read {
                    path: f.display().to_string(),
                    source,
                })?;
                out.push((f.display().to_string(), text));
            }
        } else {
            let text = std::fs::read_to_string(path).map_err(read_err)?;
            out.push((input.clone(), text));
        }
    }
    Ok(out)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, files)?;
        } else if p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        {
            files.push(p);
        }
    }
    Ok(())
}

/// Split a YAML stream into documents: (1-based line where the document's text starts, text).
fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut docs = Vec::new();
    let mut current = String::new();
    let mut start = 1;
    for (i, line) in text.lines().enumerate() {
        let marker = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        if marker || line == "..." {
            if !current.trim().is_empty() {
                docs.push((start, std::mem::take(&mut current)));
            }
            current.clear();
            start = i + 2;
            // Content after `--- ` on the same line belongs to the new document.
            if let Some(rest) = line.strip_prefix("--- ") {
                current.push_str(rest);
                current.push('\n');
                start = i + 1;
            }
            continue;
        }
        // A document's own lines keep their numbering: blank lines before content count.
        current.push_str(line);
        current.push('\n');
    }
    if !current.trim().is_empty() {
        docs.push((start, current));
    }
    docs
}

/// A Postern resource, parsed strictly (unknown fields anywhere outside metadata are errors).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)] // apiVersion and kind are checked before; status is ignored.
struct Strict<S> {
    api_version: String,
    kind: String,
    metadata: ObjectMeta,
    spec: S,
    #[serde(default)]
    status: Option<serde::de::IgnoredAny>,
}

fn str_at<'a>(v: &'a serde_json::Value, path: &[&str]) -> Option<&'a str> {
    let mut v = v;
    for p in path {
        v = v.get(*p)?;
    }
    v.as_str()
}

/// Read the given texts. `namespace` selects the objects of one namespace (objects
/// without a namespace belong to it); without it, all objects must share one.
pub fn load(texts: &[(String, String)], namespace: Option<&str>) -> Loaded {
    let mut loaded = Loaded::default();
    let mut seen: BTreeMap<String, Origin> = BTreeMap::new();
    let mut namespaces: BTreeMap<String, Origin> = BTreeMap::new();
    for (file, text) in texts {
        if is_kustomization(file) {
            let origin = Origin {
                file: file.clone(),
                line: 1,
            };
            loaded
                .skipped
                .push((origin, "kustomization (kustomize's configuration)".into()));
            continue;
        }
        for (start, doc) in split_documents(text) {
            let origin = Origin {
                file: file.clone(),
                line: start,
            };
            load_document(
                &mut loaded,
                &mut seen,
                &mut namespaces,
                namespace,
                origin,
                &doc,
            );
        }
    }
    loaded.snapshot.namespace = match namespace {
        Some(ns) => Some(ns.to_owned()),
        None if namespaces.len() > 1 => {
            let (_, origin) = namespaces.iter().nth(1).expect("len > 1");
            loaded.problems.push(LoadProblem {
                origin: origin.clone(),
                object: None,
                field: Some("metadata.namespace".into()),
                message: format!(
                    "the manifests span several namespaces ({}); one configuration is compiled per namespace: choose one with --namespace",
                    namespaces.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            });
            None
        }
        None => namespaces.keys().next().cloned(),
    };
    loaded.problems.sort();
    loaded
}

/// Whether `file` is kustomize's configuration rather than a manifest.
fn is_kustomization(file: &str) -> bool {
    matches!(
        Path::new(file).file_name().and_then(|n| n.to_str()),
        Some("kustomization.yaml" | "kustomization.yml" | "Kustomization")
    )
}

fn load_document(
    loaded: &mut Loaded,
    seen: &mut BTreeMap<String, Origin>,
    namespaces: &mut BTreeMap<String, Origin>,
    namespace: Option<&str>,
    origin: Origin,
    doc: &str,
) {
    let at_line = |line: Option<usize>| Origin {
        file: origin.file.clone(),
        line: origin.line + line.unwrap_or(1).saturating_sub(1),
    };
    let value = match yaml::value(doc) {
        Ok(v) => v,
        Err(e) => {
            loaded.problems.push(LoadProblem {
                origin: at_line(e.line),
                object: None,
                field: None,
                message: format!("not valid YAML: {}", e.message),
            });
            return;
        }
    };
    if value.is_null() {
        return;
    }
    let api_version = str_at(&value, &["apiVersion"])
        .unwrap_or_default()
        .to_owned();
    let kind = str_at(&value, &["kind"]).unwrap_or_default().to_owned();
    let name = str_at(&value, &["metadata", "name"]).map(str::to_owned);
    let object = (!kind.is_empty()).then(|| format!("{kind}/{}", name.as_deref().unwrap_or("?")));
    let problem = |loaded: &mut Loaded, origin: Origin, field: Option<&str>, message: String| {
        loaded.problems.push(LoadProblem {
            origin,
            object: object.clone(),
            field: field.map(str::to_owned),
            message,
        });
    };
    if api_version.is_empty() || kind.is_empty() {
        problem(
            loaded,
            origin.clone(),
            None,
            "not a Kubernetes object: apiVersion and kind are required".into(),
        );
        return;
    }
    let is_postern = api_version.split('/').next() == Some(postern_crds::GROUP);
    let is_core = api_version == "v1" && matches!(kind.as_str(), "Secret" | "ConfigMap");
    if !is_postern && !is_core {
        loaded.skipped.push((
            origin.clone(),
            format!("{api_version} {kind}/{}", name.as_deref().unwrap_or("?")),
        ));
        return;
    }
    if is_postern && api_version != API_VERSION {
        problem(
            loaded,
            origin.clone(),
            Some("apiVersion"),
            format!(
                "unsupported apiVersion {api_version:?} (this version of postern reads {API_VERSION})"
            ),
        );
        return;
    }
    let postern_kind = Kind::from_name(&kind);
    if is_postern && postern_kind.is_none() {
        problem(
            loaded,
            origin.clone(),
            Some("kind"),
            format!(
                "unknown kind {kind:?} in {API_VERSION} (known: {})",
                postern_crds::KINDS.join(", ")
            ),
        );
        return;
    }
    let Some(name) = name else {
        problem(
            loaded,
            origin.clone(),
            Some("metadata.name"),
            "metadata.name is required".into(),
        );
        return;
    };
    let object_ns = str_at(&value, &["metadata", "namespace"]);
    match (namespace, object_ns) {
        (Some(want), Some(ns)) if ns != want => {
            loaded
                .skipped
                .push((origin.clone(), format!("{kind}/{name} (namespace {ns})")));
            return;
        }
        (None, Some(ns)) => {
            namespaces
                .entry(ns.to_owned())
                .or_insert_with(|| origin.clone());
        }
        _ => {}
    }
    let id = format!("{kind}/{name}");
    if let Some(first) = seen.get(&id) {
        problem(
            loaded,
            origin.clone(),
            None,
            format!("{id} is defined twice (first at {first}); the first definition is used"),
        );
        return;
    }
    seen.insert(id.clone(), origin.clone());

    if is_core {
        loaded.other_origins.insert(id.clone(), origin.clone());
        if kind == "Secret" {
            match yaml::typed::<Secret>(doc) {
                Ok(s) => {
                    loaded.snapshot.secrets.insert(name, SecretData::from(&s));
                }
                Err(e) => problem(loaded, at_line(e.line), Some(&e.path), e.message),
            }
        } else {
            match yaml::typed::<ConfigMap>(doc) {
                Ok(c) => {
                    loaded
                        .snapshot
                        .config_maps
                        .insert(name, ConfigMapData::from(&c));
                }
                Err(e) => problem(loaded, at_line(e.line), Some(&e.path), e.message),
            }
        }
        return;
    }

    let kind = postern_kind.expect("checked above");
    let key = ObjectKey::new(kind, &name);
    loaded.origins.insert(key.clone(), origin.clone());
    let s = &mut loaded.snapshot;
    let result = match kind {
        Kind::LdapProfile => yaml::typed::<Strict<LdapProfileSpec>>(doc).map(|o| {
            s.ldap_profiles.push(Arc::new(LdapProfile {
                metadata: o.metadata,
                spec: o.spec,
                status: None,
            }))
        }),
        Kind::SmtpAuthProfile => yaml::typed::<Strict<SmtpAuthProfileSpec>>(doc).map(|o| {
            s.smtp_auth_profiles.push(Arc::new(SmtpAuthProfile {
                metadata: o.metadata,
                spec: o.spec,
                status: None,
            }))
        }),
        Kind::MailFlowPolicy => yaml::typed::<Strict<MailFlowPolicySpec>>(doc).map(|o| {
            s.mail_flow_policies.push(Arc::new(MailFlowPolicy {
                metadata: o.metadata,
                spec: o.spec,
                status: None,
            }))
        }),
        Kind::Listener => yaml::typed::<Strict<ListenerSpec>>(doc).map(|o| {
            s.listeners.push(Arc::new(Listener {
                metadata: o.metadata,
                spec: o.spec,
                status: None,
            }))
        }),
        Kind::CrlSource => yaml::typed::<Strict<CrlSourceSpec>>(doc).map(|o| {
            s.crl_sources.push(Arc::new(CrlSource {
                metadata: o.metadata,
                spec: o.spec,
                status: None,
            }))
        }),
    };
    if let Err(e) = result {
        // The object exists but cannot be read: the compiler reports it (and keeps its
        // previous rendering); point at the offending line.
        loaded.origins.insert(key.clone(), at_line(e.line));
        let field = if e.path == "?" { String::new() } else { e.path };
        loaded.snapshot.unreadable.push(Unreadable {
            key,
            generation: None,
            reason: e.kind.reason(),
            field,
            message: e.message,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_documents_and_keeps_line_numbers() {
        let text = "a: 1\n---\n\nb: 2\n--- \n...\n---\nc: 3\n";
        let docs = split_documents(text);
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[0].0, 1);
        assert_eq!(docs[1].0, 3);
        assert!(docs[1].1.starts_with("\nb: 2"));
        assert_eq!(docs[2].0, 8);
    }
}
