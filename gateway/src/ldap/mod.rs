//! LDAP: filter templates now; the directory client and authenticators live beside them.

pub mod filter;

pub use filter::{FilterError, FilterTemplate, Placeholder, escape_value};
