//! Reading CRL files: DER (`Asn1`), PEM with one or several `X509 CRL` blocks, or a ZIP
//! archive of those ([`super::archive`]).
//!
//! The header (issuer, dates, extensions, signature) is read with x509-parser; the list of
//! revoked certificates is walked lazily with [`super::der`], borrowing every serial from the
//! input, so a million-entry CRL costs no per-entry allocation.

use std::borrow::Cow;

use rustls_pki_types::CertificateRevocationListDer;
use rustls_pki_types::pem::PemObject;
use x509_parser::asn1_rs::BitString;
use x509_parser::extensions::{ParsedExtension, X509Extension};
use x509_parser::num_bigint::BigUint;
use x509_parser::prelude::FromDer;
use x509_parser::time::ASN1Time;
use x509_parser::x509::{AlgorithmIdentifier, X509Name};

use super::der::{DerError, Reader, Tlv, tag};
use crate::tls::DpName;
use postern_config::CrlFormat;

/// Longest serial number accepted (RFC 5280 allows 20 octets; some CAs add a sign byte).
pub const MAX_SERIAL_LEN: usize = 64;

/// Why a CRL file could not be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The source says `format: Pem` but the file has no `X509 CRL` block.
    #[error(
        "no PEM `X509 CRL` block found (the source says format: Pem; a binary file needs format: Asn1)"
    )]
    NoPemBlock,
    /// A PEM block could not be decoded.
    #[error("malformed PEM: {0}")]
    Pem(String),
    /// The source says `format: Asn1` but the file is PEM text.
    #[error("the file is PEM text but the source says format: Asn1 (DER); set format: Pem")]
    PemGivenAsDer,
    /// The DER structure is not a CRL.
    #[error("CRL #{index}: not a valid CRL: {reason}")]
    Malformed {
        /// Position of the CRL in the file, from 0.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// The CRL uses a feature whose meaning this gateway cannot honour, so it must not be
    /// used to decide anything (RFC 5280 section 5.2: unknown critical extensions).
    #[error("CRL #{index}: unsupported: {what}")]
    Unsupported {
        /// Position of the CRL in the file, from 0.
        index: usize,
        /// The feature.
        what: String,
    },
    /// A `format: Zip` file is not a usable archive (not a ZIP, a zip bomb, too many
    /// members, a bad member).
    #[error("ZIP archive: {0}")]
    Zip(String),
}

/// Split a fetched file into the DER of each CRL it holds.
pub fn split(bytes: &[u8], format: CrlFormat) -> Result<Vec<Cow<'_, [u8]>>, ParseError> {
    match format {
        CrlFormat::Asn1 => {
            if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
                return Err(ParseError::PemGivenAsDer);
            }
            Ok(vec![Cow::Borrowed(bytes)])
        }
        CrlFormat::Pem => {
            let ders = CertificateRevocationListDer::pem_slice_iter(bytes)
                .map(|r| r.map(|d| Cow::Owned(d.as_ref().to_vec())))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ParseError::Pem(e.to_string()))?;
            if ders.is_empty() {
                return Err(ParseError::NoPemBlock);
            }
            Ok(ders)
        }
        CrlFormat::Zip => super::archive::crls(bytes, super::archive::MAX_UNPACKED)
            .map(|ders| ders.into_iter().map(Cow::Owned).collect())
            .map_err(|e| ParseError::Zip(e.0)),
    }
}

/// Scope restrictions of an Issuing Distribution Point extension that we honour.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct IdpScope {
    /// The CRL only covers end-entity certificates.
    pub only_user_certs: bool,
    /// The CRL only covers CA certificates.
    pub only_ca_certs: bool,
}

impl IdpScope {
    /// Whether a certificate (a CA certificate or not) is in scope.
    pub fn covers(self, is_ca: bool) -> bool {
        !(self.only_user_certs && is_ca || self.only_ca_certs && !is_ca)
    }

