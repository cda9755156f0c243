//! Paths for X.509 version 1 client certificates.
//!
//! webpki accepts only version 3 certificates, but `openssl x509 -req -CA ... -CAkey ...`
//! without `-extfile` issues version 1, and OpenSSL (so Postfix) accepts such client
//! certificates. When webpki refuses an end-entity certificate for its version alone, this
//! module builds and checks the path the way webpki would for a version 3 certificate
//! without extensions: issuer found by name among the presented intermediates and the
//! trust anchors, each signature checked with webpki's own algorithms (ring), validity
//! periods at `now`, and for every intermediate a version 3 CA certificate (basicConstraints
//! `cA`, path length, extended key usage allowing client authentication if present, no
//! unknown critical extension, name constraints). A version 1 certificate has no extended
//! key usage, so it is accepted for client authentication as OpenSSL does. Errors are
//! webpki's, ranked as webpki ranks them, so the caller reports the same reasons and TLS
//! alerts as for a version 3 certificate. Revocation is the caller's (it checks every
//! certificate of the returned path).

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{
    AlgorithmIdentifier, CertificateDer, SignatureVerificationAlgorithm, SubjectPublicKeyInfoDer,
    UnixTime,
};
use rustls::{CertificateError, DigitallySignedStruct, PeerMisbehaved};
use webpki::{Error, RequiredEkuNotFoundContext, UnsupportedSignatureAlgorithmContext};
use x509_parser::der_parser::asn1_rs::{Any, Tag};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate, X509Version};

use super::TrustAnchors;

/// webpki's limit on intermediates in a path.
const MAX_INTERMEDIATES: usize = 6;
/// webpki's limit on signature checks while building one path.
const MAX_SIGNATURES: usize = 100;

/// A verified path of a version 1 end-entity certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Path {
    /// Indices into the presented intermediates, the end entity's issuer first.
    pub intermediates: Vec<usize>,
    /// Index of the trust anchor the path ends at.
    pub anchor: usize,
}

/// Whether webpki refuses this end-entity certificate for its version alone.
pub fn is_v1_end_entity(end_entity: &CertificateDer<'_>) -> bool {
    matches!(
        webpki::EndEntityCert::try_from(end_entity),
        Err(Error::UnsupportedCertVersion)
    ) && X509Certificate::from_der(end_entity)
        .is_ok_and(|(_, c)| matches!(c.version(), X509Version::V1 | X509Version::V2))
}

/// The key of a version 1 end-entity certificate (for the TLS handshake signature).
fn end_entity_spki(end_entity: &CertificateDer<'_>) -> Result<Vec<u8>, rustls::Error> {
    let (_, cert) = X509Certificate::from_der(end_entity)
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
    Ok(cert.public_key().raw.to_vec())
}

/// The client's TLS 1.3 CertificateVerify signature, made with the key of a version 1
/// certificate (rustls' own check parses the certificate with webpki, which refuses it).
pub fn verify_tls13_signature(
    message: &[u8],
    end_entity: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
    algs: &WebPkiSupportedAlgorithms,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    let spki = end_entity_spki(end_entity)?;
    rustls::crypto::verify_tls13_signature_with_raw_key(
        message,
        &SubjectPublicKeyInfoDer::from(spki.as_slice()),
        dss,
        algs,
    )
}

/// The same for TLS 1.2, where a signature scheme maps to several algorithms (as in
/// rustls' `verify_tls12_signature`).
pub fn verify_tls12_signature(
    message: &[u8],
    end_entity: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
    algs: &WebPkiSupportedAlgorithms,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    let unadvertised =
        || rustls::Error::from(PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme);
    let possible = algs
        .mapping
        .iter()
        .find(|(scheme, _)| *scheme == dss.scheme)
        .map(|(_, algs)| *algs)
        .ok_or_else(unadvertised)?;
    let spki = end_entity_spki(end_entity)?;
    let spki = SubjectPublicKeyInfoDer::from(spki.as_slice());
    let key = webpki::RawPublicKeyEntity::try_from(&spki)
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
    for alg in possible {
        match key.verify_signature(*alg, message, dss.signature()) {
            Ok(()) => return Ok(HandshakeSignatureValid::assertion()),
            Err(Error::UnsupportedSignatureAlgorithmForPublicKeyContext(_)) => continue,
            Err(_) => break,
        }
    }
    Err(rustls::Error::InvalidCertificate(
        CertificateError::BadSignature,
    ))
}

