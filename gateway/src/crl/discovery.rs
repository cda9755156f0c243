//! CRL discovery (`discovery` of a `CrlSource`): the CRL Distribution Points (`fullName`
//! URIs) of the CA certificates of a bundle and of verified client certificates become
//! fetched URLs of their source.
//!
//! Each discovered URL is run as a *child* of its source: a record of the store keyed
//! `source[url]`, fetched and kept on schedule by the same loop as a configured URL, with
//! the parent's format, interval, scopes, failure policy and size limit. A child knows the
//! issuers it was found for: while it has no CRL in force, a fail-closed child makes the
//! certificates of those issuers unverifiable (and only those). Only URLs under one of
//! `allowedUrlPrefixes` ever become children; every other one is logged as a decision and
//! never fetched. A source holds at most [`CRL_DISCOVERED_URLS_MAX`] children.

use std::collections::HashSet;
use std::sync::Arc;

use crate::tls::revocation::CheckedCertificate;
use postern_config::protocol::DiscoveredFrom;
use postern_config::{CRL_DISCOVERED_URLS_MAX, CrlSource};

/// The store key of the child of `parent` fetching `url`.
pub(crate) fn child_key(parent: &str, url: &str) -> String {
    format!("{parent}[{url}]")
}

/// What makes a record a discovered URL of another source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Child {
    /// The source whose discovery found it.
    pub parent: String,
    /// The URL.
    pub url: String,
    /// Where it was found.
    pub from: DiscoveredFrom,
    /// Issuer names (DER) of the certificates that named it: the CAs whose CRL it
    /// presumably is, refused while it has none in force (fail closed).
    pub issuers: Vec<Box<[u8]>>,
    /// When it was first seen (Unix seconds).
    pub first_seen: i64,
}

/// The spec a child is fetched with: its parent's, with the discovered URL as the only one.
pub(crate) fn child_spec(parent: &CrlSource, url: &str) -> CrlSource {
    CrlSource {
        primary_url: Some(url.to_owned()),
        secondary_url: None,
        discovery: None,
        ..parent.clone()
    }
}

/// The URIs of the CRL Distribution Points of a certificate (`URI:` names).
pub(crate) fn uris<'c>(cert: &'c CheckedCertificate<'_>) -> impl Iterator<Item = &'c str> {
    cert.distribution_points
        .iter()
        .filter_map(|dp| dp.as_str().strip_prefix("URI:"))
}

/// A distribution point URI, with the issuer name (DER) of the certificate that names it.
pub(crate) type Point = (String, Box<[u8]>);

/// The distribution point URIs of every certificate of a PEM bundle, each with the
/// issuer (DER) of the certificate that names it.
pub(crate) fn bundle_points(pem: &str) -> Vec<Point> {
    let Ok(certs) = postern_config::pem::certificates(pem) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for der in &certs {
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
            continue;
        };
        let checked = CheckedCertificate::of(&cert);
        for url in uris(&checked) {
            out.push((url.to_owned(), checked.issuer_der.into()));
        }
    }
    out
}

/// A source discovering from presented certificates, as the handshake path sees it.
#[derive(Debug)]
pub(crate) struct Presented {
    /// The source.
    pub source: Arc<str>,
    /// Scope bits it applies to.
    pub scopes: u8,
    /// URLs already decided (children, and URLs refused and logged).
    pub known: HashSet<String>,
}

/// Whether another URL may be added to a source holding `children`.
pub(crate) fn has_room(children: usize) -> bool {
    children < CRL_DISCOVERED_URLS_MAX
}
