//! Types shared by the five resources: references, CA bundles, conditions and status.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A reference to another object of the kind the field names, in the same namespace.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectRef {
    /// Name of the referenced object (same namespace).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

impl ObjectRef {
    /// A reference to `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }
}

/// A key of a Secret in the same namespace.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeyRef {
    /// Name of the Secret (same namespace).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key inside the Secret's data.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

impl SecretKeyRef {
    /// A reference to `key` of Secret `name`.
    pub fn new(name: impl Into<String>, key: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            key: key.into(),
        }
    }
}

/// A key of a ConfigMap in the same namespace.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigMapKeyRef {
    /// Name of the ConfigMap (same namespace).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key inside the ConfigMap's data.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// PEM trust anchors, from a Secret or a ConfigMap (set exactly one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CaBundle {
    /// A Secret key holding PEM CA certificates, e.g. `{name: ldap-ca, key: ca.crt}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
    /// A ConfigMap key holding PEM CA certificates (e.g. one distributed by trust-manager).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<ConfigMapKeyRef>,
}

/// Status of a condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// Not known yet.
    Unknown,
}

impl ConditionStatus {
    /// `True` for `true`, `False` for `false`.
    pub fn from_bool(value: bool) -> Self {
        if value { Self::True } else { Self::False }
    }
}

/// One aspect of an object's state, as in `metav1.Condition`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Condition {
    /// Kind of condition: `Accepted`, `ResolvedRefs`, `Programmed` or `Ready`.
    #[serde(rename = "type")]
    #[schemars(length(min = 1, max = 316))]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// CamelCase reason for the last transition, e.g. `RefNotFound`.
    #[schemars(length(min = 1, max = 1024))]
    pub reason: String,
    /// What a human should know, naming the field concerned and what to do (may be empty).
    // Nullable because API servers of v1.20 refuse an empty message in a list item
    // ("must be of type string: null") unless the schema allows null.
    #[serde(deserialize_with = "null_as_empty")]
    #[schemars(length(max = 32768), extend("nullable" = true))]
    pub message: String,
    /// When the status last changed (RFC 3339).
    #[schemars(extend("format" = "date-time"))]
    pub last_transition_time: String,
    /// The `metadata.generation` the condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub observed_generation: Option<i64>,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

/// Condition types.
pub mod condition_type {
    /// The object's spec is valid and is compiled into the gateway configuration.
    pub const ACCEPTED: &str = "Accepted";
    /// Every reference (objects, Secrets, ConfigMaps) resolves to something usable.
    pub const RESOLVED_REFS: &str = "ResolvedRefs";
    /// Every ready gateway pod runs the configuration that contains this object.
    pub const PROGRAMMED: &str = "Programmed";
    /// Accepted, ResolvedRefs and Programmed all hold.
    pub const READY: &str = "Ready";
}

/// Set `new` in `conditions`, replacing the condition of the same type. The transition
/// time is kept when the status did not change, so it records when the status last
/// flipped, not when it was last computed.
pub fn set_condition(conditions: &mut Vec<Condition>, mut new: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(old) => {
            if old.status == new.status {
                new.last_transition_time = old.last_transition_time.clone();
            }
            *old = new;
        }
        None => conditions.push(new),
    }
}

/// What every kind's status carries: the four conditions and the generation they are
/// about. Each kind's status flattens it, so the fields sit at the top of `status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStatus {
    /// `Accepted`, `ResolvedRefs`, `Programmed` and `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(status: ConditionStatus, time: &str) -> Condition {
        Condition {
            type_: condition_type::READY.into(),
            status,
            reason: "X".into(),
            message: String::new(),
            last_transition_time: time.into(),
            observed_generation: Some(1),
        }
    }

    #[test]
    fn transition_time_moves_only_on_flips() {
        let mut list = vec![cond(ConditionStatus::True, "2024-01-01T00:00:00Z")];
        set_condition(
            &mut list,
            cond(ConditionStatus::True, "2024-02-01T00:00:00Z"),
        );
        assert_eq!(list[0].last_transition_time, "2024-01-01T00:00:00Z");
        set_condition(
            &mut list,
            cond(ConditionStatus::False, "2024-03-01T00:00:00Z"),
        );
        assert_eq!(list[0].last_transition_time, "2024-03-01T00:00:00Z");
        assert_eq!(list.len(), 1);
    }
}
