//! The OCSP response (RFC 6960 section 4.2): decoded and verified against the CA that
//! issued the certificate asked about.

use std::fmt;

use x509_parser::asn1_rs::{Any, BitString, Class, FromDer, Tag};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::x509::{AlgorithmIdentifier, SubjectPublicKeyInfo};

use super::request::{CertId, NONCE_OID, SHA1_OID};

/// Clock skew tolerated on `thisUpdate` (in the future) and `nextUpdate` (in the past),
/// as for CRLs.
pub(crate) const CLOCK_SKEW_SECS: i64 = 300;

/// DER content of id-pkix-ocsp-basic (1.3.6.1.5.5.7.48.1.1).
const BASIC_OID: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x01];

/// What the responder says of the certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertStatus {
    /// Not revoked.
    Good,
    /// Revoked at `time` (Unix seconds), for `reason` (CRLReason code) when given.
    Revoked {
        /// Revocation time, Unix seconds.
        time: i64,
        /// The CRLReason code, if the responder gives one.
        reason: Option<u8>,
    },
    /// The responder does not know the certificate.
    Unknown,
}

impl CertStatus {
    /// The label value (`good`, `revoked`, `unknown`).
    pub fn label(&self) -> &'static str {
        match self {
            Self::Good => "good",
            Self::Revoked { .. } => "revoked",
            Self::Unknown => "unknown",
        }
    }
}

/// A verified answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OcspAnswer {
    /// The certificate's status.
    pub status: CertStatus,
    /// `thisUpdate`, Unix seconds.
    pub this_update: i64,
    /// `nextUpdate`, Unix seconds, when the responder gives one.
    pub next_update: Option<i64>,
    /// Who signed: `issuer` (the CA) or `delegated` (a responder certificate of the CA).
    pub signer: Signer,
}

/// Who signed a verified response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signer {
    /// The issuing CA itself.
    Issuer,
    /// A responder certificate issued by the CA with `id-kp-OCSPSigning`.
    Delegated,
}

/// Why no usable answer came from a responder.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OcspError {
    /// The certificate names no OCSP responder and none is configured.
    #[error(
        "no OCSP responder: the certificate has no Authority Information Access OCSP URL and tls.revocation.ocsp.responderUrl is empty"
    )]
    NoResponder,
    /// The issuing CA's certificate is not known, so no request can be built.
    #[error("the issuer's certificate is not known: {0}")]
    NoIssuer(String),
    /// Connection refused, DNS, TLS or HTTP failure.
    #[error("responder unreachable: {0}")]
    Network(String),
    /// No complete answer within `ocsp.timeout`.
    #[error("no answer within {0} ms")]
    Timeout(u64),
    /// An HTTP status other than 200.
    #[error("HTTP status {0}")]
    HttpStatus(u16),
    /// The body is not an OCSP response, or not a basic one.
    #[error("malformed OCSP response: {0}")]
    Malformed(String),
    /// The responder answered with an error status (RFC 6960 `OCSPResponseStatus`).
    #[error("responder status {0} ({name})", name = responder_status_name(*.0))]
    ResponderStatus(u32),
    /// The response has no answer for the certificate asked about.
    #[error("the response does not answer for the certificate asked about")]
    WrongCertificate,
    /// Neither the issuer nor a delegated responder certificate of the issuer signed it.
    #[error("bad signature: {0}")]
    BadSignature(String),
    /// `nextUpdate` (plus the clock skew) has passed, or `thisUpdate` is in the future.
    #[error("response not current: {0}")]
    NotCurrent(String),
    /// The responder echoed a nonce other than the one sent (a replayed response).
    #[error("the response's nonce is not the request's (replayed response?)")]
    NonceMismatch,
}

