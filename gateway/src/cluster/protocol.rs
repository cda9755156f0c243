//! The contract between the controller and the gateways of a namespace (pure data).
//!
//! - The controller publishes the namespace's rendered configuration as one Secret
//!   ([`RENDERED_SECRET`] by default): key [`CONFIG_KEY`] holds the YAML, annotation
//!   [`HASH_ANNOTATION`] its content hash.
//! - Each gateway reports what it runs in a `GatewayReport` object of its own
//!   (`postern-gw-<pod name>`, labelled [`REPORT_LABEL`]; its [`ReportSpec`] is the
//!   heartbeat — `renewTime` + `ttlSeconds` — and the [`GatewayReport`]).
//!
//! A kind of its own rather than a Lease or a Pod annotation: a gateway's credentials
//! then write reports and nothing else. With rights on Leases, a gateway could take over
//! or delete the controller's leader-election Lease (and any other application's Lease in
//! its namespace); with rights on Pods, patch any Pod. It also works the same for a
//! gateway outside a Pod (tests, VMs), and dies with the Pod through its owner reference.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::{GatewayConfig, LoadError};

/// Default name of the rendered configuration Secret in each namespace.
pub const RENDERED_SECRET: &str = "postern-config";
/// Key of the configuration YAML in the rendered Secret.
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

/// The API resource of reports, for dynamic clients.
pub fn report_api_resource() -> kube::api::ApiResource {
    kube::api::ApiResource {
        group: REPORT_GROUP.into(),
        version: REPORT_VERSION.into(),
        api_version: format!("{REPORT_GROUP}/{REPORT_VERSION}"),
        kind: REPORT_KIND.into(),
        plural: REPORT_PLURAL.into(),
    }
}

/// Why a rendered Secret could not be turned into a configuration.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The Secret has no [`CONFIG_KEY`].
    #[error("secret has no {CONFIG_KEY:?} key")]
    MissingKey,
    /// The value is not UTF-8.
    #[error("{CONFIG_KEY:?} is not UTF-8")]
    NotUtf8,
    /// The YAML is not a configuration.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The Secret has no [`HASH_ANNOTATION`].
    #[error("secret has no {HASH_ANNOTATION} annotation")]
    MissingHash,
    /// The content does not match the annotated hash: it was edited by hand (drift).
    #[error("content hash {actual} does not match the annotated {annotated} (edited by hand?)")]
    HashMismatch {
        /// The annotation.
        annotated: String,
        /// The hash of the content.
        actual: String,
    },
}

/// Decodes a rendered Secret's data and annotations into its configuration and hash,
/// checking the content against the annotated hash (a hand edit does not run).
pub fn decode_rendered(
    data: &BTreeMap<String, Vec<u8>>,
    annotations: &BTreeMap<String, String>,
    origin: &str,
) -> Result<(GatewayConfig, String), DecodeError> {
    let bytes = data.get(CONFIG_KEY).ok_or(DecodeError::MissingKey)?;
    let text = std::str::from_utf8(bytes).map_err(|_| DecodeError::NotUtf8)?;
    let config = GatewayConfig::from_yaml(text, origin)?;
    let annotated = annotations
        .get(HASH_ANNOTATION)
        .ok_or(DecodeError::MissingHash)?;
    let actual = config.hash();
    if &actual != annotated {
        return Err(DecodeError::HashMismatch {
            annotated: annotated.clone(),
            actual,
        });
    }
    Ok((config, actual))
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

/// Facts about one CRL source, as the gateway's CRL store reports them. Only the fields
/// the controller copies into `CrlSource` status; other fields are ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CrlFacts {
    /// Source name (the CrlSource's name).
    pub name: String,
    /// Last successful fetch (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fetch_time: Option<String>,
    /// `primary` or `secondary`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_by: Option<String>,
    /// `thisUpdate` of the CRL in force (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub this_update: Option<String>,
    /// `nextUpdate` of the CRL in force (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_update: Option<String>,
    /// Revoked serials in force.
    #[serde(default)]
    pub entries: u64,
    /// Issuer of the CRL in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Past `nextUpdate`: certificates of its issuer are refused.
    #[serde(default)]
    pub stale: bool,
    /// The last failure, if the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<CrlError>,
    /// Each CRL in force, with what it covers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub crls: Vec<CrlFactsEntry>,
}

