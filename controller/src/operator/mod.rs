//! `postern controller`: the Kubernetes glue around the pure compiler.
//!
//! Watches the five resources (and only the Secrets they reference), recompiles a
//! namespace when something in it changes, publishes the rendered configuration as one
//! Secret per namespace, and writes status and Events. Only the elected leader writes.

pub mod cli;
pub mod debounce;
pub mod fleet;
pub mod http;
pub mod leader;
pub mod live;
pub mod metrics;
pub mod objects;
pub mod publish;
pub mod reconcile;
pub mod refs;
pub mod run;
pub mod status;
pub mod watch;
