//! Running in a cluster: the rendered configuration comes from the namespace's Secret
//! through the API, and the gateway reports what it runs (see [`protocol`]).

pub mod protocol;
pub mod source;

pub use source::{ClusterError, ClusterOptions, ConfigSink, CrlFactsFn, run};
