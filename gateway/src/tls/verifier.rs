//! Client certificate verification: chain, validity period and key usage with webpki
//! (for an X.509 version 1 certificate, which webpki refuses, the equivalent checks of
//! [`super::v1_path`]), then revocation of every certificate of the verified path through the
//! [`RevocationChecker`] hook — including the bundle certificates above the trust anchor
//! the path ends at (see [`super::anchors`]).
//!
//! Two modes, per mail flow policy (DESIGN.md section 3):
//! - enforcing (`verifyClientCertificate: true`): an invalid certificate fails the
//!   handshake with the matching TLS alert (revoked → `certificate_revoked`, expired or not
//!   yet valid → `certificate_expired`, unknown CA, stale or missing CRL → `unknown_ca`, wrong
//!   extended key usage → `unsupported_certificate`);
//! - lenient (certificate profile without `verifyClientCertificate`): the handshake
//!   accepts any certificate the client can prove it holds; the session then runs
//!   [`ClientVerifier::verify_chain`] and ignores an invalid certificate, as if none had
//!   been sent.
//!
//! A client certificate is always optional at the TLS layer: "TLS required, no
//! certificate" is refused later, at MAIL, with `530 5.7.0`.
//!
//! Paths that verified are remembered ([`super::verified`]): a client presenting the
//! same chain again skips the chain's signature checks while the path is inside its
//! validity window; revocation is checked every time.
//!
//! X.509 version 1 end-entity certificates are refused (`version1_not_allowed`, alert
//! `certificate_unknown`, what webpki answers for them) unless the listener opts in with
//! `tls.allowVersion1ClientCertificates`.
//!
//! Whatever the client presents, a verification costs little and holds no async worker:
//! only the presented certificates that can be on a path are searched
//! ([`super::presented`]), the search spends webpki's budget ([`super::budget`]; running
//! out is `path_budget_exceeded`, alert `certificate_unknown`), and a verification that is
//! not a remembered path runs off the runtime's workers ([`super::offload`]).

use std::sync::{Arc, Mutex};

use super::budget;
use super::ocsp_check::{self, RevocationPolicy};
use super::revocation_mode::{Refused, VerdictSource};
use super::verified::{self, VerifiedPath, VerifiedPaths};
use super::{
    RevocationChecker, RevocationStatus, TrustAnchors, check_certificate, offload, presented,
    v1_path,
};
use postern_config::{CrlScope, pem};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

/// Why a client certificate is not valid.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifyFailure {
    /// The rustls error, which decides the TLS alert.
    pub error: CertificateError,
    /// Short machine-readable reason for logs and metrics (`revoked`, `expired`, ...).
    pub reason: &'static str,
    /// Human-readable detail.
    pub detail: String,
}

/// A certificate the verifier refused during a handshake. The TLS error that reaches the
/// session carries only the alert; the session runs its handshake inside
/// [`capture_refusal`] to learn which certificate was refused and why, for its decision
/// line.
#[derive(Clone, Debug)]
pub(crate) struct Refusal {
    /// Why.
    pub failure: VerifyFailure,
    /// The client's end-entity certificate.
    pub end_entity: CertificateDer<'static>,
}

tokio::task_local! {
    static REFUSAL: Arc<Mutex<Option<Refusal>>>;
    static VERDICT: Arc<Mutex<Option<VerdictSource>>>;
}

/// Run `handshake` (a future that drives a server handshake with a [`ClientVerifier`])
/// and return its output with the certificate refusal, if the verifier made one. The
/// verifier runs inside the future's poll, on this task, so a task-local carries it out;
/// so does, on a listener whose `tls.revocation` asks OCSP, which mechanism gave the
/// verdict on an accepted certificate.
pub(crate) async fn capture_refusal<F: Future>(
    handshake: F,
) -> (F::Output, Option<Refusal>, Option<VerdictSource>) {
    let slot = Arc::new(Mutex::new(None));
    let verdict = Arc::new(Mutex::new(None));
    let out = REFUSAL
        .scope(slot.clone(), VERDICT.scope(verdict.clone(), handshake))
        .await;
    let refusal = slot.lock().map(|mut s| s.take()).unwrap_or(None);
    let verdict = verdict.lock().map(|mut s| s.take()).unwrap_or(None);
    (out, refusal, verdict)
}

