//! `Listener.spec.tls.revocation`: how client certificates' revocation is checked (CRL,
//! OCSP, or one with the other as fallback; DESIGN.md section 7).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::rules;
use postern_config::duration::DURATION_PATTERN;

/// How a listener checks the revocation of client certificates.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenerRevocation {
    /// `CrlOnly` (default: the CRLs of the CrlSources), `OcspOnly` (OCSP, RFC 6960),
    /// `CrlThenOcsp` (the CRL's verdict when a current CRL of the issuer is in force,
    /// else OCSP) or `OcspThenCrl` (OCSP's verdict when the responder answers good or
    /// revoked in time, else the CRL's). OCSP is asked for the client's own certificate;
    /// the CA certificates of its path are checked by CRL in every mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "CrlOnly"))]
    pub mode: Option<RevocationMode>,
    /// What happens when no mechanism of the mode gives a current answer (responder
    /// down or slow, `unknown`, no CRL in force): `Refuse` (default, TLS alert
    /// `unknown_ca`) or `Allow` (accepted; logged and counted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Refuse"))]
    pub on_unavailable: Option<OnUnavailable>,
    /// The OCSP client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ocsp: Option<OcspSettings>,
}

/// `tls.revocation.mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RevocationMode {
    /// CRLs only.
    CrlOnly,
    /// OCSP only.
    OcspOnly,
    /// CRL first, OCSP when no current CRL answers.
    CrlThenOcsp,
    /// OCSP first, CRL when the responder gives no current answer.
    OcspThenCrl,
}

/// `tls.revocation.onUnavailable`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum OnUnavailable {
    /// Refuse the certificate (fail closed).
    Refuse,
    /// Accept it without a revocation answer (fail open).
    Allow,
}

/// `tls.revocation.ocsp`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OcspSettings {
    /// The responder asked for every client certificate (`http://` or `https://`).
    /// Empty (default): the responder named by the certificate's Authority Information
    /// Access extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = rules::ocsp_responder_url())]
    pub responder_url: Option<String>,
    /// Longest one OCSP request may take, from 100ms to 30s. Default `2s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN), transform = rules::positive_duration())]
    #[schemars(extend("default" = "2s"))]
    pub timeout: Option<String>,
    /// Longest an OCSP answer is reused (until its `nextUpdate` when that is sooner),
    /// from 1s to 7d. Default `1h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN), transform = rules::at_least_one_second())]
    #[schemars(extend("default" = "1h"))]
    pub cache_max_age: Option<String>,
}
