//! Test PKI for the CRL unit tests: CAs and CRLs made with rcgen at test time, plus a raw
//! DER writer for CRLs rcgen will not produce (delta, indirect, critical extensions).

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationList,
    CertificateRevocationListParams, DnType, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevocationReason, RevokedCertParams, SerialNumber, SigningKey,
};
use time::{Duration, OffsetDateTime};

/// A CA with its key.
pub struct Ca {
    pub params: CertificateParams,
    pub key: KeyPair,
    pub cert: rcgen::Certificate,
}

/// One entry for [`Ca::crl`].
pub struct RevokedSpec {
    serial: Vec<u8>,
    reason: Option<RevocationReason>,
}

impl RevokedSpec {
    pub fn new(serial: &[u8]) -> Self {
        Self {
            serial: serial.to_vec(),
            reason: None,
        }
    }
    pub fn reason(mut self, r: RevocationReason) -> Self {
        self.reason = Some(r);
        self
    }
}

impl Ca {
    pub fn new(cn: &str) -> Self {
        Self::with_usages(
            cn,
            vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ],
        )
    }

    pub fn with_usages(cn: &str, usages: Vec<KeyUsagePurpose>) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = usages;
        params.key_identifier_method = KeyIdMethod::Sha256;
        let cert = params.self_signed(&key).unwrap();
        Self { params, key, cert }
    }

    /// Same name, new key (a re-keyed CA, or an impostor).
    pub fn rekeyed(&self) -> Self {
        let key = KeyPair::generate().unwrap();
        let cert = self.params.self_signed(&key).unwrap();
        Self {
            params: self.params.clone(),
            key,
            cert,
        }
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    pub fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }

    /// Raw DER of the subject Name.
    pub fn subject_der(&self) -> Vec<u8> {
        let (_, cert) = x509_parser::parse_x509_certificate(self.cert.der()).unwrap();
        cert.subject().as_raw().to_vec()
    }

    /// The key id certificates issued by this CA carry as Authority Key Identifier.
    pub fn key_id(&self) -> Vec<u8> {
        self.params.key_identifier(&self.key)
    }

    /// A CRL with `number`, thisUpdate `this_offset` seconds from now and nextUpdate
    /// `next_offset` seconds from now.
    pub fn crl(
        &self,
        number: u64,
        revoked: &[RevokedSpec],
        this_offset: i64,
        next_offset: i64,
    ) -> CertificateRevocationList {
        let now = OffsetDateTime::now_utc();
        self.crl_with(|p| {
            p.crl_number = SerialNumber::from(number);
            p.this_update = now + Duration::seconds(this_offset);
            p.next_update = now + Duration::seconds(next_offset);
            p.revoked_certs = revoked
                .iter()
                .map(|r| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&r.serial),
                    revocation_time: now - Duration::hours(1),
                    reason_code: r.reason,
                    invalidity_date: None,
                })
                .collect();
        })
    }

    pub fn crl_with(
        &self,
        f: impl FnOnce(&mut CertificateRevocationListParams),
    ) -> CertificateRevocationList {
        let now = OffsetDateTime::now_utc();
        let mut p = CertificateRevocationListParams {
            this_update: now - Duration::minutes(1),
            next_update: now + Duration::hours(1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: vec![],
            key_identifier_method: KeyIdMethod::Sha256,
        };
        f(&mut p);
        p.signed_by(&self.issuer()).unwrap()
    }

    /// A CRL written by hand: `crl_exts` and each entry's `entry_exts` are raw DER
    /// Extension elements.
    pub fn raw_crl(&self, entries: &[(&[u8], Vec<u8>)], crl_exts: &[Vec<u8>]) -> Vec<u8> {
        // ecdsa-with-SHA256 (rcgen's default key type)
        let alg = [
            0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
        ];
        let now = OffsetDateTime::now_utc();
        let mut tbs = tlv(0x02, &[1]);
        tbs.extend(alg);
        tbs.extend(self.subject_der());
        tbs.extend(utc(now - Duration::minutes(1)));
        tbs.extend(utc(now + Duration::hours(1)));
        if !entries.is_empty() {
            let mut list = vec![];
            for (serial, exts) in entries {
                let mut e = tlv(0x02, serial);
                e.extend(utc(now - Duration::hours(1)));
                if !exts.is_empty() {
                    e.extend(tlv(0x30, exts));
                }
                list.extend(tlv(0x30, &e));
            }
            tbs.extend(tlv(0x30, &list));
        }
        if !crl_exts.is_empty() {
            tbs.extend(tlv(0xa0, &tlv(0x30, &crl_exts.concat())));
        }
        let tbs = tlv(0x30, &tbs);
        let sig = self.key.sign(&tbs).unwrap();
        let mut bits = vec![0u8];
        bits.extend(sig);
        let mut body = tbs;
        body.extend(alg);
        body.extend(tlv(0x03, &bits));
        tlv(0x30, &body)
    }
}

