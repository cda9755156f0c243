//! Publishing the rendered configuration: the Secrets of a namespace (the head and, for a
//! large configuration, its parts; format in [`postern_config::protocol::rendered`]),
//! and drift repair.
//!
//! Each Secret is written only when what it holds differs from what it should hold; a
//! hand edit (a part that no longer matches the manifest, content that no longer matches
//! its hash, extra keys, another configuration in place of the one published) or a
//! deletion of any of them is repaired and reported as drift. Parts go out before the
//! head that lists them, and parts no longer listed are deleted after it, so a reader
//! who checks the manifest never sees a mix of two generations.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;
use postern_config::GatewayConfig;
use postern_config::protocol::{
    self, DecodeError, Encoded, HASH_ANNOTATION, Head, Limits, MANIFEST_KEY, PAYLOAD_KEY,
    RENDERED_LABEL, SecretView, TooLarge,
};

use super::objects::Objects;
use crate::compile::Kind;

/// Label on every Secret of a set but the head: the head's name.
pub(crate) const PART_OF_LABEL: &str = "postern.dev/rendered-part-of";

/// Labels of the Secrets of a set (`part_of`: the head, on the other parts).
pub(crate) fn labels(part_of: Option<&str>) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
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
    ]);
    if let Some(head) = part_of {
        labels.insert(PART_OF_LABEL.to_owned(), head.to_owned());
    }
    labels
}

/// What the rendered Secrets should be.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Desired {
    /// How many Listeners it has (for the log).
    pub listeners: usize,
    /// Its hash.
    pub hash: String,
    /// Owners (the namespace's Listeners): the Secrets go when they all go.
    pub owners: Vec<OwnerReference>,
    /// The configuration packed into parts.
    pub encoded: Encoded,
}

impl Desired {
    /// Packs `config` for publishing, or says it does not fit `limits`.
    pub(crate) fn new(
        config: &GatewayConfig,
        hash: String,
        owners: Vec<OwnerReference>,
        limits: &Limits,
    ) -> Result<Self, TooLarge> {
        let encoded = protocol::encode(config, &hash, limits);
        encoded.check(limits)?;
        Ok(Self {
            listeners: config.listeners.len(),
            hash,
            owners,
            encoded,
        })
    }
}

/// The rendered Secrets of a namespace as they are: the head, and every Secret labelled
/// as one of its parts.
#[derive(Clone, Debug, Default)]
pub(crate) struct Current {
    /// The head Secret.
    pub head: Option<Secret>,
    /// The other parts (and leftovers), in any order.
    pub parts: Vec<Secret>,
}

impl Current {
    fn part(&self, name: &str) -> Option<&Secret> {
        self.parts.iter().find(|s| s.name_any() == name)
    }

    /// The configuration they hold, with its hash, or why they hold none.
    pub(crate) fn decode(
        &self,
        head_name: &str,
    ) -> Option<Result<(GatewayConfig, String), DecodeError>> {
        let head = self.head.as_ref()?;
        let others: Vec<Option<SecretView<'_>>> = (1..protocol::MAX_PARTS)
            .map(|i| {
                self.part(&protocol::part_secret_name(head_name, i))
                    .map(view)
            })
            .collect();
        Some(protocol::decode(&view(head), head_name, &others))
    }

    /// The hash the head's manifest (or annotation) claims, without decoding anything.
    pub(crate) fn claimed_hash(&self, head_name: &str) -> Option<String> {
        let head = self.head.as_ref()?;
        let v = view(head);
        match protocol::read_head(&v, head_name) {
            Ok(Head::Parts { manifest, .. }) => Some(manifest.hash),
            _ => v.hash().map(str::to_owned),
        }
    }
}

/// A borrowed view of a Secret, for the protocol's decoder.
pub(crate) fn view(secret: &Secret) -> SecretView<'_> {
    SecretView::of_map(
        secret.data.as_ref(),
        |b| &b.0,
        secret.metadata.annotations.as_ref(),
    )
}

/// What has to be done to the rendered Secrets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// They say what they should.
    UpToDate,
    /// The configuration is the one published; labels, owners, leftover parts or the
    /// format differ: tidy up (no new configuration).
    Refresh {
        /// What, for the log.
        what: String,
    },
    /// They do not exist yet.
    Create,
    /// A new configuration replaces the previous one.
    Publish {
        /// The hash it had.
        previous: Option<String>,
    },
    /// They were edited or deleted by hand: restore them.
    RepairDrift {
        /// What was found, for the Event and the log.
        what: String,
    },
}

/// The writes that carry out an [`Action`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    /// What it means.
    pub action: Action,
    /// Parts to write (create or replace), by index; the head (0) last.
    pub write: Vec<usize>,
    /// Secrets to delete after the writes: parts no longer listed.
    pub delete: Vec<String>,
}

/// The Secret holding part `index` as it should be, keeping unrelated metadata of
/// `current` (other labels and annotations, its resourceVersion for an optimistic
/// replace).
pub(crate) fn render(
    namespace: &str,
    head_name: &str,
    index: usize,
    desired: &Desired,
    current: Option<&Secret>,
) -> Secret {
    let mut meta = current.map(|s| s.metadata.clone()).unwrap_or_default();
    meta.name = Some(protocol::part_secret_name(head_name, index));
    meta.namespace = Some(namespace.to_owned());
    meta.labels
        .get_or_insert_with(BTreeMap::new)
        .extend(labels((index > 0).then_some(head_name)));
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
        data: Some(part_data(&desired.encoded, index)),
        ..Default::default()
    }
}

