//! Distinguished names as RFC 4514 strings, the form the `{dn}` and `{issuer}` filter
//! placeholders substitute (and the form `openssl x509 -nameopt RFC2253` and LDAP servers
//! print).
//!
//! - RDNs from the last to the first (RFC 4514 §2.1: the reverse of the certificate's
//!   order), joined by `,`; the attributes of a multi-valued RDN joined by `+`, also in
//!   reverse (RFC 4514 leaves their order open; reversing them too gives exactly what
//!   `openssl x509 -noout -subject -nameopt RFC2253` prints, the string operators copy
//!   into a directory);
//! - the short names of RFC 4514 §3 (`CN`, `L`, `ST`, `O`, `OU`, `C`, `STREET`, `DC`,
//!   `UID`); any other type as its dotted OID;
//! - a value as its string, escaped per §2.4 — except that a dotted-OID type, or a value
//!   that is not a character string, is written `#` + the hex of its DER (§2.4: the
//!   dotted form always takes the `#` form).

use x509_parser::der_parser::asn1_rs::{Any, Tag, ToDer};
use x509_parser::prelude::{AttributeTypeAndValue, X509Name};

/// The RFC 4514 string of a name.
pub(crate) fn rfc4514(name: &X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter()
        .map(|rdn| {
            let mut attributes: Vec<String> = rdn.iter().map(attribute).collect();
            attributes.reverse();
            attributes.join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

fn attribute(attr: &AttributeTypeAndValue<'_>) -> String {
    let oid = attr.attr_type().to_id_string();
    match (short_name(&oid), text(attr.attr_value())) {
        (Some(name), Some(value)) => format!("{name}={}", escape_value(&value)),
        (Some(name), None) => format!("{name}={}", hex_form(attr.attr_value())),
        (None, _) => format!("{oid}={}", hex_form(attr.attr_value())),
    }
}

/// RFC 4514 §3's short names (the ones every implementation must recognise).
fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.6" => "C",
        "2.5.4.9" => "STREET",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

/// The value of a character-string type, decoded; `None` for any other type or an
/// undecodable string.
pub(crate) fn text(value: &Any<'_>) -> Option<String> {
    let data = value.data;
    match value.tag() {
        Tag::Utf8String
        | Tag::PrintableString
        | Tag::Ia5String
        | Tag::NumericString
        | Tag::VisibleString => std::str::from_utf8(data).ok().map(str::to_owned),
        // TeletexString: read as Latin-1, as OpenSSL prints it.
        Tag::T61String => Some(data.iter().map(|b| char::from(*b)).collect()),
        Tag::BmpString => {
            if !data.len().is_multiple_of(2) {
                return None;
            }
            let units = data.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]]));
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .ok()
        }
        Tag::UniversalString => {
            if !data.len().is_multiple_of(4) {
                return None;
            }
            data.chunks(4)
                .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                .collect()
        }
        _ => None,
    }
}

/// `#` + lower-case hex of the value's DER (tag, length and contents).
fn hex_form(value: &Any<'_>) -> String {
    match value.to_der_vec() {
        Ok(der) => format!("#{}", hex::encode(der)),
        // Cannot happen for a value that was just parsed; keep the contents readable.
        Err(_) => format!("#{}", hex::encode(value.data)),
    }
}

