//! Test material: CAs, responder certificates and signed OCSP responses made in
//! process (rcgen keys, the response DER written out), so the verification rules can
//! be checked without a responder.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, SigningKey,
};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::request::{CertId, NONCE_OID, tlv};

/// ecdsa-with-SHA256 AlgorithmIdentifier, what rcgen's default keys sign with.
const ECDSA_SHA256: &[u8] = &[
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
];
/// id-pkix-ocsp-basic content.
const BASIC: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x01];

pub(crate) type TestCa = CertifiedIssuer<'static, KeyPair>;

/// A self-signed CA.
pub(crate) fn ca(cn: &str) -> TestCa {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
}

/// A responder certificate issued by `ca`, with `id-kp-OCSPSigning` when `ocsp_signing`.
pub(crate) fn responder(ca: &TestCa, ocsp_signing: bool) -> (Vec<u8>, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, "responder");
    p.extended_key_usages = if ocsp_signing {
        vec![ExtendedKeyUsagePurpose::OcspSigning]
    } else {
        vec![ExtendedKeyUsagePurpose::ClientAuth]
    };
    let cert = p.signed_by(&key, ca).unwrap();
    (cert.der().to_vec(), key)
}

/// The issuer's subject Name and SubjectPublicKeyInfo (DER), and the CertID of `serial`.
pub(crate) fn issuer_of(ca: &TestCa, serial: &[u8]) -> (Vec<u8>, Vec<u8>, CertId) {
    let (_, c) = X509Certificate::from_der(ca.der()).unwrap();
    let subject = c.subject().as_raw().to_vec();
    let spki = c.public_key().raw.to_vec();
    let id = CertId::new(&subject, &c.public_key().subject_public_key.data, serial);
    (subject, spki, id)
}

/// `certStatus` good.
pub(crate) fn good() -> Vec<u8> {
    vec![0x80, 0x00]
}

/// `certStatus` revoked at `time`, reason keyCompromise.
pub(crate) fn revoked(time: i64) -> Vec<u8> {
    let info = [gtime(time), tlv(0xa0, &[0x0a, 0x01, 0x01])].concat();
    tlv(0xa1, &info)
}

/// `certStatus` unknown.
pub(crate) fn unknown() -> Vec<u8> {
    vec![0x82, 0x00]
}

fn gtime(secs: i64) -> Vec<u8> {
    let t = time::OffsetDateTime::from_unix_timestamp(secs).unwrap();
    tlv(0x18, postern_testkit::pki::generalized_time(t).as_bytes())
}

/// A successful basic OCSP response about `id`, signed by `signer`, carrying `certs`.
pub(crate) fn response(
    id: &CertId,
    status: &[u8],
    this_update: i64,
    next_update: Option<i64>,
    signer: &KeyPair,
    certs: &[Vec<u8>],
    nonce: Option<&[u8]>,
) -> Vec<u8> {
    let mut single = [id.to_der(), status.to_vec(), gtime(this_update)].concat();
    if let Some(n) = next_update {
        single.extend(tlv(0xa0, &gtime(n)));
    }
    let responder_id = tlv(0xa2, &tlv(0x04, &[0u8; 20]));
    let mut data = [
        responder_id,
        gtime(this_update),
        tlv(0x30, &tlv(0x30, &single)),
    ]
    .concat();
    if let Some(n) = nonce {
        let ext = tlv(
            0x30,
            &[tlv(0x06, NONCE_OID), tlv(0x04, &tlv(0x04, n))].concat(),
        );
        data.extend(tlv(0xa1, &tlv(0x30, &ext)));
    }
    let tbs = tlv(0x30, &data);
    let sig = signer.sign(&tbs).unwrap();
    let mut basic = [
        tbs,
        ECDSA_SHA256.to_vec(),
        tlv(0x03, &[&[0u8][..], &sig].concat()),
    ]
    .concat();
    if !certs.is_empty() {
        basic.extend(tlv(0xa0, &tlv(0x30, &certs.concat())));
    }
    let bytes = tlv(
        0xa0,
        &tlv(
            0x30,
            &[tlv(0x06, BASIC), tlv(0x04, &tlv(0x30, &basic))].concat(),
        ),
    );
    tlv(0x30, &[vec![0x0a, 0x01, 0x00], bytes].concat())
}
