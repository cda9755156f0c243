//! Publishing the rendered configuration: one Secret per namespace, and drift repair.
//!
//! The Secret holds exactly one key ([`CONFIG_KEY`]) and is annotated with the content
//! hash. It is written only when what it says differs from what it should say; a hand
//! edit (content that no longer matches its hash, extra keys, another configuration in
//! place of the one published) or a deletion is repaired and reported as drift.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Api;
use kube::api::PostParams;
use postern_config::GatewayConfig;
use postern_config::protocol::{
    self, CONFIG_KEY, HASH_ANNOTATION, RENDERED_LABEL, decode_rendered,
};

use super::objects::Objects;
use crate::compile::Kind;

/// Labels of the rendered Secret.
pub(crate) fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        (RENDERED_LABEL.to_owned(), "true".to_owned()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "postern-controller".to_owned(),
        ),
        (
            "app.kubernetes.io/component".to_owned(),
            "gateway-config".to_owned(),
        ),
        ("app.kubernetes.io/part-of".to_owned(), "postern".to_owned()),
    ])
}

/// What the rendered Secret should be.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Desired {
    /// The configuration.
    pub config: GatewayConfig,
    /// Its hash.
    pub hash: String,
    /// Owners (the namespace's Listeners): the Secret goes when they all go.
    pub owners: Vec<OwnerReference>,
}

/// What has to be done to the rendered Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// It says what it should.
    UpToDate,
    /// Only labels or owners differ: refresh them (no new configuration).
    RefreshMetadata,
    /// It does not exist yet.
    Create,
    /// A new configuration replaces the previous one.
    Publish {
        /// The hash it had.
        previous: Option<String>,
    },
    /// It was edited or deleted by hand: restore it.
    RepairDrift {
        /// What was found, for the Event and the log.
        what: String,
    },
}

/// Decides what to do, given the Secret as it is, what it should be, and the hash this
/// controller last published there (if it did since it started leading).
pub(crate) fn plan(
    current: Option<&Secret>,
    desired: &Desired,
    last_published: Option<&str>,
) -> Action {
    let Some(s) = current else {
        return match last_published {
            Some(_) => Action::RepairDrift {
                what: "the rendered Secret was deleted".into(),
            },
            None => Action::Create,
        };
    };
    let (data, annotations) = contents(s);
    let extra: Vec<&String> = data.keys().filter(|k| *k != CONFIG_KEY).collect();
    if !extra.is_empty() {
        return Action::RepairDrift {
            what: format!(
                "keys were added by hand: {}",
                extra
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
    }
    match decode_rendered(&data, &annotations, "rendered secret") {
        Err(protocol::DecodeError::HashMismatch { annotated, actual }) => Action::RepairDrift {
            what: format!(
                "{CONFIG_KEY} was edited by hand (content {actual}, annotated {annotated})"
            ),
        },
        Err(e) => Action::RepairDrift {
            what: format!("the rendered Secret is damaged: {e}"),
        },
        Ok((_, hash)) if hash == desired.hash => {
            let labels_ok = labels().iter().all(|(k, v)| {
                s.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(k))
                    .is_some_and(|x| x == v)
            });
            let owners_ok = owner_uids(s.metadata.owner_references.as_deref())
                == owner_uids(Some(&desired.owners));
            if labels_ok && owners_ok {
                Action::UpToDate
            } else {
                Action::RefreshMetadata
            }
        }
        Ok((_, hash)) if last_published == Some(desired.hash.as_str()) => Action::RepairDrift {
            what: format!("the rendered Secret was replaced by hand with {hash}"),
        },
        Ok((_, hash)) => Action::Publish {
            previous: Some(hash),
        },
    }
}

/// A rendered Secret's data and annotations, as the protocol decodes them.
pub(crate) fn contents(secret: &Secret) -> (BTreeMap<String, Vec<u8>>, BTreeMap<String, String>) {
    let data = secret
        .data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    let annotations = secret.metadata.annotations.clone().unwrap_or_default();
    (data, annotations)
}

fn owner_uids(owners: Option<&[OwnerReference]>) -> Vec<String> {
    let mut v: Vec<String> = owners
        .unwrap_or_default()
        .iter()
        .map(|o| o.uid.clone())
        .collect();
    v.sort();
    v
}

/// The Secret as it should be, keeping unrelated metadata of `current` (other labels and
/// annotations, its resourceVersion for an optimistic replace).
pub(crate) fn render(
    namespace: &str,
    name: &str,
    desired: &Desired,
    current: Option<&Secret>,
) -> Secret {
    let mut meta = current.map(|s| s.metadata.clone()).unwrap_or_default();
    meta.name = Some(name.to_owned());
    meta.namespace = Some(namespace.to_owned());
    meta.labels
        .get_or_insert_with(BTreeMap::new)
        .extend(labels());
    meta.annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(HASH_ANNOTATION.to_owned(), desired.hash.clone());
    meta.owner_references = if desired.owners.is_empty() {
        None
    } else {
        Some(desired.owners.clone())
    };
    meta.managed_fields = None;
    Secret {
        metadata: meta,
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            CONFIG_KEY.to_owned(),
            ByteString(desired.config.to_yaml().into_bytes()),
        )])),
        ..Default::default()
    }
}

