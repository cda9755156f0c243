//! Commands of `postern-gateway` besides running: `explain` (the decision path of one
//! client, asking the directory through the session's own authentication backends and
//! revocation through the gateway's CRL service and OCSP client).

pub mod explain;
mod explain_directory;
mod explain_revocation;
