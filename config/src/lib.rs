//! Postern's gateway configuration format and the controller–gateway protocol.
//!
//! One crate holds everything both sides of the seam must agree on, as types:
//! - [`model`]: the document a gateway runs (`postern-gateway --config FILE`, or the
//!   namespace's rendered Secret), with its [`defaults`] defined once;
//! - [`duration`]: the one duration grammar (the API's) and its canonical form;
//! - [`filter`]: the LDAP filter-template grammar (placeholders, RFC 4515 shape);
//! - [`validate`]: the one authority on whether a configuration can run, reporting typed
//!   locations ([`field`]) that the controller maps back to resource fields;
//! - [`protocol`]: the rendered Secret, the `GatewayReport` a gateway writes, and the CRL
//!   facts it carries.
//!
//! It is pure data: no async runtime, no network client, no file watching. The gateway
//! (data plane) and the controller (which compiles resources into a configuration and
//! never serves) both depend on it; it depends on neither.
#![forbid(unsafe_code)]

pub mod certificate_type;
pub mod duration;
pub mod explain;
pub mod field;
pub mod filter;
mod load;
pub mod model;
pub mod pem;
pub mod protocol;
pub mod validate;

pub use duration::{Duration, DurationError};
pub use load::LoadError;
pub use model::defaults;
pub use model::*;
pub use validate::{Reason, ValidationError, ValidationErrors, validate};
