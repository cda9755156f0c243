//! The five kinds as the controller sees them in the cluster.
//!
//! Objects are watched untyped: an object the typed model cannot read (a value the
//! schema of this old API server let through, say) must not break the watch of its whole
//! kind; it becomes an [`Unreadable`] entry that the compiler reports on that object.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use kube::api::{ApiResource, DynamicObject, ObjectMeta};
use kube::core::GroupVersionKind;
use postern_crds::{CrlSource, LdapProfile, Listener, MailFlowPolicy, SmtpAuthProfile};
use serde::de::DeserializeOwned;

use super::status::{CrlSettings, KindStatus};
use crate::compile::{Kind, ObjectKey, Snapshot, Unreadable};
use crate::serde_kind::{self, Classified, ErrorKind};

/// The API resource of a kind.
pub(crate) fn api_resource(kind: Kind) -> ApiResource {
    let plural = match kind {
        Kind::LdapProfile => "ldapprofiles",
        Kind::SmtpAuthProfile => "smtpauthprofiles",
        Kind::MailFlowPolicy => "mailflowpolicies",
        Kind::Listener => "listeners",
        Kind::CrlSource => "crlsources",
    };
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(postern_crds::GROUP, postern_crds::VERSION, kind.as_str()),
        plural,
    )
}

#[cfg(test)]
/// An object's kind, from its `kind` field.
pub(crate) fn kind_of(obj: &DynamicObject) -> Option<Kind> {
    obj.types.as_ref().and_then(|t| Kind::from_name(&t.kind))
}

/// A reference to the object, for Events.
pub(crate) fn object_reference(kind: Kind, metadata: &ObjectMeta) -> ObjectReference {
    ObjectReference {
        api_version: Some(postern_crds::API_VERSION.into()),
        kind: Some(kind.as_str().into()),
        name: metadata.name.clone(),
        namespace: metadata.namespace.clone(),
        uid: metadata.uid.clone(),
        resource_version: metadata.resource_version.clone(),
        ..Default::default()
    }
}

fn typed<T: DeserializeOwned>(obj: &DynamicObject) -> Result<T, Classified<serde_json::Error>> {
    let value = serde_json::to_value(obj).map_err(|error| Classified {
        kind: ErrorKind::Format,
        error,
    })?;
    serde_kind::from_json_value(value)
}

fn unreadable(kind: Kind, obj: &DynamicObject, err: &Classified<serde_json::Error>) -> Unreadable {
    Unreadable {
        key: ObjectKey::new(kind, obj.metadata.name.clone().unwrap_or_default()),
        generation: obj.metadata.generation,
        field: "spec".into(),
        reason: err.kind.reason(),
        message: format!("the object cannot be read: {}", err.error),
    }
}

/// An object of the five kinds as the controller keeps it: read into the typed model
/// once, when the watch delivers it. (Kept as a `DynamicObject` it was a tree of JSON maps,
/// several KiB per object, read into the typed model again at every compile.) The typed
/// object is shared with the compiler's snapshots (`Arc`), not copied into each.
#[derive(Clone, Debug)]
pub(crate) struct StoredObject {
    /// Its spec in the typed model with its metadata (slimmed, [`slim`]), or why it
    /// cannot be read.
    typed: Result<Typed, Box<(ObjectMeta, Unreadable)>>,
    /// Its status as stored (what a status write merges into).
    status: KindStatus,
}

/// The typed objects (their `status` is kept apart, in [`StoredObject::status`]).
#[derive(Clone, Debug)]
enum Typed {
    LdapProfile(Arc<LdapProfile>),
    SmtpAuthProfile(Arc<SmtpAuthProfile>),
    MailFlowPolicy(Arc<MailFlowPolicy>),
    Listener(Arc<Listener>),
    CrlSource(Arc<CrlSource>),
}

impl StoredObject {
    /// Reads an object of `kind` as the watch delivered it.
    pub(crate) fn read(kind: Kind, mut obj: DynamicObject) -> Self {
        slim(&mut obj.metadata);
        macro_rules! read {
            ($variant:ident, $ty:ty) => {
                match typed::<$ty>(&obj) {
                    Ok(mut o) => {
                        let status = o
                            .status
                            .take()
                            .map(KindStatus::$variant)
                            .unwrap_or_else(|| KindStatus::read(kind, None));
                        // The slimmed metadata itself (the typed copy is equal).
                        o.metadata = obj.metadata;
                        (Ok(Typed::$variant(Arc::new(o))), status)
                    }
                    Err(e) => {
                        let u = unreadable(kind, &obj, &e);
                        let status = KindStatus::read(kind, obj.data.get("status"));
                        (Err(Box::new((obj.metadata, u))), status)
                    }
                }
            };
        }
        let (typed, status) = match kind {
            Kind::LdapProfile => read!(LdapProfile, LdapProfile),
            Kind::SmtpAuthProfile => read!(SmtpAuthProfile, SmtpAuthProfile),
            Kind::MailFlowPolicy => read!(MailFlowPolicy, MailFlowPolicy),
            Kind::Listener => read!(Listener, Listener),
            Kind::CrlSource => read!(CrlSource, CrlSource),
        };
        Self { typed, status }
    }

    /// Its metadata.
    pub(crate) fn metadata(&self) -> &ObjectMeta {
        match &self.typed {
            Ok(Typed::LdapProfile(o)) => o.meta(),
            Ok(Typed::SmtpAuthProfile(o)) => o.meta(),
            Ok(Typed::MailFlowPolicy(o)) => o.meta(),
            Ok(Typed::Listener(o)) => o.meta(),
            Ok(Typed::CrlSource(o)) => o.meta(),
            Err(u) => &u.0,
        }
    }

