//! The contract between the controller and the gateways of a namespace (pure data).
//!
//! - The controller publishes the namespace's rendered configuration in a head Secret
//!   ([`RENDERED_SECRET`] by default, annotation [`HASH_ANNOTATION`]: the content hash)
//!   and, when it is large, up to [`MAX_PARTS`]` - 1` more (`<head>-<i>`); the format is
//!   in [`rendered`] (one encoder, one decoder, used by both sides).
//! - Each gateway reports what it runs in a `GatewayReport` object of its own
//!   (`postern-gw-<pod name>`, labelled [`REPORT_LABEL`]; its [`ReportSpec`] is the
//!   heartbeat — `renewTime` + `ttlSeconds` — and the [`GatewayReport`], whose
//!   [`CrlFacts`] the controller copies into `CrlSource` status and whose
//!   [`ListenerCoverage`] it copies into `Listener` status).
//!
//! A kind of its own rather than a Lease or a Pod annotation: a gateway's credentials
//! then write reports and nothing else. With rights on Leases, a gateway could take over
//! or delete the controller's leader-election Lease (and any other application's Lease in
//! its namespace); with rights on Pods, patch any Pod. It also works the same for a
//! gateway outside a Pod (tests, VMs), and dies with the Pod through its owner reference.

mod coverage;
mod crl;
mod listener;
pub mod rendered;

use serde::{Deserialize, Serialize};

pub use coverage::{CaRevocation, ListenerCoverage, RevocationMechanism};
pub use crl::{CrlError, CrlFacts, CrlFactsEntry, DiscoveredFrom, DiscoveredUrl, ServedBy};
pub use listener::{ListenerRefusal, ListenerRefusalReason, ListenerServing};
pub use rendered::{
    DecodeError, Encoded, FORMAT, Head, Limits, MANIFEST_KEY, MAX_DOCUMENT_BYTES, MAX_PARTS,
    Manifest, PART_BYTES, PAYLOAD_KEY, Part, SecretView, TooLarge, check_part, decode, encode,
    part_secret_name, read_head,
};

/// Default name of the rendered configuration Secret in each namespace.
pub const RENDERED_SECRET: &str = "postern-config";
/// Key of the configuration YAML in a rendered Secret of format 1 (still read).
pub const CONFIG_KEY: &str = "config.yaml";
/// Annotation of the rendered Secret: the configuration's content hash.
pub const HASH_ANNOTATION: &str = "postern.dev/config-hash";
/// Label on the rendered Secret (value `true`), for label-selected watches.
pub const RENDERED_LABEL: &str = "postern.dev/rendered-config";
/// Label on gateway reports (value `true`).
pub const REPORT_LABEL: &str = "postern.dev/gateway-report";
/// Prefix of gateway report names.
pub const REPORT_PREFIX: &str = "postern-gw-";
/// API group of the report kind.
pub const REPORT_GROUP: &str = "postern.dev";
/// API version of the report kind.
pub const REPORT_VERSION: &str = "v1alpha1";
/// The report kind.
pub const REPORT_KIND: &str = "GatewayReport";
/// Its plural (the resource RBAC rules name).
pub const REPORT_PLURAL: &str = "gatewayreports";

/// Name of the report of gateway `gateway` (its Pod name).
pub fn report_name(gateway: &str) -> String {
    format!("{REPORT_PREFIX}{gateway}")
}

/// A configuration the gateway was given and could not run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Refusal {
    /// Hash of the refused configuration (as annotated on the Secret).
    pub hash: String,
    /// Why, for a human.
    pub message: String,
}

/// What one gateway reports about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayReport {
    /// Hash of the configuration it runs, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_hash: Option<String>,
    /// Whether it serves (has a running configuration and is not shutting down).
    #[serde(default)]
    pub ready: bool,
    /// The last configuration it refused, while it still runs `applied_hash`.
    #[serde(
        default,
        rename = "refusedConfig",
        skip_serializing_if = "Option::is_none"
    )]
    pub refusal: Option<Refusal>,
    /// The Listeners of `applied_hash` it does not run as configured (the rest of that
    /// configuration runs): one refused Listener never holds back the others.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused_listeners: Vec<ListenerRefusal>,
    /// Per-CRL-source facts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub crl_sources: Vec<CrlFacts>,
    /// Per Listener with a client CA bundle: how the revocation of each of its CAs is
    /// checked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revocation: Vec<ListenerCoverage>,
}

/// The `spec` of a `GatewayReport` object: who, the heartbeat, and the report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportSpec {
    /// The gateway (its Pod name); the object is named [`report_name`] of it.
    pub gateway: String,
    /// When the gateway last renewed the report (RFC 3339).
    pub renew_time: String,
    /// How long the report counts without renewal, in seconds.
    pub ttl_seconds: u32,
    /// What it runs.
    #[serde(flatten)]
    pub report: GatewayReport,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_spec_round_trips_through_json() {
        let spec = ReportSpec {
            gateway: "gw-0".into(),
            renew_time: "2025-01-01T00:00:00.5Z".into(),
            ttl_seconds: 30,
            report: GatewayReport {
                applied_hash: Some("sha256:ab".into()),
                ready: true,
                refusal: Some(Refusal {
                    hash: "sha256:cd".into(),
                    message: "port 25 in use".into(),
                }),
                refused_listeners: vec![ListenerRefusal {
                    listener: "smtp".into(),
                    address: "0.0.0.0:25".into(),
                    reason: ListenerRefusalReason::PortUnavailable,
                    message: "Address already in use (os error 98)".into(),
                    serving: ListenerServing::NotServed,
                }],
                crl_sources: vec![CrlFacts {
                    name: "dod".into(),
                    served_by: Some(ServedBy::Secondary),
                    entries: 3,
                    ..Default::default()
                }],
                revocation: vec![ListenerCoverage {
                    listeners: vec!["smtp".into()],
                    cas: vec![CaRevocation {
                        ca: "CN=DoD Root CA 6".into(),
                        mechanism: RevocationMechanism::CrlAndOcsp,
                        covered: true,
                        sources: vec!["dod".into()],
                        entries: 3,
                        der_bytes: 512,
                        next_update: Some("2025-01-02T00:00:00Z".into()),
                        stale: false,
                    }],
                }],
            },
        };
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["refusedConfig"]["hash"], "sha256:cd");
        assert_eq!(json["appliedHash"], "sha256:ab");
        assert_eq!(json["ttlSeconds"], 30);
        assert_eq!(json["refusedListeners"][0]["reason"], "PortUnavailable");
        assert_eq!(json["revocation"][0]["cas"][0]["mechanism"], "crl+ocsp");
        assert_eq!(json["revocation"][0]["cas"][0]["derBytes"], 512);
        assert_eq!(serde_json::from_value::<ReportSpec>(json).unwrap(), spec);
        // A report that only says who and when reads as "not serving, runs nothing".
        let bare: ReportSpec = serde_json::from_value(serde_json::json!(
            {"gateway": "gw-1", "renewTime": "2025-01-01T00:00:00Z", "ttlSeconds": 3}
        ))
        .unwrap();
        assert_eq!(bare.report, GatewayReport::default());
    }
}
