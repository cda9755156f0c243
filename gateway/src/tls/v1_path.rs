//! Paths for X.509 version 1 client certificates.
//!
//! webpki accepts only version 3 certificates, but `openssl x509 -req -CA ... -CAkey ...`
//! without `-extfile` issues version 1, and OpenSSL (so Postfix) accepts such client
//! certificates. On a listener that accepts them (`tls.allowVersion1ClientCertificates`),
//! when webpki refuses an end-entity certificate for its version alone, this module builds and checks the path the way webpki would for a version 3 certificate
//! without extensions: issuer found by name among the presented intermediates and the
//! trust anchors, each signature checked with webpki's own algorithms (ring), validity
//! periods at `now`, and for every intermediate a version 3 CA certificate (basicConstraints
//! `cA`, path length, extended key usage allowing client authentication if present, no
//! unknown critical extension, name constraints). A version 1 certificate has no extended
//! key usage, so it is accepted for client authentication as OpenSSL does. Errors are
//! webpki's, ranked as webpki ranks them, so the caller reports the same reasons and TLS
//! alerts as for a version 3 certificate. Revocation is the caller's (it checks every
//! certificate of the returned path).
//!
//! The search is bounded like webpki's, with the same [`Budget`]: every presented
//! intermediate examined as a candidate issuer spends a path-building call (200,000) and
//! every signature check a signature (100); when either runs out the search stops with
//! webpki's `MaximumPathBuildCallsExceeded` / `MaximumSignatureChecksExceeded`. Without
//! it, a leaf followed by n self-made "CA" certificates all named as its issuer (a name
//! no trust anchor has, so no signature is ever checked) was searched over every ordering
//! of up to six of them: n = 12 took seconds, n = 30 hours. Presented certificates are
//! parsed and indexed by subject once, so each step costs only the candidates it can
//! use, and the whole search costs at most the budget, whatever the client sends. Name
//! constraints need no budget here: no name is compared against them (a directoryName
//! constraint, or any subjectAltName below a constraining CA, is refused outright).

use std::collections::HashMap;

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
use super::budget::{Budget, is_exhausted};

/// webpki's limit on intermediates in a path.
const MAX_INTERMEDIATES: usize = 6;

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

    fn subject(&self) -> &'a [u8] {
        self.cert.tbs_certificate.subject.as_raw()
    }

    fn issuer(&self) -> &'a [u8] {
        self.cert.tbs_certificate.issuer.as_raw()
    }

    fn spki(&self) -> &'a [u8] {
        self.cert.tbs_certificate.subject_pki.raw
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

/// Verify the path of a version 1 end-entity certificate at `now`, within webpki's
/// [`Budget`].
pub fn verify_v1_path(
    algs: &[&dyn SignatureVerificationAlgorithm],
    anchors: &TrustAnchors,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
) -> Result<V1Path, Error> {
    verify_v1_path_within(
        algs,
        anchors,
        end_entity,
        intermediates,
        now,
        &mut Budget::default(),
    )
    .0
}

/// [`verify_v1_path`] spending `budget`, and the work it did (for the tests and the
/// fuzz target, which check that the work stays within the budget).
pub fn verify_v1_path_within(
    algs: &[&dyn SignatureVerificationAlgorithm],
    anchors: &TrustAnchors,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
    budget: &mut Budget,
) -> (Result<V1Path, Error>, Work) {
    let mut work = Work::default();
    let result = build_path(
        algs,
        anchors,
        end_entity,
        intermediates,
        now,
        budget,
        &mut work,
    );
    (result, work)
}

/// What one path build did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Work {
    /// Times the search was entered: once for the end entity, once per intermediate
    /// tried on the path.
    pub calls: usize,
    /// Presented intermediates examined as the issuer of the path's head (each spends a
    /// path-building call of the budget).
    pub candidates: usize,
    /// Signatures checked (each spends a signature of the budget).
    pub signatures: usize,
}

