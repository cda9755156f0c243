//! Certificate-type gating: which certificates of a card may be mapped to a user at all
//! (`SmtpAuthProfile.spec.certificate.requiredPolicies` / `requiredEkus`).
//!
//! A Common Access Card carries several certificates of one person (PIV authentication,
//! email signing, email encryption) that a UPN or EDIPI mapping cannot tell apart; the
//! policy OIDs and extended key usages can. This module holds the grammar (dotted OIDs,
//! the EKU names) and the pure check, so validation, the CRDs' CEL rules, the gateway and
//! `postern explain` all decide the same way.

/// EKU names accepted besides dotted OIDs, with their OIDs.
pub const EKU_NAMES: [(&str, &str); 5] = [
    ("clientAuth", "1.3.6.1.5.5.7.3.2"),
    ("smartcardLogon", "1.3.6.1.4.1.311.20.2.2"),
    ("emailProtection", "1.3.6.1.5.5.7.3.4"),
    ("serverAuth", "1.3.6.1.5.5.7.3.1"),
    ("pkinitClientAuth", "1.3.6.1.5.2.3.4"),
];

/// An RE2/Rust regular expression for a dotted OID (what [`is_oid`] accepts).
pub const OID_PATTERN: &str = r"^[0-2](\.(0|[1-9][0-9]*))+$";

/// Whether `text` is a dotted OID: first arc 0–2, then at least one more arc, decimal
/// numbers without leading zeros.
pub fn is_oid(text: &str) -> bool {
    let mut arcs = text.split('.');
    let first_ok = matches!(arcs.next(), Some("0" | "1" | "2"));
    let mut rest = 0;
    let rest_ok = arcs.all(|a| {
        rest += 1;
        !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()) && (a == "0" || !a.starts_with('0'))
    });
    first_ok && rest_ok && rest >= 1
}

/// The OID of an EKU written as a name or an OID; `None` for anything else.
pub fn eku_oid(text: &str) -> Option<String> {
    if let Some((_, oid)) = EKU_NAMES.iter().find(|(name, _)| *name == text) {
        return Some((*oid).to_owned());
    }
    is_oid(text).then(|| text.to_owned())
}

/// The display name of an EKU OID (its name when it has one).
pub fn eku_name(oid: &str) -> &str {
    EKU_NAMES
        .iter()
        .find(|(_, o)| *o == oid)
        .map(|(name, _)| *name)
        .unwrap_or(oid)
}

/// Why a certificate is not of a type the profile maps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TypeRefusal {
    /// None of the required policies is present.
    MissingPolicy {
        /// The policies required (any of).
        required: Vec<String>,
        /// The certificate's policies.
        present: Vec<String>,
    },
    /// A required EKU is absent (or the certificate has no EKU extension).
    MissingEku {
        /// The required EKUs the certificate lacks (OIDs).
        missing: Vec<String>,
        /// The certificate's EKUs; `None` when it has no EKU extension.
        present: Option<Vec<String>>,
    },
}

impl TypeRefusal {
    /// The metric/decision label: `policy` or `eku`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::MissingPolicy { .. } => "policy",
            Self::MissingEku { .. } => "eku",
        }
    }
}

impl std::fmt::Display for TypeRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::MissingPolicy { required, present } => write!(
                f,
                "certificate type refused: none of the required policies {} is present (the certificate has {})",
                required.join(", "),
                if present.is_empty() {
                    "no policies".to_owned()
                } else {
                    present.join(", ")
                }
            ),
            Self::MissingEku { missing, present } => write!(
                f,
                "certificate type refused: missing extended key usage {} (the certificate has {})",
                missing
                    .iter()
                    .map(|o| format!("{} ({o})", eku_name(o)))
                    .collect::<Vec<_>>()
                    .join(", "),
                match present {
                    None => "no extendedKeyUsage extension".to_owned(),
                    Some(p) => p
                        .iter()
                        .map(|o| eku_name(o).to_owned())
                        .collect::<Vec<_>>()
                        .join(", "),
                }
            ),
        }
    }
}

