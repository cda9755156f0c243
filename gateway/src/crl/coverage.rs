//! Revocation coverage per trusted CA: for every CA of every listener's client CA bundle,
//! which mechanism checks its certificates' revocation (the CRLs in force of the enabled
//! `InboundSmtpTls` sources, and OCSP where the listener's `tls.revocation.mode` asks it),
//! how fresh it is, and what it holds. Answers "are we
//! checking revocation for every CA we trust?" (`GET /revocation`, the gauge
//! `postern_revocation_ca_covered{listener,ca}`).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::index::CrlIndex;
use super::verify::TrustStore;
use super::{rfc3339, unix_now};
use postern_config::protocol::{CaRevocation, ListenerCoverage, RevocationMechanism};
use postern_config::{CrlScope, CrlSource, GatewayConfig, RevocationMode};

/// The CAs of one listener's client CA bundle: raw subject DER and subject text, each
/// subject once (a re-keyed CA's certificates share it).
#[derive(Clone, Debug, Default)]
pub(crate) struct ListenerCas {
    /// The listener.
    pub listener: String,
    /// Its CAs.
    pub cas: Vec<(Box<[u8]>, String)>,
    /// How the listener checks revocation.
    pub mode: RevocationMode,
}

impl ListenerCas {
    /// Every listener's client CA bundle in `config` (unusable PEM is skipped: `validate`
    /// reports it).
    pub(crate) fn from_config(config: &GatewayConfig) -> Vec<Self> {
        config
            .listeners
            .iter()
            .filter_map(|(name, l)| {
                let pem = l.tls.as_ref()?.client_ca_pem.as_deref()?;
                let mut trust = TrustStore::default();
                let _ = trust.add_pem(pem, &format!("listener {name} clientCaPem"));
                let mut cas: Vec<(Box<[u8]>, String)> = Vec::new();
                for ca in trust.cas() {
                    if !cas.iter().any(|(der, _)| **der == *ca.subject_der) {
                        cas.push((
                            ca.subject_der.clone().into_boxed_slice(),
                            ca.subject.clone(),
                        ));
                    }
                }
                Some(Self {
                    listener: name.clone(),
                    cas,
                    mode: l
                        .tls
                        .as_ref()
                        .map(|t| t.revocation.mode)
                        .unwrap_or_default(),
                })
            })
            .collect()
    }
}

/// How revocation is checked for one CA of one listener.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CaCoverage {
    /// The listener whose client CA bundle holds the CA.
    pub listener: String,
    /// The CA's subject DN.
    pub ca: String,
    /// Revocation of this CA's certificates is checked: a CRL of it is in force (a stale
    /// CRL refuses them; see `stale`), or the listener asks OCSP (whether a responder
    /// answers is known per certificate: see the OCSP metrics).
    pub covered: bool,
    /// `crl`, `ocsp`, `crl+ocsp` (both consulted, in the listener's order) or `none`.
    pub mechanism: RevocationMechanism,
    /// The CRL sources with a CRL of this CA in force.
    pub sources: Vec<String>,
    /// Revoked serials in those CRLs.
    pub entries: usize,
    /// Their size as DER.
    pub der_bytes: usize,
    /// Memory held by their indexes.
    pub index_bytes: usize,
    /// The earliest `nextUpdate` among them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_update: Option<String>,
    /// Seconds until that `nextUpdate` (negative: stale).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds_until_stale: Option<i64>,
    /// A CRL of this CA is past `nextUpdate`.
    pub stale: bool,
    /// The latest successful fetch of those sources.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_fetch_time: Option<String>,
}

/// One source as coverage sees it: its spec, CRLs in force and last successful fetch.
pub(crate) struct SourceView<'a> {
    pub name: &'a str,
    pub spec: &'a CrlSource,
    pub crls: &'a [Arc<CrlIndex>],
    pub last_fetch: Option<i64>,
}

