//! Commands of `postern-gateway` besides running: `explain` (the decision path of one
//! client, asking the directory through the session's own authentication backends).

pub mod explain;
mod explain_directory;
