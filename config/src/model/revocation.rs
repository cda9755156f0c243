//! How a listener checks the revocation of client certificates (`tls.revocation`,
//! DESIGN.md section 7): by CRL (the default, what every configuration without the
//! field does), by OCSP (RFC 6960), or one with the other as fallback.

use serde::{Deserialize, Serialize};

use super::defaults;
use crate::duration::Duration;

/// Shortest `ocsp.timeout` accepted.
pub const OCSP_TIMEOUT_MIN: Duration = Duration::from_millis(100);
/// Longest `ocsp.timeout` accepted: a handshake waits for it, under
/// `timeouts.tlsHandshake`.
pub const OCSP_TIMEOUT_MAX: Duration = Duration::from_secs(30);
/// Shortest `ocsp.cacheMaxAge` accepted.
pub const OCSP_CACHE_MAX_AGE_MIN: Duration = Duration::from_secs(1);
/// Longest `ocsp.cacheMaxAge` accepted (a week: an answer is never kept longer even when
/// the responder says it may be).
pub const OCSP_CACHE_MAX_AGE_MAX: Duration = Duration::from_secs(7 * 24 * 3600);

/// `tls.revocation` of a listener.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Revocation {
    /// Which mechanisms answer, in which order.
    #[serde(default)]
    pub mode: RevocationMode,
    /// What happens when no mechanism gives a current answer.
    #[serde(default)]
    pub on_unavailable: OnUnavailable,
    /// The OCSP client's settings (used by every mode but `CrlOnly`).
    #[serde(default)]
    pub ocsp: Ocsp,
}

impl Revocation {
    /// Whether this is the default (`CrlOnly`, `Refuse`, default OCSP settings): written
    /// only when not, so configurations without the field keep their hash.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// `tls.revocation.mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RevocationMode {
    /// CRLs only (CrlSources): the behaviour of every listener before OCSP existed.
    #[default]
    CrlOnly,
    /// OCSP only.
    OcspOnly,
    /// The CRL's verdict when a current CRL of the issuer is in force, else OCSP.
    CrlThenOcsp,
    /// OCSP's verdict when the responder gives a current good or revoked answer, else the
    /// CRL's.
    OcspThenCrl,
}

impl RevocationMode {
    /// Whether OCSP is asked at all.
    pub fn uses_ocsp(self) -> bool {
        self != Self::CrlOnly
    }

    /// The name as written in configurations.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CrlOnly => "CrlOnly",
            Self::OcspOnly => "OcspOnly",
            Self::CrlThenOcsp => "CrlThenOcsp",
            Self::OcspThenCrl => "OcspThenCrl",
        }
    }
}

/// `tls.revocation.onUnavailable`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum OnUnavailable {
    /// Refuse the certificate as unverifiable (fail closed).
    #[default]
    Refuse,
    /// Accept it without a revocation answer (fail open); logged and counted.
    Allow,
}

/// `tls.revocation.ocsp`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Ocsp {
    /// The responder asked for every certificate; empty: the one named by the
    /// certificate's Authority Information Access (`id-ad-ocsp`).
    #[serde(default)]
    pub responder_url: String,
    /// How long one request may take (connect, send, answer).
    #[serde(default = "default_ocsp_timeout")]
    pub timeout: Duration,
    /// Longest time an answer is reused; it is reused until its `nextUpdate` when that
    /// comes sooner.
    #[serde(default = "default_ocsp_cache_max_age")]
    pub cache_max_age: Duration,
}

impl Default for Ocsp {
    fn default() -> Self {
        Self {
            responder_url: String::new(),
            timeout: defaults::OCSP_TIMEOUT,
            cache_max_age: defaults::OCSP_CACHE_MAX_AGE,
        }
    }
}

fn default_ocsp_timeout() -> Duration {
    defaults::OCSP_TIMEOUT
}

fn default_ocsp_cache_max_age() -> Duration {
    defaults::OCSP_CACHE_MAX_AGE
}

