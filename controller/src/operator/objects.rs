//! The five kinds as the controller sees them in the cluster.
//!
//! Objects are watched untyped: an object the typed model cannot read (a value the
//! schema of this old API server let through, say) must not break the watch of its whole
//! kind; it becomes an [`Unreadable`] entry that the compiler reports on that object.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{ApiResource, DynamicObject, ObjectMeta};
use kube::core::GroupVersionKind;
use postern_crds::{CrlSource, LdapProfile, Listener, MailFlowPolicy, SmtpAuthProfile};
use serde::de::DeserializeOwned;

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
pub(crate) fn object_reference(kind: Kind, obj: &DynamicObject) -> ObjectReference {
    ObjectReference {
        api_version: Some(postern_crds::API_VERSION.into()),
        kind: Some(kind.as_str().into()),
        name: obj.metadata.name.clone(),
        namespace: obj.metadata.namespace.clone(),
        uid: obj.metadata.uid.clone(),
        resource_version: obj.metadata.resource_version.clone(),
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

/// Adds one object to the snapshot, typed when it can be read.
pub(crate) fn add_to_snapshot(snapshot: &mut Snapshot, kind: Kind, obj: &DynamicObject) {
    macro_rules! push {
        ($field:ident, $ty:ty) => {
            match typed::<$ty>(obj) {
                Ok(o) => snapshot.$field.push(o),
                Err(e) => snapshot.unreadable.push(unreadable(kind, obj, &e)),
            }
        };
    }
    match kind {
        Kind::LdapProfile => push!(ldap_profiles, LdapProfile),
        Kind::SmtpAuthProfile => push!(smtp_auth_profiles, SmtpAuthProfile),
        Kind::MailFlowPolicy => push!(mail_flow_policies, MailFlowPolicy),
        Kind::Listener => push!(listeners, Listener),
        Kind::CrlSource => push!(crl_sources, CrlSource),
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
pub(crate) type Objects = BTreeMap<ObjectKey, std::sync::Arc<DynamicObject>>;

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
        add_to_snapshot(&mut s, Kind::MailFlowPolicy, &good);
        assert_eq!(s.mail_flow_policies.len(), 1);

        let bad = dynamic(
            "MailFlowPolicy",
            serde_json::json!({"action": "Relay", "tls": "Off"}),
        );
        add_to_snapshot(&mut s, Kind::MailFlowPolicy, &bad);
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
        add_to_snapshot(&mut s, Kind::MailFlowPolicy, &typo);
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
    fn api_resources_name_the_plural() {
        let ar = api_resource(Kind::MailFlowPolicy);
        assert_eq!(ar.plural, "mailflowpolicies");
        assert_eq!(ar.api_version, "postern.dev/v1alpha1");
        let r = object_reference(
            Kind::MailFlowPolicy,
            &dynamic("MailFlowPolicy", serde_json::json!({})),
        );
        assert_eq!(r.kind.as_deref(), Some("MailFlowPolicy"));
        assert_eq!(r.uid.as_deref(), Some("u"));
    }
}