impl Ca {
    /// A CRL written by hand with a CRL number, an Authority Key Identifier, thisUpdate and
    /// nextUpdate `this_offset` / `next_offset` seconds from now, and an Issuing
    /// Distribution Point extension when `idp` is given (its value, see [`idp`]).
    pub fn idp_crl(
        &self,
        number: u8,
        revoked: &[&[u8]],
        this_offset: i64,
        next_offset: i64,
        idp: Option<Vec<u8>>,
    ) -> Vec<u8> {
        let alg = [
            0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
        ];
        let now = OffsetDateTime::now_utc();
        let mut tbs = tlv(0x02, &[1]);
        tbs.extend(alg);
        tbs.extend(self.subject_der());
        tbs.extend(utc(now + Duration::seconds(this_offset)));
        tbs.extend(utc(now + Duration::seconds(next_offset)));
        if !revoked.is_empty() {
            let mut list = vec![];
            for serial in revoked {
                let mut e = tlv(0x02, serial);
                e.extend(utc(now - Duration::hours(1)));
                list.extend(tlv(0x30, &e));
            }
            tbs.extend(tlv(0x30, &list));
        }
        let mut exts = ext(35, false, &tlv(0x30, &tlv(0x80, &self.key_id())));
        exts.extend(ext(20, false, &tlv(0x02, &[number])));
        if let Some(v) = idp {
            exts.extend(ext(28, true, &v));
        }
        tbs.extend(tlv(0xa0, &tlv(0x30, &exts)));
        let tbs = tlv(0x30, &tbs);
        let sig = self.key.sign(&tbs).unwrap();
        let mut bits = vec![0u8];
        bits.extend(sig);
        let mut body = tbs;
        body.extend(alg);
        body.extend(tlv(0x03, &bits));
        tlv(0x30, &body)
    }
}

/// Which certificates an Issuing Distribution Point limits a CRL to.
#[derive(Clone, Copy, Debug)]
pub enum Only {
    /// Every certificate.
    All,
    /// `onlyContainsUserCerts`.
    Users,
    /// `onlyContainsCACerts`.
    Cas,
}

/// The value of an Issuing Distribution Point extension: `only` and, when `uris` is not
/// empty, a `distributionPoint` fullName of those URIs.
pub fn idp(only: Only, uris: &[&str]) -> Vec<u8> {
    let mut content = vec![];
    if !uris.is_empty() {
        let names: Vec<u8> = uris.iter().flat_map(|u| tlv(0x86, u.as_bytes())).collect();
        content.extend(tlv(0xa0, &tlv(0xa0, &names)));
    }
    match only {
        Only::All => {}
        Only::Users => content.extend([0x81, 0x01, 0xff]),
        Only::Cas => content.extend([0x82, 0x01, 0xff]),
    }
    tlv(0x30, &content)
}

/// A DER element.
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes = (n as u32).to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (4 - skip) as u8);
        out.extend(&bytes[skip..]);
    }
    out.extend(content);
    out
}

/// An Extension element for OID 2.5.29.`arc`.
pub fn ext(arc: u8, critical: bool, value: &[u8]) -> Vec<u8> {
    let mut e = tlv(0x06, &[0x55, 0x1d, arc]);
    if critical {
        e.extend([0x01, 0x01, 0xff]);
    }
    e.extend(tlv(0x04, value));
    tlv(0x30, &e)
}

fn utc(t: OffsetDateTime) -> Vec<u8> {
    let s = format!(
        "{:02}{:02}{:02}{:02}{:02}{:02}Z",
        t.year() % 100,
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    tlv(0x17, s.as_bytes())
}
