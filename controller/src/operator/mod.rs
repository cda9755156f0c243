//! `postern controller`: the Kubernetes glue around the pure compiler.
//!
//! Watches the five resources (and only the Secrets they reference), recompiles a
//! namespace when something in it changes, publishes the rendered configuration as one
//! Secret per namespace, and writes status and Events. Only the elected leader writes.

pub mod cli;
pub mod cluster;
pub mod debounce;
pub mod error;
pub mod fleet;
pub mod gauges;
pub mod http;
pub mod leader;
pub mod live;
pub mod metrics;
pub mod objects;
pub mod publish;
pub mod publisher;
pub mod reconcile;
pub mod refs;
pub mod run;
pub mod state;
pub mod status;
pub mod status_writer;
pub mod watch;
