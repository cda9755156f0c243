//! `Listener.spec.tls.revocation` → `listeners.<name>.tls.revocation`. Range and URL
//! checks are the gateway validator's (`Revocation::problems`), reported on the same
//! fields; this only fills defaults and parses durations.

use postern_config::{Ocsp, OnUnavailable, Revocation, RevocationMode, defaults};
use postern_crds::{self as crds, ListenerRevocation};

use super::inputs::{Diags, duration};

/// The configuration's revocation settings of a listener (the default when omitted).
pub(crate) fn render(spec: Option<&ListenerRevocation>, d: &mut Diags) -> Revocation {
    let Some(spec) = spec else {
        return Revocation::default();
    };
    let ocsp = spec.ocsp.as_ref();
    Revocation {
        mode: match spec.mode {
            None | Some(crds::RevocationMode::CrlOnly) => RevocationMode::CrlOnly,
            Some(crds::RevocationMode::OcspOnly) => RevocationMode::OcspOnly,
            Some(crds::RevocationMode::CrlThenOcsp) => RevocationMode::CrlThenOcsp,
            Some(crds::RevocationMode::OcspThenCrl) => RevocationMode::OcspThenCrl,
        },
        on_unavailable: match spec.on_unavailable {
            None | Some(crds::OnUnavailable::Refuse) => OnUnavailable::Refuse,
            Some(crds::OnUnavailable::Allow) => OnUnavailable::Allow,
        },
        ocsp: Ocsp {
            responder_url: ocsp
                .and_then(|o| o.responder_url.clone())
                .unwrap_or_default(),
            timeout: duration(
                "spec.tls.revocation.ocsp.timeout",
                ocsp.and_then(|o| o.timeout.as_ref()),
                defaults::OCSP_TIMEOUT,
                d,
            ),
            cache_max_age: duration(
                "spec.tls.revocation.ocsp.cacheMaxAge",
                ocsp.and_then(|o| o.cache_max_age.as_ref()),
                defaults::OCSP_CACHE_MAX_AGE,
                d,
            ),
        },
    }
}
