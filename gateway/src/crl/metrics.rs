//! Prometheus metrics of the CRL sources.
//!
//! Counters are updated as things happen, with typed labels; per-source gauges (entries,
//! seconds until stale) are computed at scrape time from the store, so
//! `crl_seconds_until_stale` is always current and alerts can fire before a CRL goes
//! stale. The store counts into [`CrlMetrics`] and offers its numbers through
//! [`CrlMetricsSource`]; this module does not know the store.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::tls::RevocationStatus;
use postern_config::CrlScope;
use postern_config::protocol::ServedBy;

/// The answer of a revocation check (label `result`; label `reason` of a rejection).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CheckResult {
    /// `no_crl`: revocation is not configured for the certificate's CA.
    NoCrl,
    /// `good`: a current CRL covers the certificate and does not list it.
    Good,
    /// `revoked`: listed.
    Revoked,
    /// `stale`: every covering CRL is past `nextUpdate`.
    Stale,
    /// `missing`: revocation is configured but no CRL in force covers it.
    Missing,
}

impl CheckResult {
    /// Every result, in the order `/metrics` lists them.
    pub const ALL: [Self; 5] = [
        Self::NoCrl,
        Self::Good,
        Self::Revoked,
        Self::Stale,
        Self::Missing,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::NoCrl => "no_crl",
            Self::Good => "good",
            Self::Revoked => "revoked",
            Self::Stale => "stale",
            Self::Missing => "missing",
        }
    }

    /// The result of `status`, and the source that refused the certificate, if one did.
    pub fn of(status: &RevocationStatus) -> (Self, Option<&str>) {
        match status {
            RevocationStatus::NoCrl => (Self::NoCrl, None),
            RevocationStatus::Good => (Self::Good, None),
            RevocationStatus::Revoked { source, .. } => (Self::Revoked, Some(source)),
            RevocationStatus::Stale { source, .. } => (Self::Stale, Some(source)),
            RevocationStatus::Missing { source, .. } => (Self::Missing, Some(source)),
        }
    }
}

impl EncodeLabelValue for CheckResult {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.label(), encoder)
    }
}

/// The scopes, in the order `/metrics` lists them.
const SCOPES: [CrlScope; 2] = [CrlScope::InboundSmtpTls, CrlScope::OutboundSmtpTls];

/// A [`CrlScope`] as a label value: its name in the configuration (`InboundSmtpTls`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ScopeLabel(pub CrlScope);

impl EncodeLabelValue for ScopeLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        let name = match self.0 {
            CrlScope::InboundSmtpTls => "InboundSmtpTls",
            CrlScope::OutboundSmtpTls => "OutboundSmtpTls",
        };
        EncodeLabelValue::encode(&name, encoder)
    }
}

/// A [`ServedBy`] as a label value: `primary` or `secondary`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ServerLabel(pub ServedBy);

impl EncodeLabelValue for ServerLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.0.as_str(), encoder)
    }
}

/// Labels of `postern_crl_fetches_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FetchLabels {
    /// The CrlSource.
    pub source: String,
    /// Which of its URLs was fetched.
    pub server: ServerLabel,
    /// `updated`, `unchanged`, `not_modified`, or the code of a failure or refusal.
    pub outcome: &'static str,
}

/// Labels of `postern_crl_certificate_rejections_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectionLabels {
    /// The CrlSource that refused the certificate.
    pub source: String,
    /// `revoked`, `stale` or `missing`.
    pub reason: CheckResult,
}

/// Labels of `postern_crl_checks_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CheckLabels {
    /// Which TLS connections the check was for.
    pub scope: ScopeLabel,
    /// What it answered.
    pub result: CheckResult,
}

/// The CRL counters (kept by the store).
#[derive(Clone, Debug, Default)]
pub struct CrlMetrics {
    fetches: Family<FetchLabels, Counter>,
    rejections: Family<RejectionLabels, Counter>,
    checks: Family<CheckLabels, Counter>,
}

impl CrlMetrics {
    /// One fetch of one URL: `outcome` is `updated`, `unchanged`, `not_modified` or the
    /// short code of a failure or refusal.
    pub fn fetched(&self, source: &str, server: ServedBy, outcome: &'static str) {
        self.fetches
            .get_or_create(&FetchLabels {
                source: source.to_owned(),
                server: ServerLabel(server),
                outcome,
            })
            .inc();
    }

    /// One revocation check: counted per scope and result, and per source and reason
    /// when a CRL refused the certificate (`revoked`, `stale`, or `missing`: no CRL in
    /// force covers it although one is required).
    pub fn checked(&self, scope: CrlScope, status: &RevocationStatus) {
        let (result, refused_by) = CheckResult::of(status);
        if let Some(source) = refused_by {
            self.rejections
                .get_or_create(&RejectionLabels {
                    source: source.to_owned(),
                    reason: result,
                })
                .inc();
        }
        self.checks
            .get_or_create(&CheckLabels {
                scope: ScopeLabel(scope),
                result,
            })
            .inc();
    }