fn build_path(
    algs: &[&dyn SignatureVerificationAlgorithm],
    anchors: &TrustAnchors,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
    budget: &mut Budget,
    work: &mut Work,
) -> Result<V1Path, Error> {
    let leaf = Parsed::new(end_entity)?;
    if !matches!(leaf.cert.version(), X509Version::V1 | X509Version::V2) {
        return Err(Error::UnsupportedCertVersion);
    }
    check_validity(&leaf, now)?;
    // An anchor that does not parse here cannot be a v1 certificate's issuer; webpki
    // accepted all of them when the listener was configured.
    let anchor_certs: Vec<Option<Parsed<'_>>> = (0..anchors.anchors().len())
        .map(|i| Parsed::new(anchors.certificate(i)).ok())
        .collect();
    let mut anchors_by_subject: HashMap<&[u8], Vec<usize>> = HashMap::new();
    for (i, anchor) in anchor_certs.iter().enumerate() {
        if let Some(anchor) = anchor {
            anchors_by_subject
                .entry(anchor.subject())
                .or_default()
                .push(i);
        }
    }
    // webpki parses (and so version-checks) every presented certificate, at every step,
    // before comparing names: one it refuses adds its error to every step's. Here each
    // is parsed once, and the usable ones are indexed by subject, so that a step only
    // looks at the candidates that can be the issuer it needs.
    let mut unusable = None;
    let mut candidates = Vec::new();
    for (index, der) in intermediates.iter().enumerate() {
        match Parsed::new(der).and_then(|cert| check_parsed_like_webpki(&cert).map(|()| cert)) {
            Ok(cert) => candidates.push(Candidate {
                index,
                facts: CaFacts::new(&cert, now),
                cert,
            }),
            Err(e) => {
                unusable = Some(match unusable {
                    Some(old) => most_specific(old, e),
                    None => e,
                });
            }
        }
    }
    let mut by_subject: HashMap<&[u8], Vec<usize>> = HashMap::new();
    for (j, c) in candidates.iter().enumerate() {
        by_subject.entry(c.cert.subject()).or_default().push(j);
    }
    // No certificate twice on a path (RFC 4158 section 5.2): "the same" is the same
    // subject and key, as in webpki. Each distinct pair gets an id; the leaf's is 0.
    let mut ids: HashMap<(&[u8], &[u8]), usize> = HashMap::new();
    ids.insert((leaf.subject(), leaf.spki()), 0);
    let identity: Vec<usize> = candidates
        .iter()
        .map(|c| {
            let next = ids.len();
            *ids.entry((c.cert.subject(), c.cert.spki())).or_insert(next)
        })
        .collect();
    let mut on_path = vec![false; ids.len()];
    on_path[0] = true;
    let mut search = Search {
        algs,
        leaf: &leaf,
        anchors: &anchor_certs,
        anchors_by_subject: &anchors_by_subject,
        candidates: &candidates,
        by_subject: &by_subject,
        identity: &identity,
        unusable,
        budget,
        work,
        path: Vec::new(),
        on_path,
    };
    let anchor = search.build()?;
    Ok(V1Path {
        intermediates: search.path.iter().map(|&j| candidates[j].index).collect(),
        anchor,
    })
}

/// A presented intermediate that webpki would parse, with what can be decided about it
/// as an issuer before knowing the path.
struct Candidate<'a> {
    /// Its position among the presented intermediates.
    index: usize,
    cert: Parsed<'a>,
    facts: CaFacts,
}

/// The issuer checks of a candidate that do not depend on the path: its validity period
/// at `now`, its basic constraints and its extended key usage.
struct CaFacts {
    validity: Result<(), Error>,
    /// `None` when not a CA; else its path length constraint.
    ca: Option<Option<usize>>,
    eku: Result<(), Error>,
}

