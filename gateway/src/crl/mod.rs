//! Certificate revocation lists: `CrlSource` fetching, verification, indexing and the
//! revocation check of the TLS verifiers.
//!
//! The pipeline for each source: fetch ([`fetch`], on the source's schedule, primary URL
//! then secondary) → split and parse ([`parse`]) → check the signature against the trusted
//! CAs and the age against the copy in force ([`verify`]) → index the revoked serials once
//! ([`index`]) → swap into the [`store::CrlStore`], which answers every handshake with one
//! lookup. A refused file leaves the last good copy in force and says why (log, metric,
//! status); a CRL past `nextUpdate` fails closed for its issuer.

mod accept;
pub mod admin;
pub(crate) mod archive;
mod archive_file;
pub(crate) mod budget;
pub mod coverage;
mod der;
pub(crate) mod discovery;
pub(crate) mod disk;
pub(crate) mod fetch;
pub(crate) mod index;
pub mod inspect;
pub(crate) mod load;
mod loader;
pub mod metrics;
pub(crate) mod outbound;
pub mod parse;
mod prehash;
mod schedule;
pub(crate) mod service;
pub(crate) mod status;
pub(crate) mod store;
pub(crate) mod stream;
#[cfg(test)]
mod stream_tests;
pub mod verify;

pub use budget::DEFAULT_LOAD_BUDGET;
pub use coverage::CaCoverage;
pub use fetch::{FetchError, FetchSettings};
pub use index::{CrlIndex, CrlMeta};
pub use load::{Candidate, Loaded, Missing, load, merge};
pub use parse::{ParseError, ParsedCrl};
pub use service::{CrlService, ServiceSettings};
pub use status::{CrlStatus, LastError, SourceState, SourceStatus};
pub use store::{CrlStore, Install, Reconfigured};
pub use verify::{Refusal, TrustStore};

/// Now, Unix seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Unix seconds as RFC 3339 (UTC).
pub fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("@{secs}"))
}
