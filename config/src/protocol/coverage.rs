//! Revocation coverage per trusted CA: for each CA of a Listener's client CA bundle, how
//! a gateway checks the revocation of its certificates. The gateway reports it, the
//! controller copies it into the Listener's `status.revocation`, so "are we checking
//! revocation for every CA we trust?" is answered by the objects themselves.

use serde::{Deserialize, Serialize};

/// What checks the revocation of one CA's certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub enum RevocationMechanism {
    /// Nothing: no CRL of the CA is in force and the Listener does not ask OCSP.
    #[serde(rename = "none")]
    None,
    /// A CRL of the CA in force.
    #[serde(rename = "crl")]
    Crl,
    /// OCSP (the Listener's `tls.revocation.mode` asks it; no CRL of the CA in force).
    #[serde(rename = "ocsp")]
    Ocsp,
    /// Both, consulted in the Listener's order.
    #[serde(rename = "crl+ocsp")]
    CrlAndOcsp,
}

impl RevocationMechanism {
    /// `none`, `crl`, `ocsp` or `crl+ocsp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Crl => "crl",
            Self::Ocsp => "ocsp",
            Self::CrlAndOcsp => "crl+ocsp",
        }
    }
}

/// How the revocation of one trusted CA's certificates is checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct CaRevocation {
    /// The CA's subject DN.
    pub ca: String,
    /// What checks it.
    pub mechanism: RevocationMechanism,
    /// Revocation of its certificates is checked (`mechanism` is not `none`); a stale CRL
    /// still counts, and refuses the CA's certificates until it is fresh again.
    pub covered: bool,
    /// The CrlSources with a CRL of this CA in force.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
    /// Revoked serials in those CRLs.
    #[serde(default)]
    pub entries: u64,
    /// Their size as DER, in bytes.
    #[serde(default)]
    pub der_bytes: u64,
    /// The earliest `nextUpdate` among them (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_update: Option<String>,
    /// A CRL of this CA is past `nextUpdate`: its certificates are refused.
    #[serde(default)]
    pub stale: bool,
}

impl CaRevocation {
    /// Orders two views of the same CA so the one that should worry an operator more comes
    /// first: not covered, then stale, then the earlier `nextUpdate`.
    pub fn worse_first(&self, other: &Self) -> std::cmp::Ordering {
        (self.covered, !self.stale, &self.next_update).cmp(&(
            other.covered,
            !other.stale,
            &other.next_update,
        ))
    }
}

/// The coverage of every CA of a client CA bundle, as one gateway sees it, for the
/// Listeners that share it (Listeners with the same bundle and revocation mode are
/// reported once: a thousand Listeners sharing a DoD bundle must not make the report a
/// thousand times larger than one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerCoverage {
    /// The Listeners.
    pub listeners: Vec<String>,
    /// Their CAs, in bundle order.
    pub cas: Vec<CaRevocation>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca(covered: bool, stale: bool, next: Option<&str>) -> CaRevocation {
        CaRevocation {
            ca: "CN=CA".into(),
            mechanism: if covered {
                RevocationMechanism::Crl
            } else {
                RevocationMechanism::None
            },
            covered,
            sources: Vec::new(),
            entries: 0,
            der_bytes: 0,
            next_update: next.map(str::to_owned),
            stale,
        }
    }

    #[test]
    fn the_worse_view_sorts_first() {
        let mut views = [
            ca(true, false, Some("2030-01-02T00:00:00Z")),
            ca(true, false, Some("2030-01-01T00:00:00Z")),
            ca(true, true, Some("2030-01-03T00:00:00Z")),
            ca(false, false, None),
        ];
        views.sort_by(CaRevocation::worse_first);
        assert!(!views[0].covered);
        assert!(views[1].stale);
        assert_eq!(
            views[2].next_update.as_deref(),
            Some("2030-01-01T00:00:00Z")
        );
    }

    #[test]
    fn mechanisms_read_and_write_as_the_admin_endpoint_names_them() {
        for m in [
            RevocationMechanism::None,
            RevocationMechanism::Crl,
            RevocationMechanism::Ocsp,
            RevocationMechanism::CrlAndOcsp,
        ] {
            let json = serde_json::to_value(m).unwrap();
            assert_eq!(json, m.as_str());
            assert_eq!(
                serde_json::from_value::<RevocationMechanism>(json).unwrap(),
                m
            );
        }
    }
}