impl CaFacts {
    fn new(ca: &Parsed<'_>, now: UnixTime) -> Self {
        let mut basic = None;
        let mut eku = None;
        for ext in ca.cert.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::BasicConstraints(b) => basic = Some(b),
                ParsedExtension::ExtendedKeyUsage(e) => eku = Some((e, ext.value)),
                _ => {}
            }
        }
        let eku = match eku {
            Some((eku, raw)) if !eku.client_auth => {
                let present = eku_oids(raw);
                Err(if present.is_empty() {
                    Error::EmptyEkuExtension
                } else {
                    Error::RequiredEkuNotFoundContext(RequiredEkuNotFoundContext {
                        required: webpki::KeyUsage::client_auth(),
                        present,
                    })
                })
            }
            _ => Ok(()),
        };
        Self {
            validity: check_validity(ca, now),
            ca: basic
                .filter(|b| b.ca)
                .map(|b| b.path_len_constraint.map(|len| len as usize)),
            eku,
        }
    }

    /// The candidate as an intermediate `sub_ca_count` CAs above the end entity's issuer:
    /// a valid CA whose extended key usage, if any, allows client authentication
    /// (checked in this order, as webpki does).
    fn check(&self, sub_ca_count: usize) -> Result<(), Error> {
        self.validity.clone()?;
        match self.ca {
            None => return Err(Error::EndEntityUsedAsCa),
            Some(Some(len)) if sub_ca_count > len => {
                return Err(Error::PathLenConstraintViolated);
            }
            Some(_) => {}
        }
        self.eku.clone()
    }
}

struct Search<'s, 'a> {
    algs: &'s [&'s dyn SignatureVerificationAlgorithm],
    leaf: &'s Parsed<'a>,
    anchors: &'s [Option<Parsed<'a>>],
    anchors_by_subject: &'s HashMap<&'a [u8], Vec<usize>>,
    candidates: &'s [Candidate<'a>],
    by_subject: &'s HashMap<&'a [u8], Vec<usize>>,
    /// Per candidate, the id of its (subject, key).
    identity: &'s [usize],
    /// The most specific error of the presented certificates webpki would not parse.
    unusable: Option<Error>,
    budget: &'s mut Budget,
    work: &'s mut Work,
    /// Candidates chosen so far, the leaf's issuer first.
    path: Vec<usize>,
    /// Per (subject, key) id: on the path (the leaf always is).
    on_path: Vec<bool>,
}

impl<'s, 'a> Search<'s, 'a> {
    /// The certificate at the head of the path (the last intermediate, or the leaf).
    fn head(&self) -> &'s Parsed<'a> {
        match self.path.last() {
            Some(&j) => &self.candidates[j].cert,
            None => self.leaf,
        }
    }

    /// Find a trust anchor for the path ending at its head, extending the path through the
    /// presented intermediates (depth first, anchors before intermediates, as webpki).
    /// Every candidate examined spends a path-building call — also one skipped because it
    /// is already on the path, which webpki does not count, so that the work is bounded
    /// by the budget whatever the client presents.
    fn build(&mut self) -> Result<usize, Error> {
        self.work.calls += 1;
        let issuer = self.head().issuer();
        let mut error = Error::UnknownIssuer;
        let anchors_by_subject = self.anchors_by_subject;
        for &i in anchors_by_subject.get(issuer).into_iter().flatten() {
            let anchor = self.anchors[i]
                .as_ref()
                .expect("only parsed anchors are indexed");
            match self.check_signed_path(anchor) {
                Ok(()) => return Ok(i),
                Err(e) if is_exhausted(&e) => return Err(e),
                Err(e) => error = most_specific(error, e),
            }
        }
        if let Some(e) = &self.unusable {
            error = most_specific(error, e.clone());
        }
        let by_subject = self.by_subject;
        for &j in by_subject.get(issuer).into_iter().flatten() {
            self.work.candidates += 1;
            self.budget.consume_build_chain_call()?;
            let id = self.identity[j];
            if self.on_path[id] {
                continue;
            }
            if self.path.len() == MAX_INTERMEDIATES {
                error = most_specific(error, Error::MaximumPathDepthExceeded);
                continue;
            }
            if let Err(e) = self.candidates[j].facts.check(self.path.len()) {
                error = most_specific(error, e);
                continue;
            }
            self.path.push(j);
            self.on_path[id] = true;
            match self.build() {
                Ok(anchor) => return Ok(anchor),
                Err(e) if is_exhausted(&e) => return Err(e),
                Err(e) => error = most_specific(error, e),
            }
            self.path.pop();
            self.on_path[id] = false;
        }
        Err(error)
    }

