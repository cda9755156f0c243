//! The facts of a client certificate that mapping, logging and `Received` headers use.

use sha2::{Digest, Sha256};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::*;

/// Facts extracted once from a verified client certificate (`Default`: an empty set, for
/// tests that fill in only what they need).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertificateFacts {
    /// Subject DN as logged (`cert_subject`): x509-parser's display, in the
    /// certificate's order.
    pub subject: String,
    /// Subject DN as an RFC 4514 string (`{dn}`): see [`super::dn`].
    pub subject_dn: String,
    /// Subject common names, in order. Normally exactly one; mapping refuses otherwise.
    pub common_names: Vec<String>,
    /// Serial number: upper-case hex, no separators, no leading zero byte (`{sn}`).
    pub serial_hex: String,
    /// Issuer DN as logged (`cert_issuer`), like `subject`.
    pub issuer: String,
    /// Issuer DN as an RFC 4514 string (`{issuer}`).
    pub issuer_dn: String,
    /// rfc822Name SAN, or else the subject's emailAddress.
    pub email: Option<String>,
    /// Microsoft UPN (otherName 1.3.6.1.4.1.311.20.2.3) SAN.
    pub upn: Option<String>,
    /// SHA-256 of the DER, lower-case hex.
    pub fingerprint_sha256: String,
    /// The digits before `@` of the UPN (`{edipi}`), when they are all digits.
    pub edipi: Option<String>,
    /// Active Directory's `X509:<I>issuer<SR>serial` (`{altSecIssuerSerial}`): see
    /// [`super::strong`].
    pub alt_sec_issuer_serial: String,
    /// Active Directory's `X509:<SKI>hex` (`{altSecSki}`), when the certificate has a
    /// subjectKeyIdentifier.
    pub alt_sec_ski: Option<String>,
    /// Active Directory's `X509:<SHA1-PUKEY>hex` (`{altSecSha1PublicKey}`).
    pub alt_sec_sha1_public_key: String,
    /// The certificatePolicies OIDs, dotted, in the certificate's order.
    pub policies: Vec<String>,
    /// The extendedKeyUsage OIDs, dotted; `None` when the certificate has no such extension.
    pub ekus: Option<Vec<String>>,
}

/// The Microsoft User Principal Name otherName OID.
const UPN_OID: &str = "1.3.6.1.4.1.311.20.2.3";

/// Why certificate facts could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot read client certificate: {0}")]
pub struct CertificateFactsError(pub String);

impl CertificateFacts {
    /// Read the facts from a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, CertificateFactsError> {
        Self::from_der_with_digest(der, &Sha256::digest(der).into())
    }

    /// [`Self::from_der`] for a certificate whose SHA-256 the caller has computed.
    pub(crate) fn from_der_with_digest(
        der: &[u8],
        sha256: &[u8; 32],
    ) -> Result<Self, CertificateFactsError> {
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|e| CertificateFactsError(e.to_string()))?;
        let common_names = cert
            .subject()
            .iter_common_name()
            .map(attribute_string)
            .collect::<Result<Vec<_>, _>>()?;
        let mut email = None;
        let mut upn = None;
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::RFC822Name(e) if email.is_none() => email = Some((*e).to_owned()),
                    GeneralName::OtherName(oid, value)
                        if upn.is_none() && oid.to_id_string() == UPN_OID =>
                    {
                        upn = upn_value(value);
                    }
                    _ => {}
                }
            }
        }
        if email.is_none() {
            email = cert
                .subject()
                .iter_email()
                .next()
                .and_then(|e| attribute_string(e).ok());
        }
        check_serial(cert.raw_serial())?;
        let edipi = upn.as_deref().and_then(super::strong::edipi);
        let (policies, ekus) = usage(&cert)?;
        Ok(Self {
            subject: cert.subject().to_string(),
            subject_dn: super::dn::rfc4514(cert.subject()),
            common_names,
            serial_hex: serial_hex(cert.raw_serial()),
            issuer: cert.issuer().to_string(),
            issuer_dn: super::dn::rfc4514(cert.issuer()),
            email,
            upn,
            fingerprint_sha256: hex::encode(sha256),
            edipi,
            alt_sec_issuer_serial: super::strong::issuer_serial(&cert),
            alt_sec_ski: super::strong::ski(&cert),
            alt_sec_sha1_public_key: super::strong::sha1_public_key(&cert),
            policies,
            ekus,
        })
    }

    /// The single common name, or `None` when there is none or more than one.
    pub fn common_name(&self) -> Option<&str> {
        match self.common_names.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }
}