/// One certificate, parsed, with its signed parts as webpki sees them.
struct Parsed<'a> {
    cert: X509Certificate<'a>,
    /// The DER TBSCertificate (what the signature covers).
    tbs: &'a [u8],
    /// Contents of the outer signatureAlgorithm.
    signature_alg: &'a [u8],
    /// The signature bits.
    signature: &'a [u8],
}

impl<'a> Parsed<'a> {
    fn new(der: &'a [u8]) -> Result<Self, Error> {
        let (rest, cert) = X509Certificate::from_der(der).map_err(|_| Error::BadDer)?;
        if !rest.is_empty() {
            return Err(Error::BadDer);
        }
        let (_, outer) = Any::from_der(der).map_err(|_| Error::BadDer)?;
        let body = outer.data;
        let (after_tbs, _) = Any::from_der(body).map_err(|_| Error::BadDer)?;
        let tbs = &body[..body.len() - after_tbs.len()];
        let (after_alg, alg) = Any::from_der(after_tbs).map_err(|_| Error::BadDer)?;
        let (end, sig) = Any::from_der(after_alg).map_err(|_| Error::BadDer)?;
        if alg.tag() != Tag::Sequence || sig.tag() != Tag::BitString || !end.is_empty() {
            return Err(Error::BadDer);
        }
        let signature = match sig.data.split_first() {
            Some((0, bits)) => bits,
            _ => return Err(Error::BadDer),
        };
        if cert.tbs_certificate.signature != cert.signature_algorithm {
            return Err(Error::SignatureAlgorithmMismatch);
        }
        Ok(Self {
            cert,
            tbs,
            signature_alg: alg.data,
            signature,
        })
    }

    fn subject(&self) -> &[u8] {
        self.cert.subject().as_raw()
    }

    fn issuer(&self) -> &[u8] {
        self.cert.issuer().as_raw()
    }

    fn spki(&self) -> &[u8] {
        self.cert.public_key().raw
    }
}

/// The webpki error rank (webpki's `Error::rank`, which is not public), for the errors
/// this module produces: the most specific error of all candidate paths is reported.
fn rank(e: &Error) -> u32 {
    #[allow(deprecated)]
    match e {
        Error::CertNotValidYet { .. } | Error::CertExpired { .. } => 290,
        Error::InvalidSignatureForPublicKey => 260,
        Error::SignatureAlgorithmMismatch => 250,
        Error::EmptyEkuExtension => 245,
        Error::RequiredEkuNotFound | Error::RequiredEkuNotFoundContext(_) => 240,
        Error::NameConstraintViolation => 230,
        Error::PathLenConstraintViolated => 220,
        Error::CaUsedAsEndEntity | Error::EndEntityUsedAsCa => 210,
        Error::InvalidCertValidity => 190,
        Error::UnsupportedSignatureAlgorithmForPublicKey
        | Error::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => 150,
        Error::UnsupportedSignatureAlgorithm | Error::UnsupportedSignatureAlgorithmContext(_) => {
            140
        }
        Error::UnsupportedCriticalExtension | Error::UnsupportedCertVersion => 130,
        Error::MaximumPathDepthExceeded => 61,
        Error::BadDerTime => 20,
        Error::BadDer => 10,
        _ => 0,
    }
}

fn most_specific(old: Error, new: Error) -> Error {
    if rank(&old) >= rank(&new) { old } else { new }
}

