//! Per-Listener refusals: a gateway applies everything of a configuration it can run and
//! refuses only the Listeners it cannot (a port in use, material it cannot load), each
//! reported as a [`ListenerRefusal`] beside the configuration it applied.

use serde::{Deserialize, Serialize};

/// Why a gateway does not run a Listener as configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ListenerRefusalReason {
    /// Its address cannot be bound (in use by another process, not permitted, no such
    /// address on the host). Retried: the Listener comes up once the address is free.
    PortUnavailable,
    /// Its run-time parts could not be built (TLS material, authentication profile, next
    /// hop). Not retried: the configuration must change.
    BuildFailed,
}

impl ListenerRefusalReason {
    /// The CamelCase name (status reason, metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PortUnavailable => "PortUnavailable",
            Self::BuildFailed => "BuildFailed",
        }
    }
}

/// What the gateway serves for a refused Listener meanwhile.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "state")]
pub enum ListenerServing {
    /// Nothing: the Listener is new (or its previous version's address went to another
    /// Listener).
    NotServed,
    /// Its last version that ran, on `address`.
    PreviousVersion {
        /// Where the previous version listens (`ip:port`).
        address: String,
    },
}

/// One Listener of the applied configuration the gateway does not run as configured.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerRefusal {
    /// The Listener's name (in the configuration and in the cluster).
    pub listener: String,
    /// The address it asks for (`ip:port`).
    pub address: String,
    /// Why it is refused.
    pub reason: ListenerRefusalReason,
    /// The error, for a human (e.g. `Address already in use (os error 98)`).
    pub message: String,
    /// What runs instead.
    pub serving: ListenerServing,
}

impl ListenerRefusal {
    /// One sentence: what was refused, why, and what serves meanwhile.
    pub fn describe(&self) -> String {
        let what = match self.reason {
            ListenerRefusalReason::PortUnavailable => {
                format!("cannot listen on {}: {}", self.address, self.message)
            }
            ListenerRefusalReason::BuildFailed => {
                format!("cannot run it (on {}): {}", self.address, self.message)
            }
        };
        match &self.serving {
            ListenerServing::NotServed => format!("{what}; not served"),
            ListenerServing::PreviousVersion { address } => {
                format!("{what}; its previous version keeps serving on {address}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_read_as_typed_values_and_describe_themselves() {
        let r = ListenerRefusal {
            listener: "smtp".into(),
            address: "0.0.0.0:25".into(),
            reason: ListenerRefusalReason::PortUnavailable,
            message: "Address already in use (os error 98)".into(),
            serving: ListenerServing::PreviousVersion {
                address: "0.0.0.0:2525".into(),
            },
        };
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["reason"], "PortUnavailable");
        assert_eq!(json["serving"]["state"], "previousVersion");
        assert_eq!(json["serving"]["address"], "0.0.0.0:2525");
        assert_eq!(serde_json::from_value::<ListenerRefusal>(json).unwrap(), r);
        assert_eq!(
            r.describe(),
            "cannot listen on 0.0.0.0:25: Address already in use (os error 98); its previous version keeps serving on 0.0.0.0:2525"
        );
        let new = ListenerRefusal {
            serving: ListenerServing::NotServed,
            ..r
        };
        assert!(
            new.describe().ends_with("; not served"),
            "{}",
            new.describe()
        );
    }
}