    fn checks(&self, scope: CrlScope, result: CheckResult) -> u64 {
        let labels = CheckLabels {
            scope: ScopeLabel(scope),
            result,
        };
        self.checks.get(&labels).map_or(0, |c| c.get())
    }
}

/// Per-source numbers for the scrape-time gauges.
#[derive(Debug)]
pub struct Gauges {
    /// The CrlSource.
    pub name: String,
    /// Revoked serials in force.
    pub entries: i64,
    /// Seconds until the first CRL passes `nextUpdate`, when one is in force.
    pub until_stale: Option<i64>,
    /// Whether a CRL in force is stale, when one is in force.
    pub stale: Option<bool>,
    /// Memory held by the indexes.
    pub index_bytes: i64,
    /// Failed fetch attempts since the last success.
    pub failures: i64,
    /// When a URL last answered with an acceptable CRL or 304 (Unix seconds).
    pub last_fetch: Option<i64>,
    /// A CRL is in force.
    pub in_force: bool,
    /// A failurePolicy Open source without a CRL in force.
    pub fail_open: bool,
}

/// What the metrics read: the counters, and at scrape time the per-source numbers.
pub trait CrlMetricsSource: Send + Sync + std::fmt::Debug + 'static {
    /// The counters.
    fn counters(&self) -> &CrlMetrics;
    /// The numbers of the enabled sources, now.
    fn gauges(&self) -> Vec<Gauges>;
    /// Revocation coverage of every trusted CA of every listener, now.
    fn coverage(&self) -> Vec<super::CaCoverage> {
        Vec::new()
    }
}

/// Register the CRL metrics of `store` (names start with `postern_crl_`).
pub fn register<S: CrlMetricsSource>(registry: &mut Registry, store: &Arc<S>) {
    let registry = registry.sub_registry_with_prefix("postern");
    registry.register(
        "crl_fetches",
        "CRL fetches per source, server (primary|secondary) and outcome",
        store.counters().fetches.clone(),
    );
    registry.register(
        "crl_certificate_rejections",
        "Certificates refused because of a CRL, per source and reason (revoked|stale|missing)",
        store.counters().rejections.clone(),
    );
    registry.register_collector(Box::new(ScrapeTime {
        store: Arc::clone(store) as Arc<dyn CrlMetricsSource>,
    }));
}

/// Scrape-time view of the store.
#[derive(Debug)]
struct ScrapeTime {
    store: Arc<dyn CrlMetricsSource>,
}

impl Collector for ScrapeTime {
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