/// Why a verifier could not be built.
#[derive(Debug, thiserror::Error)]
pub enum VerifierBuildError {
    /// The CA bundle does not parse.
    #[error("client CA bundle: {0}")]
    Pem(#[from] pem::PemError),
    /// A CA certificate is not usable as a trust anchor.
    #[error("client {0}")]
    Anchor(#[from] super::AnchorError),
}

/// The verifier of one listener + policy.
#[derive(Debug)]
pub struct ClientVerifier {
    anchors: TrustAnchors,
    hints: Vec<DistinguishedName>,
    algs: WebPkiSupportedAlgorithms,
    revocation: Arc<dyn RevocationChecker>,
    enforce: bool,
    allow_version1: bool,
    verified: VerifiedPaths,
    /// `tls.revocation` when it asks OCSP; `None` is `CrlOnly`.
    policy: Option<RevocationPolicy>,
}

impl ClientVerifier {
    /// Build from the client CA bundle (PEM).
    pub fn new(
        client_ca_pem: &str,
        revocation: Arc<dyn RevocationChecker>,
        enforce: bool,
    ) -> Result<Self, VerifierBuildError> {
        let anchors = TrustAnchors::new(pem::certificates(client_ca_pem)?)?;
        let hints = anchors
            .anchors()
            .iter()
            .map(|a| DistinguishedName::in_sequence(&a.subject))
            .collect();
        Ok(Self {
            anchors,
            hints,
            algs: crate::crypto::provider().signature_verification_algorithms,
            revocation,
            enforce,
            allow_version1: false,
            verified: VerifiedPaths::default(),
            policy: None,
        })
    }

    /// Accept X.509 version 1 end-entity certificates (`allowVersion1ClientCertificates`);
    /// refused by default.
    pub fn allow_version1(mut self, allow: bool) -> Self {
        self.allow_version1 = allow;
        self
    }

    /// Check the client's own certificate under `policy` (`tls.revocation`); without
    /// one, or with mode `CrlOnly`, by CRL as every certificate of the path.
    pub fn revocation_policy(mut self, policy: Option<RevocationPolicy>) -> Self {
        self.policy = policy.filter(|p| p.settings.mode.uses_ocsp());
        self
    }

    /// Whether an invalid certificate fails the handshake (`verifyClientCertificate`).
    pub fn enforcing(&self) -> bool {
        self.enforce
    }

    /// Verify a presented chain at `now`: path to a trust anchor, validity periods,
    /// client-auth extended key usage, then revocation of every certificate on the path and
    /// of the bundle certificates above its trust anchor.
    pub fn verify_chain(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), VerifyFailure> {
        let key = verified::chain_key(end_entity, intermediates);
        let issuer = match self.verified.get(&key, now) {
            Some(path) => {
                if self.policy.is_none() {
                    self.check_revocation(end_entity)?;
                }
                for cert in path.above.iter() {
                    self.check_revocation(cert)?;
                }
                path.issuer
            }
            None => self.verify_path(end_entity, intermediates, now, key)?,
        };
        // Outside the verification gate: this may wait for an OCSP responder.
        if let Some(policy) = &self.policy {
            let source =
                ocsp_check::check_end_entity(policy, self.revocation.as_ref(), end_entity, &issuer)
                    .map_err(refused)?;
            let _ = VERDICT.try_with(|slot| {
                if let Ok(mut slot) = slot.lock() {
                    *slot = Some(source);
                }
            });
        }
        Ok(())
    }

    /// Path building and the CRL checks of [`Self::verify_chain`] for a chain whose path
    /// is not remembered; returns the end entity's issuer.
    fn verify_path(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        key: verified::ChainKey,
    ) -> Result<CertificateDer<'static>, VerifyFailure> {
        let ee = match webpki::EndEntityCert::try_from(end_entity) {
            Ok(ee) => ee,
            Err(webpki::Error::UnsupportedCertVersion) if v1_path::is_v1_end_entity(end_entity) => {
                if !self.allow_version1 {
                    return Err(version1_refused());
                }
                return offload::off_worker(|| {
                    let considered = presented::considered(end_entity, intermediates);
                    self.verify_v1_chain(end_entity, &considered, now)
                });
            }
            Err(e) => return Err(webpki_failure(e)),
        };
        offload::off_worker(|| self.verify_v3_chain(&ee, end_entity, intermediates, now, key))
    }

    /// [`Self::verify_chain`] for a version 3 end-entity certificate whose path is not
    /// remembered: webpki builds the path, then revocation; a path that verified is
    /// remembered under `key`.
    fn verify_v3_chain(
        &self,
        ee: &webpki::EndEntityCert<'_>,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        key: verified::ChainKey,
    ) -> Result<CertificateDer<'static>, VerifyFailure> {
        let considered = presented::considered(end_entity, intermediates);
        let path = ee
            .verify_for_usage(
                self.algs.all,
                self.anchors.anchors(),
                &considered,
                now,
                webpki::KeyUsage::client_auth(),
                None,
                None,
            )
            .map_err(webpki_failure)?;
        let (mut not_before, mut not_after) = if self.policy.is_none() {
            self.check_revocation(end_entity)?
        } else {
            validity(end_entity)?
        };
        let mut above = Vec::new();
        for cert in path.intermediate_certificates() {
            let der = cert.der();
            let (b, a) = self.check_revocation(&der)?;
            not_before = not_before.max(b);
            not_after = not_after.min(a);
            above.push(der.into_owned());
        }
        // webpki does not check a trust anchor's validity, so neither does the window.
        let issuer = match above.first() {
            Some(i) => i.clone(),
            None => self
                .anchors
                .certificate_of(path.anchor())
                .cloned()
                .unwrap_or_else(|| CertificateDer::from(Vec::new())),
        };
        for cert in self.anchors.above(path.anchor()) {
            self.check_revocation(cert)?;
            above.push(cert.clone());
        }
        self.verified.insert(
            key,
            VerifiedPath {
                above: above.into(),
                issuer: issuer.clone(),
                not_before,
                not_after,
            },
        );
        Ok(issuer)
    }

