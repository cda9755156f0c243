//! The next hop's prebuilt settings, including its rustls client configuration.

use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

use crate::crl::outbound::NextHopVerifier;
use crate::tls::{RevocationChecker, TrustAnchors};
use postern_config::TlsMode;

/// Everything needed to open a connection to one next hop, built once per configuration.
#[derive(Debug)]
pub struct NextHopRuntime {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// STARTTLS use.
    pub tls: TlsMode,
    /// The TLS client configuration.
    pub tls_config: Arc<ClientConfig>,
    /// Name to present in SNI and to verify the certificate against.
    pub server_name: ServerName<'static>,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Per-command timeout.
    pub command_timeout: Duration,
    /// Our name in EHLO.
    pub helo_name: String,
    /// Whether the next hop's certificate is verified (a CA bundle is configured).
    pub verified: bool,
    /// Send `XCLIENT` when the next hop offers it (`nextHop.xclient`).
    pub xclient: bool,
}

/// Why a next hop's settings could not be built.
#[derive(Debug, thiserror::Error)]
pub enum NextHopBuildError {
    /// The host is not a valid DNS name or IP address for TLS.
    #[error("nextHop.host {0:?} is not a valid server name")]
    ServerName(String),
    /// The CA bundle is unusable.
    #[error("nextHop.caBundle: {0}")]
    Ca(String),
    /// rustls refused the configuration.
    #[error("nextHop TLS configuration: {0}")]
    Tls(String),
}

/// Build the next hop runtime of a listener. With a CA bundle, the next hop's
/// certificate is also checked against the CRLs that apply to `OutboundSmtpTls`.
pub fn build_next_hop(
    hop: &postern_config::NextHop,
    helo_name: &str,
    revocation: Arc<dyn RevocationChecker>,
) -> Result<NextHopRuntime, NextHopBuildError> {
    let provider = crate::crypto::provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| NextHopBuildError::Tls(e.to_string()))?;
    let (tls_config, verified) = match &hop.ca_pem {
        Some(pem) => {
            let anchors = TrustAnchors::new(
                postern_config::pem::certificates(pem)
                    .map_err(|e| NextHopBuildError::Ca(e.to_string()))?,
            )
            .map_err(|e| NextHopBuildError::Ca(e.to_string()))?;
            let verifier = NextHopVerifier::new(anchors, revocation, provider.clone())
                .map_err(|e| NextHopBuildError::Tls(e.to_string()))?;
            let mut config = builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth();
            // A resumed session skips certificate verification: without this, a next hop
            // whose certificate was revoked after the first connection would be trusted
            // again on every later one (as on the inbound side, see tls::server).
            config.resumption = rustls::client::Resumption::disabled();
            (config, true)
        }
        None => (
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Opportunistic {
                    algs: provider.signature_verification_algorithms,
                }))
                .with_no_client_auth(),
            false,
        ),
    };
    let server_name = ServerName::try_from(hop.host.clone())
        .map_err(|_| NextHopBuildError::ServerName(hop.host.clone()))?;
    Ok(NextHopRuntime {
        host: hop.host.clone(),
        port: hop.port,
        tls: hop.tls,
        tls_config: Arc::new(tls_config),
        server_name,
        connect_timeout: hop.connect_timeout.get(),
        command_timeout: hop.command_timeout.get(),
        helo_name: helo_name.to_owned(),
        verified,
        xclient: hop.xclient,
    })
}

/// Opportunistic TLS (no CA bundle configured): encrypt, but accept any certificate, as
/// MTAs do between each other by default. The handshake signature is still checked.
#[derive(Debug)]
struct Opportunistic {
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Opportunistic {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}