impl OcspError {
    /// Short stable code for the `result` label and decision lines.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoResponder => "no_responder",
            Self::NoIssuer(_) => "no_issuer",
            Self::Network(_) => "network",
            Self::Timeout(_) => "timeout",
            Self::HttpStatus(_) => "http_status",
            Self::Malformed(_) => "malformed",
            Self::ResponderStatus(_) => "responder_status",
            Self::WrongCertificate => "wrong_certificate",
            Self::BadSignature(_) => "bad_signature",
            Self::NotCurrent(_) => "not_current",
            Self::NonceMismatch => "nonce_mismatch",
        }
    }
}

fn responder_status_name(s: u32) -> &'static str {
    match s {
        1 => "malformedRequest",
        2 => "internalError",
        3 => "tryLater",
        5 => "sigRequired",
        6 => "unauthorized",
        _ => "unknown status",
    }
}

/// The issuing CA, as verification needs it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Issuer<'a> {
    /// The CA's subject Name (DER).
    pub(crate) subject_der: &'a [u8],
    /// The CA's SubjectPublicKeyInfo (DER).
    pub(crate) spki_der: &'a [u8],
}

/// Decode `body` and verify it as the answer about `id` from a responder the CA
/// `issuer` authorised, at `now` (Unix seconds). `nonce` is the one sent, if any.
pub(crate) fn verify(
    body: &[u8],
    id: &CertId,
    issuer: Issuer<'_>,
    nonce: Option<&[u8]>,
    now: i64,
) -> Result<OcspAnswer, OcspError> {
    let (resp, _) = next(body, "OCSPResponse")?;
    let (status, rest) = next(resp.data, "responseStatus")?;
    let status = status
        .data
        .iter()
        .fold(0u32, |a, b| (a << 8) | u32::from(*b));
    if status != 0 {
        return Err(OcspError::ResponderStatus(status));
    }
    let (bytes, _) = next(rest, "responseBytes")?;
    let (bytes, _) = next(bytes.data, "ResponseBytes")?;
    let (kind, rest) = next(bytes.data, "responseType")?;
    if kind.data != BASIC_OID {
        return Err(malformed("not a basic OCSP response (id-pkix-ocsp-basic)"));
    }
    let (basic, _) = next(rest, "response")?;
    let (basic, _) = next(basic.data, "BasicOCSPResponse")?;
    let (tbs_raw, rest) = raw(basic.data, "tbsResponseData")?;
    let (alg_raw, rest) = raw(rest, "signatureAlgorithm")?;
    let (sig, rest) = next(rest, "signature")?;
    let (_, alg) = AlgorithmIdentifier::from_der(alg_raw)
        .map_err(|e| malformed(&format!("signatureAlgorithm: {e}")))?;
    let (&unused, sig_bits) = sig
        .data
        .split_first()
        .ok_or_else(|| malformed("empty signature"))?;
    let signature = BitString::new(unused, sig_bits);
    let certs = if rest.is_empty() {
        Vec::new()
    } else {
        let (certs, _) = next(rest, "certs")?;
        let (seq, _) = next(certs.data, "certs")?;
        let mut out = Vec::new();
        let mut i = seq.data;
        while !i.is_empty() {
            let (c, r) = raw(i, "certificate")?;
            out.push(c);
            i = r;
        }
        out
    };
    let signer = check_signer(tbs_raw, &alg, &signature, &certs, issuer, now)?;
    let data = parse_tbs(tbs_raw)?;
    if let (Some(sent), Some(got)) = (nonce, data.nonce)
        && sent != got
    {
        return Err(OcspError::NonceMismatch);
    }
    let single = data
        .responses
        .into_iter()
        .find(|r| r.matches(id))
        .ok_or(OcspError::WrongCertificate)?;
    if single.this_update > now + CLOCK_SKEW_SECS {
        return Err(OcspError::NotCurrent(format!(
            "thisUpdate {} is in the future (now {})",
            rfc3339(single.this_update),
            rfc3339(now)
        )));
    }
    if let Some(next) = single.next_update
        && next + CLOCK_SKEW_SECS < now
    {
        return Err(OcspError::NotCurrent(format!(
            "nextUpdate {} has passed (now {})",
            rfc3339(next),
            rfc3339(now)
        )));
    }
    Ok(OcspAnswer {
        status: single.status,
        this_update: single.this_update,
        next_update: single.next_update,
        signer,
    })
}

