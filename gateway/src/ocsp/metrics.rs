//! Prometheus metrics of the OCSP client, per responder URL.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    responder: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResponderLabels {
    responder: String,
}

/// The OCSP client's counters.
#[derive(Clone, Debug)]
pub struct OcspMetrics {
    requests: Family<ResultLabels, Counter>,
    seconds: Family<ResponderLabels, Histogram>,
    cache_hits: Family<ResponderLabels, Counter>,
}

impl Default for OcspMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.0, 14))
            }),
            cache_hits: Family::default(),
        }
    }
}

impl OcspMetrics {
    /// Families registered under `postern_ocsp_`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("postern_ocsp");
        r.register(
            "requests",
            "OCSP requests by responder and result (good, revoked, unknown, or why no answer)",
            m.requests.clone(),
        );
        r.register(
            "request_seconds",
            "Time from sending an OCSP request to its verified answer or failure",
            m.seconds.clone(),
        );
        r.register(
            "cache_hits",
            "OCSP lookups answered from the cache",
            m.cache_hits.clone(),
        );
        m
    }

    /// One request to `responder` ended with `result` after `seconds`.
    pub(crate) fn requested(&self, responder: &str, result: &'static str, seconds: f64) {
        self.requests
            .get_or_create(&ResultLabels {
                responder: responder.to_owned(),
                result,
            })
            .inc();
        self.seconds
            .get_or_create(&ResponderLabels {
                responder: responder.to_owned(),
            })
            .observe(seconds);
    }

    /// A lookup answered from the cache.
    pub(crate) fn cache_hit(&self, responder: &str) {
        self.cache_hits
            .get_or_create(&ResponderLabels {
                responder: responder.to_owned(),
            })
            .inc();
    }

    #[cfg(test)]
    /// Requests counted for `responder` and `result`.
    pub(crate) fn requests(&self, responder: &str, result: &'static str) -> u64 {
        self.requests
            .get_or_create(&ResultLabels {
                responder: responder.to_owned(),
                result,
            })
            .get()
    }
}