    /// [`Self::verify_chain`] for a version 1 end-entity certificate: the same checks,
    /// the same failures. Such paths are rare and not remembered.
    fn verify_v1_chain(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<CertificateDer<'static>, VerifyFailure> {
        let path =
            v1_path::verify_v1_path(self.algs.all, &self.anchors, end_entity, intermediates, now)
                .map_err(webpki_failure)?;
        if self.policy.is_none() {
            self.check_revocation(end_entity)?;
        }
        for &i in &path.intermediates {
            self.check_revocation(&intermediates[i])?;
        }
        for cert in self.anchors.above(&self.anchors.anchors()[path.anchor]) {
            self.check_revocation(cert)?;
        }
        Ok(match path.intermediates.first() {
            Some(&i) => intermediates[i].clone().into_owned(),
            None => self.anchors.certificate(path.anchor).clone(),
        })
    }

    /// Ask the revocation hook about one certificate; returns the certificate's validity
    /// period (Unix seconds) for the path cache.
    fn check_revocation(&self, der: &CertificateDer<'_>) -> Result<(u64, u64), VerifyFailure> {
        let (cert, status) =
            check_certificate(self.revocation.as_ref(), CrlScope::InboundSmtpTls, der).map_err(
                |e| VerifyFailure {
                    error: CertificateError::BadEncoding,
                    reason: "bad_encoding",
                    detail: e.to_string(),
                },
            )?;
        match status {
            RevocationStatus::NoCrl | RevocationStatus::Good => {
                let v = cert.validity();
                let secs = |t: i64| u64::try_from(t).unwrap_or(0);
                Ok((
                    secs(v.not_before.timestamp()),
                    secs(v.not_after.timestamp()),
                ))
            }
            RevocationStatus::Revoked { source, reason } => Err(VerifyFailure {
                error: CertificateError::Revoked,
                reason: "revoked",
                detail: format!(
                    "certificate {} (serial {}) is revoked by CRL source {source}{}",
                    cert.subject(),
                    crate::auth::certificate::serial_hex(cert.raw_serial()),
                    reason.map(|r| format!(" ({r})")).unwrap_or_default()
                ),
            }),
            RevocationStatus::Stale {
                source,
                next_update,
            } => Err(VerifyFailure {
                error: CertificateError::ExpiredRevocationList,
                reason: "crl_stale",
                detail: format!(
                    "the CRL of CRL source {source} is past its nextUpdate {next_update}: certificate {} cannot be checked",
                    cert.subject()
                ),
            }),
            RevocationStatus::Missing { source, why } => Err(VerifyFailure {
                error: CertificateError::UnknownRevocationStatus,
                reason: "crl_missing",
                detail: format!(
                    "certificate {} (serial {}) cannot be checked: CRL source {source}: {why}",
                    cert.subject(),
                    crate::auth::certificate::serial_hex(cert.raw_serial()),
                ),
            }),
        }
    }
}

/// The failure of a refusal of the end-entity check under `tls.revocation`.
fn refused(r: Refused) -> VerifyFailure {
    let (error, reason, detail) = match r {
        Refused::Revoked(d) => (CertificateError::Revoked, "revoked", d),
        Refused::Unavailable(d) => (
            CertificateError::UnknownRevocationStatus,
            "revocation_unavailable",
            d,
        ),
        Refused::BadEncoding(d) => (CertificateError::BadEncoding, "bad_encoding", d),
    };
    VerifyFailure {
        error,
        reason,
        detail,
    }
}

/// The validity period (Unix seconds) of a certificate, for the path cache.
fn validity(der: &CertificateDer<'_>) -> Result<(u64, u64), VerifyFailure> {
    let (_, cert) = <x509_parser::prelude::X509Certificate<'_> as x509_parser::prelude::FromDer<
        '_,
        _,
    >>::from_der(der)
    .map_err(|e| VerifyFailure {
        error: CertificateError::BadEncoding,
        reason: "bad_encoding",
        detail: e.to_string(),
    })?;
    let v = cert.validity();
    let secs = |t: i64| u64::try_from(t).unwrap_or(0);
    Ok((
        secs(v.not_before.timestamp()),
        secs(v.not_after.timestamp()),
    ))
}

