//! `CrlSource.spec.discovery` → `crlSources.<name>.discovery`: the CA bundle Secret is
//! read into PEM (like a listener's client CA bundle) and every allowed URL prefix is
//! checked, each problem on its own field.

use postern_config::{CrlDiscovery as GwDiscovery, is_url_prefix};
use postern_crds::CrlDiscovery;

use super::inputs::{Diags, Inputs};
use super::report::Reason;

/// Render `discovery`. `None` when it has errors (they are in `d`).
pub(crate) fn render(
    spec: &CrlDiscovery,
    inputs: &Inputs<'_>,
    d: &mut Diags,
) -> Option<GwDiscovery> {
    if spec.allowed_url_prefixes.is_empty() {
        d.error(
            "spec.discovery.allowedUrlPrefixes",
            Reason::InvalidValue,
            "at least one http:// or https:// URL prefix is required: only URLs under one are ever fetched",
        );
    }
    for (i, p) in spec.allowed_url_prefixes.iter().enumerate() {
        if !is_url_prefix(p) {
            d.error(
                format!("spec.discovery.allowedUrlPrefixes[{i}]"),
                Reason::InvalidValue,
                format!("{p:?} is not an http:// or https:// URL prefix naming a host"),
            );
        }
    }
    if spec.from_ca_bundle.is_none() && !spec.from_presented_certificates {
        d.error(
            "spec.discovery",
            Reason::InvalidValue,
            "discovers nothing: set fromCaBundle and/or fromPresentedCertificates",
        );
    }
    let bundle = spec.from_ca_bundle.as_ref().and_then(|b| {
        inputs.secret_ca_certificates("spec.discovery.fromCaBundle.secretRef", &b.secret_ref, d)
    });
    if d.has_errors() {
        return None;
    }
    Some(GwDiscovery {
        from_ca_bundle_pem: bundle,
        from_presented_certificates: spec.from_presented_certificates,
        allowed_url_prefixes: spec.allowed_url_prefixes.clone(),
    })
}
