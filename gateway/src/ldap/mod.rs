//! LDAP: the directory behind certificate mapping and SMTP AUTH.
//!
//! - [`filter`]: filling filter templates (their grammar is `postern_config::filter`,
//!   checked at validation time), each value escaped per RFC 4515;
//! - [`LdapDirectories`] / [`Directory`]: one client per LDAP profile — servers tried in
//!   order with failover ([`servers`], [`conn`]), TLS ([`tls`]), a pool of search
//!   connections bound as the service account ([`pool`]), a TTL cache of search results
//!   ([`cache`]) and metrics ([`metrics`]);
//! - [`LdapCertificateMapper`]: the Certificate Authentication Query;
//! - [`LdapAuthenticator`]: the SMTP Authentication Query (search, BIND as the user on a
//!   connection of its own ([`bind`]), allowance filter);
//! - [`shared`]: the process-wide directories and metrics the runtime builder uses.
//!
//! A directory that is down or slow makes authentication fail with
//! [`AuthError::Unavailable`](crate::auth::AuthError) (`454 4.7.0`): never an accept,
//! never a hang (every connect and operation has a timeout).

pub mod authenticator;
pub mod bind;
pub mod cache;
pub mod cert_mapper;
pub mod conn;
pub mod directories;
pub mod directory;
pub mod error;
pub mod filter;
pub mod metrics;
pub mod pool;
pub mod servers;
pub mod shared;
pub mod tls;
pub mod values;

pub use authenticator::LdapAuthenticator;
pub use cert_mapper::LdapCertificateMapper;
pub use directories::LdapDirectories;
pub use directory::{Directory, QueryKind};
pub use error::{DirectoryError, LdapSetupError};
pub use metrics::LdapMetrics;