    /// Signatures from the anchor down to the leaf, and the name constraints of the
    /// anchor and of each intermediate over the certificates below it.
    fn check_signed_path(&mut self, anchor: &Parsed<'a>) -> Result<(), Error> {
        let mut chain: Vec<&Parsed<'a>> = self
            .path
            .iter()
            .rev()
            .map(|&j| &self.candidates[j].cert)
            .collect();
        chain.push(self.leaf);
        let mut signer = anchor;
        for cert in &chain {
            self.budget.consume_signature()?;
            self.work.signatures += 1;
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
        crate::crypto::provider()
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

    pub(crate) fn anchors(cas: &[&CertifiedIssuer<'_, KeyPair>]) -> TrustAnchors {
        TrustAnchors::new(cas.iter().map(|c| c.der().clone()).collect()).unwrap()
    }

    pub(crate) fn root(cn: &str) -> CertifiedIssuer<'static, KeyPair> {
        CertifiedIssuer::self_signed(ca_params(cn), KeyPair::generate().unwrap()).unwrap()
    }

    /// `n` self-signed "CA" certificates all named `cn`, each with its own key.
    fn same_name_cas(cn: &str, n: usize) -> Vec<CertificateDer<'static>> {
        (0..n).map(|_| root(cn).der().clone()).collect()
    }

    #[test]
    fn a_flood_of_same_name_cas_no_anchor_has_is_refused_within_the_budget() {
        // The attack: a v1 leaf whose issuer no anchor names, followed by self-made CAs
        // of that name; every ordering of up to six of them is a candidate path.
        let anchor = root("V1 Unit CA");
        let evil = root("Evil CA");
        let leaf = v1_cert("alice", &evil, -60, 3600);
        let flood = same_name_cas("Evil CA", 30);
        let a = anchors(&[&anchor]);
        let started = std::time::Instant::now();
        let mut budget = Budget::default();
        let (result, work) =
            verify_v1_path_within(algs(), &a, &leaf, &flood, UnixTime::now(), &mut budget);
        let took = started.elapsed();
        eprintln!("30 same-name CAs: {result:?} after {work:?} in {took:?}");
        assert_eq!(result, Err(Error::MaximumPathBuildCallsExceeded));
        assert_eq!(budget.build_chain_calls, 0);
        // Each candidate spends one call; the one that found none left is the last.
        assert_eq!(work.candidates, crate::tls::budget::BUILD_CHAIN_CALLS + 1);
        assert!(work.calls <= work.candidates + 1, "{work:?}");
        assert_eq!(work.signatures, 0, "no anchor has the name");
        // Bounded work, so quick even unoptimised (before: hours for n = 30).
        assert!(took < std::time::Duration::from_secs(5), "{took:?}");

        // A smaller budget stops it sooner, at exactly its size.
        let mut small = Budget {
            build_chain_calls: 1_000,
            signatures: 100,
        };
        let (result, work) =
            verify_v1_path_within(algs(), &a, &leaf, &flood, UnixTime::now(), &mut small);
        assert_eq!(result, Err(Error::MaximumPathBuildCallsExceeded));
        assert_eq!(work.candidates, 1_001);

        // A few of them are searched exhaustively and fail as before.
        assert_eq!(
            verify_v1_path(algs(), &a, &leaf, &flood[..3], UnixTime::now()),
            Err(Error::UnknownIssuer)
        );
    }

    #[test]
    fn a_flood_named_like_the_anchor_runs_out_of_signatures() {
        // Every step reaches the anchor by name, so every step checks a signature (which
        // fails: the "CAs" are self-made).
        let anchor = root("V1 Unit CA");
        let fake = root("V1 Unit CA");
        let leaf = v1_cert("alice", &fake, -60, 3600);
        let flood = same_name_cas("V1 Unit CA", 30);
        let mut budget = Budget::default();
        let (result, work) = verify_v1_path_within(
            algs(),
            &anchors(&[&anchor]),
            &leaf,
            &flood,
            UnixTime::now(),
            &mut budget,
        );
        assert_eq!(result, Err(Error::MaximumSignatureChecksExceeded));
        assert_eq!(work.signatures, crate::tls::budget::SIGNATURES);
        assert_eq!(budget.signatures, 0);
    }

    #[test]
    fn copies_of_one_certificate_spend_the_budget_too() {
        // Certificates with the same subject and key cannot both be on a path; webpki skips
        // them without counting, which lets many copies cost (copies x calls). Here each
        // one examined is counted.
        let anchor = root("V1 Unit CA");
        let issuer_params = ca_params("Evil CA");
        let key = KeyPair::generate().unwrap();
        let copies: Vec<CertificateDer<'static>> = (0..40u8)
            .map(|i| {
                let mut p = issuer_params.clone();
                p.serial_number = Some(rcgen::SerialNumber::from_slice(&[i + 1]));
                p.self_signed(&key).unwrap().der().clone()
            })
            .collect();
        let evil = Issuer::new(ca_params("Evil CA"), KeyPair::generate().unwrap());
        let leaf = v1_cert("alice", &evil, -60, 3600);
        let (result, work) = verify_v1_path_within(
            algs(),
            &anchors(&[&anchor]),
            &leaf,
            &copies,
            UnixTime::now(),
            &mut Budget::default(),
        );
        assert_eq!(result, Err(Error::UnknownIssuer));
        // Each copy is tried once at the top, and below it every copy is seen and skipped.
        assert_eq!(work.calls, 41);
        assert_eq!(work.candidates, 40 + 40 * 40);
    }

    #[test]
    fn the_right_issuer_is_still_found_among_same_name_decoys() {
        let root_ca = root("Root");
        let mid =
            CertifiedIssuer::signed_by(ca_params("Mid"), KeyPair::generate().unwrap(), &root_ca)
                .unwrap();
        let leaf = v1_cert("alice", &mid, -60, 3600);
        // Decoys of the same name from another issuer come first.
        let nowhere = root("Nowhere");
        let mut chain: Vec<CertificateDer<'static>> = (0..20)
            .map(|_| {
                CertifiedIssuer::signed_by(ca_params("Mid"), KeyPair::generate().unwrap(), &nowhere)
                    .unwrap()
                    .der()
                    .clone()
            })
            .collect();
        chain.push(mid.der().clone());
        let (result, work) = verify_v1_path_within(
            algs(),
            &anchors(&[&root_ca]),
            &leaf,
            &chain,
            UnixTime::now(),
            &mut Budget::default(),
        );
        assert_eq!(
            result,
            Ok(V1Path {
                intermediates: vec![20],
                anchor: 0
            })
        );
        assert_eq!(work.candidates, 21);
        assert_eq!(work.signatures, 2);
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

    /// The fuzz target's input (fuzz/fuzz_targets/v1_path.rs): anchor count, time, small
    /// budget, then (u16 big-endian length, DER) certificates.
    fn fuzz_input(
        anchors: &[&CertificateDer<'_>],
        leaf: &CertificateDer<'_>,
        presented: &[CertificateDer<'_>],
        small: u8,
    ) -> Vec<u8> {
        let now = u32::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap();
        let mut out = vec![u8::try_from(anchors.len()).unwrap()];
        out.extend(now.to_be_bytes());
        out.push(small);
        for der in anchors.iter().copied().chain([leaf]).chain(presented) {
            out.extend(u16::try_from(der.len()).unwrap().to_be_bytes());
            out.extend_from_slice(der);
        }
        out
    }

    /// The fuzz target's seeds in fuzz/seeds/v1_path. Each carries the time it was
    /// written, at which its certificates are valid, so it stays meaningful. Every run
    /// builds them all and checks the committed corpus has each; with
    /// `POSTERN_WRITE_FUZZ_SEEDS=1` it (re)writes them into the source tree.
    #[test]
    fn write_v1_path_fuzz_seeds() {
        let year = 365 * 24 * 3600;
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/v1_path");
        let root_ca = root("Root");
        let mid =
            CertifiedIssuer::signed_by(ca_params("Mid"), KeyPair::generate().unwrap(), &root_ca)
                .unwrap();
        let direct = v1_cert("alice", &root_ca, -60, year);
        let via_mid = v1_cert("bob", &mid, -60, year);
        let expired = v1_cert("carol", &root_ca, -7200, -3600);
        let evil = root("Evil CA");
        let attacked = v1_cert("mallory", &evil, -60, year);
        let fake = root("Root");
        let forged = v1_cert("eve", &fake, -60, year);
        let mut p = ca_params("Mid");
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        let mid0 = CertifiedIssuer::signed_by(p, KeyPair::generate().unwrap(), &root_ca).unwrap();
        let low = CertifiedIssuer::signed_by(ca_params("Low"), KeyPair::generate().unwrap(), &mid0)
            .unwrap();
        let deep = v1_cert("dave", &low, -60, year);
        let key = KeyPair::generate().unwrap();
        let copies: Vec<CertificateDer<'static>> = (0..8u8)
            .map(|i| {
                let mut p = ca_params("Evil CA");
                p.serial_number = Some(rcgen::SerialNumber::from_slice(&[i + 1]));
                p.self_signed(&key).unwrap().der().clone()
            })
            .collect();
        let seeds: Vec<(&str, Vec<u8>)> = vec![
            ("direct", fuzz_input(&[root_ca.der()], &direct, &[], 4)),
            (
                "through-mid",
                fuzz_input(&[root_ca.der()], &via_mid, &[mid.der().clone()], 4),
            ),
            (
                "mid-as-anchor",
                fuzz_input(&[root_ca.der(), mid.der()], &via_mid, &[], 1),
            ),
            ("expired", fuzz_input(&[root_ca.der()], &expired, &[], 1)),
            (
                "path-len",
                fuzz_input(
                    &[root_ca.der()],
                    &deep,
                    &[low.der().clone(), mid0.der().clone()],
                    2,
                ),
            ),
            (
                "flood-30",
                fuzz_input(
                    &[root_ca.der()],
                    &attacked,
                    &same_name_cas("Evil CA", 30),
                    16,
                ),
            ),
            (
                "flood-named-like-the-anchor",
                fuzz_input(&[root_ca.der()], &forged, &same_name_cas("Root", 12), 255),
            ),
            (
                "copies",
                fuzz_input(&[root_ca.der()], &attacked, &copies, 3),
            ),
        ];
        let write = std::env::var_os("POSTERN_WRITE_FUZZ_SEEDS").is_some_and(|v| v == "1");
        for (name, bytes) in seeds {
            assert!(bytes.len() > 4, "seed {name} is empty");
            if write {
                std::fs::write(dir.join(name), bytes).unwrap();
            } else {
                assert!(
                    dir.join(name).is_file(),
                    "fuzz/seeds/v1_path/{name} is missing; write it with \
                     POSTERN_WRITE_FUZZ_SEEDS=1 cargo test -p postern-gateway write_v1_path_fuzz_seeds"
                );
            }
        }
    }
}
