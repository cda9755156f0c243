//! Per-source facts, as data: what the admin route serves, and (through
//! [`SourceStatus::facts`], the report's [`CrlFacts`]) what the controller copies into
//! `CrlSource` status.

use serde::{Deserialize, Serialize};

use postern_config::protocol::{CrlError, CrlFacts, CrlFactsEntry, DiscoveredUrl, ServedBy};
use postern_config::{CrlFailurePolicy, CrlFormat, CrlScope};

use super::index::CrlIndex;
use super::rfc3339;
use crate::tls::DpName;

/// Whether a source enforces anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SourceState {
    /// A CRL of the source is in force (it may be stale: see `stale`).
    InForce,
    /// No CRL in force and no fetch has failed yet (the first fetch is under way).
    NotFetched,
    /// No CRL in force and every URL failed at the last attempt (see `lastError`).
    FetchFailed,
    /// `enabled: false`: neither fetched nor enforced.
    Disabled,
}

/// The last failure of a source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastError {
    /// When, RFC 3339.
    pub time: String,
    /// The URL that failed.
    pub url: String,
    /// Whether it was the primary or the secondary URL.
    pub server: ServedBy,
    /// Short stable code (`network`, `http_status`, `too_large`, `bad_signature`, ...).
    pub reason: String,
    /// The full explanation.
    pub message: String,
}

/// One CRL in force.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CrlStatus {
    /// Issuer name.
    pub issuer: String,
    /// Authority key id, hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// CRL number, decimal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crl_number: Option<String>,
    /// `thisUpdate`, RFC 3339.
    pub this_update: String,
    /// `nextUpdate`, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_update: Option<String>,
    /// Revoked serials listed.
    pub entries: u64,
    /// Size of the CRL's DER.
    pub der_bytes: u64,
    /// Memory held by its index.
    pub index_bytes: u64,
    /// Past `nextUpdate`: certificates of this issuer are refused.
    pub stale: bool,
    /// Which certificates of the issuer it covers (Issuing Distribution Point):
    /// `all`, `userCertificates` or `caCertificates`.
    pub scope: String,
    /// The partition it is (Issuing Distribution Point `distributionPoint`): it covers the
    /// certificates whose CRL Distribution Points name one of these. Absent: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distribution_points: Option<Vec<DpName>>,
    /// The trusted CA certificate that verified the signature (where it was configured).
    pub verified_by: String,
}

impl CrlStatus {
    /// What the report says of this CRL.
    pub fn facts(&self) -> CrlFactsEntry {
        CrlFactsEntry {
            issuer: self.issuer.clone(),
            scope: self.scope.clone(),
            distribution_points: self
                .distribution_points
                .as_ref()
                .map(|dps| dps.iter().map(|d| d.as_str().to_owned()).collect()),
            crl_number: self.crl_number.clone(),
            next_update: self.next_update.clone(),
            entries: self.entries,
            der_bytes: self.der_bytes,
            stale: self.stale,
        }
    }

    /// Describe an index.
    pub fn of(ix: &CrlIndex, now: i64) -> Self {
        let m = &ix.meta;
        CrlStatus {
            issuer: m.issuer.clone(),
            key_id: m.key_id.as_deref().map(hex::encode),
            crl_number: m.crl_number.as_ref().map(ToString::to_string),
            this_update: rfc3339(m.this_update),
            next_update: m.next_update.map(rfc3339),
            entries: m.entries as u64,
            der_bytes: m.der_len as u64,
            index_bytes: ix.heap_bytes() as u64,
            stale: m.is_stale(now),
            scope: m.scope.name().to_owned(),
            distribution_points: m.partition.clone(),
            verified_by: m.signer_origin.clone(),
        }
    }
}