    /// `all`, `userCertificates` or `caCertificates` (status and `crl inspect --json`).
    pub fn name(self) -> &'static str {
        match (self.only_user_certs, self.only_ca_certs) {
            (true, _) => "userCertificates",
            (_, true) => "caCertificates",
            _ => "all",
        }
    }
}

/// A CRL whose header is parsed and whose entries can be walked.
#[derive(Debug)]
pub struct ParsedCrl<'a> {
    /// Position in the file, from 0 (for messages).
    pub index: usize,
    /// The whole CRL.
    pub der: &'a [u8],
    /// The signed part (`tbsCertList`).
    pub tbs: &'a [u8],
    /// Outer signature algorithm.
    pub signature_algorithm: AlgorithmIdentifier<'a>,
    /// The signature.
    pub signature_value: BitString<'a>,
    /// Raw DER of the issuer Name: certificates are matched against it byte for byte.
    pub issuer_der: &'a [u8],
    /// The issuer as text (RFC 4514 style), for logs and status.
    pub issuer: String,
    /// `thisUpdate`, Unix seconds.
    pub this_update: i64,
    /// `nextUpdate`, Unix seconds.
    pub next_update: Option<i64>,
    /// The CRL number extension.
    pub crl_number: Option<BigUint>,
    /// The key identifier of the Authority Key Identifier extension.
    pub authority_key_id: Option<&'a [u8]>,
    /// Issuing Distribution Point scope.
    pub scope: IdpScope,
    /// The Issuing Distribution Point's `distributionPoint` names: the CRL is one
    /// partition of its issuer's revocation information and covers only certificates
    /// whose CRL Distribution Points name one of them. `None`: not partitioned.
    pub partition: Option<Vec<DpName>>,
    /// Content of `revokedCertificates` (empty when absent).
    revoked: &'a [u8],
}

/// One revoked certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RevokedEntry<'a> {
    /// Raw content of the serial number INTEGER.
    pub serial: &'a [u8],
    /// The reasonCode entry extension (RFC 5280 CRLReason value).
    pub reason: Option<u8>,
    /// Raw DER of the revocation date (UTCTime or GeneralizedTime).
    pub revocation_date: &'a [u8],
}

impl RevokedEntry<'_> {
    /// Revocation date, Unix seconds.
    pub fn revocation_time(&self) -> Option<i64> {
        ASN1Time::from_der(self.revocation_date)
            .ok()
            .map(|(_, t)| t.timestamp())
    }
}

/// RFC 5280 CRLReason names.
pub fn reason_name(code: u8) -> &'static str {
    match code {
        0 => "unspecified",
        1 => "keyCompromise",
        2 => "cACompromise",
        3 => "affiliationChanged",
        4 => "superseded",
        5 => "cessationOfOperation",
        6 => "certificateHold",
        8 => "removeFromCRL",
        9 => "privilegeWithdrawn",
        10 => "aACompromise",
        _ => "unknown",
    }
}

/// `removeFromCRL`: the entry says the certificate is *not* revoked (any more).
pub const REASON_REMOVE_FROM_CRL: u8 = 8;

// Extension OIDs as DER content bytes (2.5.29.x is 55 1d x).
const OID_CRL_NUMBER: &[u8] = &[0x55, 0x1d, 20];
const OID_REASON_CODE: &[u8] = &[0x55, 0x1d, 21];
const OID_HOLD_INSTRUCTION: &[u8] = &[0x55, 0x1d, 23];
const OID_INVALIDITY_DATE: &[u8] = &[0x55, 0x1d, 24];
const OID_DELTA_CRL_INDICATOR: &[u8] = &[0x55, 0x1d, 27];
const OID_ISSUING_DISTRIBUTION_POINT: &[u8] = &[0x55, 0x1d, 28];
const OID_CERTIFICATE_ISSUER: &[u8] = &[0x55, 0x1d, 29];
const OID_AUTHORITY_KEY_IDENTIFIER: &[u8] = &[0x55, 0x1d, 35];

