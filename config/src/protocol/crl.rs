//! CRL facts: what a gateway's CRL store says about each source, as the gateway reports
//! it and the controller copies it into `CrlSource` status.
//!
//! One typed definition for the three places: the gateway builds [`CrlFacts`] from its
//! store's status (a total conversion, nothing to drop), the `GatewayReport` carries
//! them, and the CRD status uses the same [`ServedBy`].

use std::fmt;

use serde::{Deserialize, Serialize};

/// Which URL the CRL in force came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum ServedBy {
    /// `primaryUrl`.
    Primary,
    /// `secondaryUrl`.
    Secondary,
}

impl ServedBy {
    /// `primary` or `secondary`.
    pub fn as_str(self) -> &'static str {
        match self {
            ServedBy::Primary => "primary",
            ServedBy::Secondary => "secondary",
        }
    }
}

impl fmt::Display for ServedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Facts about one CRL source, as a gateway's CRL store reports them: the fields the
/// controller copies into `CrlSource` status. Fields a newer gateway adds are ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CrlFacts {
    /// Source name (the CrlSource's name).
    pub name: String,
    /// Last successful fetch (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fetch_time: Option<String>,
    /// Which URL served the CRL in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_by: Option<ServedBy>,
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
    /// The URLs found by the source's `discovery`, each with its state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub discovered: Vec<DiscoveredUrl>,
}

/// Where a discovered CRL URL was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub enum DiscoveredFrom {
    /// A CA certificate of `discovery.fromCaBundle`.
    CaBundle,
    /// A verified client certificate (`discovery.fromPresentedCertificates`).
    PresentedCertificate,
}

/// One URL a CRL source discovered (a CRL Distribution Point), with its state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct DiscoveredUrl {
    /// The URL.
    pub url: String,
    /// Where it was found.
    pub from: DiscoveredFrom,
    /// `InForce`, `NotFetched` (first fetch under way) or `FetchFailed`.
    pub state: String,
    /// When it was first seen (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen_time: Option<String>,
    /// Last acceptable answer (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fetch_time: Option<String>,
    /// Issuer of its CRL in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Revoked serials in force.
    #[serde(default)]
    pub entries: u64,
    /// Earliest nextUpdate of its CRLs in force (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_update: Option<String>,
    /// The last failure, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<CrlError>,
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
    /// Size of the CRL as DER, in bytes.
    #[serde(default)]
    pub der_bytes: u64,
    /// Past nextUpdate.
    #[serde(default)]
    pub stale: bool,
}

/// The last failure of a CRL source.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct CrlError {
    // Always written, so no `#[serde(default)]`: a schema default under the CRD's
    // `status.discovered[]` items is refused by Kubernetes 1.20.
    /// When (RFC 3339).
    pub time: String,
    /// Short stable code (`network`, `bad_signature`, ...).
    pub reason: String,
    /// The full explanation.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_by_reads_and_writes_lower_case() {
        for s in [ServedBy::Primary, ServedBy::Secondary] {
            let json = serde_json::to_value(s).unwrap();
            assert_eq!(json, s.as_str());
            assert_eq!(s.to_string(), s.as_str());
            assert_eq!(serde_json::from_value::<ServedBy>(json).unwrap(), s);
        }
        assert!(serde_json::from_str::<ServedBy>("\"tertiary\"").is_err());
    }

    #[test]
    fn crl_facts_ignore_fields_they_do_not_carry() {
        // Reports of a newer gateway may carry more; they still read.
        let json = r#"[{"name":"dod","lastFetchTime":"2025-01-01T00:00:00Z","servedBy":"primary",
            "issuer":"CN=Root","entries":7,"stale":false,"restoredFromDisk":false}]"#;
        let facts: Vec<CrlFacts> = serde_json::from_str(json).unwrap();
        assert_eq!(facts[0].entries, 7);
        assert_eq!(facts[0].served_by, Some(ServedBy::Primary));
        let json = r#"[{"name":"dod","crls":[{"issuer":"CN=Root","keyId":"ab","scope":"caCertificates",
            "distributionPoints":["URI:http://crl/p1.crl"],"entries":2,"stale":false}]}]"#;
        let facts: Vec<CrlFacts> = serde_json::from_str(json).unwrap();
        let crl = &facts[0].crls[0];
        assert_eq!(crl.scope, "caCertificates");
        assert_eq!(
            crl.distribution_points.as_deref(),
            Some(&["URI:http://crl/p1.crl".to_owned()][..])
        );
    }
}
