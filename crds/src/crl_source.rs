//! `CrlSource`: a certificate revocation list fetched on a schedule.

use kube::CustomResource;
use postern_config::duration::DURATION_PATTERN;
use postern_config::protocol::{CrlFactsEntry, DiscoveredUrl, ServedBy};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{ObjectStatus, SecretKeyRef};
use crate::quantity::Quantity;
use crate::rules;

/// A certificate revocation list fetched on a schedule and enforced on TLS connections.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "postern.dev",
    version = "v1alpha1",
    kind = "CrlSource",
    namespaced,
    status = "CrlSourceStatus",
    shortname = "crl",
    category = "postern",
    doc = "A certificate revocation list fetched on a schedule and enforced on TLS connections.",
    printcolumn(name = "Enabled", type_ = "boolean", json_path = ".spec.enabled"),
    printcolumn(name = "Entries", type_ = "integer", json_path = ".status.entries"),
    printcolumn(name = "Next Update", type_ = "date", json_path = ".status.nextUpdate"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(transform = rules::crl_source_spec())]
pub struct CrlSourceSpec {
    /// Disabled sources are neither fetched nor enforced. Default `true`.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// `Asn1` (DER, one CRL; the default), `Pem` (one or several CRLs) or `Zip` (an
    /// archive of DER and/or PEM CRL files).
    #[serde(default)]
    pub format: CrlFormat,
    /// Where to fetch the CRL, e.g. `https://crl.example.com/certs.crl`. Required unless
    /// the source has `discovery`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^https?://[^\s/]+(/\S*)?$"))]
    pub primary_url: Option<String>,
    /// Used when the primary source cannot be fetched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^https?://[^\s/]+(/\S*)?$"))]
    pub secondary_url: Option<String>,
    /// When to fetch. Default `{interval: 1h}`.
    #[serde(default)]
    pub schedule: CrlSchedule,
    /// Which TLS checks use the CRL: `InboundSmtpTls` (client certificates) and/or
    /// `OutboundSmtpTls` (the next hop's certificate). Default `[InboundSmtpTls]`.
    #[serde(default = "default_applies_to")]
    #[schemars(length(min = 1))]
    pub applies_to: Vec<CrlScope>,
    /// What the checks it applies to do while the source has no CRL in force (before its
    /// first successful fetch, or while every fetch fails and nothing was ever loaded):
    /// `Closed` (default) refuses the certificates the CRL may be for as unverifiable
    /// (`crl_missing`); `Open` accepts them without this source's revocation check, and
    /// the source's `Ready` condition says so (reason `FailOpen`) until it loads. A CRL in
    /// force past its `nextUpdate` fails closed either way.
    #[serde(default, skip_serializing_if = "CrlFailurePolicy::is_closed")]
    #[schemars(extend("default" = "Closed"))]
    pub failure_policy: CrlFailurePolicy,
    /// Largest accepted download, as a quantity such as `512Mi` (the default). A bigger
    /// file is refused (`lastError.reason: too_large`) and the CRLs in force stay in
    /// force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "512Mi"))]
    pub max_size: Option<Quantity>,
    /// Find the CRL URLs in certificates instead of (or besides) `primaryUrl`: the CRL
    /// Distribution Points of the CAs of a bundle and, optionally, of the verified client
    /// certificates. Only URLs under `allowedUrlPrefixes` are ever fetched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery: Option<CrlDiscovery>,
}

/// Where a CRL source finds its URLs (CRL Distribution Points, `fullName` URIs).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(transform = rules::crl_discovery())]
pub struct CrlDiscovery {
    /// The CA certificates (PEM in a Secret key) whose CRL Distribution Points are
    /// fetched: the CRLs that revoke those CAs (e.g. the root's CRL for the issuing CAs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_ca_bundle: Option<CrlDiscoveryBundle>,
    /// Also fetch the CRL Distribution Points of verified client certificates: a URL first
    /// seen in a certificate is fetched and then kept on schedule; until its CRL is in
    /// force, certificates of that issuer are unverifiable (unless `failurePolicy: Open`).
    #[serde(default)]
    pub from_presented_certificates: bool,
    /// Only URLs starting with one of these are ever fetched, e.g.
    /// `http://crl.disa.mil/`; a distribution point elsewhere is logged and ignored.
    #[schemars(length(min = 1), transform = rules::url_prefixes())]
    pub allowed_url_prefixes: Vec<String>,
}

/// A bundle of CA certificates for discovery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CrlDiscoveryBundle {
    /// A Secret key holding PEM CA certificates, e.g. `{name: cac-roots, key: ca.crt}`.
    pub secret_ref: SecretKeyRef,
}

/// What a CRL source's checks do while it has no CRL in force.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum CrlFailurePolicy {
    /// Refuse the certificates the CRL may be for (fail closed).
    #[default]
    Closed,
    /// Accept them without this source's revocation check (fail open), with a warning.
    Open,
}

impl CrlFailurePolicy {
    /// Whether this is the default (`Closed`).
    pub fn is_closed(&self) -> bool {
        *self == CrlFailurePolicy::Closed
    }
}

fn default_true() -> bool {
    true
}