/// One problem of a `tls.revocation`: the field (`tls.revocation.ocsp.timeout`, relative to
/// the listener) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevocationProblem {
    /// The field, relative to the listener.
    pub field: &'static str,
    /// Why the value is refused.
    pub message: String,
}

impl Revocation {
    /// What is wrong with these settings (empty: nothing).
    pub fn problems(&self) -> Vec<RevocationProblem> {
        let mut out = Vec::new();
        if let Err(why) = check_responder_url(&self.ocsp.responder_url) {
            out.push(RevocationProblem {
                field: "tls.revocation.ocsp.responderUrl",
                message: why,
            });
        }
        for (field, value, min, max) in [
            (
                "tls.revocation.ocsp.timeout",
                self.ocsp.timeout,
                OCSP_TIMEOUT_MIN,
                OCSP_TIMEOUT_MAX,
            ),
            (
                "tls.revocation.ocsp.cacheMaxAge",
                self.ocsp.cache_max_age,
                OCSP_CACHE_MAX_AGE_MIN,
                OCSP_CACHE_MAX_AGE_MAX,
            ),
        ] {
            if value.get() < min.get() || value.get() > max.get() {
                out.push(RevocationProblem {
                    field,
                    message: format!("{value} is out of range: must be between {min} and {max}"),
                });
            }
        }
        out
    }
}

/// An OCSP responder URL: empty (the certificate's AIA), or `http://` / `https://` with a
/// host (RFC 6960 appendix A: OCSP over HTTP).
fn check_responder_url(url: &str) -> Result<(), String> {
    if url.is_empty() {
        return Ok(());
    }
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| {
            format!("{url:?} is not an http:// or https:// URL (OCSP is asked over HTTP)")
        })?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || url.contains(char::is_whitespace) {
        return Err(format!("{url:?} has no host, or contains white space"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_design_s_and_valid() {
        let r: Revocation = serde_json::from_str("{}").unwrap();
        assert_eq!(r, Revocation::default());
        assert!(r.is_default() && r.problems().is_empty());
        assert_eq!(r.mode, RevocationMode::CrlOnly);
        assert_eq!(r.on_unavailable, OnUnavailable::Refuse);
        assert_eq!(r.ocsp.timeout, Duration::from_secs(2));
        assert_eq!(r.ocsp.cache_max_age, Duration::from_secs(3600));
        assert!(r.ocsp.responder_url.is_empty());
        let r: Revocation = serde_json::from_str(
            r#"{"mode":"OcspThenCrl","onUnavailable":"Allow","ocsp":{"responderUrl":"https://ocsp.example/x","timeout":"500ms"}}"#,
        )
        .unwrap();
        assert!(r.mode.uses_ocsp() && r.problems().is_empty());
        assert!(serde_json::from_str::<Revocation>(r#"{"mode":"Ocsp"}"#).is_err());
    }

    #[test]
    fn problems_name_the_field_and_why() {
        let mut r = Revocation::default();
        r.ocsp.responder_url = "ldap://ocsp.example".into();
        r.ocsp.timeout = Duration::from_millis(10);
        r.ocsp.cache_max_age = Duration::from_secs(30 * 24 * 3600);
        let p = r.problems();
        let fields: Vec<_> = p.iter().map(|p| p.field).collect();
        assert_eq!(
            fields,
            [
                "tls.revocation.ocsp.responderUrl",
                "tls.revocation.ocsp.timeout",
                "tls.revocation.ocsp.cacheMaxAge"
            ]
        );
        assert!(
            p[0].message.contains("not an http:// or https:// URL"),
            "{}",
            p[0].message
        );
        assert!(
            p[1].message.contains("between 100ms and 30s"),
            "{}",
            p[1].message
        );
        r.ocsp.responder_url = "http:///path".into();
        assert!(r.problems()[0].message.contains("no host"));
    }
}
