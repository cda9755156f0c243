//! Commands of `postern-gateway` besides running: `explain` (the decision path of one
//! client, asking the directory through the session's own authentication backends and
//! revocation through the gateway's CRL service and OCSP client) and `crl coverage` (how a
//! running gateway checks the revocation of every CA it trusts).

pub mod coverage;
pub mod explain;
mod explain_directory;
mod explain_revocation;
