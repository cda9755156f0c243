//! `GatewayReport`: what one gateway runs, written by that gateway (not by people).
//!
//! Gateways report in a kind of their own so that their credentials can write reports
//! and nothing else: the controller's leader-election Lease, other applications' Leases
//! and everything the controller reads are out of their reach (docs/rbac.md). The
//! controller only reads reports, to tell each object whether the fleet runs it.
//!
//! The field names are the contract with `postern_config::protocol::ReportSpec`,
//! which writes them.

use kube::CustomResource;
use kube::api::ApiResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One gateway's report: the configuration it runs, whether it serves, the last
/// configuration it refused, and its CRL sources; renewed as a heartbeat.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "postern.dev",
    version = "v1alpha1",
    kind = "GatewayReport",
    namespaced,
    shortname = "gwreport",
    doc = "What one gateway of the namespace runs, written by that gateway.",
    printcolumn(name = "Gateway", type_ = "string", json_path = ".spec.gateway"),
    printcolumn(name = "Applied", type_ = "string", json_path = ".spec.appliedHash"),
    printcolumn(name = "Serving", type_ = "boolean", json_path = ".spec.ready"),
    printcolumn(name = "Renewed", type_ = "date", json_path = ".spec.renewTime")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayReportSpec {
    /// The gateway (its Pod name). The report is named `postern-gw-<gateway>`.
    #[schemars(length(min = 1, max = 253))]
    pub gateway: String,
    /// When the gateway last renewed the report (RFC 3339).
    pub renew_time: String,
    /// How long the report counts without renewal, in seconds.
    #[schemars(range(min = 1))]
    pub ttl_seconds: u32,
    /// Hash of the configuration the gateway runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_hash: Option<String>,
    /// Whether the gateway serves (runs a configuration and is not shutting down).
    #[serde(default)]
    pub ready: bool,
    /// The last configuration the gateway could not run, while it runs `appliedHash`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused_config: Option<RefusedConfig>,
    /// The Listeners of `appliedHash` the gateway does not run as configured (the rest of
    /// that configuration runs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused_listeners: Vec<RefusedListener>,
    /// Per CRL source: last fetch, served by, thisUpdate, nextUpdate, entries, issuer,
    /// stale, last error (as the gateway's CRL store reports them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "free_form_objects")]
    pub crl_sources: Vec<serde_json::Value>,
    /// Per Listener with a client CA bundle: how the revocation of each of its CAs is
    /// checked (as the gateway's CRL store and the Listener's revocation mode decide).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "free_form_objects")]
    pub revocation: Vec<serde_json::Value>,
}

/// A configuration the gateway was given and could not run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RefusedConfig {
    /// Hash of the refused configuration.
    pub hash: String,
    /// Why, for a human.
    pub message: String,
}

/// A Listener the gateway does not run as configured.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RefusedListener {
    /// The Listener's name.
    pub listener: String,
    /// The address it asks for (`ip:port`).
    pub address: String,
    /// `PortUnavailable` (its address cannot be bound; retried) or `BuildFailed`.
    pub reason: String,
    /// The error, for a human.
    pub message: String,
    /// What runs instead.
    pub serving: RefusedListenerServing,
}

/// What a gateway serves for a refused Listener meanwhile.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RefusedListenerServing {
    /// `notServed`, or `previousVersion` (its last version that ran, on `address`).
    pub state: String,
    /// Where the previous version listens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// The API resource of reports, for dynamic clients.
pub fn report_api_resource() -> ApiResource {
    ApiResource::erase::<GatewayReport>(&())
}

/// A list of objects whose fields the gateway's CRL store decides (kept as written, so a
/// new fact does not need a new CRD).
fn free_form_objects(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "items": {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": true
        }
    })
}

#[cfg(test)]
mod tests {
    use postern_config::protocol::{
        GatewayReport as Report, REPORT_GROUP, REPORT_KIND, REPORT_PLURAL, REPORT_VERSION,
        ReportSpec,
    };

    use super::*;

    /// The kind is where the protocol says the gateways write it.
    #[test]
    fn the_kind_is_the_protocols() {
        let r = report_api_resource();
        assert_eq!(
            (r.group.as_str(), r.version.as_str(), r.kind.as_str()),
            (REPORT_GROUP, REPORT_VERSION, REPORT_KIND)
        );
        assert_eq!(r.plural, REPORT_PLURAL);
    }

    /// What a gateway writes reads as the CRD's spec.
    #[test]
    fn a_gateways_report_is_a_valid_spec() {
        let spec = ReportSpec {
            gateway: "gw-0".into(),
            renew_time: "2025-01-01T00:00:00Z".into(),
            ttl_seconds: 30,
            report: Report {
                applied_hash: Some("sha256:ab".into()),
                ready: true,
                refusal: None,
                refused_listeners: vec![postern_config::protocol::ListenerRefusal {
                    listener: "smtp".into(),
                    address: "0.0.0.0:25".into(),
                    reason: postern_config::protocol::ListenerRefusalReason::PortUnavailable,
                    message: "Address already in use (os error 98)".into(),
                    serving: postern_config::protocol::ListenerServing::PreviousVersion {
                        address: "0.0.0.0:2525".into(),
                    },
                }],
                crl_sources: vec![postern_config::protocol::CrlFacts {
                    name: "dod".into(),
                    ..Default::default()
                }],
                revocation: vec![postern_config::protocol::ListenerCoverage {
                    listeners: vec!["smtp".into()],
                    cas: Vec::new(),
                }],
            },
        };
        let crd: GatewayReportSpec =
            serde_json::from_value(serde_json::to_value(&spec).unwrap()).unwrap();
        assert_eq!(crd.applied_hash.as_deref(), Some("sha256:ab"));
        assert_eq!(crd.crl_sources.len(), 1);
        assert_eq!(crd.revocation.len(), 1);
        assert_eq!(crd.refused_listeners[0].serving.state, "previousVersion");
    }
}
