//! The OCSP request (RFC 6960 section 4.1) for one certificate.

use ring::digest::{SHA1_FOR_LEGACY_USE_ONLY, digest};

/// DER of the OID of SHA-1 (1.3.14.3.2.26), the CertID hash every responder supports.
pub(crate) const SHA1_OID: &[u8] = &[0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a];
/// DER content of the OID of the nonce extension (1.3.6.1.5.5.7.48.1.2).
pub(crate) const NONCE_OID: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x02];

/// Which certificate is asked about: hashes of its issuer's name and key, and its serial.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CertId {
    /// SHA-1 of the issuer's Name (DER).
    pub issuer_name_hash: [u8; 20],
    /// SHA-1 of the issuer's public key (the BIT STRING's bytes).
    pub issuer_key_hash: [u8; 20],
    /// The serial number (DER INTEGER content).
    pub serial: Vec<u8>,
}

impl CertId {
    /// The CertID of the certificate with `serial` issued by the CA whose subject Name is
    /// `issuer_name_der` and whose subjectPublicKey bits are `issuer_key`.
    pub fn new(issuer_name_der: &[u8], issuer_key: &[u8], serial: &[u8]) -> Self {
        let sha1 = |b: &[u8]| -> [u8; 20] {
            let d = digest(&SHA1_FOR_LEGACY_USE_ONLY, b);
            let mut out = [0; 20];
            out.copy_from_slice(d.as_ref());
            out
        };
        Self {
            issuer_name_hash: sha1(issuer_name_der),
            issuer_key_hash: sha1(issuer_key),
            serial: serial.to_vec(),
        }
    }

    /// DER of the CertID.
    pub(crate) fn to_der(&self) -> Vec<u8> {
        let alg = tlv(0x30, &[SHA1_OID, &[0x05, 0x00]].concat());
        tlv(
            0x30,
            &[
                alg,
                tlv(0x04, &self.issuer_name_hash),
                tlv(0x04, &self.issuer_key_hash),
                tlv(0x02, &self.serial),
            ]
            .concat(),
        )
    }
}

/// DER of an OCSPRequest for `id`, with a nonce extension when `nonce` is given.
pub(crate) fn encode(id: &CertId, nonce: Option<&[u8]>) -> Vec<u8> {
    let request_list = tlv(0x30, &tlv(0x30, &id.to_der()));
    let mut tbs = request_list;
    if let Some(nonce) = nonce {
        // RFC 8954: the nonce is an OCTET STRING inside the extension's extnValue.
        let ext = tlv(
            0x30,
            &[tlv(0x06, NONCE_OID), tlv(0x04, &tlv(0x04, nonce))].concat(),
        );
        tbs.extend(tlv(0xa2, &tlv(0x30, &ext)));
    }
    tlv(0x30, &tlv(0x30, &tbs))
}

/// One DER TLV with a definite length.
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_short_and_long() {
        assert_eq!(tlv(0x04, &[1, 2]), [0x04, 2, 1, 2]);
        let long = tlv(0x04, &[0; 300]);
        assert_eq!(&long[..4], &[0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(long.len(), 304);
    }

    #[test]
    fn request_parses_as_der_with_the_cert_id_and_nonce() {
        use x509_parser::asn1_rs::{Any, FromDer};
        let id = CertId::new(b"name", b"key", &[0x01, 0x23]);
        let der = encode(&id, Some(&[7; 16]));
        let (rest, req) = Any::from_der(&der).unwrap();
        assert!(rest.is_empty());
        let (_, tbs) = Any::from_der(req.data).unwrap();
        let (after_list, list) = Any::from_der(tbs.data).unwrap();
        let (_, one) = Any::from_der(list.data).unwrap();
        assert_eq!(one.data, id.to_der());
        let (_, exts) = Any::from_der(after_list).unwrap();
        assert_eq!(exts.tag().0, 2);
        let hex = hex::encode(&der);
        assert!(hex.contains(&hex::encode(NONCE_OID)) && hex.contains(&"07".repeat(16)));
        assert!(!hex::encode(encode(&id, None)).contains(&hex::encode(NONCE_OID)));
    }
}