fn is_fatal(e: &Error) -> bool {
    matches!(
        e,
        Error::MaximumSignatureChecksExceeded | Error::MaximumPathBuildCallsExceeded
    )
}

/// Verify the path of a version 1 end-entity certificate at `now`.
pub fn verify_v1_path(
    algs: &[&dyn SignatureVerificationAlgorithm],
    anchors: &TrustAnchors,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
) -> Result<V1Path, Error> {
    let leaf = Parsed::new(end_entity)?;
    if !matches!(leaf.cert.version(), X509Version::V1 | X509Version::V2) {
        return Err(Error::UnsupportedCertVersion);
    }
    // An anchor that does not parse here cannot be a v1 certificate's issuer; webpki
    // accepted all of them when the listener was configured.
    let anchor_certs: Vec<Option<Parsed<'_>>> = (0..anchors.anchors().len())
        .map(|i| Parsed::new(anchors.certificate(i)).ok())
        .collect();
    // An intermediate that does not parse (or is not v3) is skipped, as webpki does.
    let presented: Vec<Result<Parsed<'_>, Error>> =
        intermediates.iter().map(|d| Parsed::new(d)).collect();
    let mut search = Search {
        algs,
        now,
        anchors: &anchor_certs,
        presented: &presented,
        signatures: MAX_SIGNATURES,
        path: Vec::new(),
    };
    check_validity(&leaf, now)?;
    match search.build(&leaf) {
        Ok(anchor) => Ok(V1Path {
            intermediates: search.path,
            anchor,
        }),
        Err(e) => Err(e),
    }
}

struct Search<'s, 'a> {
    algs: &'s [&'s dyn SignatureVerificationAlgorithm],
    now: UnixTime,
    anchors: &'s [Option<Parsed<'a>>],
    presented: &'s [Result<Parsed<'a>, Error>],
    signatures: usize,
    /// Intermediates chosen so far, the leaf's issuer first.
    path: Vec<usize>,
}

impl<'a> Search<'_, 'a> {
    /// The certificate at the head of the path (the last intermediate, or the leaf).
    fn head<'h>(&'h self, leaf: &'h Parsed<'a>) -> &'h Parsed<'a> {
        match self.path.last() {
            Some(&i) => self.presented[i]
                .as_ref()
                .expect("only parsed ones are pushed"),
            None => leaf,
        }
    }

    /// Find a trust anchor for the path ending at its head, extending the path through the
    /// presented intermediates (depth first, anchors before intermediates, as webpki).
    fn build(&mut self, leaf: &Parsed<'a>) -> Result<usize, Error> {
        let issuer = self.head(leaf).issuer().to_vec();
        let mut error = Error::UnknownIssuer;
        for (i, anchor) in self.anchors.iter().enumerate() {
            let Some(anchor) = anchor else { continue };
            if anchor.subject() != issuer.as_slice() {
                continue;
            }
            match self.check_signed_path(leaf, anchor) {
                Ok(()) => return Ok(i),
                Err(e) if is_fatal(&e) => return Err(e),
                Err(e) => error = most_specific(error, e),
            }
        }
        for j in 0..self.presented.len() {
            // webpki parses (and so version-checks) a candidate before comparing names.
            let candidate = match self.presented[j]
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|c| {
                    check_parsed_like_webpki(c)?;
                    Ok(c)
                }) {
                Ok(c) => c,
                Err(e) => {
                    error = most_specific(error, e);
                    continue;
                }
            };
            if candidate.subject() != issuer.as_slice() {
                continue;
            }
            // No certificate twice (RFC 4158 section 5.2), and not the leaf itself.
            let same =
                |p: &Parsed<'_>| p.spki() == candidate.spki() && p.subject() == candidate.subject();
            if same(leaf)
                || self
                    .path
                    .iter()
                    .any(|&k| same(self.presented[k].as_ref().expect("parsed")))
            {
                continue;
            }
            if self.path.len() == MAX_INTERMEDIATES {
                error = most_specific(error, Error::MaximumPathDepthExceeded);
                continue;
            }
            if let Err(e) = check_ca(candidate, self.now, self.path.len()) {
                error = most_specific(error, e);
                continue;
            }
            self.path.push(j);
            match self.build(leaf) {
                Ok(anchor) => return Ok(anchor),
                Err(e) if is_fatal(&e) => return Err(e),
                Err(e) => error = most_specific(error, e),
            }
            self.path.pop();
        }
        Err(error)
    }

    /// Signatures from the anchor down to the leaf, and the name constraints of the
    /// anchor and of each intermediate over the certificates below it.
    fn check_signed_path(&mut self, leaf: &Parsed<'a>, anchor: &Parsed<'a>) -> Result<(), Error> {
        let mut chain: Vec<&Parsed<'a>> = self
            .path
            .iter()
            .rev()
            .map(|&k| self.presented[k].as_ref().expect("parsed"))
            .collect();
        chain.push(leaf);
        let mut signer = anchor;
        for cert in &chain {
            if self.signatures == 0 {
                return Err(Error::MaximumSignatureChecksExceeded);
            }
            self.signatures -= 1;
            verify_signed(self.algs, signer.spki(), cert)?;
            signer = cert;
        }
        let mut constraining = vec![anchor];
        constraining.extend(chain.iter().copied().take(chain.len() - 1));
        for (i, ca) in constraining.iter().enumerate() {
            check_name_constraints(ca, &chain[i..])?;
        }
        Ok(())
    }
}