impl<'a> ParsedCrl<'a> {
    /// Parse one CRL (`index` is its position in the file, for messages).
    pub fn parse(der: &'a [u8], index: usize) -> Result<Self, ParseError> {
        let malformed = |reason: String| ParseError::Malformed { index, reason };
        let der_err = |e: DerError| ParseError::Malformed {
            index,
            reason: e.0.to_owned(),
        };

        let mut outer = Reader::new(der);
        let list = outer
            .expect(tag::SEQUENCE, "expected a CertificateList SEQUENCE")
            .map_err(der_err)?;
        if !outer.is_empty() {
            return Err(malformed("trailing bytes after the CRL".into()));
        }
        let der = list.raw;
        let mut r = Reader::new(list.content);
        let tbs = r
            .expect(tag::SEQUENCE, "expected the tbsCertList SEQUENCE")
            .map_err(der_err)?;
        let alg = r
            .expect(tag::SEQUENCE, "expected the signatureAlgorithm")
            .map_err(der_err)?;
        let sig = r
            .expect(tag::BIT_STRING, "expected the signatureValue BIT STRING")
            .map_err(der_err)?;
        if !r.is_empty() {
            return Err(malformed("trailing bytes in the CertificateList".into()));
        }
        let (_, signature_algorithm) = AlgorithmIdentifier::from_der(alg.raw)
            .map_err(|e| malformed(format!("signatureAlgorithm: {e}")))?;
        let (_, signature_value) =
            BitString::from_der(sig.raw).map_err(|e| malformed(format!("signatureValue: {e}")))?;

        let mut t = Reader::new(tbs.content);
        if let Some(v) = t.optional(tag::INTEGER).map_err(der_err)? {
            // v2 is encoded as 1; v1 CRLs omit the field.
            if v.content != [1] {
                return Err(malformed(format!(
                    "unknown CRL version {}",
                    hex::encode(v.content)
                )));
            }
        }
        let inner_alg = t
            .expect(
                tag::SEQUENCE,
                "expected the tbsCertList signature algorithm",
            )
            .map_err(der_err)?;
        if inner_alg.raw != alg.raw {
            return Err(malformed(
                "the signature algorithm inside and outside the signed part differ".into(),
            ));
        }
        let issuer_tlv = t
            .expect(tag::SEQUENCE, "expected the issuer Name")
            .map_err(der_err)?;
        let (_, issuer) =
            X509Name::from_der(issuer_tlv.raw).map_err(|e| malformed(format!("issuer: {e}")))?;
        let this_update = read_time(&mut t)
            .map_err(der_err)?
            .ok_or_else(|| malformed("missing thisUpdate".into()))?;
        let next_update = read_time(&mut t).map_err(der_err)?;
        let revoked = match t.optional(tag::SEQUENCE).map_err(der_err)? {
            Some(seq) => seq.content,
            None => &[],
        };
        let mut crl = ParsedCrl {
            index,
            der,
            tbs: tbs.raw,
            signature_algorithm,
            signature_value,
            issuer_der: issuer_tlv.raw,
            issuer: issuer.to_string(),
            this_update,
            next_update,
            crl_number: None,
            authority_key_id: None,
            scope: IdpScope::default(),
            partition: None,
            revoked,
        };
        if let Some(exts) = t.optional(tag::CONTEXT_0).map_err(der_err)? {
            let mut seq = Reader::new(exts.content);
            let list = seq
                .expect(tag::SEQUENCE, "expected the crlExtensions SEQUENCE")
                .map_err(der_err)?;
            let mut items = Reader::new(list.content);
            while !items.is_empty() {
                let item = items
                    .expect(tag::SEQUENCE, "expected an Extension")
                    .map_err(der_err)?;
                let (_, ext) = X509Extension::from_der(item.raw)
                    .map_err(|e| malformed(format!("CRL extension: {e}")))?;
                crl.apply_extension(&ext)?;
            }
        }
        if !t.is_empty() {
            return Err(malformed("unexpected data after crlExtensions".into()));
        }
        Ok(crl)
    }