/// The configuration a rendered Secret holds, if it reads as one (a damaged Secret holds
/// none: nothing to fall back on).
pub(crate) fn published_config(secret: &Secret) -> Option<GatewayConfig> {
    let (data, annotations) = contents(secret);
    decode_rendered(&data, &annotations, "rendered secret")
        .ok()
        .map(|(c, _)| c)
}

/// The owners of a namespace's rendered Secret: its Listeners.
pub(crate) fn owners(objects: &Objects) -> Vec<OwnerReference> {
    objects
        .iter()
        .filter(|(k, _)| k.kind == Kind::Listener)
        .filter_map(|(_, o)| {
            Some(OwnerReference {
                api_version: postern_crds::API_VERSION.into(),
                kind: "Listener".into(),
                name: o.metadata.name.clone()?,
                uid: o.metadata.uid.clone()?,
                controller: None,
                block_owner_deletion: None,
            })
        })
        .collect()
}

/// Writes the Secret: create, or replace with the observed resourceVersion (a concurrent
/// writer makes this fail with 409, and the next reconcile starts over).
pub(crate) async fn write(
    api: &Api<Secret>,
    namespace: &str,
    name: &str,
    desired: &Desired,
    current: Option<&Secret>,
) -> Result<Secret, kube::Error> {
    let secret = render(namespace, name, desired, current);
    match current {
        None => api.create(&PostParams::default(), &secret).await,
        Some(_) => api.replace(name, &PostParams::default(), &secret).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::objects;
    use kube::api::DynamicObject;
    use postern_config::Source;

    fn desired(ns: &str) -> Desired {
        let config = GatewayConfig {
            source: Some(Source {
                namespace: Some(ns.into()),
            }),
            ..Default::default()
        };
        Desired {
            hash: config.hash(),
            config,
            owners: vec![OwnerReference {
                api_version: "postern.dev/v1alpha1".into(),
                kind: "Listener".into(),
                name: "l".into(),
                uid: "u1".into(),
                ..Default::default()
            }],
        }
    }

    #[test]
    fn absent_secret_is_created_or_recreated() {
        let d = desired("a");
        assert_eq!(plan(None, &d, None), Action::Create);
        assert!(matches!(
            plan(None, &d, Some(&d.hash)),
            Action::RepairDrift { what } if what.contains("deleted")
        ));
    }

    #[test]
    fn rendered_secret_is_up_to_date() {
        let d = desired("a");
        let s = render("ns", "postern-config", &d, None);
        assert_eq!(plan(Some(&s), &d, Some(&d.hash)), Action::UpToDate);
        assert_eq!(plan(Some(&s), &d, None), Action::UpToDate);
    }

    #[test]
    fn a_new_configuration_is_published() {
        let old = desired("a");
        let new = desired("b");
        let s = render("ns", "postern-config", &old, None);
        assert_eq!(
            plan(Some(&s), &new, Some(&old.hash)),
            Action::Publish {
                previous: Some(old.hash.clone())
            }
        );
    }

    #[test]
    fn hand_edits_are_drift() {
        let d = desired("a");
        let mut s = render("ns", "postern-config", &d, None);
        // Content edited, annotation left alone.
        s.data.as_mut().unwrap().insert(
            CONFIG_KEY.into(),
            ByteString(desired("evil").config.to_yaml().into_bytes()),
        );
        assert!(matches!(
            plan(Some(&s), &d, Some(&d.hash)),
            Action::RepairDrift { what } if what.contains("edited by hand")
        ));
        // Another consistent configuration put in place of ours.
        let other = render("ns", "postern-config", &desired("evil"), None);
        assert!(matches!(
            plan(Some(&other), &d, Some(&d.hash)),
            Action::RepairDrift { what } if what.contains("replaced by hand")
        ));
        // A key added.
        let mut s = render("ns", "postern-config", &d, None);
        s.data
            .as_mut()
            .unwrap()
            .insert("extra".into(), ByteString(b"x".to_vec()));
        assert!(matches!(
            plan(Some(&s), &d, None),
            Action::RepairDrift { what } if what.contains("extra")
        ));
        // Garbage.
        let mut s = render("ns", "postern-config", &d, None);
        s.data
            .as_mut()
            .unwrap()
            .insert(CONFIG_KEY.into(), ByteString(b"not: [yaml".to_vec()));
        assert!(matches!(
            plan(Some(&s), &d, None),
            Action::RepairDrift { what } if what.contains("damaged")
        ));
    }

    #[test]
    fn metadata_changes_refresh_without_a_new_configuration() {
        let d = desired("a");
        let mut s = render("ns", "postern-config", &d, None);
        s.metadata.owner_references = None;
        assert_eq!(plan(Some(&s), &d, None), Action::RefreshMetadata);
        let mut s = render("ns", "postern-config", &d, None);
        s.metadata.labels = None;
        assert_eq!(plan(Some(&s), &d, None), Action::RefreshMetadata);
    }

    #[test]
    fn a_rendered_secret_gives_back_its_configuration_and_owners_are_listeners() {
        let d = desired("a");
        let s = render("ns", "postern-config", &d, None);
        assert_eq!(published_config(&s), Some(d.config.clone()));
        let mut damaged = s.clone();
        damaged.metadata.annotations = None;
        assert_eq!(published_config(&damaged), None);

        let object = |kind: Kind, name: &str| {
            let mut o = DynamicObject::new(name, &objects::api_resource(kind));
            o.metadata.uid = Some(format!("uid-{name}"));
            (
                crate::compile::ObjectKey::new(kind, name),
                std::sync::Arc::new(o),
            )
        };
        let all: Objects = [
            object(Kind::Listener, "in"),
            object(Kind::MailFlowPolicy, "relay"),
            object(Kind::Listener, "out"),
        ]
        .into_iter()
        .collect();
        let names: Vec<(String, String)> =
            owners(&all).into_iter().map(|o| (o.name, o.uid)).collect();
        assert_eq!(
            names,
            [
                ("in".to_owned(), "uid-in".to_owned()),
                ("out".to_owned(), "uid-out".to_owned())
            ]
        );
    }

    #[test]
    fn render_keeps_foreign_metadata() {
        let d = desired("a");
        let mut current = render("ns", "postern-config", &desired("old"), None);
        current
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert("team".into(), "mail".into());
        current.metadata.resource_version = Some("42".into());
        let s = render("ns", "postern-config", &d, Some(&current));
        let ann = s.metadata.annotations.unwrap();
        assert_eq!(ann["team"], "mail");
        assert_eq!(ann[HASH_ANNOTATION], d.hash);
        assert_eq!(s.metadata.resource_version.as_deref(), Some("42"));
        assert_eq!(s.data.unwrap().len(), 1);
    }
}
