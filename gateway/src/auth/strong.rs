//! Active Directory's certificate strong-mapping strings (`altSecurityIdentities`, KB5014754)
//! and the EDIPI, built from a certificate exactly as Windows stores and compares them:
//!
//! - `X509:<I>issuer<SR>serial` (`{altSecIssuerSerial}`): the issuer DN in the
//!   certificate's own RDN order (most general first: `C=US,O=U.S. Government,OU=DoD,...`,
//!   `DC=com,DC=contoso,CN=CONTOSO-DC-CA`), as Windows' `CertNameToStr` writes it, and the
//!   serial number's bytes in reversed order (CryptoAPI keeps integers little-endian), upper-case
//!   hex, every byte kept (a leading `00` of the DER integer ends up last);
//! - `X509:<SKI>hex` (`{altSecSki}`): the subjectKeyIdentifier extension, lower-case hex;
//! - `X509:<SHA1-PUKEY>hex` (`{altSecSha1PublicKey}`): SHA-1 of the subjectPublicKey bits
//!   (the raw key, without the BIT STRING's tag, length and unused-bits octet), lower-case.
//!
//! Active Directory compares `altSecurityIdentities` case-insensitively; the case chosen is
//! Microsoft's own examples'. A directory other than AD should store the values with a
//! case-insensitive matching rule too.

use x509_parser::der_parser::asn1_rs::ToDer;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::{AttributeTypeAndValue, X509Certificate, X509Name};

/// The EDIPI of a UPN: the digits before `@` (`1234567890@mil` → `1234567890`). `None`
/// when the part before `@` is not all ASCII digits (then the UPN is not an EDIPI UPN).
pub(crate) fn edipi(upn: &str) -> Option<String> {
    let (local, _domain) = upn.split_once('@')?;
    (!local.is_empty() && local.bytes().all(|b| b.is_ascii_digit())).then(|| local.to_owned())
}

/// `X509:<I>issuer<SR>serial-reversed`.
pub(crate) fn issuer_serial(cert: &X509Certificate<'_>) -> String {
    let mut serial = cert.raw_serial().to_vec();
    serial.reverse();
    format!(
        "X509:<I>{}<SR>{}",
        windows_name(cert.issuer()),
        hex::encode_upper(serial)
    )
}

/// `X509:<SKI>hex`, or `None` without a subjectKeyIdentifier extension.
pub(crate) fn ski(cert: &X509Certificate<'_>) -> Option<String> {
    cert.extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => {
                Some(format!("X509:<SKI>{}", hex::encode(id.0)))
            }
            _ => None,
        })
}

/// `X509:<SHA1-PUKEY>hex`.
pub(crate) fn sha1_public_key(cert: &X509Certificate<'_>) -> String {
    let key = &cert.public_key().subject_public_key.data;
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, key);
    format!("X509:<SHA1-PUKEY>{}", hex::encode(digest.as_ref()))
}

/// A name as Windows' `CertNameToStr` (`CERT_X500_NAME_STR`) writes it: RDNs in the
/// certificate's order joined by `,`, the attributes of a multi-valued RDN by `+`; Windows'
/// short names (`S` for stateOrProvinceName, `E` for emailAddress), `OID.n.n=` for others;
/// a value that holds `,` `+` `=` `"` `<` `>` `#` `;`, a line break, or leading or trailing
/// space is quoted, with `"` doubled inside.
pub(crate) fn windows_name(name: &X509Name<'_>) -> String {
    name.iter()
        .map(|rdn| {
            rdn.iter()
                .map(windows_attribute)
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn windows_attribute(attr: &AttributeTypeAndValue<'_>) -> String {
    let oid = attr.attr_type().to_id_string();
    let key = match windows_key(&oid) {
        Some(k) => k.to_owned(),
        None => format!("OID.{oid}"),
    };
    let value = match super::dn::text(attr.attr_value()) {
        Some(text) => quote(&text),
        // Not a character string: Windows writes the DER as hex.
        None => format!(
            "#{}",
            hex::encode_upper(attr.attr_value().to_der_vec().unwrap_or_default())
        ),
    };
    format!("{key}={value}")
}

fn windows_key(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.7" => "L",
        "2.5.4.8" => "S",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.6" => "C",
        "2.5.4.9" => "STREET",
        "2.5.4.12" => "T",
        "2.5.4.42" => "G",
        "2.5.4.43" => "I",
        "2.5.4.4" => "SN",
        "2.5.4.5" => "SERIALNUMBER",
        "0.9.2342.19200300.100.1.25" => "DC",
        "1.2.840.113549.1.9.1" => "E",
        _ => return None,
    })
}

fn quote(value: &str) -> String {
    let special = value.is_empty()
        || value.starts_with([' ', '\t'])
        || value.ends_with([' ', '\t'])
        || value.chars().any(|c| {
            matches!(
                c,
                ',' | '+' | '=' | '"' | '<' | '>' | '#' | ';' | '\r' | '\n'
            )
        });
    if special {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SerialNumber};
    use x509_parser::prelude::FromDer;

    #[test]
    fn edipi_is_the_digits_before_the_at() {
        assert_eq!(edipi("1234567890@mil").as_deref(), Some("1234567890"));
        assert_eq!(edipi("john.doe@example.org"), None);
        assert_eq!(edipi("@mil"), None);
        assert_eq!(edipi("1234567890"), None);
    }

    #[test]
    fn microsofts_example_issuer_and_serial() {
        // KB5014754's example serial 2B0000000011AC0000000012, under an issuer printed by
        // LDAP as CN=CONTOSO-DC-CA,DC=contoso (rcgen keeps one attribute per type, so the
        // two-DC name of the example is in the openssl-made end-to-end test).
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CustomDnType(vec![0, 9, 2342, 19200300, 100, 1, 25]),
            "contoso",
        );
        dn.push(DnType::CommonName, "CONTOSO-DC-CA");
        ca.distinguished_name = dn;
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
        leaf.serial_number = Some(SerialNumber::from_slice(&[
            0x2B, 0, 0, 0, 0, 0x11, 0xAC, 0, 0, 0, 0, 0x12,
        ]));
        let key = KeyPair::generate().unwrap();
        let der = leaf.signed_by(&key, &issuer).unwrap().der().to_vec();
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        assert_eq!(
            issuer_serial(&cert),
            "X509:<I>DC=contoso,CN=CONTOSO-DC-CA<SR>1200000000AC11000000002B"
        );
        drop(ca_cert);
        // rcgen writes no SKI into a leaf: no value (the openssl-made test has one).
        assert_eq!(ski(&cert), None);
        let sha1 = sha1_public_key(&cert);
        assert_eq!(sha1.len(), "X509:<SHA1-PUKEY>".len() + 40, "{sha1}");
        assert_eq!(
            sha1,
            sha1.to_lowercase()
                .replace("x509:<sha1-pukey>", "X509:<SHA1-PUKEY>")
        );
    }

    #[test]
    fn windows_quotes_special_values() {
        assert_eq!(quote("U.S. Government"), "U.S. Government");
        assert_eq!(quote("Acme, Inc."), "\"Acme, Inc.\"");
        assert_eq!(quote("say \"hi\"=x"), "\"say \"\"hi\"\"=x\"");
        assert_eq!(quote(" lead"), "\" lead\"");
    }
}