    fn apply_extension(&mut self, ext: &X509Extension<'a>) -> Result<(), ParseError> {
        let index = self.index;
        let unsupported = |what: String| ParseError::Unsupported { index, what };
        let malformed = |reason: String| ParseError::Malformed { index, reason };
        let oid = ext.oid.as_bytes();
        match ext.parsed_extension() {
            ParsedExtension::ParseError { error } => {
                return Err(malformed(format!("extension {}: {error}", ext.oid)));
            }
            ParsedExtension::CRLNumber(n) if oid == OID_CRL_NUMBER => {
                self.crl_number = Some(n.clone());
            }
            ParsedExtension::AuthorityKeyIdentifier(aki) if oid == OID_AUTHORITY_KEY_IDENTIFIER => {
                self.authority_key_id = aki.key_identifier.as_ref().map(|k| k.0);
            }
            ParsedExtension::IssuingDistributionPoint(idp)
                if oid == OID_ISSUING_DISTRIBUTION_POINT =>
            {
                if idp.indirect_crl {
                    return Err(unsupported(
                        "indirect CRL (entries of other issuers); publish one CRL per CA".into(),
                    ));
                }
                if idp.only_some_reasons.is_some() {
                    return Err(unsupported(
                        "CRL partitioned by reason (onlySomeReasons); publish a full CRL".into(),
                    ));
                }
                if idp.only_contains_attribute_certs {
                    return Err(unsupported("attribute-certificate CRL".into()));
                }
                if idp.only_contains_user_certs && idp.only_contains_ca_certs {
                    return Err(malformed(
                        "the Issuing Distribution Point asserts both onlyContainsUserCerts and onlyContainsCACerts".into(),
                    ));
                }
                self.scope = IdpScope {
                    only_user_certs: idp.only_contains_user_certs,
                    only_ca_certs: idp.only_contains_ca_certs,
                };
                if let Some(dp) = &idp.distribution_point {
                    let names = DpName::of(dp);
                    if names.is_empty() {
                        return Err(malformed(
                            "the Issuing Distribution Point has an empty distributionPoint".into(),
                        ));
                    }
                    self.partition = Some(names);
                }
            }
            _ if oid == OID_DELTA_CRL_INDICATOR => {
                return Err(unsupported(
                    "delta CRL (deltaCRLIndicator); point the source at the full CRL".into(),
                ));
            }
            _ if ext.critical => {
                return Err(unsupported(format!("critical CRL extension {}", ext.oid)));
            }
            _ => {}
        }
        Ok(())
    }

    /// Walk the revoked certificates.
    pub fn entries(&self) -> RevokedEntries<'a> {
        RevokedEntries {
            index: self.index,
            reader: Reader::new(self.revoked),
        }
    }

    /// Size hint: a revoked entry is at least 19 bytes of DER.
    pub fn revoked_bytes(&self) -> usize {
        self.revoked.len()
    }
}

fn read_time(r: &mut Reader<'_>) -> Result<Option<i64>, DerError> {
    match r.peek_tag() {
        Some(tag::UTC_TIME | tag::GENERALIZED_TIME) => {
            let tlv = r.read()?;
            let (_, t) = ASN1Time::from_der(tlv.raw).map_err(|_| DerError("invalid time"))?;
            Ok(Some(t.timestamp()))
        }
        _ => Ok(None),
    }
}

/// The revoked certificate entry at the start of `bytes` (of CRL #`index`), read as
/// [`ParsedCrl::entries`] reads it (a streamed CRL's entries come one at a time).
pub(crate) fn first_entry(bytes: &[u8], index: usize) -> Result<RevokedEntry<'_>, ParseError> {
    RevokedEntries {
        index,
        reader: Reader::new(bytes),
    }
    .read_entry()
}

