//! Issue 19, item 1: `{edipi}`, `{upn}` and Active Directory's strong-mapping strings
//! (`{altSecIssuerSerial}`, `{altSecSki}`, `{altSecSha1PublicKey}`) against a real slapd,
//! with a DoD-shaped card made by openssl. The expected strings are computed here from
//! openssl's own output (issuer, serial, SKI, public key), not from the gateway's code, and
//! stored in `altSecurityIdentities` the way an AD administrator writes them.

use std::path::Path;
use std::sync::Arc;

use postern_gateway::auth::{CertificateFacts, CertificateMapper, CertificateMapping};
use postern_tests::cac::{self, CacPki};
use postern_tests::cac_gateway::{JOHN_CN, JOHN_EDIPI, john_cards};
use postern_tests::openssl_ca::{Issued, openssl};
use postern_tests::slapd::{self, Slapd};

/// AD's attributes, as a schema for slapd: `altSecurityIdentities` multi-valued and
/// compared case-insensitively (as AD does), `userPrincipalName` likewise.
const SCHEMA: &str = "\
attributetype ( 1.3.6.1.4.1.99999.1.30 NAME 'altSecurityIdentities' EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
attributetype ( 1.3.6.1.4.1.99999.1.31 NAME 'userPrincipalName' EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.99999.2.30 NAME 'adUser' SUP top AUXILIARY MAY ( altSecurityIdentities $ userPrincipalName ) )
";

const CN: &str = JOHN_CN;
const EDIPI: &str = JOHN_EDIPI;

fn mapper(slapd: &Slapd, filter: &str) -> Arc<dyn CertificateMapper> {
    slapd::certificate_mapper_with(slapd, "strong", filter)
}

fn x509(cert: &Issued, args: &[&str]) -> String {
    let dir = cert.cert.parent().unwrap();
    let path = cert.cert.to_string_lossy().into_owned();
    let mut all = vec!["x509", "-noout", "-in", &path];
    all.extend_from_slice(args);
    openssl(dir, &all).unwrap()
}

/// `X509:<I>...<SR>...` from openssl's RFC 2253 issuer (RDNs reversed back into the
/// certificate's order) and its serial (bytes reversed).
fn expected_issuer_serial(cert: &Issued) -> String {
    let issuer = cert.issuer_rfc2253();
    let mut rdns: Vec<&str> = issuer.split(',').collect();
    rdns.reverse();
    let serial = x509(cert, &["-serial"]);
    let serial = serial.trim().trim_start_matches("serial=");
    let bytes: Vec<&str> = (0..serial.len())
        .step_by(2)
        .map(|i| &serial[i..i + 2])
        .rev()
        .collect();
    format!("X509:<I>{}<SR>{}", rdns.join(","), bytes.concat())
}

fn expected_ski(cert: &Issued) -> String {
    let text = x509(cert, &["-ext", "subjectKeyIdentifier"]);
    let hex = text.lines().nth(1).unwrap().trim().replace(':', "");
    format!("X509:<SKI>{}", hex.to_lowercase())
}

/// SHA-1 of the P-256 point (the subjectPublicKey bits: the last 65 octets of the SPKI).
fn expected_sha1_public_key(cert: &Issued, dir: &Path) -> String {
    let pem = x509(cert, &["-pubkey"]);
    std::fs::write(dir.join("pub.pem"), pem).unwrap();
    openssl(
        dir,
        &[
            "pkey", "-pubin", "-in", "pub.pem", "-outform", "DER", "-out", "pub.der",
        ],
    )
    .unwrap();
    let spki = std::fs::read(dir.join("pub.der")).unwrap();
    std::fs::write(dir.join("point.bin"), &spki[spki.len() - 65..]).unwrap();
    let out = openssl(dir, &["dgst", "-sha1", "-r", "point.bin"]).unwrap();
    format!(
        "X509:<SHA1-PUKEY>{}",
        out.split_whitespace().next().unwrap()
    )
}