/// `cert`'s signature by the key `spki` (DER SubjectPublicKeyInfo), with the first of
/// `algs` that matches its signature algorithm and the key's algorithm.
fn verify_signed(
    algs: &[&dyn SignatureVerificationAlgorithm],
    spki: &[u8],
    cert: &Parsed<'_>,
) -> Result<(), Error> {
    let spki = SubjectPublicKeyInfoDer::from(spki);
    let key = webpki::RawPublicKeyEntity::try_from(&spki)?;
    let mut wrong_key = None;
    for alg in algs
        .iter()
        .filter(|a| a.signature_alg_id().as_ref() == cert.signature_alg)
    {
        match key.verify_signature(*alg, cert.tbs, cert.signature) {
            Err(e @ Error::UnsupportedSignatureAlgorithmForPublicKeyContext(_)) => {
                wrong_key = Some(e);
            }
            other => return other,
        }
    }
    Err(wrong_key.unwrap_or_else(|| {
        Error::UnsupportedSignatureAlgorithmContext(UnsupportedSignatureAlgorithmContext {
            signature_algorithm_id: cert.signature_alg.to_vec(),
            supported_algorithms: algs
                .iter()
                .map(|a| a.signature_alg_id())
                .collect::<Vec<AlgorithmIdentifier>>(),
        })
    }))
}

fn unix(ts: i64) -> UnixTime {
    UnixTime::since_unix_epoch(std::time::Duration::from_secs(ts.max(0).unsigned_abs()))
}

fn check_validity(cert: &Parsed<'_>, now: UnixTime) -> Result<(), Error> {
    let validity = cert.cert.validity();
    let not_before = unix(validity.not_before.timestamp());
    let not_after = unix(validity.not_after.timestamp());
    if not_before > not_after {
        return Err(Error::InvalidCertValidity);
    }
    if now < not_before {
        return Err(Error::CertNotValidYet {
            time: now,
            not_before,
        });
    }
    if now > not_after {
        return Err(Error::CertExpired {
            time: now,
            not_after,
        });
    }
    Ok(())
}

/// The extensions webpki understands; any other critical one is refused.
fn known_extension(oid: &str) -> bool {
    matches!(
        oid,
        "2.5.29.15" | "2.5.29.17" | "2.5.29.19" | "2.5.29.30" | "2.5.29.31" | "2.5.29.37"
    ) || oid == "1.3.6.1.4.1.11129.2.4.2"
}

