//! `CrlSource` → `crlSources.<name>`.

use postern_config::{
    CrlFailurePolicy as GwPolicy, CrlFormat as GwFormat, CrlScope as GwScope, CrlSource, Duration,
};
use postern_crds::{CrlFailurePolicy, CrlFormat, CrlScope, CrlSourceSpec};

use super::crl_discovery;
use super::inputs::{Diags, Inputs, duration};
use super::report::Reason;

/// Render one CrlSource. `None` when it has errors (they are in `d`).
pub(crate) fn render(
    spec: &CrlSourceSpec,
    inputs: &Inputs<'_>,
    d: &mut Diags,
) -> Option<CrlSource> {
    let interval = duration(
        "spec.schedule.interval",
        Some(&spec.schedule.interval),
        Duration::from_secs(3600),
        d,
    );
    if spec.applies_to.is_empty() {
        d.error(
            "spec.appliesTo",
            Reason::InvalidValue,
            "at least one of InboundSmtpTls, OutboundSmtpTls is required",
        );
    }
    let mut applies_to: Vec<GwScope> = spec
        .applies_to
        .iter()
        .map(|s| match s {
            CrlScope::InboundSmtpTls => GwScope::InboundSmtpTls,
            CrlScope::OutboundSmtpTls => GwScope::OutboundSmtpTls,
        })
        .collect();
    applies_to.sort();
    applies_to.dedup();
    let max_size = match spec.max_size.as_ref().map(|q| q.to_u64()) {
        None => postern_config::DEFAULT_CRL_MAX_SIZE,
        Some(Ok(0)) => {
            d.error("spec.maxSize", Reason::InvalidValue, "must be more than 0");
            0
        }
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            d.error("spec.maxSize", Reason::InvalidValue, e.to_string());
            0
        }
    };
    if spec.primary_url.is_none() && spec.discovery.is_none() {
        d.error(
            "spec.primaryUrl",
            Reason::InvalidValue,
            "is required unless the source has discovery",
        );
    }
    let discovery = spec
        .discovery
        .as_ref()
        .and_then(|x| crl_discovery::render(x, inputs, d));
    if d.has_errors() {
        return None;
    }
    Some(CrlSource {
        enabled: spec.enabled,
        format: match spec.format {
            CrlFormat::Asn1 => GwFormat::Asn1,
            CrlFormat::Pem => GwFormat::Pem,
            CrlFormat::Zip => GwFormat::Zip,
        },
        primary_url: spec.primary_url.clone(),
        secondary_url: spec.secondary_url.clone(),
        interval,
        applies_to,
        failure_policy: match spec.failure_policy {
            CrlFailurePolicy::Closed => GwPolicy::Closed,
            CrlFailurePolicy::Open => GwPolicy::Open,
        },
        max_size,
        discovery,
    })
}