/// Everything known about one `CrlSource`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceStatus {
    /// Source name.
    pub name: String,
    /// Whether it is fetched and enforced.
    pub enabled: bool,
    /// File format.
    pub format: CrlFormat,
    /// Which TLS checks use it.
    pub applies_to: Vec<CrlScope>,
    /// What its checks do while it has no CRL in force.
    pub failure_policy: CrlFailurePolicy,
    /// Whether it enforces anything (`InForce`), and if not, why.
    pub state: SourceState,
    /// `failurePolicy: Open` and no CRL in force: certificates it may be for are accepted
    /// without a revocation check until it loads.
    pub failing_open: bool,
    /// Primary URL (absent for a source that only discovers its URLs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary_url: Option<String>,
    /// Secondary URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secondary_url: Option<String>,
    /// Last fetch attempt (successful or not).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_attempt_time: Option<String>,
    /// Last time a URL answered with an acceptable CRL or `304 Not Modified`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_fetch_time: Option<String>,
    /// Last time a new CRL went into force.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_change_time: Option<String>,
    /// When the next fetch is due.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_fetch_time: Option<String>,
    /// Which URL served the CRL in force.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub served_by: Option<ServedBy>,
    /// The URL that served it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub served_url: Option<String>,
    /// The CRL in force was read from the disk cache at start and not yet confirmed by a fetch.
    pub restored_from_disk: bool,
    /// Issuer of the CRL in force (several joined with `; `).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// `thisUpdate` (the oldest when there are several CRLs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub this_update: Option<String>,
    /// `nextUpdate` (the earliest when there are several CRLs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_update: Option<String>,
    /// Revoked serials in force (all CRLs of the source).
    pub entries: u64,
    /// CRL number, when the source has one CRL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crl_number: Option<String>,
    /// A CRL of this source is past `nextUpdate`: its issuer's certificates are refused.
    pub stale: bool,
    /// Seconds until the first CRL of this source goes stale (negative: stale since).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds_until_stale: Option<i64>,
    /// Memory held by the indexes.
    pub index_bytes: u64,
    /// Each CRL in force.
    pub crls: Vec<CrlStatus>,
    /// Failed attempts since the last success.
    pub consecutive_failures: u32,
    /// The last failure (kept after a success, for the record).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<LastError>,
    /// The URLs found by `discovery`, each with its state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub discovered: Vec<DiscoveredUrl>,
}

impl SourceStatus {
    /// What the report says of this source (the controller copies it into the
    /// `CrlSource`'s status).
    pub fn facts(&self) -> CrlFacts {
        CrlFacts {
            name: self.name.clone(),
            last_fetch_time: self.last_fetch_time.clone(),
            served_by: self.served_by,
            this_update: self.this_update.clone(),
            next_update: self.next_update.clone(),
            entries: self.entries,
            issuer: self.issuer.clone(),
            stale: self.stale,
            last_error: self.last_error.as_ref().map(|e| CrlError {
                time: e.time.clone(),
                reason: e.reason.clone(),
                message: e.message.clone(),
            }),
            crls: self.crls.iter().map(CrlStatus::facts).collect(),
            discovered: self.discovered.clone(),
        }
    }

    /// Fill the summary fields from the CRLs in force.
    pub(crate) fn summarize(&mut self, crls: &[std::sync::Arc<CrlIndex>], now: i64) {
        self.crls = crls.iter().map(|ix| CrlStatus::of(ix, now)).collect();
        let issuers: Vec<&str> = crls.iter().map(|ix| ix.meta.issuer.as_str()).collect();
        self.issuer = (!issuers.is_empty()).then(|| issuers.join("; "));
        self.this_update = crls.iter().map(|ix| ix.meta.this_update).min().map(rfc3339);
        let next = crls.iter().filter_map(|ix| ix.meta.next_update).min();
        self.next_update = next.map(rfc3339);
        self.seconds_until_stale = next.map(|n| n - now);
        self.stale = crls.iter().any(|ix| ix.meta.is_stale(now));
        self.entries = crls.iter().map(|ix| ix.meta.entries as u64).sum();
        self.index_bytes = crls.iter().map(|ix| ix.heap_bytes() as u64).sum();
        self.crl_number = match crls {
            [one] => one.meta.crl_number.as_ref().map(ToString::to_string),
            _ => None,
        };
    }
}
