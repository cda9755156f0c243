//! How the CRL tests and benchmarks run the built `postern-gateway`: from a configuration
//! file, JSON log at a chosen level, the gateway's own poll interval and shutdown grace,
//! up to a minute to become ready (a large CRL may be loading). The PKI and CRLs they use
//! come from `postern_testkit::{pki, crl}`.

use std::time::Duration;

use anyhow::Result;
use postern_config::GatewayConfig;
use postern_testkit::gateway::{Gateway, GatewayBuilder};

/// How these tests run the gateway: `config`, JSON log filtered by `log_level`.
pub fn launch(config: &GatewayConfig, log_level: &str) -> GatewayBuilder {
    Gateway::with_config(config.to_yaml())
        .default_arg("--log-format", "json")
        .log_filter(log_level)
        .ready_within(Duration::from_secs(60))
}

/// [`launch`] with extra arguments, started and ready.
pub fn start_gateway(config: &GatewayConfig, args: &[&str], log_level: &str) -> Result<Gateway> {
    launch(config, log_level).args(args).start()
}