/// The signature over `tbs` is the issuer's, or a delegated responder's whose
/// certificate (in `certs`) the issuer signed, with `id-kp-OCSPSigning` and current.
fn check_signer(
    tbs: &[u8],
    alg: &AlgorithmIdentifier<'_>,
    signature: &BitString<'_>,
    certs: &[&[u8]],
    issuer: Issuer<'_>,
    now: i64,
) -> Result<Signer, OcspError> {
    let (_, ca_key) = SubjectPublicKeyInfo::from_der(issuer.spki_der)
        .map_err(|e| OcspError::NoIssuer(format!("issuer key: {e}")))?;
    if x509_parser::verify::verify_signature(&ca_key, alg, signature, tbs).is_ok() {
        return Ok(Signer::Issuer);
    }
    let mut why = "not signed by the issuing CA, and the response carries no responder certificate"
        .to_owned();
    for der in certs {
        let Ok((_, cert)) = X509Certificate::from_der(der) else {
            why = "a responder certificate does not parse".into();
            continue;
        };
        match delegated(&cert, &ca_key, issuer, now) {
            Err(w) => why = w,
            Ok(()) => {
                if x509_parser::verify::verify_signature(cert.public_key(), alg, signature, tbs)
                    .is_ok()
                {
                    return Ok(Signer::Delegated);
                }
                why = format!(
                    "not signed by the key of responder certificate {}",
                    cert.subject()
                );
            }
        }
    }
    Err(OcspError::BadSignature(why))
}

/// Whether `cert` may sign OCSP responses for the CA (RFC 6960 section 4.2.2.2).
fn delegated(
    cert: &X509Certificate<'_>,
    ca_key: &SubjectPublicKeyInfo<'_>,
    issuer: Issuer<'_>,
    now: i64,
) -> Result<(), String> {
    let who = cert.subject().to_string();
    if cert.issuer().as_raw() != issuer.subject_der || cert.verify_signature(Some(ca_key)).is_err()
    {
        return Err(format!(
            "responder certificate {who} is not issued by the certificate's CA"
        ));
    }
    let ocsp_signing = cert.iter_extensions().any(|e| match e.parsed_extension() {
        ParsedExtension::ExtendedKeyUsage(eku) => eku.ocsp_signing,
        _ => false,
    });
    if !ocsp_signing {
        return Err(format!(
            "responder certificate {who} lacks extended key usage id-kp-OCSPSigning"
        ));
    }
    let v = cert.validity();
    if now < v.not_before.timestamp() || now > v.not_after.timestamp() {
        return Err(format!(
            "responder certificate {who} is outside its validity period"
        ));
    }
    Ok(())
}

struct Tbs<'a> {
    responses: Vec<Single>,
    nonce: Option<&'a [u8]>,
}

struct Single {
    hash_alg: Vec<u8>,
    name_hash: Vec<u8>,
    key_hash: Vec<u8>,
    serial: Vec<u8>,
    status: CertStatus,
    this_update: i64,
    next_update: Option<i64>,
}

impl Single {
    fn matches(&self, id: &CertId) -> bool {
        self.hash_alg == SHA1_OID
            && self.name_hash == id.issuer_name_hash
            && self.key_hash == id.issuer_key_hash
            && self.serial == id.serial
    }
}

fn parse_tbs(tbs: &[u8]) -> Result<Tbs<'_>, OcspError> {
    let (data, _) = next(tbs, "ResponseData")?;
    let mut i = data.data;
    let (mut f, mut r) = next(i, "ResponseData field")?;
    if context(&f, 0) {
        (f, r) = next(r, "responderID")?; // skip version
    }
    let _responder_id = f;
    let (_produced_at, r) = next(r, "producedAt")?;
    let (responses, r) = next(r, "responses")?;
    let mut nonce = None;
    if !r.is_empty() {
        let (exts, _) = next(r, "responseExtensions")?;
        if context(&exts, 1) {
            nonce = find_nonce(exts.data)?;
        }
    }
    let mut out = Vec::new();
    i = responses.data;
    while !i.is_empty() {
        let (single, rest) = next(i, "SingleResponse")?;
        out.push(parse_single(single.data)?);
        i = rest;
    }
    Ok(Tbs {
        responses: out,
        nonce,
    })
}