/// Iterator over the revoked certificates of a [`ParsedCrl`].
#[derive(Debug)]
pub struct RevokedEntries<'a> {
    index: usize,
    reader: Reader<'a>,
}

impl<'a> Iterator for RevokedEntries<'a> {
    type Item = Result<RevokedEntry<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.reader.is_empty() {
            return None;
        }
        let item = self.read_entry();
        if item.is_err() {
            // Stop after the first error: the rest cannot be trusted to be aligned.
            self.reader = Reader::new(&[]);
        }
        Some(item)
    }
}

impl<'a> RevokedEntries<'a> {
    fn read_entry(&mut self) -> Result<RevokedEntry<'a>, ParseError> {
        let index = self.index;
        let der_err = |e: DerError| ParseError::Malformed {
            index,
            reason: format!("revoked certificate entry: {}", e.0),
        };
        let entry = self
            .reader
            .expect(tag::SEQUENCE, "expected a SEQUENCE")
            .map_err(der_err)?;
        let mut r = Reader::new(entry.content);
        let serial = r
            .expect(tag::INTEGER, "expected the serial number INTEGER")
            .map_err(der_err)?;
        if serial.content.is_empty() || serial.content.len() > MAX_SERIAL_LEN {
            return Err(ParseError::Malformed {
                index,
                reason: format!(
                    "revoked certificate entry: serial number of {} bytes",
                    serial.content.len()
                ),
            });
        }
        let date = match r.peek_tag() {
            Some(tag::UTC_TIME | tag::GENERALIZED_TIME) => r.read().map_err(der_err)?,
            _ => return Err(der_err(DerError("expected the revocation date"))),
        };
        let mut reason = None;
        if let Some(exts) = r.optional(tag::SEQUENCE).map_err(der_err)? {
            reason = entry_extensions(exts, index, serial.content)?;
        }
        if !r.is_empty() {
            return Err(der_err(DerError("unexpected data in an entry")));
        }
        Ok(RevokedEntry {
            serial: serial.content,
            reason,
            revocation_date: date.raw,
        })
    }
}

/// Read the entry extensions; returns the reason code.
fn entry_extensions(exts: Tlv<'_>, index: usize, serial: &[u8]) -> Result<Option<u8>, ParseError> {
    let der_err = |e: DerError| ParseError::Malformed {
        index,
        reason: format!(
            "extensions of revoked entry {}: {}",
            hex::encode(serial),
            e.0
        ),
    };
    let mut reason = None;
    let mut items = Reader::new(exts.content);
    while !items.is_empty() {
        let ext = items
            .expect(tag::SEQUENCE, "expected an Extension")
            .map_err(der_err)?;
        let mut e = Reader::new(ext.content);
        let oid = e.expect(tag::OID, "expected an OID").map_err(der_err)?;
        let critical = match e.optional(tag::BOOLEAN).map_err(der_err)? {
            Some(b) => b.content != [0],
            None => false,
        };
        let value = e
            .expect(tag::OCTET_STRING, "expected extnValue")
            .map_err(der_err)?;
        match oid.content {
            OID_REASON_CODE => {
                let code = Reader::new(value.content)
                    .expect(tag::ENUMERATED, "reasonCode is not an ENUMERATED")
                    .map_err(der_err)?;
                match code.content {
                    [c] => reason = Some(*c),
                    _ => return Err(der_err(DerError("reasonCode out of range"))),
                }
            }
            OID_CERTIFICATE_ISSUER => {
                return Err(ParseError::Unsupported {
                    index,
                    what: "indirect CRL entries (certificateIssuer)".into(),
                });
            }
            OID_INVALIDITY_DATE | OID_HOLD_INSTRUCTION => {}
            other if critical => {
                return Err(ParseError::Unsupported {
                    index,
                    what: format!("critical entry extension {}", oid_text(other)),
                });
            }
            _ => {}
        }
    }
    Ok(reason)
}

