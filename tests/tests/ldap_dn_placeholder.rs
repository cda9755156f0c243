//! `{dn}` and `{issuer}` against a real slapd: a certificate made with openssl, whose
//! subject holds the RFC 4514 special characters, a multi-valued RDN and the RFC 4515
//! filter metacharacters, maps to the entry that stores its subject and issuer exactly as
//! `openssl x509 -nameopt RFC2253` prints them.

use std::sync::Arc;

use base64::Engine;
use postern_gateway::auth::{CertificateFacts, CertificateMapper, CertificateMapping};
use postern_tests::openssl_ca::OpensslCa;
use postern_tests::slapd::{self, Slapd};

/// Exact (octet string) attributes, so a separator, an order or an escape that differs by
/// one character does not match; `seeAlso` (DN syntax) holds the same name as a DN.
const SCHEMA: &str = "\
attributetype ( 1.3.6.1.4.1.99999.1.20 NAME 'certSubject' EQUALITY octetStringMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.40 )
attributetype ( 1.3.6.1.4.1.99999.1.21 NAME 'certIssuer' EQUALITY octetStringMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.40 )
objectclass ( 1.3.6.1.4.1.99999.2.20 NAME 'certHolder' SUP top AUXILIARY MAY ( certSubject $ certIssuer $ seeAlso ) )
";

fn mapper(slapd: &Slapd, filter: &str) -> Arc<dyn CertificateMapper> {
    slapd::certificate_mapper_with(slapd, "by-dn", filter)
}

#[tokio::test]
async fn dn_and_issuer_placeholders_are_rfc4514_strings() {
    let dir = tempfile::tempdir().unwrap();
    let ca = OpensslCa::root(dir.path(), "ca", "Mail CA").unwrap();
    // OU with a '+', CN with ',', '(', ')', '*', '\' and a trailing space, plus a second
    // attribute in the CN's RDN.
    let subj = r"/C=US/O=Acme\, Inc./OU=Mail\+Relay/CN=Doe, John (ops)*\\ +UID=jdoe";
    let cert = ca.issue_v1("jdoe", subj, 4660).unwrap();
    let facts = CertificateFacts::from_der(&cert.cert_der()).unwrap();
    let subject = r"CN=Doe\, John (ops)*\\\ +UID=jdoe,OU=Mail\+Relay,O=Acme\, Inc.,C=US";
    assert_eq!(facts.subject_dn, subject);
    // The same string OpenSSL prints, so an operator can copy it into the directory.
    assert_eq!(cert.subject_rfc2253(), subject);
    assert_eq!(facts.issuer_dn, "CN=Mail CA");
    assert_eq!(cert.issuer_rfc2253(), "CN=Mail CA");
    // Same CN without the trailing characters: must not map.
    let near = ca
        .issue_v1(
            "near",
            r"/C=US/O=Acme\, Inc./OU=Mail\+Relay/CN=Doe, John (ops)+UID=jdoe",
            4661,
        )
        .unwrap();
    let near = CertificateFacts::from_der(&near.cert_der()).unwrap();

    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let ldif = format!(
        "{}dn: uid=jdoe,ou=people,{base}\nobjectClass: inetOrgPerson\nobjectClass: certHolder\n\
         cn: jdoe\nsn: Doe\nuid: jdoe\ncertSubject:: {}\ncertIssuer:: {}\nseeAlso:: {}\n\n",
        slapd::directory_ldif(),
        b64(subject),
        b64("CN=Mail CA"),
        b64(subject),
        base = slapd::BASE_DN,
    );
    let slapd = slapd::start_with_schema(ldif, SCHEMA);
    let jdoe = slapd::mapped_to("jdoe");

    // Exact match on both names; the filter layer escapes '(' ')' '*' '\' on top.
    let exact = mapper(&slapd, "(&(certSubject={dn})(certIssuer={issuer}))");
    assert_eq!(exact.map(&facts).await.unwrap(), jdoe);
    assert_eq!(
        exact.map(&near).await.unwrap(),
        CertificateMapping::NotFound
    );
    // slapd parses the string as a DN too (distinguishedNameMatch on seeAlso).
    let as_dn = mapper(&slapd, "(seeAlso={dn})");
    assert_eq!(as_dn.map(&facts).await.unwrap(), jdoe);
    assert_eq!(
        as_dn.map(&near).await.unwrap(),
        CertificateMapping::NotFound
    );
}