/// Check a certificate's `policies` and `ekus` (`None`: no EKU extension) against a
/// profile's requirements. Policies: any one of `required_policies` (an empty list
/// requires nothing). EKUs: every one of `required_ekus`, named or dotted; a certificate
/// without the EKU extension (RFC 5280: "any purpose") or with only anyExtendedKeyUsage
/// does not satisfy an explicit requirement — the point is to tell a card's
/// certificates apart. Unparsable requirements never match (validation refuses them).
pub fn check(
    required_policies: &[String],
    required_ekus: &[String],
    policies: &[String],
    ekus: Option<&[String]>,
) -> Result<(), TypeRefusal> {
    if !required_policies.is_empty() && !required_policies.iter().any(|r| policies.contains(r)) {
        return Err(TypeRefusal::MissingPolicy {
            required: required_policies.to_vec(),
            present: policies.to_vec(),
        });
    }
    let missing: Vec<String> = required_ekus
        .iter()
        .map(|r| eku_oid(r).unwrap_or_else(|| r.clone()))
        .filter(|oid| !ekus.is_some_and(|e| e.contains(oid)))
        .collect();
    if !missing.is_empty() {
        return Err(TypeRefusal::MissingEku {
            missing,
            present: ekus.map(<[String]>::to_vec),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn oids_and_names() {
        assert!(is_oid("2.16.840.1.101.2.1.11.42"));
        assert!(is_oid("1.3"));
        for bad in ["", "1", "3.1", "1..2", "1.02", "1.2.", "a.b", "1.2 "] {
            assert!(!is_oid(bad), "{bad:?}");
        }
        assert_eq!(
            eku_oid("smartcardLogon").as_deref(),
            Some("1.3.6.1.4.1.311.20.2.2")
        );
        assert_eq!(
            eku_oid("1.3.6.1.5.5.7.3.2").as_deref(),
            Some("1.3.6.1.5.5.7.3.2")
        );
        assert_eq!(eku_oid("SmartCardLogon"), None);
    }

    #[test]
    fn gating() {
        let piv = (
            v(&["2.16.840.1.101.2.1.11.42"]),
            v(&["1.3.6.1.5.5.7.3.2", "1.3.6.1.4.1.311.20.2.2"]),
        );
        let sign = (
            v(&["2.16.840.1.101.2.1.11.39"]),
            v(&["1.3.6.1.5.5.7.3.4", "1.3.6.1.5.5.7.3.2"]),
        );
        let pol = v(&["2.16.840.1.101.2.1.11.42", "2.16.840.1.101.2.1.11.20"]);
        let eku = v(&["clientAuth", "smartcardLogon"]);
        assert_eq!(check(&pol, &eku, &piv.0, Some(&piv.1)), Ok(()));
        let e = check(&pol, &[], &sign.0, Some(&sign.1)).unwrap_err();
        assert_eq!(e.label(), "policy");
        assert!(e.to_string().contains("2.16.840.1.101.2.1.11.42"), "{e}");
        let e = check(&[], &eku, &sign.0, Some(&sign.1)).unwrap_err();
        assert!(
            e.to_string()
                .contains("smartcardLogon (1.3.6.1.4.1.311.20.2.2)"),
            "{e}"
        );
        assert_eq!(
            check(&[], &eku, &[], None).unwrap_err(),
            TypeRefusal::MissingEku {
                missing: v(&["1.3.6.1.5.5.7.3.2", "1.3.6.1.4.1.311.20.2.2"]),
                present: None
            }
        );
        assert_eq!(check(&[], &[], &[], None), Ok(()));
    }
}

/// What a certificate says about its type: the input of [`check`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Its certificate policy OIDs.
    pub policies: Vec<String>,
    /// Its extended key usage OIDs; `None` when it has no EKU extension.
    pub ekus: Option<Vec<String>>,
}

/// A certificate's policy or EKU extension is present but cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(String);

/// The certificate's policy OIDs and its extended key usages (`None`: no EKU extension).
/// An EKU or policy extension that is present but unreadable is an error: gating must
/// never mistake "unreadable" for "absent".
pub fn usage(cert: &x509_parser::certificate::X509Certificate<'_>) -> Result<Usage, UsageError> {
    let mut policies = Vec::new();
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            x509_parser::extensions::ParsedExtension::CertificatePolicies(list) => {
                policies.extend(list.iter().map(|p| p.policy_id.to_id_string()));
            }
            x509_parser::extensions::ParsedExtension::UnsupportedExtension { .. }
            | x509_parser::extensions::ParsedExtension::ParseError { .. }
                if ext.oid.to_id_string() == "2.5.29.32" =>
            {
                return Err(UsageError(
                    "the certificatePolicies extension cannot be read".into(),
                ));
            }
            _ => {}
        }
    }
    let ekus = cert
        .extended_key_usage()
        .map_err(|e| UsageError(format!("unreadable extendedKeyUsage: {e}")))?
        .map(|eku| {
            let eku = eku.value;
            let mut out = Vec::new();
            for (present, oid) in [
                (eku.any, "2.5.29.37.0"),
                (eku.server_auth, "1.3.6.1.5.5.7.3.1"),
                (eku.client_auth, "1.3.6.1.5.5.7.3.2"),
                (eku.code_signing, "1.3.6.1.5.5.7.3.3"),
                (eku.email_protection, "1.3.6.1.5.5.7.3.4"),
                (eku.time_stamping, "1.3.6.1.5.5.7.3.8"),
                (eku.ocsp_signing, "1.3.6.1.5.5.7.3.9"),
            ] {
                if present {
                    out.push(oid.to_owned());
                }
            }
            out.extend(eku.other.iter().map(|o| o.to_id_string()));
            out
        });
    Ok(Usage { policies, ekus })
}
