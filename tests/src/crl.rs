//! How the CRL tests and benchmarks run the built `postern-gateway`: from a configuration
//! file, JSON log at a chosen level, the gateway's own poll interval and shutdown grace,
//! up to a minute to become ready (a large CRL may be loading). The PKI and CRLs they use
//! come from `postern_testkit::{pki, crl}`.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use postern_config::GatewayConfig;
use postern_testkit::gateway::{Gateway, GatewayBuilder};

use crate::clients::{Run, openssl};

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

/// A TLS session with a client certificate that says `EHLO client.<domain>` and quits:
/// how the revocation tests ask "is this certificate admitted?".
pub fn certificate_hello(port: u16, cert: &Path, key: &Path, domain: &str) -> Run {
    let (cert, key) = (cert.to_string_lossy(), key.to_string_lossy());
    openssl(
        port,
        true,
        &["-cert", &cert, "-key", &key],
        &format!("EHLO client.{domain}\r\nQUIT\r\n"),
    )
    .expect("openssl s_client runs")
}

/// The gateway `mx.<domain>` answered EHLO and the session ended normally.
pub fn hello_accepted(r: &Run, domain: &str) -> bool {
    r.has(&format!("250-mx.{domain}")) && r.has("221 ")
}
