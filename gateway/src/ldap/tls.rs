//! TLS towards the directory (`ldaps://` and StartTLS), with the profile's CA bundle.
//!
//! The server certificate is always verified (name or IP address included): a directory
//! that answers "this password is right" must be the real one. Without a CA bundle the
//! system's trust store is used.

use std::sync::Arc;

use rustls::ClientConfig;
use rustls::RootCertStore;

use postern_config::pem;

/// Build the rustls client configuration for a profile. `ca_pem` absent: system roots.
pub(crate) fn client_config(ca_pem: Option<&str>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    match ca_pem {
        Some(pem_text) => {
            let certs = pem::certificates(pem_text).map_err(|e| e.to_string())?;
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| format!("unusable CA certificate: {e}"))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                // A broken certificate in the system store must not disable TLS altogether.
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(
                    "no caBundle given and the system trust store is empty or unreadable".into(),
                );
            }
        }
    }
    let provider = crate::crypto::provider();
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_from_a_ca_bundle_and_refuses_garbage() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&key).unwrap();
        client_config(Some(&ca.pem())).unwrap();
        assert!(client_config(Some("not a pem")).is_err());
    }
}
