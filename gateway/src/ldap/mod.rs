//! LDAP: the directory client behind certificate mapping and SMTP AUTH.
//!
//! - [`filter`]: filling filter templates (their grammar is `postern_config::filter`,
//!   checked at validation time), each value escaped per RFC 4515;
//! - [`LdapDirectories`] / [`Directory`]: one client per LDAP profile, kept across
//!   reloads while the profile is unchanged (the set is made once, at start-up, and
//!   handed to every configuration build) — servers tried in
//!   order with failover ([`servers`], [`conn`]), TLS ([`tls`]), a pool of search
//!   connections bound as the service account ([`pool`]), a BIND as the user on a
//!   connection of its own ([`bind`]), a TTL cache of search results ([`cache`]) and
//!   metrics ([`metrics`]).
//!
//! This module knows nothing of SMTP sessions: `auth::ldap` asks it the questions of the
//! Certificate and SMTP Authentication Queries. Every connect and operation has a
//! timeout, so a directory that is down or slow is an error, never a hang.

pub(crate) mod bind;
pub(crate) mod cache;
pub(crate) mod conn;
pub(crate) mod directories;
pub(crate) mod directory;
pub(crate) mod error;
pub mod filter;
pub(crate) mod idle;
pub mod metrics;
pub(crate) mod pool;
pub(crate) mod servers;
pub(crate) mod tls;

pub use directories::LdapDirectories;
pub use directory::{Directory, QueryKind};
pub use error::{DirectoryError, LdapSetupError};
pub use metrics::LdapMetrics;
