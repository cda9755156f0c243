//! CRLs signed by a [`Ca`]: through rcgen, written by hand for what rcgen will not make
//! (issuing distribution points, chosen extensions), and a fast writer for very large ones
//! (a million entries in well under a second) for the benchmarks.

use rcgen::{
    CertificateRevocationList, CertificateRevocationListParams, KeyIdMethod, RevocationReason,
    RevokedCertParams, SerialNumber, SigningKey,
};
use time::{Duration, OffsetDateTime};

use crate::der::{ECDSA_SHA256, RSA_SHA256, ext, int_bytes, push_len, tlv, utc_time};
use crate::pki::Ca;

/// One entry for [`Ca::crl`].
#[derive(Debug, Clone)]
pub struct RevokedSpec {
    serial: Vec<u8>,
    reason: Option<RevocationReason>,
}

impl RevokedSpec {
    /// `serial` (DER INTEGER content), revoked an hour ago, without a reason code.
    pub fn new(serial: &[u8]) -> Self {
        Self {
            serial: serial.to_vec(),
            reason: None,
        }
    }

    /// `serial`, revoked an hour ago for key compromise.
    pub fn key_compromise(serial: &[u8]) -> Self {
        Self::new(serial).reason(RevocationReason::KeyCompromise)
    }

    /// With reason code `r`.
    pub fn reason(mut self, r: RevocationReason) -> Self {
        self.reason = Some(r);
        self
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

/// crlEntryExtensions with reasonCode keyCompromise.
const REASON_EXT: [u8; 14] = [
    0x30, 0x0c, 0x30, 0x0a, 0x06, 0x03, 0x55, 0x1d, 0x15, 0x04, 0x03, 0x0a, 0x01, 0x01,
];

impl Ca {
    /// A CRL with `number`, thisUpdate `this_offset` seconds from now and nextUpdate
    /// `next_offset` seconds from now, listing `revoked`.
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

    /// A CRL from parameters `f` adjusts: by default number 1, thisUpdate a minute ago,
    /// nextUpdate in an hour, no entries.
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
        p.signed_by(&self.issuer()).expect("CRL")
    }

    /// A current CRL (DER; thisUpdate a minute ago, nextUpdate in an hour) listing
    /// `revoked` for key compromise.
    pub fn current_crl(&self, number: u64, revoked: &[&[u8]]) -> Vec<u8> {
        let revoked: Vec<RevokedSpec> = revoked
            .iter()
            .map(|s| RevokedSpec::key_compromise(s))
            .collect();
        self.crl(number, &revoked, -60, 3600).der().to_vec()
    }

    /// A CRL written by hand: `crl_exts` and each entry's `entry_exts` are raw DER
    /// Extension elements.
    pub fn raw_crl(&self, entries: &[(&[u8], Vec<u8>)], crl_exts: &[Vec<u8>]) -> Vec<u8> {
        let now = OffsetDateTime::now_utc();
        let mut tbs = self.tbs_head(now - Duration::minutes(1), now + Duration::hours(1));
        if !entries.is_empty() {
            let mut list = vec![];
            for (serial, exts) in entries {
                let mut e = tlv(0x02, serial);
                e.extend(utc_time(now - Duration::hours(1)));
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
        self.sign_tbs(tlv(0x30, &tbs))
    }

    /// A CRL written by hand with a CRL number, an Authority Key Identifier, thisUpdate
    /// and nextUpdate `this_offset` / `next_offset` seconds from now, and an Issuing
    /// Distribution Point extension when `idp` is given (its value, see [`idp`]).
    pub fn idp_crl(
        &self,
        number: u8,
        revoked: &[&[u8]],
        this_offset: i64,
        next_offset: i64,
        idp: Option<Vec<u8>>,
    ) -> Vec<u8> {
        let now = OffsetDateTime::now_utc();
        let mut tbs = self.tbs_head(
            now + Duration::seconds(this_offset),
            now + Duration::seconds(next_offset),
        );
        if !revoked.is_empty() {
            let mut list = vec![];
            for serial in revoked {
                let mut e = tlv(0x02, serial);
                e.extend(utc_time(now - Duration::hours(1)));
                list.extend(tlv(0x30, &e));
            }
            tbs.extend(tlv(0x30, &list));
        }
        let mut exts = self.aki_ext();
        exts.extend(ext(20, false, &tlv(0x02, &[number])));
        if let Some(v) = idp {
            exts.extend(ext(28, true, &v));
        }
        tbs.extend(tlv(0xa0, &tlv(0x30, &exts)));
        self.sign_tbs(tlv(0x30, &tbs))
    }

    /// A CRL with `count` entries of `serial_len`-byte serials (see [`big_serial`]),
    /// every `reason_every`-th with a reasonCode extension (0: none), valid for a day,
    /// written directly as DER and signed: fast enough for a million entries.
    pub fn big_crl(
        &self,
        number: u64,
        count: usize,
        serial_len: usize,
        reason_every: usize,
    ) -> Vec<u8> {
        assert!((8..=20).contains(&serial_len), "serial_len must be 8..=20");
        let now = OffsetDateTime::now_utc();
        let date = utc_time(now - Duration::hours(1));
        let mut list = Vec::with_capacity(count * (serial_len + 36));
        for i in 0..count {
            let serial = big_serial(i as u64, serial_len);
            let mut entry_len = 2 + serial_len + date.len();
            let with_reason = reason_every != 0 && i % reason_every == 0;
            if with_reason {
                entry_len += REASON_EXT.len();
            }
            list.push(0x30);
            push_len(&mut list, entry_len);
            list.push(0x02);
            list.push(serial_len as u8);
            list.extend_from_slice(&serial[..serial_len]);
            list.extend_from_slice(&date);
            if with_reason {
                list.extend_from_slice(&REASON_EXT);
            }
        }
        self.signed_list(
            number,
            now - Duration::minutes(1),
            now + Duration::hours(24),
            list,
        )
    }

    /// The signed CRL numbered `number` whose revokedCertificates content is `list`
    /// (omitted when empty): the end of the fast writers.
    pub(crate) fn signed_list(
        &self,
        number: u64,
        this_update: OffsetDateTime,
        next_update: OffsetDateTime,
        list: Vec<u8>,
    ) -> Vec<u8> {
        let mut tbs_body = self.tbs_head(this_update, next_update);
        if !list.is_empty() {
            tbs_body.push(0x30);
            push_len(&mut tbs_body, list.len());
            tbs_body.extend_from_slice(&list);
        }
        drop(list);
        let mut exts = self.aki_ext();
        exts.extend(ext(20, false, &tlv(0x02, &int_bytes(number))));
        tbs_body.extend(tlv(0xa0, &tlv(0x30, &exts)));
        let tbs = tlv(0x30, &tbs_body);
        drop(tbs_body);
        self.sign_tbs(tbs)
    }

    /// The signature AlgorithmIdentifier of this CA's key.
    fn signature_alg(&self) -> &'static [u8] {
        if self.key.algorithm() == &rcgen::PKCS_RSA_SHA256 {
            &RSA_SHA256
        } else {
            &ECDSA_SHA256
        }
    }

    /// TBSCertList up to the revoked list: version 2, signature algorithm, issuer,
    /// thisUpdate, nextUpdate.
    pub(crate) fn tbs_head(
        &self,
        this_update: OffsetDateTime,
        next_update: OffsetDateTime,
    ) -> Vec<u8> {
        let mut tbs = tlv(0x02, &[1]);
        tbs.extend_from_slice(self.signature_alg());
        tbs.extend(self.subject_der());
        tbs.extend(utc_time(this_update));
        tbs.extend(utc_time(next_update));
        tbs
    }

    /// The Authority Key Identifier extension of this CA's CRLs.
    pub(crate) fn aki_ext(&self) -> Vec<u8> {
        ext(35, false, &tlv(0x30, &tlv(0x80, &self.key_id())))
    }

    /// CertificateList: `tbs`, the algorithm, this CA's signature over `tbs`.
    pub fn sign_tbs(&self, tbs: Vec<u8>) -> Vec<u8> {
        let sig = self.key.sign(&tbs).expect("sign");
        let mut bits = vec![0u8];
        bits.extend(sig);
        let mut body = tbs;
        body.extend_from_slice(self.signature_alg());
        body.extend(tlv(0x03, &bits));
        tlv(0x30, &body)
    }
}

/// The serial of entry `i` in [`Ca::big_crl`]: positive, `len` bytes, spread out, with
/// an odd first byte.
pub fn big_serial(i: u64, len: usize) -> [u8; 20] {
    let mut s = [0u8; 20];
    // splitmix64 of the index: distinct and random-looking; the first byte stays positive
    // and non-zero so the DER INTEGER is minimal.
    let mut x = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    for chunk in s[..len].chunks_mut(8) {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let b = z.to_be_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
    // Keep the index itself in the last four bytes so serials never collide.
    s[len - 4..len].copy_from_slice(&(i as u32).to_be_bytes());
    s[0] = (s[0] & 0x7f) | 0x01;
    s
}

/// PEM of a DER CRL.
pub fn crl_pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN X509 CRL-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str("-----END X509 CRL-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::KeyKind;
    use x509_parser::prelude::{FromDer, X509Certificate};
    use x509_parser::revocation_list::CertificateRevocationList as ParsedCrl;

    fn check(ca: &Ca, der: &[u8]) -> usize {
        let (rest, crl) = ParsedCrl::from_der(der).unwrap();
        assert!(rest.is_empty());
        let (_, cert) = X509Certificate::from_der(ca.cert.der()).unwrap();
        crl.verify_signature(cert.public_key()).unwrap();
        assert_eq!(crl.issuer().as_raw(), ca.subject_der());
        crl.iter_revoked_certificates().count()
    }

    #[test]
    fn every_writer_makes_a_crl_its_ca_signed() {
        let ca = Ca::root("Kit CRL CA");
        assert_eq!(check(&ca, &ca.current_crl(3, &[&[1], &[2]])), 2);
        let raw = ca.raw_crl(&[(&[5], vec![])], &[ext(20, false, &tlv(0x02, &[7]))]);
        assert_eq!(check(&ca, &raw), 1);
        let with_idp = ca.idp_crl(
            2,
            &[&[9]],
            -60,
            60,
            Some(idp(Only::Users, &["http://x/a.crl"])),
        );
        assert_eq!(check(&ca, &with_idp), 1);
        let big = ca.big_crl(1, 1000, 16, 10);
        assert_eq!(check(&ca, &big), 1000);
        assert!(crl_pem(&big).starts_with("-----BEGIN X509 CRL-----\n"));
    }

    #[test]
    fn big_crls_of_rsa_cas_verify() {
        let ca = Ca::builder("Kit RSA CA")
            .key(KeyKind::Rsa2048)
            .self_signed()
            .unwrap();
        assert_eq!(check(&ca, &ca.big_crl(1, 10, 16, 10)), 10);
    }

    #[test]
    fn big_serials_are_distinct_odd_first() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..50_000 {
            let s = big_serial(i, 16);
            assert_eq!(s[0] & 0x81, 0x01);
            assert!(seen.insert(s));
        }
    }
}