    /// Its status as stored.
    pub(crate) fn status(&self) -> &KindStatus {
        &self.status
    }

    /// The settings that decide what a `CrlSource`'s health means (the defaults for any
    /// other object, and for one that cannot be read: it is not in service, so it has no
    /// health to report).
    pub(crate) fn crl_settings(&self) -> CrlSettings {
        match &self.typed {
            Ok(Typed::CrlSource(c)) => CrlSettings::of(&c.spec),
            _ => CrlSettings::default(),
        }
    }

    /// Adds the object to the compiler's snapshot: typed, or as unreadable.
    pub(crate) fn add_to_snapshot(&self, snapshot: &mut Snapshot) {
        match &self.typed {
            Ok(Typed::LdapProfile(o)) => snapshot.ldap_profiles.push(o.clone()),
            Ok(Typed::SmtpAuthProfile(o)) => snapshot.smtp_auth_profiles.push(o.clone()),
            Ok(Typed::MailFlowPolicy(o)) => snapshot.mail_flow_policies.push(o.clone()),
            Ok(Typed::Listener(o)) => snapshot.listeners.push(o.clone()),
            Ok(Typed::CrlSource(o)) => snapshot.crl_sources.push(o.clone()),
            Err(u) => snapshot.unreadable.push(u.1.clone()),
        }
    }
}

/// Drops what the controller never reads from an object it keeps in memory: the
/// server-side apply bookkeeping (`managedFields`, often larger than the spec) and
/// `kubectl apply`'s copy of the whole object in an annotation. Status writes are
/// server-side applies of their own fields, so they need neither.
pub(crate) fn slim(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.remove(LAST_APPLIED);
        if a.is_empty() {
            meta.annotations = None;
        }
    }
}

/// `kubectl apply`'s (client-side) record of the last applied object.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The objects of one namespace by key.
pub(crate) type Objects = BTreeMap<ObjectKey, Arc<StoredObject>>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::Reason;

    fn dynamic(kind: &str, spec: serde_json::Value) -> DynamicObject {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "postern.dev/v1alpha1", "kind": kind,
            "metadata": {"name": "x", "namespace": "ns", "generation": 3, "uid": "u"},
            "spec": spec,
        }))
        .unwrap()
    }

    #[test]
    fn readable_objects_are_typed_and_unreadable_ones_reported() {
        let mut s = Snapshot::default();
        let good = dynamic(
            "MailFlowPolicy",
            serde_json::json!({"action": "Relay", "tls": "Preferred"}),
        );
        assert_eq!(kind_of(&good), Some(Kind::MailFlowPolicy));
        StoredObject::read(Kind::MailFlowPolicy, good).add_to_snapshot(&mut s);
        assert_eq!(s.mail_flow_policies.len(), 1);

        let bad = dynamic(
            "MailFlowPolicy",
            serde_json::json!({"action": "Relay", "tls": "Off"}),
        );
        StoredObject::read(Kind::MailFlowPolicy, bad).add_to_snapshot(&mut s);
        assert_eq!(s.unreadable.len(), 1);
        assert_eq!(s.unreadable[0].generation, Some(3));
        assert_eq!(
            s.unreadable[0].key,
            ObjectKey::new(Kind::MailFlowPolicy, "x")
        );
        let typo = dynamic(
            "MailFlowPolicy",
            serde_json::json!({"action": "Relay", "tlz": "Required"}),
        );
        StoredObject::read(Kind::MailFlowPolicy, typo).add_to_snapshot(&mut s);
        let reported: Vec<_> = s
            .unreadable
            .iter()
            .map(|u| (u.reason, &u.message[..60]))
            .collect();
        assert_eq!(
            reported,
            [
                (
                    Reason::InvalidValue,
                    "the object cannot be read: unknown variant `Off`, expected o"
                ),
                (
                    Reason::UnknownField,
                    "the object cannot be read: unknown field `tlz`, expected one"
                ),
            ]
        );
    }

    #[test]
    fn a_stored_object_keeps_its_metadata_and_status_once() {
        let mut o = dynamic(
            "Listener",
            serde_json::json!({"port": 2525, "hostname": "h", "defaultMailFlowPolicyRef": {"name": "p"},
                "nextHop": {"host": "x"}}),
        );
        o.data["status"] = serde_json::json!({"observedGeneration": 2});
        o.metadata.managed_fields = Some(Vec::new());
        let stored = StoredObject::read(Kind::Listener, o);
        assert!(stored.metadata().managed_fields.is_none(), "slimmed");
        assert_eq!(stored.status().common().observed_generation, Some(2));
        let mut s = Snapshot::default();
        stored.add_to_snapshot(&mut s);
        let l = &s.listeners[0];
        assert_eq!(l.metadata.name.as_deref(), Some("x"));
        assert_eq!(l.metadata.generation, Some(3));
        assert!(l.status.is_none(), "the status is kept apart");
        assert_eq!(stored.crl_settings(), CrlSettings::default());
    }

    #[test]
    fn api_resources_name_the_plural() {
        let ar = api_resource(Kind::MailFlowPolicy);
        assert_eq!(ar.plural, "mailflowpolicies");
        assert_eq!(ar.api_version, "postern.dev/v1alpha1");
        let r = object_reference(
            Kind::MailFlowPolicy,
            &dynamic("MailFlowPolicy", serde_json::json!({})).metadata,
        );
        assert_eq!(r.kind.as_deref(), Some("MailFlowPolicy"));
        assert_eq!(r.uid.as_deref(), Some("u"));
    }
}
