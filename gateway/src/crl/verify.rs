//! Whether a parsed CRL may be believed: its issuer is a CA the gateway trusts, the CA's key
//! signed it, and it is not older than the copy in force.

use std::cmp::Ordering;

use sha2::{Digest, Sha256};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::num_bigint::BigUint;
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::parse::{ParseError, ParsedCrl};
use super::prehash::Prehashed;
use postern_config::{GatewayConfig, pem};
use x509_parser::error::X509Error;

/// Clock skew tolerated on `thisUpdate` before a CRL is considered to come from the future.
pub const MAX_CLOCK_SKEW_SECS: i64 = 300;

/// Why a fetched CRL was not put in force. The last good copy stays in force.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The file does not parse as CRLs of the configured format, or uses unsupported features.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// No trusted CA (listener `clientCaPem` or next hop `caPem`) has the CRL's issuer name.
    #[error(
        "issuer {issuer:?} is not a trusted CA: add its certificate to a listener's client CA bundle"
    )]
    UntrustedIssuer {
        /// The CRL's issuer.
        issuer: String,
    },
    /// The issuing CA's certificate has a key usage extension without `cRLSign`.
    #[error("CA {issuer:?} is not allowed to sign CRLs (its key usage lacks cRLSign)")]
    NotCrlSigner {
        /// The CRL's issuer.
        issuer: String,
    },
    /// No trusted CA with the issuer's name has the key that signed the CRL.
    #[error("signature of the CRL of {issuer:?} does not verify with any trusted key: {detail}")]
    BadSignature {
        /// The CRL's issuer.
        issuer: String,
        /// The verifier's last error.
        detail: String,
    },
    /// The CRL is older than the one in force (replay of an old file).
    #[error("CRL of {issuer:?} is older than the copy in force: {detail}")]
    Older {
        /// The CRL's issuer.
        issuer: String,
        /// Numbers or dates compared.
        detail: String,
    },
    /// `thisUpdate` is in the future beyond the tolerated clock skew.
    #[error("CRL of {issuer:?} has thisUpdate {this_update} in the future (check the clocks)")]
    FromTheFuture {
        /// The CRL's issuer.
        issuer: String,
        /// `thisUpdate`, RFC 3339.
        this_update: String,
    },
}

impl Refusal {
    /// A short stable code, used as a metric label and in status.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Parse(ParseError::Unsupported { .. }) => "unsupported",
            Refusal::Parse(_) => "parse_error",
            Refusal::UntrustedIssuer { .. } => "untrusted_issuer",
            Refusal::NotCrlSigner { .. } => "not_crl_signer",
            Refusal::BadSignature { .. } => "bad_signature",
            Refusal::Older { .. } => "older_than_in_force",
            Refusal::FromTheFuture { .. } => "future_this_update",
        }
    }
}

/// A CA whose CRLs are accepted.
#[derive(Clone, Debug)]
pub struct TrustedCa {
    /// Raw DER of the subject Name (matched byte for byte against CRL issuers).
    pub subject_der: Vec<u8>,
    /// Subject as text.
    pub subject: String,
    /// Raw DER of the SubjectPublicKeyInfo.
    spki_der: Vec<u8>,
    /// Subject Key Identifier, when the certificate has one.
    pub key_id: Option<Vec<u8>>,
    /// False when a key usage extension is present without `cRLSign`.
    pub can_sign_crls: bool,
    /// SHA-256 of the SubjectPublicKeyInfo, hex: identifies the key across reloads.
    pub key_fingerprint: String,
    /// Where the certificate came from (for messages), e.g. `listener submission`.
    pub origin: String,
}

/// The CAs whose CRLs the gateway accepts.
#[derive(Clone, Debug, Default)]
pub struct TrustStore {
    cas: Vec<TrustedCa>,
}

/// The CA that verified a CRL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signer {
    /// Its key fingerprint ([`TrustedCa::key_fingerprint`]).
    pub key_fingerprint: String,
    /// Its Subject Key Identifier.
    pub key_id: Option<Vec<u8>>,
    /// Where it came from.
    pub origin: String,
}

impl TrustStore {
    /// Every listener's `clientCaPem` and every next hop's `caPem` (the anchors of the
    /// inbound and outbound TLS checks). Unusable PEM is skipped: `validate` reports it.
    pub fn from_config(config: &GatewayConfig) -> Self {
        let mut store = TrustStore::default();
        for (name, l) in &config.listeners {
            if let Some(pem) = l.tls.as_ref().and_then(|t| t.client_ca_pem.as_deref()) {
                let _ = store.add_pem(pem, &format!("listener {name} clientCaPem"));
            }
            if let Some(pem) = &l.next_hop.ca_pem {
                let _ = store.add_pem(pem, &format!("listener {name} nextHop caPem"));
            }
        }
        store
    }

