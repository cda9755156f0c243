//! The revocation check of `postern plan` and `postern render`: a listener whose client CA
//! bundle trusts CAs while no enabled `CrlSource` applies to `InboundSmtpTls` checks the
//! revocation of none of their certificates; said per CA before apply. (Which CRL covers
//! which CA is only known once the gateway has fetched them: `GET /revocation` and
//! `postern_revocation_ca_covered` answer that at run time.)

use std::io::Write;

use postern_config::{CrlScope, GatewayConfig};
use x509_parser::prelude::{FromDer, X509Certificate};

/// One warning per trusted CA of every listener when no revocation source applies to
/// client certificates.
pub(crate) fn warnings(config: &GatewayConfig) -> Vec<String> {
    let has_source = config
        .crl_sources
        .values()
        .any(|s| s.enabled && s.applies_to.contains(&CrlScope::InboundSmtpTls));
    if has_source {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (name, l) in &config.listeners {
        let Some(pem) = l.tls.as_ref().and_then(|t| t.client_ca_pem.as_deref()) else {
            continue;
        };
        // Unusable PEM is reported by validation.
        for der in postern_config::pem::certificates(pem).unwrap_or_default() {
            let Ok((_, cert)) = X509Certificate::from_der(&der) else {
                continue;
            };
            out.push(format!(
                "warning: listener {name} trusts the CA \"{}\" but no enabled CrlSource applies to InboundSmtpTls: the revocation of its certificates is not checked",
                cert.subject()
            ));
        }
    }
    out
}

/// Prints [`warnings`] to `w`.
pub(crate) fn warn(config: &GatewayConfig, w: &mut dyn Write) {
    for line in warnings(config) {
        let _ = writeln!(w, "{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(sources: serde_json::Value) -> GatewayConfig {
        let ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut ca = ca;
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "Plan Issuing CA");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().unwrap();
        let pem = ca.self_signed(&key).unwrap().pem();
        serde_json::from_value(serde_json::json!({
            "apiVersion": "postern.dev/gateway/v1",
            "listeners": {"submission": {
                "address": "127.0.0.1", "port": 2525, "hostname": "mx.test",
                "tls": {"certificateChainPem": "unused", "privateKeyPem": "unused", "clientCaPem": pem},
                "defaultPolicy": "p", "nextHop": {"host": "127.0.0.1"}
            }},
            "crlSources": sources
        }))
        .unwrap()
    }

    #[test]
    fn a_trusted_ca_without_a_revocation_source_is_named() {
        let w = warnings(&config(serde_json::json!({})));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("listener submission trusts the CA \"CN=Plan Issuing CA\""),
            "{w:?}"
        );
        let outbound_only = serde_json::json!({"c": {"format": "Asn1", "primaryUrl": "http://crl.test/c.crl",
            "interval": "1h", "appliesTo": ["OutboundSmtpTls"]}});
        assert_eq!(warnings(&config(outbound_only)).len(), 1);
        let inbound = serde_json::json!({"c": {"format": "Asn1", "primaryUrl": "http://crl.test/c.crl",
            "interval": "1h", "appliesTo": ["InboundSmtpTls"]}});
        assert!(warnings(&config(inbound)).is_empty());
    }
}
