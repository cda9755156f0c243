//! Revocation on the connection to the next hop (`appliesTo: OutboundSmtpTls`): the next
//! hop's certificate is verified as usual (chain to `nextHop.caPem`, validity, name), then
//! every certificate of the verified path, and the bundle certificates above its trust
//! anchor, is looked up in the CRLs in force.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::tls::{RevocationChecker, RevocationStatus, TrustAnchors, check_certificate};
use postern_config::CrlScope;

/// A server certificate verifier that also checks revocation.
#[derive(Debug)]
pub(crate) struct NextHopVerifier {
    inner: Arc<WebPkiServerVerifier>,
    anchors: TrustAnchors,
    algs: WebPkiSupportedAlgorithms,
    revocation: Arc<dyn RevocationChecker>,
}

impl NextHopVerifier {
    /// Verify against `anchors`, then ask `revocation`.
    pub(crate) fn new(
        anchors: TrustAnchors,
        revocation: Arc<dyn RevocationChecker>,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, rustls::client::VerifierBuilderError> {
        let roots = RootCertStore {
            roots: anchors.anchors().to_vec(),
        };
        let algs = provider.signature_verification_algorithms;
        let inner =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider).build()?;
        Ok(Self {
            inner,
            anchors,
            algs,
            revocation,
        })
    }

    fn check(&self, der: &[u8], host: &str) -> Result<(), rustls::Error> {
        let (cert, status) =
            check_certificate(self.revocation.as_ref(), CrlScope::OutboundSmtpTls, der)
                .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let Some(refusal) = Refusal::of(status) else {
            return Ok(());
        };
        let serial = crate::auth::certificate::serial_hex(cert.raw_serial());
        // One line for every refusal; a field a refusal does not have is left out.
        tracing::warn!(
            decision = "next_hop_certificate",
            host,
            outcome = "refused",
            reason = refusal.reason,
            subject = %cert.subject(),
            serial = %serial,
            issuer = %cert.issuer(),
            crl_source = %refusal.source,
            crl_reason = refusal.crl_reason.as_deref(),
            next_update = refusal.next_update.as_ref().map(tracing::field::display),
            missing = refusal.missing,
            "{}",
            refusal.message
        );
        Err(rustls::Error::InvalidCertificate(refusal.error))
    }
}

/// Why the next hop's certificate is refused: its log line's own fields and the
/// handshake error.
struct Refusal {
    /// `reason`: `revoked`, `crl_stale` or `crl_missing`.
    reason: &'static str,
    /// What the handshake fails with.
    error: CertificateError,
    /// `crl_source`.
    source: String,
    /// `crl_reason` (revoked only; empty when the CRL gives none).
    crl_reason: Option<String>,
    /// `next_update` (stale only).
    next_update: Option<String>,
    /// `missing` (missing only).
    missing: Option<&'static str>,
    /// The line's message.
    message: String,
}

impl Refusal {
    /// The refusal a revocation status calls for, if any.
    fn of(status: RevocationStatus) -> Option<Self> {
        use CertificateError::{ExpiredRevocationList, Revoked, UnknownRevocationStatus};
        let unverifiable = "next hop certificate cannot be checked";
        Some(match status {
            RevocationStatus::NoCrl | RevocationStatus::Good => return None,
            RevocationStatus::Revoked { source, reason } => Refusal {
                crl_reason: Some(reason.unwrap_or_default()),
                message: "next hop certificate is revoked".into(),
                ..Self::new("revoked", Revoked, source)
            },
            RevocationStatus::Stale {
                source,
                next_update,
            } => Refusal {
                message: format!("{unverifiable}: the CRL of its issuer is past nextUpdate"),
                next_update: Some(next_update),
                ..Self::new("crl_stale", ExpiredRevocationList, source)
            },
            RevocationStatus::Missing { source, why } => Refusal {
                missing: Some(why.code()),
                message: format!("{unverifiable}: {why}"),
                ..Self::new("crl_missing", UnknownRevocationStatus, source)
            },
        })
    }