/// Coverage of every CA of every listener, in listener then bundle order.
pub(crate) fn coverage(listeners: &[ListenerCas], sources: &[SourceView<'_>]) -> Vec<CaCoverage> {
    let now = unix_now();
    let inbound: Vec<&SourceView<'_>> = sources
        .iter()
        .filter(|s| s.spec.enabled && s.spec.applies_to.contains(&CrlScope::InboundSmtpTls))
        .collect();
    let mut out = Vec::new();
    for l in listeners {
        for (subject_der, subject) in &l.cas {
            let mut c = CaCoverage {
                listener: l.listener.clone(),
                ca: subject.clone(),
                covered: false,
                mechanism: RevocationMechanism::None,
                sources: Vec::new(),
                entries: 0,
                der_bytes: 0,
                index_bytes: 0,
                next_update: None,
                seconds_until_stale: None,
                stale: false,
                last_fetch_time: None,
            };
            let mut next: Option<i64> = None;
            let mut fetched: Option<i64> = None;
            for s in &inbound {
                let mine: Vec<&Arc<CrlIndex>> = s
                    .crls
                    .iter()
                    .filter(|ix| *ix.meta.issuer_der == **subject_der)
                    .collect();
                if mine.is_empty() {
                    continue;
                }
                c.sources.push(s.name.to_owned());
                fetched = fetched.max(s.last_fetch);
                for ix in mine {
                    c.entries += ix.meta.entries;
                    c.der_bytes += ix.meta.der_len;
                    c.index_bytes += ix.heap_bytes();
                    c.stale |= ix.meta.is_stale(now);
                    if let Some(n) = ix.meta.next_update {
                        next = Some(next.map_or(n, |m| m.min(n)));
                    }
                }
            }
            // OcspOnly never consults CRLs, so a CRL in force does not cover there.
            let crl = !c.sources.is_empty() && l.mode != RevocationMode::OcspOnly;
            let ocsp = l.mode != RevocationMode::CrlOnly;
            c.mechanism = match (crl, ocsp) {
                (true, true) => RevocationMechanism::CrlAndOcsp,
                (true, false) => RevocationMechanism::Crl,
                (false, true) => RevocationMechanism::Ocsp,
                (false, false) => RevocationMechanism::None,
            };
            c.covered = crl || ocsp;
            c.next_update = next.map(rfc3339);
            c.seconds_until_stale = next.map(|n| n - now);
            c.last_fetch_time = fetched.map(rfc3339);
            out.push(c);
        }
    }
    out
}

/// Coverage in the report's shape: per listener, its CAs in bundle order (what the
/// controller copies into each Listener's `status.revocation`). The index size, the
/// seconds until stale and the last fetch stay on the admin endpoint (the last fetch is
/// also in each CrlSource's status): the first is the gateway's own business, the others
/// change every second or every fetch, and a Listener's status changes only when its
/// coverage does.
pub(crate) fn report(coverage: Vec<CaCoverage>) -> Vec<ListenerCoverage> {
    let mut per_listener: Vec<(String, Vec<CaRevocation>)> = Vec::new();
    for c in coverage {
        let ca = CaRevocation {
            ca: c.ca,
            mechanism: c.mechanism,
            covered: c.covered,
            sources: c.sources,
            entries: c.entries as u64,
            der_bytes: c.der_bytes as u64,
            next_update: c.next_update,
            stale: c.stale,
        };
        match per_listener.last_mut() {
            Some((l, cas)) if *l == c.listener => cas.push(ca),
            _ => per_listener.push((c.listener, vec![ca])),
        }
    }
    // Listeners whose CAs are covered alike (same bundle, same mode) share one entry.
    let mut out: Vec<ListenerCoverage> = Vec::new();
    for (listener, cas) in per_listener {
        match out.iter_mut().find(|g| g.cas == cas) {
            Some(g) => g.listeners.push(listener),
            None => out.push(ListenerCoverage {
                listeners: vec![listener],
                cas,
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(mode: RevocationMode) -> ListenerCas {
        ListenerCas {
            listener: "submission".into(),
            cas: vec![(b"subject".to_vec().into_boxed_slice(), "CN=CA".into())],
            mode,
        }
    }

    #[test]
    fn a_listener_asking_ocsp_covers_its_cas_without_a_crl() {
        let cases = [
            (RevocationMode::CrlOnly, false, RevocationMechanism::None),
            (RevocationMode::OcspOnly, true, RevocationMechanism::Ocsp),
            (RevocationMode::CrlThenOcsp, true, RevocationMechanism::Ocsp),
            (RevocationMode::OcspThenCrl, true, RevocationMechanism::Ocsp),
        ];
        for (mode, covered, mechanism) in cases {
            let c = coverage(&[listener(mode)], &[]);
            assert_eq!(
                (c[0].covered, c[0].mechanism),
                (covered, mechanism),
                "{mode:?}"
            );
        }
    }

    #[test]
    fn the_report_groups_cas_by_listener_in_order() {
        let mut two = listener(RevocationMode::OcspOnly);
        two.listener = "smtps".into();
        two.cas
            .push((b"other".to_vec().into_boxed_slice(), "CN=Other".into()));
        let r = report(coverage(&[listener(RevocationMode::CrlOnly), two], &[]));
        let shape: Vec<(Vec<&str>, Vec<&str>)> = r
            .iter()
            .map(|l| {
                (
                    l.listeners.iter().map(String::as_str).collect(),
                    l.cas.iter().map(|c| c.ca.as_str()).collect(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            [
                (vec!["submission"], vec!["CN=CA"]),
                (vec!["smtps"], vec!["CN=CA", "CN=Other"])
            ]
        );
        assert_eq!(r[1].cas[1].mechanism, RevocationMechanism::Ocsp);
        assert!(!r[0].cas[0].covered);
        // Listeners covered alike share one entry.
        let mut same = listener(RevocationMode::CrlOnly);
        same.listener = "relay".into();
        let r = report(coverage(&[listener(RevocationMode::CrlOnly), same], &[]));
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].listeners, ["submission", "relay"]);
    }
}