fn part_data(encoded: &Encoded, index: usize) -> BTreeMap<String, ByteString> {
    let mut data = BTreeMap::from([(
        PAYLOAD_KEY.to_owned(),
        ByteString(encoded.parts[index].clone()),
    )]);
    if index == 0 {
        data.insert(
            MANIFEST_KEY.to_owned(),
            ByteString(
                serde_json::to_vec(&encoded.manifest).expect("the manifest always serialises"),
            ),
        );
    }
    data
}

/// Whether `current` holds exactly part `index` (data and hash annotation).
fn content_ok(current: &Secret, desired: &Desired, index: usize) -> bool {
    let data_ok = current.data.as_ref() == Some(&part_data(&desired.encoded, index));
    data_ok && view(current).hash() == Some(desired.hash.as_str())
}

/// Whether labels and owners of `current` are as [`render`] makes them.
fn metadata_ok(current: &Secret, desired: &Desired, part_of: Option<&str>) -> bool {
    let labels_ok = labels(part_of).iter().all(|(k, v)| {
        current
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(k))
            .is_some_and(|x| x == v)
    });
    labels_ok
        && owner_uids(current.metadata.owner_references.as_deref())
            == owner_uids(Some(&desired.owners))
}

/// Decides what to do, given the Secrets as they are, what they should be, and the hash
/// this controller last published there (if it did since it started leading).
pub(crate) fn plan(
    current: &Current,
    head_name: &str,
    desired: &Desired,
    last_published: Option<&str>,
) -> Plan {
    let count = desired.encoded.parts.len();
    let names: Vec<String> = (0..count)
        .map(|i| protocol::part_secret_name(head_name, i))
        .collect();
    let at = |i: usize| {
        if i == 0 {
            current.head.as_ref()
        } else {
            current.part(&names[i])
        }
    };
    let mut write: Vec<usize> = (1..count)
        .chain([0])
        .filter(|&i| {
            at(i).is_none_or(|s| {
                !content_ok(s, desired, i) || !metadata_ok(s, desired, (i > 0).then_some(head_name))
            })
        })
        .collect();
    let delete: Vec<String> = current
        .parts
        .iter()
        .map(ResourceExt::name_any)
        .filter(|n| !names.contains(n))
        .collect();
    let content_differs = (0..count).any(|i| at(i).is_none_or(|s| !content_ok(s, desired, i)));
    let action = if current.head.is_none() {
        match last_published {
            Some(_) => Action::RepairDrift {
                what: "the rendered Secret was deleted".into(),
            },
            None => Action::Create,
        }
    } else if !content_differs {
        if write.is_empty() && delete.is_empty() {
            Action::UpToDate
        } else if write.is_empty() {
            Action::Refresh {
                what: format!("removed parts no longer used: {}", delete.join(", ")),
            }
        } else {
            Action::Refresh {
                what: "refreshed labels and owners".into(),
            }
        }
    } else {
        classify(current, head_name, desired, last_published)
    };
    if action == Action::UpToDate {
        write.clear();
    }
    Plan {
        action,
        write,
        delete,
    }
}

/// What Secrets that differ from the desired ones mean: a new configuration, drift, or
/// only a different packing of the same one.
fn classify(
    current: &Current,
    head_name: &str,
    desired: &Desired,
    last_published: Option<&str>,
) -> Action {
    let claimed = current.claimed_hash(head_name);
    let ours = |h: &Option<String>| {
        h.as_deref()
            .is_some_and(|h| h == desired.hash || Some(h) == last_published)
    };
    let drift = |what: String| Action::RepairDrift { what };
    match current.decode(head_name).expect("the head exists") {
        Ok((_, hash)) if hash == desired.hash => Action::Refresh {
            what: "rewrote the same configuration in the current format".into(),
        },
        Ok((_, hash)) if last_published == Some(desired.hash.as_str()) => drift(format!(
            "the rendered Secret was replaced by hand with {hash}"
        )),
        Ok((_, hash)) => Action::Publish {
            previous: Some(hash),
        },
        Err(DecodeError::HashMismatch { annotated, actual }) => drift(format!(
            "the rendered configuration was edited by hand (content {actual}, annotated {annotated})"
        )),
        Err(e @ (DecodeError::PartMissing { .. } | DecodeError::PartMismatch { .. }))
            if ours(&claimed) =>
        {
            drift(format!("a part was deleted or edited by hand: {e}"))
        }
        // A previous publish that stopped half-way: its parts were being replaced.
        Err(DecodeError::PartMissing { .. } | DecodeError::PartMismatch { .. }) => {
            Action::Publish { previous: claimed }
        }
        Err(DecodeError::ExtraKey { secret, key }) => {
            drift(format!("keys were added by hand: {key} (in {secret})"))
        }
        Err(e) => drift(format!("the rendered Secret is damaged: {e}")),
    }
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

/// The owners of a namespace's rendered Secrets: its Listeners.
pub(crate) fn owners(objects: &Objects) -> Vec<OwnerReference> {
    objects
        .iter()
        .filter(|(k, _)| k.kind == Kind::Listener)
        .filter_map(|(_, o)| {
            Some(OwnerReference {
                api_version: postern_crds::API_VERSION.into(),
                kind: "Listener".into(),
                name: o.metadata().name.clone()?,
                uid: o.metadata().uid.clone()?,
                controller: None,
                block_owner_deletion: None,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