/// What webpki refuses when it parses a presented certificate: another version than 3,
/// an unknown critical extension, an unreadable known one.
fn check_parsed_like_webpki(cert: &Parsed<'_>) -> Result<(), Error> {
    if cert.cert.version() != X509Version::V3 {
        return Err(Error::UnsupportedCertVersion);
    }
    for ext in cert.cert.extensions() {
        let oid = ext.oid.to_id_string();
        if ext.critical && !known_extension(&oid) {
            return Err(Error::UnsupportedCriticalExtension);
        }
        if known_extension(&oid)
            && matches!(ext.parsed_extension(), ParsedExtension::ParseError { .. })
        {
            return Err(Error::BadDer);
        }
    }
    Ok(())
}

/// An intermediate `sub_ca_count` CAs above the end entity's issuer (already through
/// [`check_parsed_like_webpki`]): a valid CA whose extended key usage, if any, allows
/// client authentication.
fn check_ca(ca: &Parsed<'_>, now: UnixTime, sub_ca_count: usize) -> Result<(), Error> {
    let mut basic = None;
    let mut eku = None;
    for ext in ca.cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::BasicConstraints(b) => basic = Some(b),
            ParsedExtension::ExtendedKeyUsage(e) => eku = Some((e, ext.value)),
            _ => {}
        }
    }
    check_validity(ca, now)?;
    match basic {
        Some(b) if b.ca => {
            if let Some(len) = b.path_len_constraint
                && sub_ca_count > len as usize
            {
                return Err(Error::PathLenConstraintViolated);
            }
        }
        _ => return Err(Error::EndEntityUsedAsCa),
    }
    if let Some((eku, raw)) = eku
        && !eku.client_auth
    {
        let present = eku_oids(raw);
        if present.is_empty() {
            return Err(Error::EmptyEkuExtension);
        }
        return Err(Error::RequiredEkuNotFoundContext(
            RequiredEkuNotFoundContext {
                required: webpki::KeyUsage::client_auth(),
                present,
            },
        ));
    }
    Ok(())
}

/// The OIDs of an extKeyUsage extension value, as arcs (for the error's context).
fn eku_oids(value: &[u8]) -> Vec<Vec<usize>> {
    let Ok((_, seq)) = Any::from_der(value) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut rest = seq.data;
    while let Ok((next, any)) = Any::from_der(rest) {
        if let Ok(oid) = any.as_oid()
            && let Some(arcs) = oid.iter()
        {
            out.push(arcs.map(|a| a as usize).collect());
        }
        rest = next;
    }
    out
}

