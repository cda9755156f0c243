//! The revocation hook of client certificate verification.
//!
//! The verifier asks a [`RevocationChecker`] about every certificate of the presented
//! chain. The checker answers from an index built once per CRL: a handshake costs a
//! lookup, never a signature check or a scan of the list.

use std::fmt::{self, Debug};

use serde::{Deserialize, Serialize};
use x509_parser::error::X509Error;
use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::RelativeDistinguishedName;

use postern_config::CrlScope;

/// What a CRL says about one certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RevocationStatus {
    /// No CRL in force covers the certificate's issuer, and no CRL source that would
    /// refuse it is waiting for its first CRL.
    NoCrl,
    /// A current CRL covering the certificate is in force and does not list it.
    Good,
    /// A CRL of the certificate's issuer lists it.
    Revoked {
        /// The CRL source that listed it.
        source: String,
        /// Revocation reason, if the CRL gives one.
        reason: Option<String>,
    },
    /// Every CRL in force that covers the certificate is past its `nextUpdate`: the
    /// certificate cannot be checked and is treated as unverifiable (fail closed).
    Stale {
        /// The CRL source.
        source: String,
        /// The CRL's `nextUpdate`, RFC 3339.
        next_update: String,
    },
    /// Revocation is configured for the certificate but no CRL in force covers it: it is
    /// treated as unverifiable (fail closed, reason `crl_missing`).
    Missing {
        /// The CRL source that should answer (the one waiting for its CRL, or the one
        /// whose CRLs do not cover the certificate).
        source: String,
        /// Why nothing answers.
        why: MissingCrl,
    },
}

/// Why no CRL answers for a certificate that needs one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MissingCrl {
    /// The source has no CRL in force yet (first fetch pending or failing). Until it has
    /// loaded once, the gateway cannot know which CA it is for, so it answers for every
    /// certificate whose issuer has no CRL in force.
    NotLoaded,
    /// The source had a CRL of this issuer in force, and it is gone (its CA is no longer
    /// trusted, or the file stopped carrying it after the source's URL changed).
    NoLongerInForce,
    /// The issuer's CRLs in force are limited in scope (`onlyContainsUserCerts`,
    /// `onlyContainsCACerts`) or partitioned (Issuing Distribution Point
    /// `distributionPoint`), and none of them covers this certificate (RFC 5280
    /// section 6.3.3).
    NotCovered,
}

impl MissingCrl {
    /// Short stable code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            MissingCrl::NotLoaded => "not_loaded",
            MissingCrl::NoLongerInForce => "no_longer_in_force",
            MissingCrl::NotCovered => "not_covered",
        }
    }
}

impl fmt::Display for MissingCrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MissingCrl::NotLoaded => "the CRL source has no CRL in force yet",
            MissingCrl::NoLongerInForce => "the CRL source's CRL of this issuer is no longer in force",
            MissingCrl::NotCovered => {
                "no CRL of the issuer in force covers it (the CRLs are limited to user or CA certificates, or to other distribution points)"
            }
        })
    }
}

/// One name of a CRL distribution point, as a certificate's CRL Distribution Points or a
/// CRL's Issuing Distribution Point give it, written out so that equal names compare
/// equal: `URI:http://...`, `DNS:...`, `email:...`, `DirName:CN=...`, `IP:0a000001`,
/// `RDN:2.5.4.3=...` (a name relative to the CRL issuer), `other:...`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DpName(String);

impl DpName {
    /// A name from its written-out form (as [`DpName::as_str`] gives it).
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The written-out form.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The names of a DistributionPointName.
    pub fn of(dp: &DistributionPointName<'_>) -> Vec<DpName> {
        match dp {
            DistributionPointName::FullName(names) => names.iter().map(general_name).collect(),
            DistributionPointName::NameRelativeToCRLIssuer(rdn) => vec![relative(rdn)],
        }
    }
}

impl fmt::Display for DpName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn general_name(name: &GeneralName<'_>) -> DpName {
    DpName(match name {
        GeneralName::URI(u) => format!("URI:{u}"),
        GeneralName::DNSName(d) => format!("DNS:{d}"),
        GeneralName::RFC822Name(e) => format!("email:{e}"),
        GeneralName::DirectoryName(n) => format!("DirName:{n}"),
        GeneralName::IPAddress(ip) => format!("IP:{}", hex::encode(ip)),
        GeneralName::RegisteredID(oid) => format!("RID:{oid}"),
        GeneralName::OtherName(oid, v) => format!("other:{oid}:{}", hex::encode(v)),
        GeneralName::X400Address(a) | GeneralName::EDIPartyName(a) => {
            format!("other:{}:{}", a.tag(), hex::encode(a.data))
        }
        GeneralName::Invalid(tag, data) => format!("other:{tag}:{}", hex::encode(data)),
    })
}

fn relative(rdn: &RelativeDistinguishedName<'_>) -> DpName {
    let parts: Vec<String> = rdn
        .iter()
        .map(|a| {
            let value = a
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|_| hex::encode(a.attr_value().data));
            format!("{}={value}", a.attr_type())
        })
        .collect();
    DpName(format!("RDN:{}", parts.join("+")))
}

/// What the revocation check needs to know about one certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedCertificate<'a> {
    /// Raw DER of the issuer Name (SEQUENCE tag included, as x509-parser's
    /// `X509Name::as_raw()` gives it).
    pub issuer_der: &'a [u8],
    /// The key id of the certificate's Authority Key Identifier, when it has one.
    pub authority_key_id: Option<&'a [u8]>,
    /// The serial number (raw DER INTEGER content).
    pub serial: &'a [u8],
    /// basicConstraints `cA` is asserted: a CA certificate, covered by CRLs that are not
    /// limited to user certificates (RFC 5280 section 6.3.3 (b)(2)(ii) and (iii)).
    pub is_ca: bool,
    /// The names of the certificate's CRL distribution points (those without a
    /// `cRLIssuer`: indirect CRLs are not supported). A CRL partitioned by its Issuing
    /// Distribution Point covers the certificate only when one of its names is here.
    pub distribution_points: Vec<DpName>,
}