fn oid_text(content: &[u8]) -> String {
    x509_parser::asn1_rs::Oid::new(Cow::Borrowed(content)).to_id_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_testkit::crl::RevokedSpec;
    use postern_testkit::pki::Ca;

    #[test]
    fn parses_header_and_entries() {
        let ca = Ca::new("Parse CA");
        let crl = ca.crl(
            7,
            &[
                RevokedSpec::new(&[0x01, 0x02]).reason(rcgen::RevocationReason::KeyCompromise),
                RevokedSpec::new(&[0x7f; 20]),
            ],
            -60,
            3600,
        );
        let parts = split(crl.der().as_ref(), CrlFormat::Asn1).unwrap();
        assert_eq!(parts.len(), 1);
        let p = ParsedCrl::parse(&parts[0], 0).unwrap();
        assert_eq!(p.issuer, "CN=Parse CA");
        assert_eq!(p.crl_number, Some(BigUint::from(7u32)));
        assert!(p.next_update.unwrap() > p.this_update);
        assert!(p.authority_key_id.is_some());
        let entries: Vec<_> = p.entries().collect::<Result<_, _>>().unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].serial, &[0x01, 0x02]);
        assert_eq!(entries[0].reason, Some(1));
        assert!(entries[0].revocation_time().is_some());
        assert_eq!(entries[1].serial, &[0x7f; 20]);
        assert_eq!(entries[1].reason, None);
    }

    #[test]
    fn pem_with_several_crls_and_format_mismatches() {
        let a = Ca::new("A");
        let b = Ca::new("B");
        let pem = format!(
            "{}{}",
            a.crl(1, &[], -60, 3600).pem().unwrap(),
            b.crl(1, &[], -60, 3600).pem().unwrap()
        );
        let parts = split(pem.as_bytes(), CrlFormat::Pem).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(ParsedCrl::parse(&parts[1], 1).unwrap().issuer, "CN=B");
        assert_eq!(
            split(pem.as_bytes(), CrlFormat::Asn1).unwrap_err(),
            ParseError::PemGivenAsDer
        );
        let der = a.crl(1, &[], -60, 3600).der().to_vec();
        assert_eq!(
            split(&der, CrlFormat::Pem).unwrap_err(),
            ParseError::NoPemBlock
        );
    }

    #[test]
    fn refuses_garbage_and_truncation() {
        let ca = Ca::new("T");
        let der = ca
            .crl(1, &[RevokedSpec::new(&[5])], -60, 3600)
            .der()
            .to_vec();
        for cut in [1, 10, der.len() / 2, der.len() - 1] {
            let e = ParsedCrl::parse(&der[..cut], 0).unwrap_err();
            assert!(matches!(e, ParseError::Malformed { .. }), "{e}");
        }
        let mut trailing = der.clone();
        trailing.push(0);
        assert!(ParsedCrl::parse(&trailing, 0).is_err());
        assert!(ParsedCrl::parse(b"hello world", 0).is_err());
    }

    #[test]
    fn refuses_delta_and_indirect_crls() {
        let ca = Ca::new("Indirect");
        let crl = ca.crl_with(|p| {
            p.issuing_distribution_point = Some(rcgen::CrlIssuingDistributionPoint {
                distribution_point: rcgen::CrlDistributionPoint {
                    uris: vec!["http://crl.example/x.crl".into()],
                },
                scope: Some(rcgen::CrlScope::UserCertsOnly),
            });
        });
        let p = ParsedCrl::parse(crl.der(), 0).unwrap();
        assert!(p.scope.only_user_certs);
        assert_eq!(p.scope.name(), "userCertificates");
        assert!(p.scope.covers(false) && !p.scope.covers(true));
        assert_eq!(
            p.partition,
            Some(vec![DpName::new("URI:http://crl.example/x.crl")])
        );
        assert_eq!(reason_name(1), "keyCompromise");
        assert_eq!(oid_text(OID_DELTA_CRL_INDICATOR), "2.5.29.27");
    }
}
