//! Which of the certificates a client presents after its own a path search considers.
//!
//! webpki's search is bounded by its budget (see [`super::budget`]), but each of its steps
//! parses every presented certificate again, so a client sending many certificates named
//! alike (a name no trust anchor has, so no signature check ever stops it) makes it spend
//! the whole budget at a cost of (budget x certificates): measured here, 0.2 to 0.9 s of
//! CPU per handshake for 10 to 300 self-made "CA" certificates, whatever the leaf's
//! version. Before any search, the presented certificates are narrowed to those that can
//! be on a path:
//!
//! - a certificate is considered only if its subject is the issuer named by the leaf, or
//!   by another considered certificate, within the six intermediates a path may have
//!   (webpki's limit): a certificate nothing names cannot be on a path;
//! - at most [`MAX_PER_SUBJECT`] certificates of one subject are considered, the first
//!   ones presented. Real chains have one certificate per subject, two or three where a
//!   CA is cross-certified; the search branches only among certificates of one subject,
//!   so this keeps it to at most 3^6 steps over at most 3 x 6 certificates, milliseconds.
//!
//! A certificate that does not parse is not considered (webpki would refuse it too). A
//! client that sends a whole CA bundle after its certificate still verifies: the bundle's
//! other CAs are simply not looked at.

use std::collections::{HashMap, HashSet};

use rustls::pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Most presented certificates of one subject a search considers.
pub const MAX_PER_SUBJECT: usize = 3;
/// webpki's limit on intermediates in a path.
const MAX_DEPTH: usize = 6;

/// The presented intermediates that can be on a path from `end_entity`, in the order
/// presented. Empty when the end entity itself does not parse (every search fails on it
/// first).
pub fn considered<'c>(
    end_entity: &CertificateDer<'_>,
    intermediates: &'c [CertificateDer<'_>],
) -> Vec<CertificateDer<'c>> {
    let Ok((_, leaf)) = X509Certificate::from_der(end_entity) else {
        return Vec::new();
    };
    // (subject, issuer) of the first MAX_PER_SUBJECT of each subject; None otherwise.
    let mut per_subject: HashMap<&[u8], usize> = HashMap::new();
    let names: Vec<Option<(&[u8], &[u8])>> = intermediates
        .iter()
        .map(|der| {
            let (_, cert) = X509Certificate::from_der(der).ok()?;
            let subject = cert.tbs_certificate.subject.as_raw();
            let seen = per_subject.entry(subject).or_default();
            *seen += 1;
            (*seen <= MAX_PER_SUBJECT).then_some((subject, cert.tbs_certificate.issuer.as_raw()))
        })
        .collect();
    let mut chosen = vec![false; intermediates.len()];
    let mut wanted: HashSet<&[u8]> = HashSet::from([leaf.tbs_certificate.issuer.as_raw()]);
    for _ in 0..MAX_DEPTH {
        let mut next = HashSet::new();
        for (i, name) in names.iter().enumerate() {
            if let Some((subject, issuer)) = name
                && !chosen[i]
                && wanted.contains(subject)
            {
                chosen[i] = true;
                next.insert(*issuer);
            }
        }
        if next.is_empty() {
            break;
        }
        wanted = next;
    }
    intermediates
        .iter()
        .zip(chosen)
        .filter(|(_, c)| *c)
        .map(|(der, _)| CertificateDer::from(der.as_ref()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::v1_path::tests::{ca_params, root};
    use rcgen::{CertifiedIssuer, KeyPair};

    fn signed_by(
        cn: &str,
        issuer: &CertifiedIssuer<'_, KeyPair>,
    ) -> CertifiedIssuer<'static, KeyPair> {
        CertifiedIssuer::signed_by(ca_params(cn), KeyPair::generate().unwrap(), issuer).unwrap()
    }

    #[test]
    fn keeps_what_chains_by_name_from_the_leaf_in_presented_order() {
        let root_ca = root("Root");
        let mid = signed_by("Mid", &root_ca);
        let low = signed_by("Low", &mid);
        let leaf = signed_by("Leaf", &low);
        let unrelated = root("Unrelated");
        let chain = [
            unrelated.der().clone(),
            mid.der().clone(),
            CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]),
            low.der().clone(),
            root_ca.der().clone(),
        ];
        let got = considered(leaf.der(), &chain);
        assert_eq!(
            got,
            vec![mid.der().clone(), low.der().clone(), root_ca.der().clone()]
        );
        // Nothing to consider when the leaf does not parse.
        assert!(considered(&CertificateDer::from(vec![1, 2, 3]), &chain).is_empty());
    }

    #[test]
    fn at_most_three_of_one_subject_and_at_most_six_levels() {
        let evil = root("Evil CA");
        let leaf = signed_by("Leaf", &evil);
        let flood: Vec<CertificateDer<'static>> =
            (0..30).map(|_| root("Evil CA").der().clone()).collect();
        assert_eq!(considered(leaf.der(), &flood), flood[..3].to_vec());

        // A chain of eight levels: only the six nearest the leaf can be on a path.
        let mut issuer = root("L8");
        let mut levels = vec![issuer.der().clone()];
        for i in (1..8).rev() {
            issuer = signed_by(&format!("L{i}"), &issuer);
            levels.push(issuer.der().clone());
        }
        let leaf = signed_by("Leaf", &issuer);
        levels.reverse(); // L1 first
        assert_eq!(considered(leaf.der(), &levels), levels[..6].to_vec());
    }
}