    /// The trusted CAs.
    pub fn cas(&self) -> &[TrustedCa] {
        &self.cas
    }

    /// Add every certificate of a PEM bundle; returns how many were added.
    pub fn add_pem(&mut self, pem_text: &str, origin: &str) -> Result<usize, pem::PemError> {
        let certs = pem::certificates(pem_text)?;
        let mut added = 0;
        for der in &certs {
            if self.add_der(der, origin).is_ok() {
                added += 1;
            }
        }
        Ok(added)
    }

    /// Add one DER certificate.
    pub fn add_der(&mut self, der: &[u8], origin: &str) -> Result<(), String> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
        let spki_der = cert.public_key().raw.to_vec();
        let key_fingerprint = hex::encode(Sha256::digest(&spki_der));
        if self.cas.iter().any(|c| {
            c.key_fingerprint == key_fingerprint && c.subject_der == cert.subject().as_raw()
        }) {
            return Ok(());
        }
        let key_id = cert
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
                _ => None,
            });
        let can_sign_crls = match cert.key_usage() {
            Ok(Some(ku)) => ku.value.crl_sign(),
            _ => true,
        };
        self.cas.push(TrustedCa {
            subject_der: cert.subject().as_raw().to_vec(),
            subject: cert.subject().to_string(),
            spki_der,
            key_id,
            can_sign_crls,
            key_fingerprint,
            origin: origin.to_owned(),
        });
        Ok(())
    }

    /// Number of CAs.
    pub fn len(&self) -> usize {
        self.cas.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.cas.is_empty()
    }

    /// Whether a CA with this subject and key is still trusted (used after a reload).
    pub fn still_trusts(&self, subject_der: &[u8], key_fingerprint: &str) -> bool {
        self.cas
            .iter()
            .any(|c| c.subject_der == subject_der && c.key_fingerprint == key_fingerprint)
    }

    /// Check the CRL's signature against the trusted CAs with its issuer's name, those whose
    /// key id matches the CRL's Authority Key Identifier first.
    pub fn verify(&self, crl: &ParsedCrl<'_>) -> Result<Signer, Refusal> {
        self.verify_with(crl, |spki| {
            x509_parser::verify::verify_signature(
                spki,
                &crl.signature_algorithm,
                &crl.signature_value,
                crl.tbs,
            )
        })
    }

    /// [`TrustStore::verify`] for a CRL whose signed part was hashed as it downloaded
    /// (`crl` is then its skeleton: [`super::stream`]).
    pub(crate) fn verify_prehashed(
        &self,
        crl: &ParsedCrl<'_>,
        pre: &Prehashed,
    ) -> Result<Signer, Refusal> {
        self.verify_with(crl, |spki| {
            super::prehash::verify(spki, &crl.signature_algorithm, &crl.signature_value, pre)
        })
    }

    fn verify_with(
        &self,
        crl: &ParsedCrl<'_>,
        check: impl Fn(&SubjectPublicKeyInfo<'_>) -> Result<(), X509Error>,
    ) -> Result<Signer, Refusal> {
        let mut candidates: Vec<&TrustedCa> = self
            .cas
            .iter()
            .filter(|c| c.subject_der == crl.issuer_der)
            .collect();
        if candidates.is_empty() {
            return Err(Refusal::UntrustedIssuer {
                issuer: crl.issuer.clone(),
            });
        }
        if let Some(aki) = crl.authority_key_id {
            candidates.sort_by_key(|c| c.key_id.as_deref() != Some(aki));
        }
        let mut detail = String::new();
        let mut refused_usage = false;
        for ca in candidates {
            let spki = match SubjectPublicKeyInfo::from_der(&ca.spki_der) {
                Ok((_, spki)) => spki,
                Err(e) => {
                    detail = format!("CA key of {}: {e}", ca.origin);
                    continue;
                }
            };
            match check(&spki) {
                Ok(()) if !ca.can_sign_crls => refused_usage = true,
                Ok(()) => {
                    return Ok(Signer {
                        key_fingerprint: ca.key_fingerprint.clone(),
                        key_id: ca.key_id.clone(),
                        origin: ca.origin.clone(),
                    });
                }
                Err(e) => detail = e.to_string(),
            }
        }
        if refused_usage {
            return Err(Refusal::NotCrlSigner {
                issuer: crl.issuer.clone(),
            });
        }
        Err(Refusal::BadSignature {
            issuer: crl.issuer.clone(),
            detail,
        })
    }
}

/// How a candidate CRL compares with the copy in force for the same issuer and key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// Newer: replace.
    Newer,
    /// The same CRL (same number, or same `thisUpdate` without numbers): keep the one in force.
    Same,
    /// Older: refuse, with what was compared.
    Older(String),
}

