//! rustls server configurations, prebuilt once per listener and mail flow policy.

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::{ClientHello, NoServerSessionStorage, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::verifier::ClientVerifier;

/// Build the server configuration for one listener + policy. With a client verifier the
/// client is asked for a certificate; session resumption is then off, so that every
/// connection's certificate goes through verification and revocation again.
pub fn server_config(
    key: Arc<CertifiedKey>,
    verifier: Option<Arc<ClientVerifier>>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let provider = crate::crypto::provider();
    let builder =
        ServerConfig::builder_with_provider(provider).with_safe_default_protocol_versions()?;
    let resolver = Arc::new(SingleCert(key));
    let mut config = match &verifier {
        Some(v) => builder
            .with_client_cert_verifier(v.clone())
            .with_cert_resolver(resolver),
        None => builder.with_no_client_auth().with_cert_resolver(resolver),
    };
    if verifier.is_some() {
        config.session_storage = Arc::new(NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
    }
    Ok(Arc::new(config))
}

/// One certificate for every client (SNI is not used to choose).
#[derive(Debug)]
struct SingleCert(Arc<CertifiedKey>);

impl ResolvesServerCert for SingleCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}
