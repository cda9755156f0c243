//! `postern controller`: the Kubernetes glue around the pure compiler.
//!
//! Watches the five resources (and only the Secrets they reference), recompiles a
//! namespace when something in it changes, publishes the rendered configuration as one
//! Secret per namespace, and writes status and Events. Only the elected leader writes.

pub(crate) mod admission;
pub(crate) mod cli;
pub(crate) mod cluster;
pub(crate) mod debounce;
pub(crate) mod error;
pub(crate) mod events;
pub(crate) mod fleet;
pub(crate) mod gauges;
pub(crate) mod http;
pub mod leader;
pub(crate) mod live;
pub(crate) mod metrics;
pub(crate) mod objects;
pub(crate) mod publish;
pub(crate) mod publisher;
pub(crate) mod reconcile;
pub(crate) mod refs;
pub(crate) mod run;
pub(crate) mod settle;
pub(crate) mod state;
pub(crate) mod status;
pub(crate) mod status_writer;
pub(crate) mod watch;