fn find_nonce(exts: &[u8]) -> Result<Option<&[u8]>, OcspError> {
    let (seq, _) = next(exts, "Extensions")?;
    let mut i = seq.data;
    while !i.is_empty() {
        let (ext, rest) = next(i, "Extension")?;
        let (oid, r) = next(ext.data, "extnID")?;
        if oid.data == NONCE_OID {
            let (mut value, r2) = next(r, "extnValue")?;
            if value.tag() == Tag::Boolean {
                (value, _) = next(r2, "extnValue")?;
            }
            // RFC 8954 wraps the nonce in an OCTET STRING; older responders did not.
            return Ok(Some(match next(value.data, "nonce") {
                Ok((inner, [])) if inner.tag() == Tag::OctetString => inner.data,
                _ => value.data,
            }));
        }
        i = rest;
    }
    Ok(None)
}

fn parse_single(s: &[u8]) -> Result<Single, OcspError> {
    let (cert_id, r) = next(s, "certID")?;
    let (alg, c) = next(cert_id.data, "hashAlgorithm")?;
    let (oid_raw, _) = raw(alg.data, "hash OID")?;
    let (name_hash, c) = next(c, "issuerNameHash")?;
    let (key_hash, c) = next(c, "issuerKeyHash")?;
    let (serial, _) = next(c, "serialNumber")?;
    let (status, r) = next(r, "certStatus")?;
    let status = match (status.class(), status.tag().0) {
        (Class::ContextSpecific, 0) => CertStatus::Good,
        (Class::ContextSpecific, 1) => {
            let (time, rest) = next(status.data, "revocationTime")?;
            let reason = match next(rest, "revocationReason") {
                Ok((r, _)) => next(r.data, "CRLReason")
                    .ok()
                    .and_then(|(e, _)| e.data.last().copied()),
                Err(_) => None,
            };
            CertStatus::Revoked {
                time: generalized(time.data)?,
                reason,
            }
        }
        (Class::ContextSpecific, 2) => CertStatus::Unknown,
        _ => return Err(malformed("certStatus is not good, revoked or unknown")),
    };
    let (this_update, r) = next(r, "thisUpdate")?;
    let next_update = match next(r, "nextUpdate") {
        Ok((n, _)) if context(&n, 0) => {
            let (t, _) = next(n.data, "nextUpdate")?;
            Some(generalized(t.data)?)
        }
        _ => None,
    };
    Ok(Single {
        hash_alg: oid_raw.to_vec(),
        name_hash: name_hash.data.to_vec(),
        key_hash: key_hash.data.to_vec(),
        serial: serial.data.to_vec(),
        status,
        this_update: generalized(this_update.data)?,
        next_update,
    })
}

/// A GeneralizedTime `YYYYMMDDHHMMSS[.fff]Z` as Unix seconds.
fn generalized(text: &[u8]) -> Result<i64, OcspError> {
    let bad = || malformed("a GeneralizedTime is not YYYYMMDDHHMMSS[.f]Z");
    let s = std::str::from_utf8(text).map_err(|_| bad())?;
    let s = s.strip_suffix('Z').ok_or_else(bad)?;
    let s = s.split('.').next().unwrap_or_default();
    if s.len() != 14 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n = |a: usize, b: usize| s[a..b].parse::<u32>().map_err(|_| bad());
    let month = time::Month::try_from(n(4, 6)? as u8).map_err(|_| bad())?;
    let date = time::Date::from_calendar_date(n(0, 4)? as i32, month, n(6, 8)? as u8)
        .map_err(|_| bad())?;
    let t = date
        .with_hms(n(8, 10)? as u8, n(10, 12)? as u8, n(12, 14)? as u8)
        .map_err(|_| bad())?;
    Ok(t.assume_utc().unix_timestamp())
}