/// Compare by CRL number when both have one, else by `thisUpdate`.
pub fn freshness(
    new_number: Option<&BigUint>,
    new_this_update: i64,
    old_number: Option<&BigUint>,
    old_this_update: i64,
) -> Freshness {
    if let (Some(n), Some(o)) = (new_number, old_number) {
        return match n.cmp(o) {
            Ordering::Greater => Freshness::Newer,
            Ordering::Equal => Freshness::Same,
            Ordering::Less => {
                Freshness::Older(format!("CRL number {n} is lower than {o} in force"))
            }
        };
    }
    match new_this_update.cmp(&old_this_update) {
        Ordering::Greater => Freshness::Newer,
        Ordering::Equal => Freshness::Same,
        Ordering::Less => Freshness::Older(format!(
            "thisUpdate {} is earlier than {} in force",
            super::rfc3339(new_this_update),
            super::rfc3339(old_this_update)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crl::parse::{ParsedCrl, split};
    use postern_config::CrlFormat;
    use postern_testkit::pki::Ca;

    fn trust(cas: &[&Ca]) -> TrustStore {
        let mut t = TrustStore::default();
        for ca in cas {
            assert_eq!(t.add_pem(&ca.cert_pem(), "test").unwrap(), 1);
        }
        t
    }

    #[test]
    fn accepts_a_crl_signed_by_a_trusted_ca() {
        let ca = Ca::new("Good CA");
        let other = Ca::new("Other CA");
        let der = ca.crl(1, &[], -60, 3600).der().to_vec();
        let parts = split(&der, CrlFormat::Asn1).unwrap();
        let crl = ParsedCrl::parse(&parts[0], 0).unwrap();
        let signer = trust(&[&other, &ca]).verify(&crl).unwrap();
        assert_eq!(signer.key_id.as_deref(), Some(ca.key_id().as_slice()));
    }

    #[test]
    fn refuses_unknown_issuer_wrong_key_and_non_signer() {
        let ca = Ca::new("Real CA");
        let impostor = ca.rekeyed();
        let der = impostor.crl(1, &[], -60, 3600).der().to_vec();
        let crl = ParsedCrl::parse(&der, 0).unwrap();
        let e = trust(&[&ca]).verify(&crl).unwrap_err();
        assert_eq!(e.code(), "bad_signature", "{e}");
        assert!(e.to_string().contains("Real CA"), "{e}");

        let e = trust(&[&Ca::new("Someone else")]).verify(&crl).unwrap_err();
        assert_eq!(e.code(), "untrusted_issuer", "{e}");

        // Same name, both keys trusted (a re-keyed CA): the right one verifies.
        assert!(trust(&[&ca, &impostor]).verify(&crl).is_ok());

        let no_crl_sign =
            Ca::with_usages("No CRL signing", vec![rcgen::KeyUsagePurpose::KeyCertSign]);
        // rcgen refuses to sign a CRL with such an issuer; use the raw writer.
        let der = no_crl_sign.raw_crl(&[], &[]);
        let crl = ParsedCrl::parse(&der, 0).unwrap();
        let e = trust(&[&no_crl_sign]).verify(&crl).unwrap_err();
        assert_eq!(e.code(), "not_crl_signer", "{e}");
    }

    #[test]
    fn tampered_content_fails_the_signature() {
        let ca = Ca::new("Tamper CA");
        let mut der = ca
            .crl(
                1,
                &[postern_testkit::crl::RevokedSpec::new(&[0x42])],
                -60,
                3600,
            )
            .der()
            .to_vec();
        let pos = der
            .windows(3)
            .position(|w| w == [0x02, 0x01, 0x42])
            .unwrap();
        der[pos + 2] = 0x43;
        let crl = ParsedCrl::parse(&der, 0).unwrap();
        assert_eq!(
            trust(&[&ca]).verify(&crl).unwrap_err().code(),
            "bad_signature"
        );
    }

    #[test]
    fn freshness_by_number_then_date() {
        let n = |v: u32| BigUint::from(v);
        assert_eq!(
            freshness(Some(&n(5)), 0, Some(&n(4)), 100),
            Freshness::Newer
        );
        assert_eq!(freshness(Some(&n(5)), 0, Some(&n(5)), 100), Freshness::Same);
        assert!(matches!(
            freshness(Some(&n(3)), 200, Some(&n(4)), 100),
            Freshness::Older(d) if d.contains("lower")
        ));
        assert_eq!(freshness(None, 200, Some(&n(4)), 100), Freshness::Newer);
        assert_eq!(freshness(None, 100, None, 100), Freshness::Same);
        assert!(matches!(
            freshness(Some(&n(9)), 50, None, 100),
            Freshness::Older(_)
        ));
    }
}
