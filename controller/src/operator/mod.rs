//! `postern controller`: the Kubernetes glue around the pure compiler.
//!
//! Watches the five resources (and only the Secrets they reference), recompiles a
//! namespace when something in it changes, publishes the rendered configuration as one
//! Secret per namespace, and writes status and Events. Only the elected leader writes.

pub mod debounce;
pub mod fleet;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod publish;
pub mod refs;
pub mod status;
