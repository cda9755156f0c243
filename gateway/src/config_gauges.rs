//! Gauges read from the configuration in force: how long each Listener's certificates
//! stay valid, and each Listener's connection cap.
//!
//! The facts (certificate `notAfter` times, `maxConnections`) are taken once per applied
//! configuration ([`ConfigGauges::set`], called by the reload); the seconds left are
//! computed at scrape time, so `postern_certificate_expiry_seconds` is always current and
//! an alert can count down to the expiry without a reload.

use std::sync::{Arc, Mutex};

use postern_config::GatewayConfig;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;

/// Which certificate of a Listener (label `kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertificateKind {
    /// The gateway's own certificate chain (`tls.certificateChainPem`).
    Server,
    /// The client CA bundle (`tls.clientCaPem`).
    ClientCa,
}

impl CertificateKind {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::ClientCa => "client_ca",
        }
    }
}

/// The soonest `notAfter` of one certificate set of one Listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateExpiry {
    /// The Listener.
    pub listener: String,
    /// Its server chain or its client CA bundle.
    pub kind: CertificateKind,
    /// Unix time of the earliest `notAfter` in the set: a chain stops working when any
    /// of its certificates expires, a bundle stops trusting a CA when that one does, and
    /// an alert must fire for the first of them.
    pub not_after: i64,
}

/// What the gauges show, for one applied configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InForce {
    /// One entry per Listener with TLS, and one more per Listener with a client CA bundle.
    pub certificates: Vec<CertificateExpiry>,
    /// `maxConnections` per Listener.
    pub max_connections: Vec<(String, u32)>,
}

impl InForce {
    /// The facts of `config`. A PEM that does not parse has passed validation already;
    /// a certificate x509-parser cannot read is left out rather than guessed.
    pub fn of(config: &GatewayConfig) -> Self {
        let mut certificates = Vec::new();
        let mut max_connections = Vec::new();
        for (name, listener) in &config.listeners {
            max_connections.push((name.clone(), listener.max_connections));
            let Some(tls) = &listener.tls else { continue };
            let sets = [
                (CertificateKind::Server, Some(&tls.certificate_chain_pem)),
                (CertificateKind::ClientCa, tls.client_ca_pem.as_ref()),
            ];
            for (kind, pem) in sets {
                if let Some(not_after) = pem.and_then(|p| soonest_not_after(p)) {
                    certificates.push(CertificateExpiry {
                        listener: name.clone(),
                        kind,
                        not_after,
                    });
                }
            }
        }
        Self {
            certificates,
            max_connections,
        }
    }
}

/// The earliest `notAfter` of the certificates in `pem`, as Unix time.
fn soonest_not_after(pem: &str) -> Option<i64> {
    let ders = postern_config::pem::certificates(pem).ok()?;
    ders.iter()
        .filter_map(|der| x509_parser::parse_x509_certificate(der).ok())
        .map(|(_, cert)| cert.validity().not_after.timestamp())
        .min()
}

/// The collector: holds the facts of the configuration in force.
#[derive(Clone, Debug, Default)]
pub struct ConfigGauges {
    in_force: Arc<Mutex<InForce>>,
}

impl ConfigGauges {
    /// Replaces the facts with those of `config` (the configuration just applied).
    pub fn set(&self, config: &GatewayConfig) {
        *self.in_force.lock().expect("config gauges lock") = InForce::of(config);
    }

    /// The collector to register (shares the facts with `self`).
    pub fn collector(&self) -> Box<dyn Collector> {
        Box::new(self.clone())
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Collector for ConfigGauges {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let facts = self.in_force.lock().expect("config gauges lock").clone();
        let now = now();
        let mut d = encoder.encode_descriptor(
            "postern_certificate_expiry_seconds",
            "Seconds until the soonest notAfter of a Listener's server certificate chain \
             (kind=server) or client CA bundle (kind=client_ca); negative once expired",
            None,
            ConstGauge::new(0i64).metric_type(),
        )?;
        for c in &facts.certificates {
            let labels = [("listener", c.listener.as_str()), ("kind", c.kind.as_str())];
            ConstGauge::new(c.not_after - now).encode(d.encode_family(&labels)?)?;
        }
        let mut d = encoder.encode_descriptor(
            "postern_connections_limit",
            "maxConnections of the Listener in the configuration in force",
            None,
            ConstGauge::new(0i64).metric_type(),
        )?;
        for (listener, max) in &facts.max_connections {
            let labels = [("listener", listener.as_str())];
            ConstGauge::new(i64::from(*max)).encode(d.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    #[test]
    fn empty_configuration_has_no_series() {
        let gauges = ConfigGauges::default();
        gauges.set(&GatewayConfig::default());
        let mut registry = Registry::default();
        registry.register_collector(gauges.collector());
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        assert!(out.contains("# TYPE postern_certificate_expiry_seconds gauge"));
        assert!(!out.contains("postern_certificate_expiry_seconds{"));
    }
}
