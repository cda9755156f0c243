//! CRL discovery of a `CrlSource` (`discovery`, DESIGN.md section 7): the CRL
//! distribution points (CDP `fullName` URIs) of the CA certificates of a bundle and,
//! optionally, of the verified client certificates are fetched like configured URLs —
//! but only those under one of `allowedUrlPrefixes`, so no certificate can make the
//! gateway ask an address of its choosing.

use serde::{Deserialize, Serialize};

/// How many discovered URLs one source holds at most: beyond it a new distribution point
/// is logged and not fetched (a flood of certificates naming different URLs cannot grow
/// the gateway's work without bound).
pub const CRL_DISCOVERED_URLS_MAX: usize = 256;

/// `discovery` of a CRL source.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CrlDiscovery {
    /// CA certificates (PEM) whose CRL distribution points are fetched (the controller
    /// fills it from `fromCaBundle.secretRef`): the CRLs that revoke those CAs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_ca_bundle_pem: Option<String>,
    /// Also the CRL distribution points of the verified client certificates: a URL first
    /// seen in a certificate is fetched, then kept on schedule.
    #[serde(default)]
    pub from_presented_certificates: bool,
    /// Only URLs starting with one of these are ever fetched (`http://` or `https://`
    /// prefixes naming at least the host).
    pub allowed_url_prefixes: Vec<String>,
}

impl CrlDiscovery {
    /// Whether `url` may be fetched: it starts with an allowed prefix.
    pub fn allows(&self, url: &str) -> bool {
        self.allowed_url_prefixes
            .iter()
            .any(|p| url.starts_with(p.as_str()))
    }
}

/// Whether `prefix` is an `http://` or `https://` URL prefix that names a host and holds
/// no whitespace: the form `allowedUrlPrefixes` entries must have.
pub fn is_url_prefix(prefix: &str) -> bool {
    let rest = prefix
        .strip_prefix("http://")
        .or_else(|| prefix.strip_prefix("https://"));
    rest.is_some_and(|r| {
        let host = r.split('/').next().unwrap_or("");
        !host.is_empty() && !r.contains(char::is_whitespace)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_must_name_a_host() {
        assert!(is_url_prefix("http://crl.disa.mil/"));
        assert!(is_url_prefix("https://crl.disa.mil"));
        assert!(!is_url_prefix("http://"));
        assert!(!is_url_prefix("ftp://crl.disa.mil/"));
        assert!(!is_url_prefix("crl.disa.mil"));
        assert!(!is_url_prefix("http:///x"));
        assert!(!is_url_prefix("http://a b/"));
    }

    #[test]
    fn only_urls_under_a_prefix_are_allowed() {
        let d = CrlDiscovery {
            allowed_url_prefixes: vec!["http://crl.disa.mil/".into()],
            ..Default::default()
        };
        assert!(d.allows("http://crl.disa.mil/crl/DODIDCA_59.crl"));
        assert!(!d.allows("http://crl.disa.mil.evil.example/x.crl"));
        assert!(!d.allows("http://10.0.0.1/x.crl"));
    }
}