impl<'a> CheckedCertificate<'a> {
    /// An end-entity certificate without CRL distribution points.
    pub fn end_entity(
        issuer_der: &'a [u8],
        authority_key_id: Option<&'a [u8]>,
        serial: &'a [u8],
    ) -> Self {
        Self {
            issuer_der,
            authority_key_id,
            serial,
            is_ca: false,
            distribution_points: Vec::new(),
        }
    }

    /// The facts of a parsed certificate.
    pub fn of(cert: &'a X509Certificate<'a>) -> Self {
        let mut authority_key_id = None;
        let mut distribution_points = Vec::new();
        for ext in cert.iter_extensions() {
            match ext.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(a) => {
                    authority_key_id = a.key_identifier.as_ref().map(|k| k.0);
                }
                ParsedExtension::CRLDistributionPoints(points) => {
                    for dp in points.iter().filter(|dp| dp.crl_issuer.is_none()) {
                        if let Some(name) = &dp.distribution_point {
                            distribution_points.extend(DpName::of(name));
                        }
                    }
                }
                _ => {}
            }
        }
        Self {
            issuer_der: cert.issuer().as_raw(),
            authority_key_id,
            serial: cert.raw_serial(),
            is_ca: cert.is_ca(),
            distribution_points,
        }
    }
}

/// Answers revocation questions from the CRLs in force.
pub trait RevocationChecker: Send + Sync + Debug {
    /// Look up `serial` (the raw DER INTEGER content) of an end-entity certificate without
    /// CRL distribution points issued by the CA whose subject name is `issuer_der` (raw
    /// DER of the Name, SEQUENCE tag included, as x509-parser's `X509Name::as_raw()` gives
    /// it) and, when the certificate has one, whose key id is `authority_key_id`. `scope`
    /// says which TLS check is asking.
    fn check(
        &self,
        scope: CrlScope,
        issuer_der: &[u8],
        authority_key_id: Option<&[u8]>,
        serial: &[u8],
    ) -> RevocationStatus;

    /// Look up a certificate with everything that decides which CRLs cover it (CA or not,
    /// its CRL distribution points). Checkers that do not know CRL scopes answer as
    /// [`RevocationChecker::check`].
    fn check_certificate(
        &self,
        scope: CrlScope,
        cert: &CheckedCertificate<'_>,
    ) -> RevocationStatus {
        self.check(scope, cert.issuer_der, cert.authority_key_id, cert.serial)
    }
}

/// A checker with no CRLs (revocation not configured).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoRevocation;

impl RevocationChecker for NoRevocation {
    fn check(&self, _: CrlScope, _: &[u8], _: Option<&[u8]>, _: &[u8]) -> RevocationStatus {
        RevocationStatus::NoCrl
    }
}

/// Ask `checker` about one certificate (DER), returning the parsed certificate (for the
/// caller's messages) with the answer. The issuer's key id comes from the certificate's
/// Authority Key Identifier, when it has one; whether it is a CA and its CRL
/// distribution points decide which CRLs cover it.
pub fn check_certificate<'a>(
    checker: &dyn RevocationChecker,
    scope: CrlScope,
    der: &'a [u8],
) -> Result<(X509Certificate<'a>, RevocationStatus), x509_parser::nom::Err<X509Error>> {
    let (_, cert) = X509Certificate::from_der(der)?;
    let status = checker.check_certificate(scope, &CheckedCertificate::of(&cert));
    Ok((cert, status))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, CrlDistributionPoint, DnType, IsCa, KeyPair};

    fn cert(is_ca: bool, dps: &[&[&str]]) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, "facts");
        if is_ca {
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        }
        p.crl_distribution_points = dps
            .iter()
            .map(|uris| CrlDistributionPoint {
                uris: uris.iter().map(|u| (*u).to_owned()).collect(),
            })
            .collect();
        p.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn facts_carry_the_ca_flag_and_every_distribution_point_name() {
        let der = cert(
            false,
            &[&["http://a/1.crl", "ldap://a/1"], &["http://b/2.crl"]],
        );
        let (_, parsed) = X509Certificate::from_der(&der).unwrap();
        let facts = CheckedCertificate::of(&parsed);
        assert!(!facts.is_ca);
        assert_eq!(
            facts.distribution_points,
            vec![
                DpName::new("URI:http://a/1.crl"),
                DpName::new("URI:ldap://a/1"),
                DpName::new("URI:http://b/2.crl"),
            ]
        );
        assert_eq!(facts.serial, parsed.raw_serial());
        let der = cert(true, &[]);
        let (_, parsed) = X509Certificate::from_der(&der).unwrap();
        let facts = CheckedCertificate::of(&parsed);
        assert!(facts.is_ca && facts.distribution_points.is_empty());
    }

    #[test]
    fn checkers_without_scopes_answer_from_issuer_and_serial() {
        let der = cert(false, &[&["http://a/1.crl"]]);
        assert_eq!(
            check_certificate(&NoRevocation, CrlScope::InboundSmtpTls, &der)
                .unwrap()
                .1,
            RevocationStatus::NoCrl
        );
        assert_eq!(MissingCrl::NotCovered.code(), "not_covered");
        assert!(
            MissingCrl::NotLoaded
                .to_string()
                .contains("no CRL in force yet")
        );
    }
}