/// A version 1 end-entity certificate on a listener that does not accept them.
fn version1_refused() -> VerifyFailure {
    VerifyFailure {
        // What webpki (so rustls' own verifier) says of such a certificate.
        error: CertificateError::Other(rustls::OtherError(Arc::new(
            webpki::Error::UnsupportedCertVersion,
        ))),
        reason: "version1_not_allowed",
        detail: "X.509 version 1 client certificate refused: this listener does not accept them \
                 (tls.allowVersion1ClientCertificates is false)"
            .into(),
    }
}

fn webpki_failure(e: webpki::Error) -> VerifyFailure {
    use webpki::Error as W;
    if budget::is_exhausted(&e) {
        return VerifyFailure {
            error: CertificateError::Other(rustls::OtherError(Arc::new(e.clone()))),
            reason: "path_budget_exceeded",
            detail: format!(
                "{e:?}: the presented chain needs more path building than allowed \
                 ({} path-building calls, {} signature checks)",
                budget::BUILD_CHAIN_CALLS,
                budget::SIGNATURES
            ),
        };
    }
    let (error, reason) = match &e {
        W::CertExpired { .. } | W::InvalidCertValidity => (CertificateError::Expired, "expired"),
        W::CertNotValidYet { .. } => (CertificateError::NotValidYet, "not_yet_valid"),
        W::UnknownIssuer => (CertificateError::UnknownIssuer, "unknown_issuer"),
        W::CertRevoked => (CertificateError::Revoked, "revoked"),
        W::InvalidSignatureForPublicKey => (CertificateError::BadSignature, "bad_signature"),
        #[allow(deprecated)]
        W::RequiredEkuNotFound | W::RequiredEkuNotFoundContext(_) => {
            (CertificateError::InvalidPurpose, "wrong_key_usage")
        }
        #[allow(deprecated)]
        W::UnsupportedSignatureAlgorithm
        | W::UnsupportedSignatureAlgorithmContext(_)
        | W::UnsupportedSignatureAlgorithmForPublicKey
        | W::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => {
            (CertificateError::BadSignature, "unsupported_algorithm")
        }
        W::BadDer | W::BadDerTime | W::TrailingData(_) => {
            (CertificateError::BadEncoding, "bad_encoding")
        }
        W::CaUsedAsEndEntity => (CertificateError::BadEncoding, "ca_as_end_entity"),
        _ => (
            CertificateError::Other(rustls::OtherError(Arc::new(e.clone()))),
            "invalid",
        ),
    };
    VerifyFailure {
        error,
        reason,
        detail: format!("{e:?}"),
    }
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if self.enforce
            && let Err(failure) = self.verify_chain(end_entity, intermediates, now)
        {
            let error = rustls::Error::InvalidCertificate(failure.error.clone());
            // Outside capture_refusal (no session listening) there is nobody to tell.
            let _ = REFUSAL.try_with(|slot| {
                if let Ok(mut slot) = slot.lock() {
                    *slot = Some(Refusal {
                        failure,
                        end_entity: end_entity.clone().into_owned(),
                    });
                }
            });
            return Err(error);
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        match verify_tls12_signature(message, cert, dss, &self.algs) {
            Err(_) if v1_path::is_v1_end_entity(cert) => {
                v1_path::verify_tls12_signature(message, cert, dss, &self.algs)
            }
            result => result,
        }
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        match verify_tls13_signature(message, cert, dss, &self.algs) {
            Err(_) if v1_path::is_v1_end_entity(cert) => {
                v1_path::verify_tls13_signature(message, cert, dss, &self.algs)
            }
            result => result,
        }
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// A short reason for a failed server-side handshake, for logs and metric labels.
pub(crate) fn handshake_failure_reason(err: &std::io::Error) -> &'static str {
    let Some(rustls_err) = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    else {
        return match err.kind() {
            std::io::ErrorKind::UnexpectedEof => "client_closed",
            std::io::ErrorKind::TimedOut => "timeout",
            _ => "io",
        };
    };
    match rustls_err {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::Revoked => "revoked",
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => "expired",
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "not_yet_valid"
            }
            CertificateError::UnknownIssuer => "unknown_issuer",
            CertificateError::ExpiredRevocationList
            | CertificateError::ExpiredRevocationListContext { .. } => "crl_stale",
            CertificateError::UnknownRevocationStatus => "crl_missing",
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                "wrong_key_usage"
            }
            CertificateError::BadEncoding => "bad_encoding",
            _ => "invalid_certificate",
        },
        rustls::Error::AlertReceived(_) => "alert_received",
        rustls::Error::NoCertificatesPresented => "no_certificate",
        rustls::Error::PeerIncompatible(_) => "incompatible",
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateHandshakeMessage { .. } => {
            "protocol"
        }
        _ => "tls_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    use x509_parser::prelude::{FromDer, X509Certificate};

    /// Answers from a fixed table (a unit-test stand-in for the CRL index).
    #[derive(Debug)]
    struct Fixed(RevocationStatus, std::sync::Mutex<Calls>);

    /// (issuer, serial) pairs the checker was asked about.
    type Calls = Vec<(Vec<u8>, Vec<u8>)>;

    impl RevocationChecker for Fixed {
        fn check(
            &self,
            _: CrlScope,
            issuer: &[u8],
            _: Option<&[u8]>,
            serial: &[u8],
        ) -> RevocationStatus {
            self.1
                .lock()
                .unwrap()
                .push((issuer.to_vec(), serial.to_vec()));
            self.0.clone()
        }
    }

    fn pki() -> (String, CertificateDer<'static>, Vec<u8>) {
        pki_valid(None)
    }

    /// A CA and a client leaf, valid in `validity` (default: rcgen's, 1975–4096).
    fn pki_valid(
        validity: Option<(time::OffsetDateTime, time::OffsetDateTime)>,
    ) -> (String, CertificateDer<'static>, Vec<u8>) {
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name.push(DnType::CommonName, "Unit CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
        leaf.distinguished_name.push(DnType::CommonName, "leaf");
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        leaf.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x42]));
        if let Some((not_before, not_after)) = validity {
            leaf.not_before = not_before;
            leaf.not_after = not_after;
        }
        let key = KeyPair::generate().unwrap();
        let cert = leaf.signed_by(&key, &ca).unwrap();
        let (_, parsed) = X509Certificate::from_der(ca.der()).unwrap();
        (
            ca.pem(),
            cert.der().clone(),
            parsed.subject().as_raw().to_vec(),
        )
    }

    fn verify(status: RevocationStatus) -> (Result<(), VerifyFailure>, Calls) {
        let (ca_pem, leaf, _) = pki();
        let checker = Arc::new(Fixed(status, Default::default()));
        let v = ClientVerifier::new(&ca_pem, checker.clone(), true).unwrap();
        let r = v.verify_chain(&leaf, &[], UnixTime::now());
        let calls = checker.1.lock().unwrap().clone();
        (r, calls)
    }

    #[test]
    fn good_and_no_crl_pass_and_the_hook_sees_issuer_and_serial() {
        let (ca_pem, leaf, ca_subject) = pki();
        let checker = Arc::new(Fixed(RevocationStatus::Good, Default::default()));
        let v = ClientVerifier::new(&ca_pem, checker.clone(), true).unwrap();
        assert!(v.verify_chain(&leaf, &[], UnixTime::now()).is_ok());
        assert_eq!(*checker.1.lock().unwrap(), vec![(ca_subject, vec![0x42])]);
        assert!(verify(RevocationStatus::NoCrl).0.is_ok());
    }

    #[test]
    fn revoked_and_stale_fail_with_matching_alerts() {
        let (r, _) = verify(RevocationStatus::Revoked {
            source: "corp".into(),
            reason: Some("keyCompromise".into()),
        });
        let f = r.unwrap_err();
        assert_eq!(f.reason, "revoked");
        assert_eq!(
            rustls::AlertDescription::from(f.error),
            rustls::AlertDescription::CertificateRevoked
        );
        let (r, _) = verify(RevocationStatus::Stale {
            source: "corp".into(),
            next_update: "2020-01-01T00:00:00Z".into(),
        });
        let f = r.unwrap_err();
        assert_eq!(f.reason, "crl_stale");
        assert_eq!(
            rustls::AlertDescription::from(f.error),
            rustls::AlertDescription::UnknownCA
        );
    }

    /// Answers what it is set to (revocation that changes after a path was cached).
    #[derive(Debug)]
    struct Switch(
        std::sync::Mutex<RevocationStatus>,
        std::sync::atomic::AtomicUsize,
    );

    impl RevocationChecker for Switch {
        fn check(&self, _: CrlScope, _: &[u8], _: Option<&[u8]>, _: &[u8]) -> RevocationStatus {
            self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.0.lock().unwrap().clone()
        }
    }

    #[test]
    fn a_cached_path_is_still_checked_for_revocation_every_time() {
        let (ca_pem, leaf, _) = pki();
        let checker = Arc::new(Switch(
            std::sync::Mutex::new(RevocationStatus::Good),
            Default::default(),
        ));
        let v = ClientVerifier::new(&ca_pem, checker.clone(), true).unwrap();
        assert!(v.verify_chain(&leaf, &[], UnixTime::now()).is_ok());
        assert_eq!(v.verified.len(), 1, "the verified path is remembered");
        assert!(v.verify_chain(&leaf, &[], UnixTime::now()).is_ok());
        assert_eq!(checker.1.load(std::sync::atomic::Ordering::Relaxed), 2);
        *checker.0.lock().unwrap() = RevocationStatus::Revoked {
            source: "corp".into(),
            reason: None,
        };
        let f = v.verify_chain(&leaf, &[], UnixTime::now()).unwrap_err();
        assert_eq!(f.reason, "revoked");
        *checker.0.lock().unwrap() = RevocationStatus::Stale {
            source: "corp".into(),
            next_update: "2020-01-01T00:00:00Z".into(),
        };
        let f = v.verify_chain(&leaf, &[], UnixTime::now()).unwrap_err();
        assert_eq!(f.reason, "crl_stale");
    }

    #[test]
    fn a_cached_path_expires_with_its_certificate() {
        let now = time::OffsetDateTime::now_utc();
        let day = time::Duration::days(1);
        let (ca_pem, leaf, _) = pki_valid(Some((now - day, now + day)));
        let v = ClientVerifier::new(&ca_pem, Arc::new(crate::tls::NoRevocation), true).unwrap();
        assert!(v.verify_chain(&leaf, &[], UnixTime::now()).is_ok());
        assert_eq!(v.verified.len(), 1);
        let at = |t: time::OffsetDateTime| {
            UnixTime::since_unix_epoch(std::time::Duration::from_secs(t.unix_timestamp() as u64))
        };
        let f = v.verify_chain(&leaf, &[], at(now + 2 * day)).unwrap_err();
        assert_eq!(f.reason, "expired");
        let f = v.verify_chain(&leaf, &[], at(now - 2 * day)).unwrap_err();
        assert_eq!(f.reason, "not_yet_valid");
        assert!(v.verify_chain(&leaf, &[], UnixTime::now()).is_ok());
    }

    #[test]
    fn failures_are_not_remembered() {
        let (ca_pem, _, _) = pki();
        let (_, other_leaf, _) = pki();
        let v = ClientVerifier::new(&ca_pem, Arc::new(crate::tls::NoRevocation), true).unwrap();
        for _ in 0..2 {
            let f = v
                .verify_chain(&other_leaf, &[], UnixTime::now())
                .unwrap_err();
            // Same CA name, other key: the signature does not verify, both times.
            assert_eq!(f.reason, "bad_signature");
        }
        assert!(v.verified.is_empty());
    }

    #[test]
    fn lenient_mode_accepts_at_the_handshake() {
        let (ca_pem, leaf, _) = pki();
        let revoked = RevocationStatus::Revoked {
            source: "corp".into(),
            reason: None,
        };
        let v = ClientVerifier::new(&ca_pem, Arc::new(Fixed(revoked, Default::default())), false)
            .unwrap();
        assert!(v.verify_client_cert(&leaf, &[], UnixTime::now()).is_ok());
        assert!(v.verify_chain(&leaf, &[], UnixTime::now()).is_err());
        let (other_ca, _, _) = pki();
        let strict =
            ClientVerifier::new(&other_ca, Arc::new(crate::tls::NoRevocation), true).unwrap();
        assert!(matches!(
            strict.verify_client_cert(&leaf, &[], UnixTime::now()),
            Err(rustls::Error::InvalidCertificate(_))
        ));
    }

    /// Revokes exactly one serial.
    #[derive(Debug)]
    struct RevokesSerial(Vec<u8>);

    impl RevocationChecker for RevokesSerial {
        fn check(
            &self,
            _: CrlScope,
            _: &[u8],
            _: Option<&[u8]>,
            serial: &[u8],
        ) -> RevocationStatus {
            if serial == self.0.as_slice() {
                RevocationStatus::Revoked {
                    source: "root".into(),
                    reason: None,
                }
            } else {
                RevocationStatus::Good
            }
        }
    }

    #[test]
    fn an_intermediate_in_the_bundle_is_still_checked_against_its_issuers_crl() {
        let ca = |cn: &str, serial: u8| {
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.distinguished_name.push(DnType::CommonName, cn);
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            p.serial_number = Some(rcgen::SerialNumber::from_slice(&[serial]));
            p
        };
        let root =
            CertifiedIssuer::self_signed(ca("Root", 1), KeyPair::generate().unwrap()).unwrap();
        let mid =
            CertifiedIssuer::signed_by(ca("Mid", 2), KeyPair::generate().unwrap(), &root).unwrap();
        let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
        leaf.distinguished_name.push(DnType::CommonName, "leaf");
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        leaf.serial_number = Some(rcgen::SerialNumber::from_slice(&[3]));
        let leaf = leaf.signed_by(&KeyPair::generate().unwrap(), &mid).unwrap();
        let bundle = format!("{}{}", root.pem(), mid.pem());
        let verify = |revoked: u8, bundle: &str, chain: &[CertificateDer<'_>]| {
            ClientVerifier::new(bundle, Arc::new(RevokesSerial(vec![revoked])), true)
                .unwrap()
                .verify_chain(leaf.der(), chain, UnixTime::now())
                .map_err(|f| f.reason)
        };
        // The path ends at Mid (an anchor); Mid's own serial is still looked up.
        assert_eq!(verify(2, &bundle, &[]), Err("revoked"));
        assert_eq!(verify(2, &bundle, &[mid.der().clone()]), Err("revoked"));
        assert_eq!(verify(2, &root.pem(), &[mid.der().clone()]), Err("revoked"));
        assert_eq!(verify(3, &bundle, &[]), Err("revoked"));
        assert_eq!(verify(9, &bundle, &[]), Ok(()));
        // A root is never looked up (nothing issued it).
        assert_eq!(verify(1, &bundle, &[]), Ok(()));

        // A remembered path still asks about the bundle certificate above its anchor.
        let later = Arc::new(RevokesSerialLater(2, Default::default()));
        let v = ClientVerifier::new(&bundle, later.clone(), true).unwrap();
        assert!(v.verify_chain(leaf.der(), &[], UnixTime::now()).is_ok());
        assert_eq!(v.verified.len(), 1);
        later.1.store(true, std::sync::atomic::Ordering::Relaxed);
        let f = v
            .verify_chain(leaf.der(), &[], UnixTime::now())
            .unwrap_err();
        assert_eq!(f.reason, "revoked");
    }

    /// Revokes one serial once told to.
    #[derive(Debug)]
    struct RevokesSerialLater(u8, std::sync::atomic::AtomicBool);

    impl RevocationChecker for RevokesSerialLater {
        fn check(
            &self,
            _: CrlScope,
            _: &[u8],
            _: Option<&[u8]>,
            serial: &[u8],
        ) -> RevocationStatus {
            if self.1.load(std::sync::atomic::Ordering::Relaxed) && serial == [self.0] {
                RevocationStatus::Revoked {
                    source: "root".into(),
                    reason: None,
                }
            } else {
                RevocationStatus::Good
            }
        }
    }

    #[test]
    fn a_v1_certificate_gets_the_same_checks_and_failures() {
        use crate::tls::v1_path::tests::{ca_params, v1_cert};
        let root =
            CertifiedIssuer::self_signed(ca_params("Root"), KeyPair::generate().unwrap()).unwrap();
        let mid = CertifiedIssuer::signed_by(ca_params("Mid"), KeyPair::generate().unwrap(), &root)
            .unwrap();
        let leaf = v1_cert("alice", &mid, -60, 3600);
        let serial = |der: &CertificateDer<'_>| {
            X509Certificate::from_der(der)
                .unwrap()
                .1
                .raw_serial()
                .to_vec()
        };
        let verify = |revoked: Vec<u8>, bundle: &str, chain: &[CertificateDer<'_>]| {
            ClientVerifier::new(bundle, Arc::new(RevokesSerial(revoked)), true)
                .unwrap()
                .allow_version1(true)
                .verify_chain(&leaf, chain, UnixTime::now())
                .map_err(|f| (f.reason, rustls::AlertDescription::from(f.error)))
        };
        let chain = [mid.der().clone()];
        assert_eq!(verify(vec![0], &root.pem(), &chain), Ok(()));
        // Revocation of the leaf, of the intermediate it came through, and of an
        // intermediate anchor (above the anchor) are all seen.
        let revoked = Err(("revoked", rustls::AlertDescription::CertificateRevoked));
        assert_eq!(verify(serial(&leaf), &root.pem(), &chain), revoked);
        assert_eq!(verify(serial(mid.der()), &root.pem(), &chain), revoked);
        let bundle = format!("{}{}", root.pem(), mid.pem());
        assert_eq!(verify(serial(mid.der()), &bundle, &[]), revoked);
        // Unknown CA and expiry, with webpki's reasons and alerts.
        assert_eq!(
            verify(vec![0], &root.pem(), &[]),
            Err(("unknown_issuer", rustls::AlertDescription::UnknownCA))
        );
        let expired = v1_cert("alice", &mid, -7200, -3600);
        let f = ClientVerifier::new(&bundle, Arc::new(crate::tls::NoRevocation), true)
            .unwrap()
            .allow_version1(true)
            .verify_chain(&expired, &[], UnixTime::now())
            .unwrap_err();
        assert_eq!(f.reason, "expired");
        assert_eq!(
            rustls::AlertDescription::from(f.error),
            rustls::AlertDescription::CertificateExpired
        );
    }

    #[test]
    fn a_v1_certificate_is_refused_unless_allowed() {
        use crate::tls::v1_path::tests::{ca_params, v1_cert};
        let root =
            CertifiedIssuer::self_signed(ca_params("Root"), KeyPair::generate().unwrap()).unwrap();
        let leaf = v1_cert("alice", &root, -60, 3600);
        let verifier =
            || ClientVerifier::new(&root.pem(), Arc::new(crate::tls::NoRevocation), true).unwrap();
        let f = verifier()
            .verify_chain(&leaf, &[], UnixTime::now())
            .unwrap_err();
        assert_eq!(f.reason, "version1_not_allowed");
        assert!(
            f.detail.contains("tls.allowVersion1ClientCertificates"),
            "{}",
            f.detail
        );
        assert_eq!(
            rustls::AlertDescription::from(f.error),
            rustls::AlertDescription::CertificateUnknown
        );
        // At the handshake too.
        match verifier().verify_client_cert(&leaf, &[], UnixTime::now()) {
            Err(rustls::Error::InvalidCertificate(e)) => assert_eq!(
                rustls::AlertDescription::from(e),
                rustls::AlertDescription::CertificateUnknown
            ),
            other => panic!("{other:?}"),
        }
        assert!(
            verifier()
                .allow_version1(true)
                .verify_chain(&leaf, &[], UnixTime::now())
                .is_ok()
        );
    }

    /// `n` self-signed CA certificates named `cn`, each with its own key.
    fn same_name_cas(cn: &str, n: usize) -> Vec<CertificateDer<'static>> {
        use crate::tls::v1_path::tests::root;
        (0..n).map(|_| root(cn).der().clone()).collect()
    }

    #[test]
    fn a_flood_of_same_name_cas_is_not_searched_whatever_the_leaf_version() {
        use crate::tls::v1_path::tests::{ca_params, root, v1_cert};
        let anchor = root("Root");
        let evil = root("Evil CA");
        let flood = same_name_cas("Evil CA", 30);
        let v = ClientVerifier::new(&anchor.pem(), Arc::new(crate::tls::NoRevocation), true)
            .unwrap()
            .allow_version1(true);
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, "alice");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let v3 = p.signed_by(&KeyPair::generate().unwrap(), &evil).unwrap();
        let v1 = v1_cert("alice", &evil, -60, 3600);
        for leaf in [v3.der(), &v1] {
            // Only three of them are considered: searched to the end, webpki's budget
            // untouched (webpki alone spends it all, 0.2 to 0.9 s here).
            let f = v.verify_chain(leaf, &flood, UnixTime::now()).unwrap_err();
            assert_eq!(f.reason, "unknown_issuer", "{}", f.detail);
        }
        // A legitimate intermediate among them is still found.
        let mid =
            CertifiedIssuer::signed_by(ca_params("Evil CA"), KeyPair::generate().unwrap(), &anchor)
                .unwrap();
        let leaf = v1_cert("alice", &mid, -60, 3600);
        let chain = [mid.der().clone(), flood[0].clone(), flood[1].clone()];
        assert_eq!(v.verify_chain(&leaf, &chain, UnixTime::now()), Ok(()));
    }

    #[test]
    fn running_out_of_signatures_is_path_budget_exceeded() {
        use crate::tls::v1_path::tests::{ca_params, root, v1_cert};
        // Every step reaches the anchor by name and checks a signature: leaf <- 3 "Y" <-
        // 3 "X" <- 3 self-made "Root", 3 x 3 x 16 = 144 paths to the anchor.
        let anchor = root("Root");
        let fake_root = root("Root");
        let x = root("X");
        let y = root("Y");
        let mut chain = Vec::new();
        for _ in 0..3 {
            chain.push(
                CertifiedIssuer::signed_by(ca_params("Y"), KeyPair::generate().unwrap(), &x)
                    .unwrap()
                    .der()
                    .clone(),
            );
            chain.push(
                CertifiedIssuer::signed_by(
                    ca_params("X"),
                    KeyPair::generate().unwrap(),
                    &fake_root,
                )
                .unwrap()
                .der()
                .clone(),
            );
        }
        chain.extend(same_name_cas("Root", 3));
        let leaf = v1_cert("eve", &y, -60, 3600);
        let f = ClientVerifier::new(&anchor.pem(), Arc::new(crate::tls::NoRevocation), true)
            .unwrap()
            .allow_version1(true)
            .verify_chain(&leaf, &chain, UnixTime::now())
            .unwrap_err();
        assert_eq!(f.reason, "path_budget_exceeded", "{}", f.detail);
        assert!(
            f.detail.starts_with("MaximumSignatureChecksExceeded"),
            "{}",
            f.detail
        );
        assert_eq!(
            rustls::AlertDescription::from(f.error),
            rustls::AlertDescription::CertificateUnknown
        );
    }
}