fn default_applies_to() -> Vec<CrlScope> {
    vec![CrlScope::InboundSmtpTls]
}

/// Fetch schedule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CrlSchedule {
    /// Time between fetches, e.g. `1h` (at least `1s`).
    #[schemars(pattern(DURATION_PATTERN), transform = rules::at_least_one_second())]
    pub interval: String,
}

impl Default for CrlSchedule {
    fn default() -> Self {
        CrlSchedule {
            interval: "1h".into(),
        }
    }
}

/// CRL file encoding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum CrlFormat {
    /// DER (`application/pkix-crl`).
    #[default]
    Asn1,
    /// PEM `X509 CRL` blocks.
    Pem,
    /// A ZIP archive of DER and/or PEM CRL files.
    Zip,
}

/// Which TLS connections a CRL is enforced on.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum CrlScope {
    /// Client certificates presented to the listeners.
    InboundSmtpTls,
    /// The next hop's server certificate.
    OutboundSmtpTls,
}

/// Status of a CRL source: conditions plus the facts of the CRL in force.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CrlSourceStatus {
    /// Conditions and the generation they are about.
    #[serde(flatten)]
    pub common: ObjectStatus,
    /// When the CRL in force was fetched (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub last_fetch_time: Option<String>,
    /// Which URL it came from: `primary` or `secondary`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_by: Option<ServedBy>,
    /// The CRL's thisUpdate (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub this_update: Option<String>,
    /// The CRL's nextUpdate (RFC 3339). Past it, certificates of this issuer are treated
    /// as unverifiable (fail closed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub next_update: Option<String>,
    /// Number of revoked certificates listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entries: Option<u64>,
    /// The CRL's issuer DN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Each CRL in force, with the certificates it covers (a file may hold a user
    /// certificate CRL and an ARL, or several partitions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub crls: Vec<CrlInForce>,
    /// The URLs found by `discovery`, each with its state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub discovered: Vec<DiscoveredUrl>,
}

/// One CRL in force, as the gateways report it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CrlInForce {
    /// Issuer DN.
    pub issuer: String,
    /// Which certificates of the issuer it covers: `all`, `userCertificates` or
    /// `caCertificates` (Issuing Distribution Point).
    pub scope: String,
    /// The partition it is (Issuing Distribution Point `distributionPoint` names): it
    /// covers the certificates whose CRL Distribution Points name one of these. Absent:
    /// every certificate in its scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distribution_points: Option<Vec<String>>,
    /// CRL number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl_number: Option<String>,
    /// nextUpdate (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub next_update: Option<String>,
    /// Revoked certificates listed.
    #[serde(default)]
    pub entries: u64,
    /// Size of the CRL as DER, in bytes.
    #[serde(default)]
    pub der_bytes: u64,
    /// Past nextUpdate.
    #[serde(default)]
    pub stale: bool,
}

impl From<CrlFactsEntry> for CrlInForce {
    /// A CRL as the gateways report it.
    fn from(c: CrlFactsEntry) -> Self {
        Self {
            issuer: c.issuer,
            scope: c.scope,
            distribution_points: c.distribution_points,
            crl_number: c.crl_number,
            next_update: c.next_update,
            entries: c.entries,
            der_bytes: c.der_bytes,
            stale: c.stale,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::{Condition, ConditionStatus};
    use crate::{LdapProfileStatus, ListenerStatus};

    fn common() -> ObjectStatus {
        ObjectStatus {
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: ConditionStatus::True,
                reason: "Ready".into(),
                message: "1/1 gateways programmed".into(),
                last_transition_time: "2025-01-01T00:00:00Z".into(),
                observed_generation: Some(2),
            }],
            observed_generation: Some(2),
        }
    }

    /// The shared part is flattened: `conditions` and `observedGeneration` sit at the top
    /// of `status` for every kind, next to a CRL source's facts, as they always have.
    #[test]
    fn every_status_keeps_its_fields_at_the_top() {
        let crl = CrlSourceStatus {
            common: common(),
            entries: Some(3),
            served_by: Some(ServedBy::Secondary),
            ..Default::default()
        };
        let json = serde_json::to_value(&crl).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "conditions": [{"type": "Ready", "status": "True", "reason": "Ready",
                    "message": "1/1 gateways programmed",
                    "lastTransitionTime": "2025-01-01T00:00:00Z", "observedGeneration": 2}],
                "observedGeneration": 2,
                "entries": 3,
                "servedBy": "secondary",
            })
        );
        assert_eq!(
            serde_json::from_value::<CrlSourceStatus>(json.clone()).unwrap(),
            crl
        );

        let listener = ListenerStatus {
            common: common(),
            ..Default::default()
        };
        let mut plain = json;
        let map = plain.as_object_mut().unwrap();
        map.remove("entries");
        map.remove("servedBy");
        assert_eq!(serde_json::to_value(&listener).unwrap(), plain);
        assert_eq!(
            serde_json::from_value::<ListenerStatus>(plain).unwrap(),
            listener
        );
        assert_eq!(
            serde_json::to_value(LdapProfileStatus::default()).unwrap(),
            serde_json::json!({})
        );
    }
}
