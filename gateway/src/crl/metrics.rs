//! Prometheus metrics of the CRL sources.
//!
//! Counters are updated as things happen; per-source gauges (entries, seconds until stale)
//! are computed at scrape time from the store, so `crl_seconds_until_stale` is always
//! current and alerts can fire before a CRL goes stale.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::store::{CHECK_RESULTS, CrlStore, Gauges};

type Labels = Vec<(&'static str, String)>;

/// Counters owned by the store.
#[derive(Clone, Debug, Default)]
pub struct CrlMetrics {
    fetches: Family<Labels, Counter>,
    rejections: Family<Labels, Counter>,
}

impl CrlMetrics {
    /// One fetch of one URL: `outcome` is `updated`, `unchanged`, `not_modified` or the
    /// short code of a failure or refusal.
    pub fn fetched(&self, source: &str, server: &str, outcome: &str) {
        self.fetches
            .get_or_create(&vec![
                ("source", source.to_owned()),
                ("server", server.to_owned()),
                ("outcome", outcome.to_owned()),
            ])
            .inc();
    }

    /// A certificate refused because of a CRL (`revoked`, `stale`, or `missing`: no CRL
    /// in force covers it although one is required).
    pub fn rejected(&self, source: &str, reason: &str) {
        self.rejections
            .get_or_create(&vec![
                ("source", source.to_owned()),
                ("reason", reason.to_owned()),
            ])
            .inc();
    }
}

/// Register the CRL metrics of `store` (names start with `postern_crl_`).
pub fn register(registry: &mut Registry, store: &Arc<CrlStore>) {
    let registry = registry.sub_registry_with_prefix("postern");
    registry.register(
        "crl_fetches",
        "CRL fetches per source, server (primary|secondary) and outcome",
        store.metrics.fetches.clone(),
    );
    registry.register(
        "crl_certificate_rejections",
        "Certificates refused because of a CRL, per source and reason (revoked|stale|missing)",
        store.metrics.rejections.clone(),
    );
    registry.register_collector(Box::new(SourceGauges {
        store: Arc::clone(store),
    }));
}

/// Scrape-time view of the store.
#[derive(Debug)]
struct SourceGauges {
    store: Arc<CrlStore>,
}

impl Collector for SourceGauges {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let sources = self.store.gauges();
        let mut gauge = |name: &str, help: &str, value: &dyn Fn(&Gauges) -> Option<i64>| {
            let g = ConstGauge::new(0i64);
            let mut d = encoder.encode_descriptor(name, help, None, g.metric_type())?;
            for s in &sources {
                if let Some(v) = value(s) {
                    let labels = [("source", s.name.as_str())];
                    ConstGauge::new(v).encode(d.encode_family(&labels)?)?;
                }
            }
            Ok::<(), std::fmt::Error>(())
        };
        gauge("crl_entries", "Revoked serials in force per source", &|s| {
            Some(s.entries)
        })?;
        gauge(
            "crl_seconds_until_stale",
            "Seconds until the first CRL of the source passes nextUpdate (negative: stale, \
             its issuer's certificates are refused)",
            &|s| s.until_stale,
        )?;
        gauge(
            "crl_stale",
            "1 when a CRL of the source is past nextUpdate (its issuer's certificates are refused)",
            &|s| s.stale.map(i64::from),
        )?;
        gauge(
            "crl_index_bytes",
            "Memory held by the revoked-serial indexes of the source",
            &|s| Some(s.index_bytes),
        )?;
        gauge(
            "crl_consecutive_failures",
            "Failed fetch attempts since the last success",
            &|s| Some(s.failures),
        )?;
        gauge(
            "crl_in_force",
            "1 when the source has a CRL in force; 0 while it has none (with failurePolicy \
             Closed the certificates it may be for are refused as crl_missing meanwhile)",
            &|s| Some(i64::from(s.in_force)),
        )?;
        gauge(
            "crl_fail_open",
            "1 while a failurePolicy Open source has no CRL in force (certificates are \
             accepted without its revocation check)",
            &|s| Some(i64::from(s.fail_open)),
        )?;
        gauge(
            "crl_last_success_timestamp_seconds",
            "When a URL of the source last answered with an acceptable CRL or 304",
            &|s| s.last_fetch,
        )?;

        let c = ConstCounter::new(0u64);
        let mut d = encoder.encode_descriptor(
            "crl_checks",
            "Revocation checks per scope and result (no_crl|good|revoked|stale|missing)",
            None,
            c.metric_type(),
        )?;
        for (slot, scope) in ["InboundSmtpTls", "OutboundSmtpTls"].iter().enumerate() {
            for (i, result) in CHECK_RESULTS.iter().enumerate() {
                let n = self.store.checks.counts[slot][i].load(Ordering::Relaxed);
                let labels = [("scope", *scope), ("result", *result)];
                ConstCounter::new(n).encode(d.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
