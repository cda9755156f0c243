//! `postern explain --cert`: what the gateway's TLS layer would make of a client
//! certificate on a listener — parsed, dated, chained to the listener's client CAs, its
//! type checked against the profile (`postern_config::certificate_type`, the gateway's
//! own check) and where its revocation would be answered.

use crate::certificate_type::{self, Usage};
use crate::{CrlScope, GatewayConfig, ListenerTls, RevocationMode, pem};
use x509_parser::prelude::*;

/// The facts `explain` prints about a client certificate.
#[derive(Debug)]
pub struct CertificateCheck {
    /// The certificate itself (DER).
    pub der: Vec<u8>,
    /// Subject (RFC 4514 string as x509-parser prints it).
    pub subject: String,
    /// Issuer, printed the same way.
    pub issuer: String,
    /// `notBefore` – `notAfter`.
    pub validity: String,
    /// Whether now is inside the validity period.
    pub current: bool,
    /// The client CA that signed it, or why none did.
    pub chain: Result<String, String>,
    /// Policies and EKUs, or why they cannot be read.
    pub usage: Result<Usage, String>,
    /// The first common name (`{cn}`).
    pub common_name: Option<String>,
    /// The email SAN (`{email}`).
    pub email: Option<String>,
}

impl CertificateCheck {
    /// Whether the gateway would accept it in the handshake (chain and dates).
    pub fn valid(&self) -> bool {
        self.current && self.chain.is_ok()
    }
}

/// Read the first certificate of `pem_text` and check it against `tls`'s client CAs.
pub fn check(pem_text: &str, tls: Option<&ListenerTls>) -> Result<CertificateCheck, String> {
    let ders = pem::certificates(pem_text).map_err(|e| format!("--cert: {e}"))?;
    let der = ders.first().ok_or("--cert: no certificate in the file")?;
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| format!("--cert: {e}"))?;
    let validity = cert.validity();
    let chain = match tls.and_then(|t| t.client_ca_pem.as_deref()) {
        None => Err("the listener has no client CA bundle: no certificate is asked for".into()),
        Some(bundle) => chain_to(&cert, bundle),
    };
    let email = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .and_then(|san| {
            san.value.general_names.iter().find_map(|n| match n {
                GeneralName::RFC822Name(e) => Some((*e).to_owned()),
                _ => None,
            })
        });
    Ok(CertificateCheck {
        der: der.to_vec(),
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        validity: format!("{} – {}", validity.not_before, validity.not_after),
        current: validity.is_valid(),
        chain,
        usage: certificate_type::usage(&cert).map_err(|e| e.to_string()),
        common_name: cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned),
        email,
    })
}

/// The CA of `bundle` whose subject is the certificate's issuer and whose key verifies
/// its signature.
fn chain_to(cert: &X509Certificate<'_>, bundle: &str) -> Result<String, String> {
    let cas = pem::certificates(bundle).map_err(|e| format!("client CA bundle: {e}"))?;
    for der in &cas {
        let Ok((_, ca)) = X509Certificate::from_der(der) else {
            continue;
        };
        if ca.subject() == cert.issuer() {
            return match cert.verify_signature(Some(ca.public_key())) {
                Ok(()) => Ok(ca.subject().to_string()),
                Err(e) => Err(format!(
                    "the signature does not verify with {}: {e}",
                    ca.subject()
                )),
            };
        }
    }
    Err(format!(
        "no CA of the listener's client CA bundle ({} certificates) is its issuer {}",
        cas.len(),
        cert.issuer()
    ))
}

/// Where revocation would be answered for a certificate on this listener.
pub(super) fn revocation(config: &GatewayConfig, tls: &ListenerTls) -> String {
    let r = &tls.revocation;
    let crls: Vec<&str> = config
        .crl_sources
        .iter()
        .filter(|(_, s)| s.enabled && s.applies_to.contains(&CrlScope::InboundSmtpTls))
        .map(|(n, _)| n.as_str())
        .collect();
    let disabled: Vec<&str> = config
        .crl_sources
        .iter()
        .filter(|(_, s)| !s.enabled && s.applies_to.contains(&CrlScope::InboundSmtpTls))
        .map(|(n, _)| n.as_str())
        .collect();
    let crl = if crls.is_empty() && disabled.is_empty() {
        "no CrlSource applies to inbound TLS".to_owned()
    } else if crls.is_empty() {
        format!(
            "no enabled CrlSource applies to inbound TLS (disabled: {})",
            disabled.join(", ")
        )
    } else {
        format!("CRLs of CrlSource {}", crls.join(", "))
    };
    let ocsp = if r.ocsp.responder_url.is_empty() {
        "OCSP (the responder of the certificate's AIA)".to_owned()
    } else {
        format!("OCSP ({})", r.ocsp.responder_url)
    };
    let order = match r.mode {
        RevocationMode::CrlOnly => crl,
        RevocationMode::OcspOnly => ocsp,
        RevocationMode::CrlThenOcsp => format!("{crl}, else {ocsp}"),
        RevocationMode::OcspThenCrl => format!("{ocsp}, else {crl}"),
    };
    format!(
        "{:?}: {order}; with no current answer: {:?} (the answer itself needs the running gateway)",
        r.mode, r.on_unavailable
    )
}