#[tokio::test]
async fn a_card_maps_by_edipi_upn_and_active_directory_strong_mappings() {
    let dir = tempfile::tempdir().unwrap();
    let pki = CacPki::new(dir.path()).unwrap();
    let [piv, sign, enc] = john_cards(
        &pki,
        [
            "0x1A2B3C4D5E6F7081",
            "0x1A2B3C4D5E6F7082",
            "0x1A2B3C4D5E6F7083",
        ],
    );
    let facts = |c: &Issued| CertificateFacts::from_der(&c.cert_der()).unwrap();
    let (piv_f, sign_f, enc_f) = (facts(&piv), facts(&sign), facts(&enc));

    // The values are exactly what openssl's output gives, in AD's forms.
    let issuer_serial = expected_issuer_serial(&piv);
    assert_eq!(
        issuer_serial,
        "X509:<I>C=US,O=U.S. Government,OU=DoD,OU=PKI,CN=DOD ID CA-70<SR>81706F5E4D3C2B1A"
    );
    assert_eq!(piv_f.alt_sec_issuer_serial, issuer_serial);
    let ski = expected_ski(&piv);
    assert_eq!(piv_f.alt_sec_ski.as_deref(), Some(ski.as_str()));
    let sha1 = expected_sha1_public_key(&piv, dir.path());
    assert_eq!(piv_f.alt_sec_sha1_public_key, sha1);
    assert_eq!(piv_f.upn.as_deref(), Some("1234567890@mil"));
    assert_eq!(piv_f.edipi.as_deref(), Some(EDIPI));
    assert_eq!(sign_f.edipi.as_deref(), Some(EDIPI));
    assert_eq!(enc_f.edipi, None, "the encryption certificate has no UPN");

    // john's entry: the EDIPI in employeeNumber, the UPN, and the PIV certificate's three
    // strong mappings (the SKI written in upper case: AD compares case-insensitively).
    let ldif = format!(
        "{}dn: uid=jdoe,ou=people,{base}\nobjectClass: inetOrgPerson\nobjectClass: adUser\n\
         cn: {CN}\nsn: Doe\nuid: jdoe\nemployeeNumber: {EDIPI}\nuserPrincipalName: {EDIPI}@mil\n\
         altSecurityIdentities: {issuer_serial}\naltSecurityIdentities: X509:<SKI>{ski_upper}\n\
         altSecurityIdentities: {sha1}\n\n",
        slapd::directory_ldif(),
        base = slapd::BASE_DN,
        ski_upper = ski.trim_start_matches("X509:<SKI>").to_uppercase(),
    );
    let slapd = slapd::start_with_schema(ldif, SCHEMA);
    let jdoe = slapd::mapped_to("jdoe");
    let none = CertificateMapping::NotFound;

    // By EDIPI and by UPN (Active Directory's userPrincipalName): every certificate of
    // the card that carries the UPN maps — which is why certificate-type gating exists.
    for filter in ["(employeeNumber={edipi})", "(userPrincipalName={upn})"] {
        let m = mapper(&slapd, filter);
        assert_eq!(m.map(&piv_f).await.unwrap(), jdoe, "{filter}");
        assert_eq!(m.map(&sign_f).await.unwrap(), jdoe, "{filter}");
        assert_eq!(m.map(&enc_f).await.unwrap(), none, "{filter}");
    }
    // Strong mappings name one certificate (or its key): only the PIV certificate maps.
    for filter in [
        "(altSecurityIdentities={altSecIssuerSerial})",
        "(altSecurityIdentities={altSecSki})",
        "(altSecurityIdentities={altSecSha1PublicKey})",
    ] {
        let m = mapper(&slapd, filter);
        assert_eq!(m.map(&piv_f).await.unwrap(), jdoe, "{filter}");
        assert_eq!(m.map(&sign_f).await.unwrap(), none, "{filter}");
        assert_eq!(m.map(&enc_f).await.unwrap(), none, "{filter}");
    }
}

/// KB5014754's own example: issuer `DC=com,DC=contoso,CN=CONTOSO-DC-CA`, serial
/// `2B0000000011AC0000000012` → `X509:<I>DC=com,DC=contoso,CN=CONTOSO-DC-CA<SR>1200000000AC11000000002B`;
/// and a serial whose DER integer needs a leading `00` keeps it (last, once reversed).
#[test]
fn microsofts_example_string() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    cac::self_signed_ca(d, "/DC=com/DC=contoso/CN=CONTOSO-DC-CA", "ca.key", "ca.crt").unwrap();
    let ca = Issued {
        cert: d.join("ca.crt"),
        key: d.join("ca.key"),
    };
    let issue = |serial: &str, name: &str| {
        let csr = format!("{name}.csr");
        cac::request(d, "/CN=user", &format!("{name}.key"), &csr).unwrap();
        cac::sign(d, &csr, &ca, serial, None, &format!("{name}.crt")).unwrap();
        let cert = Issued {
            cert: d.join(format!("{name}.crt")),
            key: d.join(format!("{name}.key")),
        };
        CertificateFacts::from_der(&cert.cert_der()).unwrap()
    };
    assert_eq!(
        issue("0x2B0000000011AC0000000012", "kb").alt_sec_issuer_serial,
        "X509:<I>DC=com,DC=contoso,CN=CONTOSO-DC-CA<SR>1200000000AC11000000002B"
    );
    assert_eq!(
        issue("0x8F01", "high").alt_sec_issuer_serial,
        "X509:<I>DC=com,DC=contoso,CN=CONTOSO-DC-CA<SR>018F00"
    );
}