/// webpki checks each subject below a constraining CA as a directoryName and refuses any
/// directoryName constraint (it implements none). A version 1 end entity has no other
/// name; an intermediate below a constraining CA that carries subjectAltNames is refused
/// here rather than half-checked (fail closed).
fn check_name_constraints(ca: &Parsed<'_>, below: &[&Parsed<'_>]) -> Result<(), Error> {
    let constraints = ca
        .cert
        .extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::NameConstraints(nc) => Some(nc),
            _ => None,
        });
    let Some(nc) = constraints else {
        return Ok(());
    };
    let subtrees = nc
        .permitted_subtrees
        .iter()
        .chain(nc.excluded_subtrees.iter())
        .flatten();
    if subtrees
        .into_iter()
        .any(|s| matches!(s.base, GeneralName::DirectoryName(_)))
    {
        return Err(Error::NameConstraintViolation);
    }
    let below_has_san = below
        .iter()
        .any(|c| matches!(c.cert.subject_alternative_name(), Ok(Some(_)) | Err(_)));
    if below_has_san {
        return Err(Error::NameConstraintViolation);
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, Issuer, KeyPair, KeyUsagePurpose, SigningKey,
    };

    fn algs() -> &'static [&'static dyn SignatureVerificationAlgorithm] {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .all
    }

    pub(crate) fn ca_params(cn: &str) -> CertificateParams {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p
    }

    /// A version 1 certificate for `cn` signed by `issuer`, valid `[now + from, now +
    /// to]` seconds, with its key. rcgen always writes version 3: its certificate is
    /// rewritten without version and extensions and signed again.
    pub(crate) fn v1_cert_with_key(
        cn: &str,
        issuer: &Issuer<'_, KeyPair>,
        from: i64,
        to: i64,
    ) -> (CertificateDer<'static>, KeyPair) {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        let now = time::OffsetDateTime::now_utc();
        p.not_before = now + time::Duration::seconds(from);
        p.not_after = now + time::Duration::seconds(to);
        let key = KeyPair::generate().unwrap();
        let v3 = p.signed_by(&key, issuer).unwrap();
        (to_v1(v3.der(), issuer.key()), key)
    }

    pub(crate) fn v1_cert(
        cn: &str,
        issuer: &Issuer<'_, KeyPair>,
        from: i64,
        to: i64,
    ) -> CertificateDer<'static> {
        v1_cert_with_key(cn, issuer, from, to).0
    }

    fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        let n = body.len();
        if n < 0x80 {
            v.push(n as u8);
        } else if n < 0x100 {
            v.extend([0x81, n as u8]);
        } else {
            v.extend([0x82, (n >> 8) as u8, n as u8]);
        }
        v.extend_from_slice(body);
        v
    }

    /// Drop the `[0] version` and `[3] extensions` of a TBSCertificate and sign it again
    /// (ECDSA P-256 SHA-256, rcgen's default).
    fn to_v1(v3: &[u8], key: &KeyPair) -> CertificateDer<'static> {
        let (_, outer) = Any::from_der(v3).unwrap();
        let (after_tbs, tbs) = Any::from_der(outer.data).unwrap();
        let (_, alg) = Any::from_der(after_tbs).unwrap();
        let mut fields = Vec::new();
        let mut rest = tbs.data;
        while !rest.is_empty() {
            let (next, _) = Any::from_der(rest).unwrap();
            let field = &rest[..rest.len() - next.len()];
            if field[0] != 0xa0 && field[0] != 0xa3 {
                fields.extend_from_slice(field);
            }
            rest = next;
        }
        let tbs = tlv(0x30, &fields);
        let sig = key.sign(&tbs).unwrap();
        let alg = tlv(0x30, alg.data);
        let bits = tlv(0x03, &[&[0u8][..], sig.as_ref()].concat());
        CertificateDer::from(tlv(0x30, &[tbs, alg, bits].concat()))
    }

    fn anchors(cas: &[&CertifiedIssuer<'_, KeyPair>]) -> TrustAnchors {
        TrustAnchors::new(cas.iter().map(|c| c.der().clone()).collect()).unwrap()
    }

    fn root(cn: &str) -> CertifiedIssuer<'static, KeyPair> {
        CertifiedIssuer::self_signed(ca_params(cn), KeyPair::generate().unwrap()).unwrap()
    }

    #[test]
    fn a_v1_leaf_is_what_webpki_refuses_and_chains_to_its_ca() {
        let ca = root("V1 Unit CA");
        let leaf = v1_cert("alice", &ca, -60, 3600);
        assert!(is_v1_end_entity(&leaf));
        let (_, parsed) = X509Certificate::from_der(&leaf).unwrap();
        assert_eq!(parsed.version(), X509Version::V1);
        let path = verify_v1_path(algs(), &anchors(&[&ca]), &leaf, &[], UnixTime::now());
        assert_eq!(
            path,
            Ok(V1Path {
                intermediates: vec![],
                anchor: 0
            })
        );
        // A v3 certificate is not taken for one.
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, "v3");
        let v3 = p.signed_by(&KeyPair::generate().unwrap(), &ca).unwrap();
        assert!(!is_v1_end_entity(v3.der()));
    }

    #[test]
    fn unknown_ca_bad_signature_and_dates_fail_as_webpki_would() {
        let ca = root("V1 Unit CA");
        let other = root("Other CA");
        let leaf = v1_cert("alice", &other, -60, 3600);
        let v = |leaf: &CertificateDer<'_>, a: &TrustAnchors| {
            verify_v1_path(algs(), a, leaf, &[], UnixTime::now())
        };
        assert_eq!(v(&leaf, &anchors(&[&ca])), Err(Error::UnknownIssuer));
        // Same name, different key: found by name, refused by signature.
        let impostor = root("V1 Unit CA");
        let forged = v1_cert("alice", &impostor, -60, 3600);
        assert_eq!(
            v(&forged, &anchors(&[&ca])),
            Err(Error::InvalidSignatureForPublicKey)
        );
        // Either CA of the same name may be the issuer.
        assert!(v(&forged, &anchors(&[&ca, &impostor])).is_ok());
        let expired = v1_cert("alice", &ca, -7200, -3600);
        assert!(matches!(
            v(&expired, &anchors(&[&ca])),
            Err(Error::CertExpired { .. })
        ));
        let early = v1_cert("alice", &ca, 3600, 7200);
        assert!(matches!(
            v(&early, &anchors(&[&ca])),
            Err(Error::CertNotValidYet { .. })
        ));
        // The date is checked before the issuer, as webpki does.
        let expired_other = v1_cert("alice", &other, -7200, -3600);
        assert!(matches!(
            v(&expired_other, &anchors(&[&ca])),
            Err(Error::CertExpired { .. })
        ));
    }

    #[test]
    fn through_intermediates_which_must_be_v3_client_capable_cas() {
        let root_ca = root("Root");
        let mid =
            CertifiedIssuer::signed_by(ca_params("Mid"), KeyPair::generate().unwrap(), &root_ca)
                .unwrap();
        let leaf = v1_cert("alice", &mid, -60, 3600);
        let a = anchors(&[&root_ca]);
        let v = |chain: &[CertificateDer<'_>], a: &TrustAnchors| {
            verify_v1_path(algs(), a, &leaf, chain, UnixTime::now())
        };
        assert_eq!(v(&[], &a), Err(Error::UnknownIssuer));
        assert_eq!(
            v(&[mid.der().clone()], &a),
            Ok(V1Path {
                intermediates: vec![0],
                anchor: 0
            })
        );
        // An unrelated certificate in the chain is skipped.
        let other = root("Other");
        assert_eq!(
            v(&[other.der().clone(), mid.der().clone()], &a),
            Ok(V1Path {
                intermediates: vec![1],
                anchor: 0
            })
        );
        // The intermediate as an anchor itself.
        assert_eq!(
            v(&[], &anchors(&[&mid])),
            Ok(V1Path {
                intermediates: vec![],
                anchor: 0
            })
        );

        // Not a CA.
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, "Mid");
        let not_ca = CertifiedIssuer::signed_by(p, KeyPair::generate().unwrap(), &root_ca).unwrap();
        let leaf2 = v1_cert("alice", &not_ca, -60, 3600);
        assert_eq!(
            verify_v1_path(algs(), &a, &leaf2, &[not_ca.der().clone()], UnixTime::now()),
            Err(Error::EndEntityUsedAsCa)
        );

        // A CA limited to server authentication.
        let mut p = ca_params("Mid");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_only =
            CertifiedIssuer::signed_by(p, KeyPair::generate().unwrap(), &root_ca).unwrap();
        let leaf3 = v1_cert("alice", &server_only, -60, 3600);
        assert!(matches!(
            verify_v1_path(
                algs(),
                &a,
                &leaf3,
                &[server_only.der().clone()],
                UnixTime::now()
            ),
            Err(Error::RequiredEkuNotFoundContext(_))
        ));

        // An expired intermediate.
        let mut p = ca_params("Mid");
        p.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(2);
        p.not_after = time::OffsetDateTime::now_utc() - time::Duration::days(1);
        let old = CertifiedIssuer::signed_by(p, KeyPair::generate().unwrap(), &root_ca).unwrap();
        let leaf4 = v1_cert("alice", &old, -60, 3600);
        assert!(matches!(
            verify_v1_path(algs(), &a, &leaf4, &[old.der().clone()], UnixTime::now()),
            Err(Error::CertExpired { .. })
        ));

        // pathLenConstraint 0 on the root's child forbids a CA below it.
        let mut p = ca_params("Mid");
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        let mid0 = CertifiedIssuer::signed_by(p, KeyPair::generate().unwrap(), &root_ca).unwrap();
        let low = CertifiedIssuer::signed_by(ca_params("Low"), KeyPair::generate().unwrap(), &mid0)
            .unwrap();
        let leaf5 = v1_cert("alice", &low, -60, 3600);
        assert_eq!(
            verify_v1_path(
                algs(),
                &a,
                &leaf5,
                &[low.der().clone(), mid0.der().clone()],
                UnixTime::now()
            ),
            Err(Error::PathLenConstraintViolated)
        );
        // Without the constraint the two-level path is fine.
        let low2 = CertifiedIssuer::signed_by(ca_params("Low"), KeyPair::generate().unwrap(), &mid)
            .unwrap();
        let leaf6 = v1_cert("alice", &low2, -60, 3600);
        assert_eq!(
            verify_v1_path(
                algs(),
                &a,
                &leaf6,
                &[low2.der().clone(), mid.der().clone()],
                UnixTime::now()
            ),
            Ok(V1Path {
                intermediates: vec![0, 1],
                anchor: 0
            })
        );
    }

    #[test]
    fn a_v1_intermediate_is_refused() {
        let root_ca = root("Root");
        // A v1 "CA" (it cannot say it is one) issuing a v1 leaf.
        let (mid, mid_key) = v1_cert_with_key("Mid", &root_ca, -60, 3600);
        let mid_issuer = Issuer::new(ca_params("Mid"), mid_key);
        let leaf = v1_cert("alice", &mid_issuer, -60, 3600);
        assert_eq!(
            verify_v1_path(
                algs(),
                &anchors(&[&root_ca]),
                &leaf,
                std::slice::from_ref(&mid),
                UnixTime::now()
            ),
            Err(Error::UnsupportedCertVersion)
        );
        // As a trust anchor of its own, it is an anchor like any other.
        let a = TrustAnchors::new(vec![mid]).unwrap();
        assert!(verify_v1_path(algs(), &a, &leaf, &[], UnixTime::now()).is_ok());
    }

    #[test]
    fn directory_name_constraints_are_refused_like_webpki() {
        let mut p = ca_params("Constrained");
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Example");
        p.name_constraints = Some(rcgen::NameConstraints {
            permitted_subtrees: vec![rcgen::GeneralSubtree::DirectoryName(dn)],
            excluded_subtrees: vec![],
        });
        let ca = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
        let leaf = v1_cert("alice", &ca, -60, 3600);
        assert_eq!(
            verify_v1_path(algs(), &anchors(&[&ca]), &leaf, &[], UnixTime::now()),
            Err(Error::NameConstraintViolation)
        );
        // DNS constraints do not concern a certificate without DNS names.
        let mut p = ca_params("Dns Constrained");
        p.name_constraints = Some(rcgen::NameConstraints {
            permitted_subtrees: vec![rcgen::GeneralSubtree::DnsName("example.org".into())],
            excluded_subtrees: vec![],
        });
        let ca = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
        let leaf = v1_cert("alice", &ca, -60, 3600);
        assert!(verify_v1_path(algs(), &anchors(&[&ca]), &leaf, &[], UnixTime::now()).is_ok());
    }
}
