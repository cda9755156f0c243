//! Trust anchors that keep their certificates, so that revocation can be checked above
//! the anchor a verified path ends at.
//!
//! webpki stops a path at the first trust anchor it reaches. Operators commonly put
//! intermediate CAs in a CA bundle next to their root (the DoD bundles do), so a path
//! often ends at an intermediate, and a CRL of the root that revokes that intermediate
//! would never be consulted. OpenSSL (and so Postfix) builds the chain on to the
//! self-signed root and checks it all; so do we: after a path ends at anchor A, A's own
//! certificate is looked up in the CRLs of its issuer, and so on up the bundle until a
//! self-issued certificate or an issuer that is not in the bundle.

use rustls::pki_types::{CertificateDer, TrustAnchor};
use x509_parser::prelude::{FromDer, X509Certificate};

/// A CA bundle as trust anchors plus, per anchor, where it sits in the bundle's
/// hierarchy.
#[derive(Debug, Clone)]
pub struct TrustAnchors {
    anchors: Vec<TrustAnchor<'static>>,
    certificates: Vec<CertificateDer<'static>>,
    /// Per anchor: `None` when self-issued (a root: nothing above it to check);
    /// otherwise `Some(parent)`, the index of the bundle certificate named as its issuer,
    /// if the bundle has one.
    above: Vec<Option<Option<usize>>>,
}

/// Why a bundle certificate cannot be a trust anchor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CA certificate #{index} is not a usable trust anchor: {reason}")]
pub struct AnchorError {
    /// Position in the bundle.
    pub index: usize,
    /// Why (webpki's or the parser's reason).
    pub reason: String,
}

impl TrustAnchors {
    /// Build from the bundle's certificates (DER, in bundle order).
    pub fn new(certificates: Vec<CertificateDer<'static>>) -> Result<Self, AnchorError> {
        let mut anchors = Vec::with_capacity(certificates.len());
        let mut names = Vec::with_capacity(certificates.len());
        for (index, der) in certificates.iter().enumerate() {
            let anchor = webpki::anchor_from_trusted_cert(der)
                .map_err(|e| AnchorError {
                    index,
                    reason: format!("{e:?}"),
                })?
                .to_owned();
            let (_, cert) = X509Certificate::from_der(der).map_err(|e| AnchorError {
                index,
                reason: e.to_string(),
            })?;
            names.push((
                cert.subject().as_raw().to_vec(),
                cert.issuer().as_raw().to_vec(),
            ));
            anchors.push(anchor);
        }
        let above = names
            .iter()
            .enumerate()
            .map(|(i, (subject, issuer))| {
                (subject != issuer).then(|| {
                    names
                        .iter()
                        .enumerate()
                        .position(|(j, (s, _))| j != i && s == issuer)
                })
            })
            .collect();
        Ok(Self {
            anchors,
            certificates,
            above,
        })
    }

    /// The trust anchors, for webpki.
    pub fn anchors(&self) -> &[TrustAnchor<'static>] {
        &self.anchors
    }

    /// The certificate (DER) of the anchor at `index` in [`Self::anchors`].
    pub fn certificate(&self, index: usize) -> &CertificateDer<'static> {
        &self.certificates[index]
    }

    /// The certificate (DER) of `anchor`.
    pub fn certificate_of(&self, anchor: &TrustAnchor<'_>) -> Option<&CertificateDer<'static>> {
        let i = self.anchors.iter().position(|a| a == anchor)?;
        Some(&self.certificates[i])
    }

    /// The bundle certificates a path ending at `anchor` also depends on, nearest first:
    /// the anchor's own certificate unless it is self-issued, then the one that issued it
    /// if that is in the bundle and not self-issued, and so on. Empty for a root.
    pub fn above(&self, anchor: &TrustAnchor<'_>) -> Vec<&CertificateDer<'static>> {
        let mut out = Vec::new();
        let mut at = self.anchors.iter().position(|a| a == anchor);
        // Bounded by the bundle size, so a naming loop cannot spin.
        while let Some(i) = at {
            if out.len() == self.anchors.len() {
                break;
            }
            match self.above[i] {
                None => break,
                Some(parent) => {
                    out.push(&self.certificates[i]);
                    at = parent;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };

    fn ca_params(cn: &str) -> CertificateParams {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p
    }

    #[test]
    fn walks_from_an_intermediate_anchor_up_to_the_root() {
        let root =
            CertifiedIssuer::self_signed(ca_params("Root"), KeyPair::generate().unwrap()).unwrap();
        let mid = CertifiedIssuer::signed_by(ca_params("Mid"), KeyPair::generate().unwrap(), &root)
            .unwrap();
        let low = CertifiedIssuer::signed_by(ca_params("Low"), KeyPair::generate().unwrap(), &mid)
            .unwrap();
        // Bundle order does not matter.
        let bundle = TrustAnchors::new(vec![
            low.der().clone(),
            root.der().clone(),
            mid.der().clone(),
        ])
        .unwrap();
        let [low_a, root_a, mid_a] = [0, 1, 2].map(|i| bundle.anchors()[i].clone());
        assert!(bundle.above(&root_a).is_empty());
        assert_eq!(bundle.above(&mid_a), vec![mid.der()]);
        assert_eq!(bundle.above(&low_a), vec![low.der(), mid.der()]);

        // Without its root, the intermediate is still checked (its issuer's CRL may be in
        // force through another listener's bundle).
        let alone = TrustAnchors::new(vec![mid.der().clone()]).unwrap();
        assert_eq!(alone.above(&alone.anchors()[0]), vec![mid.der()]);
    }
}