        // Encoded here rather than registered: every scope and result is listed, zeros
        // included, in a fixed order.
        let c = ConstCounter::new(0u64);
        let mut d = encoder.encode_descriptor(
            "crl_checks",
            "Revocation checks per scope and result (no_crl|good|revoked|stale|missing)",
            None,
            c.metric_type(),
        )?;
        let counters = self.store.counters();
        for scope in SCOPES {
            for result in CheckResult::ALL {
                let labels = CheckLabels {
                    scope: ScopeLabel(scope),
                    result,
                };
                ConstCounter::new(counters.checks(scope, result))
                    .encode(d.encode_family(&labels)?)?;
            }
        }
        // Only listed when some listener trusts a CA (keeps a gateway without client
        // certificates free of an empty family).
        let coverage = self.store.coverage();
        if !coverage.is_empty() {
            let g = ConstGauge::new(0i64);
            let mut d = encoder.encode_descriptor(
                "revocation_ca_covered",
                "1 when the revocation of the certificates of this trusted CA (subject DN) of \
                 this listener's client CA bundle is checked (a CRL of the CA is in force), \
                 0 when nothing checks it",
                None,
                g.metric_type(),
            )?;
            for c in &coverage {
                let labels = [("listener", c.listener.as_str()), ("ca", c.ca.as_str())];
                ConstGauge::new(i64::from(c.covered)).encode(d.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::MissingCrl;

    /// `/metrics` as it was when the counters were positional atomics labelled by
    /// parallel string arrays: names, help, types and label values must not change.
    const EXPECTED: &str = r#"# HELP postern_crl_fetches CRL fetches per source, server (primary|secondary) and outcome.
# TYPE postern_crl_fetches counter
postern_crl_fetches_total{source="corp",server="secondary",outcome="network"} 2
postern_crl_fetches_total{source="corp",server="primary",outcome="updated"} 1
# HELP postern_crl_certificate_rejections Certificates refused because of a CRL, per source and reason (revoked|stale|missing).
# TYPE postern_crl_certificate_rejections counter
postern_crl_certificate_rejections_total{source="off",reason="missing"} 1
postern_crl_certificate_rejections_total{source="corp",reason="stale"} 1
postern_crl_certificate_rejections_total{source="corp",reason="revoked"} 1
# HELP postern_crl_entries Revoked serials in force per source
# TYPE postern_crl_entries gauge
postern_crl_entries{source="corp"} 0
# HELP postern_crl_seconds_until_stale Seconds until the first CRL of the source passes nextUpdate (negative: stale, its issuer's certificates are refused)
# TYPE postern_crl_seconds_until_stale gauge
# HELP postern_crl_stale 1 when a CRL of the source is past nextUpdate (its issuer's certificates are refused)
# TYPE postern_crl_stale gauge
# HELP postern_crl_index_bytes Memory held by the revoked-serial indexes of the source
# TYPE postern_crl_index_bytes gauge
postern_crl_index_bytes{source="corp"} 0
# HELP postern_crl_consecutive_failures Failed fetch attempts since the last success
# TYPE postern_crl_consecutive_failures gauge
postern_crl_consecutive_failures{source="corp"} 0
# HELP postern_crl_in_force 1 when the source has a CRL in force; 0 while it has none (with failurePolicy Closed the certificates it may be for are refused as crl_missing meanwhile)
# TYPE postern_crl_in_force gauge
postern_crl_in_force{source="corp"} 0
# HELP postern_crl_fail_open 1 while a failurePolicy Open source has no CRL in force (certificates are accepted without its revocation check)
# TYPE postern_crl_fail_open gauge
postern_crl_fail_open{source="corp"} 0
# HELP postern_crl_last_success_timestamp_seconds When a URL of the source last answered with an acceptable CRL or 304
# TYPE postern_crl_last_success_timestamp_seconds gauge
# HELP postern_crl_checks Revocation checks per scope and result (no_crl|good|revoked|stale|missing)
# TYPE postern_crl_checks counter
postern_crl_checks_total{scope="InboundSmtpTls",result="no_crl"} 0
postern_crl_checks_total{scope="InboundSmtpTls",result="good"} 2
postern_crl_checks_total{scope="InboundSmtpTls",result="revoked"} 1
postern_crl_checks_total{scope="InboundSmtpTls",result="stale"} 1
postern_crl_checks_total{scope="InboundSmtpTls",result="missing"} 0
postern_crl_checks_total{scope="OutboundSmtpTls",result="no_crl"} 1
postern_crl_checks_total{scope="OutboundSmtpTls",result="good"} 0
postern_crl_checks_total{scope="OutboundSmtpTls",result="revoked"} 0
postern_crl_checks_total{scope="OutboundSmtpTls",result="stale"} 0
postern_crl_checks_total{scope="OutboundSmtpTls",result="missing"} 1
# EOF
"#;

    #[derive(Debug, Default)]
    struct Fake {
        metrics: CrlMetrics,
    }

    impl CrlMetricsSource for Fake {
        fn counters(&self) -> &CrlMetrics {
            &self.metrics
        }

        fn gauges(&self) -> Vec<Gauges> {
            vec![Gauges {
                name: "corp".into(),
                entries: 0,
                until_stale: None,
                stale: None,
                index_bytes: 0,
                failures: 0,
                last_fetch: None,
                in_force: false,
                fail_open: false,
            }]
        }
    }

    #[test]
    fn metrics_text_is_unchanged() {
        let store = Arc::new(Fake::default());
        let m = &store.metrics;
        m.fetched("corp", ServedBy::Primary, "updated");
        m.fetched("corp", ServedBy::Secondary, "network");
        m.fetched("corp", ServedBy::Secondary, "network");
        let revoked = RevocationStatus::Revoked {
            source: "corp".into(),
            reason: None,
        };
        let stale = RevocationStatus::Stale {
            source: "corp".into(),
            next_update: "x".into(),
        };
        let missing = RevocationStatus::Missing {
            source: "off".into(),
            why: MissingCrl::NotLoaded,
        };
        let (inbound, outbound) = (CrlScope::InboundSmtpTls, CrlScope::OutboundSmtpTls);
        m.checked(inbound, &RevocationStatus::Good);
        m.checked(inbound, &RevocationStatus::Good);
        m.checked(inbound, &revoked);
        m.checked(inbound, &stale);
        m.checked(outbound, &missing);
        m.checked(outbound, &RevocationStatus::NoCrl);
        let mut registry = Registry::default();
        register(&mut registry, &store);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        // The lines of a registered family come in hash order; the collector's in a
        // fixed one.
        let sorted = |t: &str| {
            let mut lines: Vec<String> = t.lines().map(str::to_owned).collect();
            lines.sort();
            lines
        };
        assert_eq!(sorted(&text), sorted(EXPECTED), "{text}");
        let scrape_time = EXPECTED.find("# HELP postern_crl_entries").unwrap();
        assert!(text.ends_with(&EXPECTED[scrape_time..]), "{text}");
    }
}
