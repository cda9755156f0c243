//! The client's own certificate under a listener's `tls.revocation` mode: the CRL's
//! answer and the OCSP responder's, put together by [`super::revocation_mode::decide`].
//!
//! The responder is asked after path building, outside the verification gate of
//! [`super::offload`]: a cached answer is a hash lookup in place; otherwise the thread
//! waits for the responder (at most `ocsp.timeout`) with `block_in_place`, so the
//! runtime's other tasks move to another worker and no verification turn is held while
//! the network answers (see [`crate::ocsp::OcspClient::lookup_blocking`]).

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::revocation_mode::{Answer, Decision, Mechanism, Refused, VerdictSource, decide};
use super::{RevocationChecker, RevocationStatus, check_certificate};
use crate::ocsp::{CertStatus, OcspClient, OcspQuery, request::CertId, response::rfc3339};
use postern_config::{CrlScope, Revocation};

/// id-ad-ocsp (RFC 5280 section 4.2.2.1).
const ID_AD_OCSP: &str = "1.3.6.1.5.5.7.48.1";

/// A listener's revocation mode with the OCSP client it asks.
#[derive(Debug, Clone)]
pub struct RevocationPolicy {
    /// `tls.revocation`.
    pub settings: Revocation,
    /// The process's OCSP client.
    pub client: Arc<OcspClient>,
}

/// Decide on `end_entity`, issued by `issuer` (DER), under `policy`.
pub(crate) fn check_end_entity(
    policy: &RevocationPolicy,
    crls: &dyn RevocationChecker,
    end_entity: &CertificateDer<'_>,
    issuer: &CertificateDer<'_>,
) -> Result<VerdictSource, Refused> {
    let (_, cert) =
        X509Certificate::from_der(end_entity).map_err(|e| Refused::BadEncoding(e.to_string()))?;
    let who = format!(
        "certificate {} (serial {})",
        cert.subject(),
        crate::auth::certificate::serial_hex(cert.raw_serial())
    );
    let mut responder = None;
    let s = &policy.settings;
    let decision = decide(
        s.mode,
        s.on_unavailable,
        || crl_answer(crls, end_entity),
        || {
            let url = if s.ocsp.responder_url.is_empty() {
                aia_ocsp_url(&cert)
            } else {
                Some(s.ocsp.responder_url.clone())
            };
            let Some(url) = url else {
                return Answer::Unavailable(crate::ocsp::OcspError::NoResponder.to_string());
            };
            responder = Some(url.clone());
            match query(&cert, issuer, url.clone(), policy) {
                Err(e) => Answer::Unavailable(format!("OCSP responder {url}: {e}")),
                Ok(q) => match policy.client.lookup_blocking(q) {
                    Ok(a) => match a.status {
                        CertStatus::Good => Answer::Good,
                        CertStatus::Revoked { time, reason } => Answer::Revoked(format!(
                            "revoked by OCSP responder {url} on {}{}",
                            rfc3339(time),
                            reason
                                .map(|r| format!(" (reason {})", x509_parser::x509::ReasonCode(r)))
                                .unwrap_or_default()
                        )),
                        CertStatus::Unknown => Answer::Unavailable(format!(
                            "OCSP responder {url} answers unknown (it does not know the certificate)"
                        )),
                    },
                    Err(e) => {
                        Answer::Unavailable(format!("OCSP responder {url} ({}): {e}", e.code()))
                    }
                },
            }
        },
    );
    let source = |m: Option<Mechanism>| VerdictSource {
        mechanism: m,
        responder: responder.clone(),
    };
    match decision {
        Decision::Accept { by, unavailable } => {
            if let Some(why) = unavailable {
                tracing::warn!(certificate = %who, why = %why, "no current revocation answer; accepted (tls.revocation.onUnavailable: Allow)");
            }
            Ok(source(by))
        }
        Decision::Revoked { by, detail } => Err(Refused::Revoked(format!(
            "{who} is {detail} ({})",
            source(Some(by))
        ))),
        Decision::Unavailable { detail } => Err(Refused::Unavailable(format!(
            "{who}: no current revocation answer (tls.revocation.mode {}, onUnavailable Refuse): {detail}{}",
            s.mode.as_str(),
            responder
                .as_ref()
                .map(|r| format!(" (responder={r})"))
                .unwrap_or_default()
        ))),
    }
}

/// The CRL's answer: good or revoked from a current CRL; anything else is no answer.
fn crl_answer(crls: &dyn RevocationChecker, der: &CertificateDer<'_>) -> Answer {
    match check_certificate(crls, CrlScope::InboundSmtpTls, der) {
        Err(e) => Answer::Unavailable(e.to_string()),
        Ok((_, RevocationStatus::Good)) => Answer::Good,
        Ok((_, RevocationStatus::NoCrl)) => {
            Answer::Unavailable("no CRL of the issuer is in force".into())
        }
        Ok((_, RevocationStatus::Revoked { source, reason })) => Answer::Revoked(format!(
            "revoked by CRL source {source}{}",
            reason.map(|r| format!(" ({r})")).unwrap_or_default()
        )),
        Ok((
            _,
            RevocationStatus::Stale {
                source,
                next_update,
            },
        )) => Answer::Unavailable(format!(
            "the CRL of CRL source {source} is past its nextUpdate {next_update}"
        )),
        Ok((_, RevocationStatus::Missing { source, why })) => {
            Answer::Unavailable(format!("CRL source {source}: {why}"))
        }
    }
}

/// The question for `cert` issued by `issuer`.
fn query(
    cert: &X509Certificate<'_>,
    issuer: &CertificateDer<'_>,
    url: String,
    policy: &RevocationPolicy,
) -> Result<OcspQuery, String> {
    let (_, ca) = X509Certificate::from_der(issuer).map_err(|e| format!("issuer: {e}"))?;
    let spki = ca.public_key();
    Ok(OcspQuery {
        url,
        id: CertId::new(
            ca.subject().as_raw(),
            &spki.subject_public_key.data,
            cert.raw_serial(),
        ),
        issuer_subject: ca.subject().as_raw().to_vec(),
        issuer_spki: spki.raw.to_vec(),
        timeout: policy.settings.ocsp.timeout.get(),
        cache_max_age: policy.settings.ocsp.cache_max_age.get(),
    })
}

/// The first `http(s)` OCSP URL of the certificate's Authority Information Access.
fn aia_ocsp_url(cert: &X509Certificate<'_>) -> Option<String> {
    cert.iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityInfoAccess(aia) => {
                aia.accessdescs.iter().find_map(|d| {
                    match (
                        &d.access_location,
                        d.access_method.to_id_string() == ID_AD_OCSP,
                    ) {
                        (GeneralName::URI(u), true)
                            if u.starts_with("http://") || u.starts_with("https://") =>
                        {
                            Some((*u).to_owned())
                        }
                        _ => None,
                    }
                })
            }
            _ => None,
        })
}