/// The certificate's policy OIDs and its extended key usages (`None`: no EKU extension),
/// read by [`postern_config::certificate_type::usage`] (shared with `postern explain`).
#[allow(clippy::type_complexity)]
fn usage(
    cert: &X509Certificate<'_>,
) -> Result<(Vec<String>, Option<Vec<String>>), CertificateFactsError> {
    postern_config::certificate_type::usage(cert)
        .map(|u| (u.policies, u.ekus))
        .map_err(|e| CertificateFactsError(e.to_string()))
}

/// RFC 5280 serials are positive and at most 20 octets. A negative serial has no `{sn}`
/// form of its own (its two's-complement bytes read like another, positive serial: -0x1234
/// is `ED CC`, the same `{sn}` as 0xEDCC), and an over-long one is not what any conforming
/// CA issues: neither is used to identify anyone.
fn check_serial(raw: &[u8]) -> Result<(), CertificateFactsError> {
    if raw.first().is_some_and(|b| b & 0x80 != 0) {
        return Err(CertificateFactsError(
            "the serial number is negative (RFC 5280 requires a positive serial)".into(),
        ));
    }
    let magnitude = raw.iter().skip_while(|b| **b == 0).count();
    if magnitude > 20 {
        return Err(CertificateFactsError(format!(
            "the serial number is {magnitude} octets long (RFC 5280 allows at most 20)"
        )));
    }
    Ok(())
}

/// `{sn}`: upper-case hex of the serial's magnitude, without leading zero bytes.
pub(crate) fn serial_hex(raw: &[u8]) -> String {
    let first = raw
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    hex::encode_upper(&raw[first..])
}

fn attribute_string(attr: &AttributeTypeAndValue<'_>) -> Result<String, CertificateFactsError> {
    let text = attr
        .as_str()
        .map_err(|e| CertificateFactsError(format!("unreadable name attribute: {e}")))?;
    // An embedded NUL is a classic way to make two names look alike: refuse it.
    if text.contains('\0') {
        return Err(CertificateFactsError(
            "a name attribute contains a NUL byte".into(),
        ));
    }
    Ok(text.to_owned())
}

fn upn_value(value: &[u8]) -> Option<String> {
    use x509_parser::der_parser::asn1_rs::{Any, FromDer};
    // otherName value is [0] EXPLICIT UTF8String.
    let (_, any) = Any::from_der(value).ok()?;
    let (_, inner) = Any::from_der(any.data).ok()?;
    inner.as_utf8string().ok().map(|s| s.string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_hex_drops_leading_zero_bytes() {
        assert_eq!(serial_hex(&[0x00, 0x8f, 0x01]), "8F01");
        assert_eq!(serial_hex(&[0x01, 0x02]), "0102");
        assert_eq!(serial_hex(&[0x00]), "00");
    }

    #[test]
    fn negative_and_over_long_serials_are_refused() {
        assert!(check_serial(&[0xED, 0xCC]).is_err());
        assert!(check_serial(&[0x00, 0xED, 0xCC]).is_ok());
        assert!(check_serial(&[0x7f; 20]).is_ok());
        assert!(check_serial(&[[0x00].as_slice(), &[0xff; 20]].concat()).is_ok());
        assert!(check_serial(&[0x7f; 21]).is_err());
        let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "DOE.JOHN.1234567890");
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x7f; 40]));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let e = CertificateFacts::from_der(cert.der()).unwrap_err();
        assert!(e.0.contains("40 octets"), "{e}");
    }

    #[test]
    fn facts_from_a_generated_certificate() {
        let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "DOE.JOHN.1234567890");
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x00, 0xAB, 0xCD]));
        params.subject_alt_names = vec![rcgen::SanType::Rfc822Name(
            "john.doe@example.org".try_into().unwrap(),
        )];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let facts = CertificateFacts::from_der(cert.der()).unwrap();
        assert_eq!(facts.common_name(), Some("DOE.JOHN.1234567890"));
        assert_eq!(facts.serial_hex, "ABCD");
        assert_eq!(facts.email.as_deref(), Some("john.doe@example.org"));
        assert_eq!(facts.fingerprint_sha256.len(), 64);
    }
}