/// RFC 3339 of Unix seconds, for messages.
pub(crate) fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

fn context(any: &Any<'_>, tag: u32) -> bool {
    any.class() == Class::ContextSpecific && any.tag().0 == tag
}

/// The next TLV of `i` and what follows it.
fn next<'a>(i: &'a [u8], what: &str) -> Result<(Any<'a>, &'a [u8]), OcspError> {
    let (rest, any) = Any::from_der(i).map_err(|e| malformed(&format!("{what}: {e}")))?;
    Ok((any, rest))
}

/// The next TLV of `i` as raw bytes (tag and length included) and what follows it.
fn raw<'a>(i: &'a [u8], what: &str) -> Result<(&'a [u8], &'a [u8]), OcspError> {
    let (_, rest) = next(i, what)?;
    Ok((&i[..i.len() - rest.len()], rest))
}

fn malformed(why: &str) -> OcspError {
    OcspError::Malformed(why.to_owned())
}

impl fmt::Display for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Signer::Issuer => "issuer",
            Signer::Delegated => "delegated",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ocsp::fixture::{self, good, issuer_of, response, revoked, unknown};

    const NOW: i64 = 1_800_000_000;

    struct Case {
        ca: fixture::TestCa,
        subject: Vec<u8>,
        spki: Vec<u8>,
        id: CertId,
    }

    fn case() -> Case {
        let ca = fixture::ca("OCSP CA");
        let (subject, spki, id) = issuer_of(&ca, &[0x10, 0x01]);
        Case {
            ca,
            subject,
            spki,
            id,
        }
    }

    impl Case {
        fn verify(
            &self,
            body: &[u8],
            nonce: Option<&[u8]>,
            now: i64,
        ) -> Result<OcspAnswer, OcspError> {
            let issuer = Issuer {
                subject_der: &self.subject,
                spki_der: &self.spki,
            };
            verify(body, &self.id, issuer, nonce, now)
        }
    }

    #[test]
    fn good_revoked_and_unknown_signed_by_the_issuer() {
        let c = case();
        let key = c.ca.key();
        let a = c
            .verify(
                &response(&c.id, &good(), NOW - 60, Some(NOW + 3600), key, &[], None),
                None,
                NOW,
            )
            .unwrap();
        assert_eq!(a.status, CertStatus::Good);
        assert_eq!(
            (a.this_update, a.next_update, a.signer),
            (NOW - 60, Some(NOW + 3600), Signer::Issuer)
        );
        let a = c
            .verify(
                &response(&c.id, &revoked(NOW - 7200), NOW - 60, None, key, &[], None),
                None,
                NOW,
            )
            .unwrap();
        assert_eq!(
            a.status,
            CertStatus::Revoked {
                time: NOW - 7200,
                reason: Some(1)
            }
        );
        let a = c
            .verify(
                &response(&c.id, &unknown(), NOW, None, key, &[], None),
                None,
                NOW,
            )
            .unwrap();
        assert_eq!(a.status, CertStatus::Unknown);
    }

    #[test]
    fn expired_and_future_responses_are_not_current_within_the_skew() {
        let c = case();
        let body = response(
            &c.id,
            &good(),
            NOW - 3600,
            Some(NOW - 600),
            c.ca.key(),
            &[],
            None,
        );
        assert!(
            matches!(c.verify(&body, None, NOW), Err(OcspError::NotCurrent(m)) if m.contains("nextUpdate"))
        );
        // Inside the 5 minutes of skew: still current.
        assert!(c.verify(&body, None, NOW - 600 + CLOCK_SKEW_SECS).is_ok());
        let body = response(&c.id, &good(), NOW + 3600, None, c.ca.key(), &[], None);
        assert!(
            matches!(c.verify(&body, None, NOW), Err(OcspError::NotCurrent(m)) if m.contains("future"))
        );
    }

    #[test]
    fn a_stranger_s_signature_or_another_certificate_is_refused() {
        let c = case();
        let stranger = fixture::ca("Stranger");
        let body = response(&c.id, &good(), NOW, None, stranger.key(), &[], None);
        assert!(matches!(
            c.verify(&body, None, NOW),
            Err(OcspError::BadSignature(_))
        ));
        let (_, _, other) = issuer_of(&c.ca, &[0x10, 0x02]);
        let body = response(&other, &good(), NOW, None, c.ca.key(), &[], None);
        assert_eq!(c.verify(&body, None, NOW), Err(OcspError::WrongCertificate));
        // Tampered after signing.
        let mut body = response(&c.id, &revoked(NOW - 10), NOW, None, c.ca.key(), &[], None);
        let at = body.windows(2).position(|w| w == [0xa1, 0x16]).unwrap();
        body[at + 2 + 2 + 5] ^= 1;
        assert!(c.verify(&body, None, NOW).is_err());
    }

    #[test]
    fn delegated_responders_need_ocsp_signing_and_the_ca_s_signature() {
        let c = case();
        let (cert, key) = fixture::responder(&c.ca, true);
        let body = response(
            &c.id,
            &good(),
            NOW,
            None,
            &key,
            std::slice::from_ref(&cert),
            None,
        );
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let body_now = response(
            &c.id,
            &good(),
            now,
            None,
            &key,
            std::slice::from_ref(&cert),
            None,
        );
        assert_eq!(
            c.verify(&body_now, None, now).unwrap().signer,
            Signer::Delegated
        );
        // rcgen's certificates start in 1975 and end in 4096: NOW is inside too.
        assert!(c.verify(&body, None, NOW).is_ok());
        let (cert, key) = fixture::responder(&c.ca, false);
        let body = response(&c.id, &good(), NOW, None, &key, &[cert], None);
        assert!(
            matches!(c.verify(&body, None, NOW), Err(OcspError::BadSignature(m)) if m.contains("OCSPSigning"))
        );
        let stranger = fixture::ca("Stranger");
        let (cert, key) = fixture::responder(&stranger, true);
        let body = response(&c.id, &good(), NOW, None, &key, &[cert], None);
        assert!(
            matches!(c.verify(&body, None, NOW), Err(OcspError::BadSignature(m)) if m.contains("not issued"))
        );
    }

    #[test]
    fn an_echoed_nonce_must_be_the_one_sent() {
        let c = case();
        let body = response(
            &c.id,
            &good(),
            NOW,
            None,
            c.ca.key(),
            &[],
            Some(b"0123456789abcdef"),
        );
        assert!(c.verify(&body, Some(b"0123456789abcdef"), NOW).is_ok());
        assert_eq!(
            c.verify(&body, Some(b"fedcba9876543210"), NOW),
            Err(OcspError::NonceMismatch)
        );
        // A responder that does not echo nonces (pre-signed answers) is accepted.
        let body = response(&c.id, &good(), NOW, None, c.ca.key(), &[], None);
        assert!(c.verify(&body, Some(b"0123456789abcdef"), NOW).is_ok());
    }

    #[test]
    fn error_statuses_and_garbage() {
        let c = case();
        let try_later = [0x30, 0x03, 0x0a, 0x01, 0x03];
        assert_eq!(
            c.verify(&try_later, None, NOW),
            Err(OcspError::ResponderStatus(3))
        );
        assert!(
            OcspError::ResponderStatus(3)
                .to_string()
                .contains("tryLater")
        );
        assert!(matches!(
            c.verify(b"<html>", None, NOW),
            Err(OcspError::Malformed(_))
        ));
        assert_eq!(generalized(b"20240101000000Z").unwrap(), 1_704_067_200);
        assert_eq!(generalized(b"20240101000000.5Z").unwrap(), 1_704_067_200);
        assert!(generalized(b"240101000000Z").is_err());
    }
}