/// One CRL in force of a source: the certificates it covers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CrlFactsEntry {
    /// Issuer DN.
    #[serde(default)]
    pub issuer: String,
    /// `all`, `userCertificates` or `caCertificates`.
    #[serde(default)]
    pub scope: String,
    /// Partition names (Issuing Distribution Point `distributionPoint`), if partitioned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distribution_points: Option<Vec<String>>,
    /// CRL number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl_number: Option<String>,
    /// nextUpdate (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_update: Option<String>,
    /// Revoked serials listed.
    #[serde(default)]
    pub entries: u64,
    /// Past nextUpdate.
    #[serde(default)]
    pub stale: bool,
}

/// The last failure of a CRL source.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CrlError {
    /// When (RFC 3339).
    #[serde(default)]
    pub time: String,
    /// Short stable code (`network`, `bad_signature`, ...).
    #[serde(default)]
    pub reason: String,
    /// The full explanation.
    #[serde(default)]
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
    /// Per-CRL-source facts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub crl_sources: Vec<CrlFacts>,
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

    fn rendered(
        config: &GatewayConfig,
        hash: &str,
    ) -> (BTreeMap<String, Vec<u8>>, BTreeMap<String, String>) {
        (
            BTreeMap::from([(CONFIG_KEY.to_owned(), config.to_yaml().into_bytes())]),
            BTreeMap::from([(HASH_ANNOTATION.to_owned(), hash.to_owned())]),
        )
    }

    #[test]
    fn decodes_a_rendered_secret_and_checks_its_hash() {
        let config = GatewayConfig::default();
        let (data, ann) = rendered(&config, &config.hash());
        let (decoded, hash) = decode_rendered(&data, &ann, "t").unwrap();
        assert_eq!(decoded, config);
        assert_eq!(hash, config.hash());

        let (data, ann) = rendered(&config, "sha256:00");
        assert!(matches!(
            decode_rendered(&data, &ann, "t"),
            Err(DecodeError::HashMismatch { .. })
        ));
        assert!(matches!(
            decode_rendered(&BTreeMap::new(), &ann, "t"),
            Err(DecodeError::MissingKey)
        ));
        let (data, _) = rendered(&config, "x");
        assert!(matches!(
            decode_rendered(&data, &BTreeMap::new(), "t"),
            Err(DecodeError::MissingHash)
        ));
    }

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
                crl_sources: vec![CrlFacts {
                    name: "dod".into(),
                    served_by: Some("secondary".into()),
                    entries: 3,
                    ..Default::default()
                }],
            },
        };
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["refusedConfig"]["hash"], "sha256:cd");
        assert_eq!(json["appliedHash"], "sha256:ab");
        assert_eq!(json["ttlSeconds"], 30);
        assert_eq!(serde_json::from_value::<ReportSpec>(json).unwrap(), spec);
        // A report that only says who and when reads as "not serving, runs nothing".
        let bare: ReportSpec = serde_json::from_value(serde_json::json!(
            {"gateway": "gw-1", "renewTime": "2025-01-01T00:00:00Z", "ttlSeconds": 3}
        ))
        .unwrap();
        assert_eq!(bare.report, GatewayReport::default());
    }

    #[test]
    fn crl_facts_read_the_gateways_richer_status() {
        // The CRL store's per-source status carries more fields; they are ignored.
        let json = r#"[{"name":"dod","enabled":true,"format":"Asn1","lastFetchTime":"2025-01-01T00:00:00Z",
            "servedBy":"primary","issuer":"CN=Root","entries":7,"stale":false,"restoredFromDisk":false}]"#;
        let facts: Vec<CrlFacts> = serde_json::from_str(json).unwrap();
        assert_eq!(facts[0].entries, 7);
        assert_eq!(facts[0].served_by.as_deref(), Some("primary"));
        // Each CRL's scope and partition come along.
        let json = r#"[{"name":"dod","crls":[{"issuer":"CN=Root","keyId":"ab","scope":"caCertificates",
            "distributionPoints":["URI:http://crl/p1.crl"],"thisUpdate":"2025-01-01T00:00:00Z",
            "entries":2,"derBytes":9,"indexBytes":9,"stale":false,"verifiedBy":"x"}]}]"#;
        let facts: Vec<CrlFacts> = serde_json::from_str(json).unwrap();
        let crl = &facts[0].crls[0];
        assert_eq!(crl.scope, "caCertificates");
        assert_eq!(
            crl.distribution_points.as_deref(),
            Some(&["URI:http://crl/p1.crl".to_owned()][..])
        );
    }
}