    /// A refusal with none of the fields only some refusals have, and no message yet.
    fn new(reason: &'static str, error: CertificateError, source: String) -> Self {
        Self {
            reason,
            error,
            source,
            crl_reason: None,
            next_update: None,
            missing: None,
            message: String::new(),
        }
    }
}

impl ServerCertVerifier for NextHopVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        // The chain is valid; rebuild its path to know which intermediates it went through.
        let ee = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let path = ee
            .verify_for_usage(
                self.algs.all,
                self.anchors.anchors(),
                intermediates,
                now,
                webpki::KeyUsage::server_auth(),
                None,
                None,
            )
            .map_err(|e| {
                rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(
                    Arc::new(e),
                )))
            })?;
        let host = server_name.to_str();
        self.check(end_entity, &host)?;
        for cert in path.intermediate_certificates() {
            self.check(&cert.der(), &host)?;
        }
        for cert in self.anchors.above(path.anchor()) {
            self.check(cert, &host)?;
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crl::{CrlStore, Install, load, unix_now};
    use postern_config::protocol::ServedBy;
    use postern_config::{CrlFormat, GatewayConfig};
    use postern_testkit::crl::RevokedSpec;
    use postern_testkit::pki::Ca;
    use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, SerialNumber};

    fn server_cert(ca: &Ca, serial: u8) -> CertificateDer<'static> {
        let mut p = CertificateParams::new(vec!["mx.example.test".to_owned()]).unwrap();
        p.distinguished_name
            .push(DnType::CommonName, "mx.example.test");
        p.serial_number = Some(SerialNumber::from_slice(&[serial]));
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().unwrap();
        p.signed_by(&key, &ca.issuer()).unwrap().der().clone()
    }

    fn store_with(ca: &Ca, scope: &str, revoked: &[u8], stale: bool) -> Arc<CrlStore> {
        let config: GatewayConfig = serde_json::from_value(serde_json::json!({
            "apiVersion": "postern.dev/gateway/v1",
            "listeners": {"l": {
                "address": "127.0.0.1", "port": 2525, "hostname": "h", "defaultPolicy": "p",
                "nextHop": {"host": "mx.example.test", "caPem": ca.cert_pem()}
            }},
            "crlSources": {"hop": {
                "format": "Asn1", "primaryUrl": "http://127.0.0.1:1/x.crl", "interval": "1h",
                "appliesTo": [scope]
            }}
        }))
        .unwrap();
        let store = Arc::new(CrlStore::new());
        store.configure(&config);
        let specs: Vec<RevokedSpec> = revoked.iter().map(|s| RevokedSpec::new(&[*s])).collect();
        let der = if stale {
            ca.crl(1, &specs, -7200, -60)
        } else {
            ca.crl(1, &specs, -60, 3600)
        };
        let (_, generation) = store.spec("hop").unwrap();
        let loaded = load(
            der.der(),
            CrlFormat::Asn1,
            &store.trust(),
            &[],
            crate::crl::Missing::Retain,
            unix_now(),
        )
        .unwrap();
        assert!(store.install(
            "hop",
            generation,
            Install {
                loaded,
                served_by: ServedBy::Primary,
                url: "http://x".into(),
                from_disk: false,
                at: unix_now(),
            }
        ));
        store
    }

    fn verify(
        ca: &Ca,
        store: Arc<CrlStore>,
        serial: u8,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let v = NextHopVerifier::new(
            TrustAnchors::new(vec![ca.cert.der().clone()]).unwrap(),
            store,
            crate::crypto::provider(),
        )
        .unwrap();
        v.verify_server_cert(
            &server_cert(ca, serial),
            &[],
            &ServerName::try_from("mx.example.test").unwrap(),
            &[],
            UnixTime::now(),
        )
    }

    #[test]
    fn revoked_next_hop_certificates_are_refused_in_the_outbound_scope_only() {
        let ca = Ca::new("Next Hop CA");
        assert!(verify(&ca, store_with(&ca, "OutboundSmtpTls", &[7], false), 8).is_ok());
        assert_eq!(
            verify(&ca, store_with(&ca, "OutboundSmtpTls", &[7], false), 7).unwrap_err(),
            rustls::Error::InvalidCertificate(CertificateError::Revoked)
        );
        assert!(verify(&ca, store_with(&ca, "InboundSmtpTls", &[7], false), 7).is_ok());
        assert_eq!(
            verify(&ca, store_with(&ca, "OutboundSmtpTls", &[], true), 8).unwrap_err(),
            rustls::Error::InvalidCertificate(CertificateError::ExpiredRevocationList)
        );
        // The usual checks still apply.
        let other = Ca::new("Other CA");
        let v = NextHopVerifier::new(
            TrustAnchors::new(vec![ca.cert.der().clone()]).unwrap(),
            Arc::new(CrlStore::new()),
            crate::crypto::provider(),
        )
        .unwrap();
        assert!(
            v.verify_server_cert(
                &server_cert(&other, 1),
                &[],
                &ServerName::try_from("mx.example.test").unwrap(),
                &[],
                UnixTime::now(),
            )
            .is_err()
        );
    }

    #[test]
    fn a_next_hop_is_refused_while_its_fail_closed_source_has_no_crl() {
        let ca = Ca::new("Pending Hop CA");
        let config: GatewayConfig = serde_json::from_value(serde_json::json!({
            "apiVersion": "postern.dev/gateway/v1",
            "listeners": {"l": {
                "address": "127.0.0.1", "port": 2525, "hostname": "h", "defaultPolicy": "p",
                "nextHop": {"host": "mx.example.test", "caPem": ca.cert_pem()}
            }},
            "crlSources": {"hop": {
                "format": "Asn1", "primaryUrl": "http://127.0.0.1:1/x.crl", "interval": "1h",
                "appliesTo": ["OutboundSmtpTls"]
            }}
        }))
        .unwrap();
        let store = Arc::new(CrlStore::new());
        store.configure(&config);
        assert_eq!(
            verify(&ca, Arc::clone(&store), 8).unwrap_err(),
            rustls::Error::InvalidCertificate(CertificateError::UnknownRevocationStatus)
        );
        // Fail open: not refused for want of the CRL.
        let mut open = config.clone();
        open.crl_sources.get_mut("hop").unwrap().failure_policy =
            postern_config::CrlFailurePolicy::Open;
        store.configure(&open);
        assert!(verify(&ca, store, 8).is_ok());
    }

    #[test]
    fn each_refusing_status_has_its_log_fields_and_handshake_error() {
        assert!(Refusal::of(RevocationStatus::NoCrl).is_none());
        assert!(Refusal::of(RevocationStatus::Good).is_none());
        let r = Refusal::of(RevocationStatus::Revoked {
            source: "s".into(),
            reason: None,
        })
        .unwrap();
        assert_eq!(
            (r.reason, r.crl_reason.as_deref(), r.message.as_str()),
            ("revoked", Some(""), "next hop certificate is revoked")
        );
        assert_eq!((r.next_update, r.missing), (None, None));
        assert_eq!(r.error, CertificateError::Revoked);
        let r = Refusal::of(RevocationStatus::Stale {
            source: "s".into(),
            next_update: "2030-01-01T00:00:00Z".into(),
        })
        .unwrap();
        assert_eq!(
            (r.reason, r.next_update.as_deref(), r.crl_reason, r.missing),
            ("crl_stale", Some("2030-01-01T00:00:00Z"), None, None)
        );
        assert_eq!(
            r.message,
            "next hop certificate cannot be checked: the CRL of its issuer is past nextUpdate"
        );
        assert_eq!(r.error, CertificateError::ExpiredRevocationList);
        let r = Refusal::of(RevocationStatus::Missing {
            source: "s".into(),
            why: crate::tls::MissingCrl::NotLoaded,
        })
        .unwrap();
        assert_eq!(
            (r.reason, r.missing, r.crl_reason, r.next_update),
            ("crl_missing", Some("not_loaded"), None, None)
        );
        assert_eq!(
            r.message,
            "next hop certificate cannot be checked: the CRL source has no CRL in force yet"
        );
        assert_eq!(r.error, CertificateError::UnknownRevocationStatus);
        assert_eq!(r.source, "s");
    }
}