/// Escape an attribute value per RFC 4514 §2.4: `"` `+` `,` `;` `<` `>` `\` take a
/// backslash, as do a leading `#` or space and a trailing space; NUL becomes `\00`.
pub(crate) fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 4);
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\0' => out.push_str("\\00"),
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, DnValue, KeyPair};
    use x509_parser::prelude::{FromDer, X509Certificate};

    fn subject_of(dn: DistinguishedName) -> String {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = dn;
        let cert = p.self_signed(&KeyPair::generate().unwrap()).unwrap();
        let (_, parsed) = X509Certificate::from_der(cert.der()).unwrap();
        rfc4514(parsed.subject())
    }

    #[test]
    fn escapes_the_special_characters() {
        assert_eq!(escape_value("plain"), "plain");
        assert_eq!(escape_value("Doe, John"), "Doe\\, John");
        assert_eq!(escape_value(r#"a"b+c;d<e>f\g"#), r#"a\"b\+c\;d\<e\>f\\g"#);
        assert_eq!(escape_value("#1"), "\\#1");
        assert_eq!(escape_value("a#1"), "a#1");
        assert_eq!(escape_value(" lead"), "\\ lead");
        assert_eq!(escape_value("trail "), "trail\\ ");
        assert_eq!(escape_value(" "), "\\ ");
        assert_eq!(escape_value("in side"), "in side");
        assert_eq!(escape_value("nul\0x"), "nul\\00x");
        assert_eq!(escape_value("Zoë=1"), "Zoë=1");
        assert_eq!(escape_value(""), "");
    }

    fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
        assert!(body.len() < 128);
        let mut v = vec![tag, body.len() as u8];
        v.extend_from_slice(body);
        v
    }

    /// One AttributeTypeAndValue with a UTF8String value; `oid` is the DER contents.
    fn atv(oid: &[u8], val: &str) -> Vec<u8> {
        tlv(0x30, &[tlv(0x06, oid), tlv(0x0c, val.as_bytes())].concat())
    }

    /// A Name from RDNs (each a list of AttributeTypeAndValues), in certificate order.
    fn name(rdns: &[&[Vec<u8>]]) -> String {
        let der = tlv(
            0x30,
            &rdns
                .iter()
                .map(|rdn| tlv(0x31, &rdn.concat()))
                .collect::<Vec<_>>()
                .concat(),
        );
        let (rest, parsed) = X509Name::from_der(&der).unwrap();
        assert!(rest.is_empty());
        rfc4514(&parsed)
    }

    const CN: &[u8] = &[0x55, 0x04, 0x03];
    const OU: &[u8] = &[0x55, 0x04, 0x0b];
    const O: &[u8] = &[0x55, 0x04, 0x0a];
    const C: &[u8] = &[0x55, 0x04, 0x06];
    const DC: &[u8] = &[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19];
    const UID: &[u8] = &[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01];

    #[test]
    fn reverses_the_rdns_and_uses_the_short_names() {
        assert_eq!(
            name(&[
                &[atv(C, "US")],
                &[atv(O, "U.S. Government")],
                &[atv(OU, "DoD")],
                &[atv(OU, "PKI")],
                &[atv(CN, "DOE.JOHN.1234567890")],
            ]),
            "CN=DOE.JOHN.1234567890,OU=PKI,OU=DoD,O=U.S. Government,C=US"
        );
        assert_eq!(
            name(&[
                &[atv(DC, "org")],
                &[atv(DC, "example")],
                &[atv(UID, "jdoe")]
            ]),
            "UID=jdoe,DC=example,DC=org"
        );

        let mut dn = DistinguishedName::new();
        dn.push(DnType::StateOrProvinceName, "Bavaria");
        dn.push(DnType::LocalityName, "München");
        dn.push(DnType::CustomDnType(vec![2, 5, 4, 9]), "1 Main St");
        assert_eq!(subject_of(dn), "STREET=1 Main St,L=München,ST=Bavaria");
    }

    #[test]
    fn tricky_values_are_escaped() {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, " Acme, Inc. ");
        dn.push(DnType::CommonName, "#1 \"Doe\"+<x>;\\");
        assert_eq!(
            subject_of(dn),
            r#"CN=\#1 \"Doe\"\+\<x\>\;\\,O=\ Acme\, Inc.\ "#
        );
    }

    #[test]
    fn string_types_are_decoded_and_others_take_the_hex_form() {
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CountryName,
            DnValue::PrintableString("DE".try_into().unwrap()),
        );
        dn.push(
            DnType::OrganizationName,
            DnValue::BmpString("Zoë".try_into().unwrap()),
        );
        dn.push(
            DnType::OrganizationalUnitName,
            DnValue::TeletexString("T61".try_into().unwrap()),
        );
        dn.push(
            DnType::LocalityName,
            DnValue::UniversalString("Ünï".try_into().unwrap()),
        );
        dn.push(DnType::CommonName, DnValue::Utf8String("Jane".into()));
        // emailAddress has no RFC 4514 short name: dotted OID, value as hex DER.
        dn.push(
            DnType::CustomDnType(vec![1, 2, 840, 113549, 1, 9, 1]),
            DnValue::Ia5String("j@x.org".try_into().unwrap()),
        );
        assert_eq!(
            subject_of(dn),
            "1.2.840.113549.1.9.1=#16076a40782e6f7267,CN=Jane,L=Ünï,OU=T61,O=Zoë,C=DE"
        );
    }

    #[test]
    fn a_non_string_value_of_a_known_type_takes_the_hex_form() {
        // CN as an INTEGER (malformed, but a name is what the certificate says).
        let attr = x509_parser::der_parser::asn1_rs::Any::from_tag_and_data(Tag::Integer, &[5]);
        assert_eq!(hex_form(&attr), "#020105");
        assert_eq!(text(&attr), None);
    }

    #[test]
    fn a_multi_valued_rdn_is_joined_with_plus() {
        assert_eq!(
            name(&[&[atv(O, "c")], &[atv(UID, "b"), atv(CN, "a+b")]]),
            "CN=a\\+b+UID=b,O=c"
        );
    }
}
