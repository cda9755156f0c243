//! The webhook's metric: `postern_controller_admission_reviews_total{decision}`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// What the webhook answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Allowed, nothing to say.
    Allowed,
    /// Allowed with admission warnings (references not there yet, compiler warnings).
    AllowedWithWarnings,
    /// Refused: the object has errors of its own.
    Refused,
    /// The request was not an AdmissionReview it could read.
    Invalid,
}

impl Decision {
    /// The label value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::AllowedWithWarnings => "warned",
            Self::Refused => "refused",
            Self::Invalid => "invalid",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabel {
    decision: &'static str,
}

/// The webhook's counters.
#[derive(Debug, Default)]
pub(crate) struct AdmissionMetrics {
    reviews: Family<DecisionLabel, Counter>,
}

impl AdmissionMetrics {
    /// Registers the metrics in `registry`.
    pub(crate) fn new(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry
            .sub_registry_with_prefix("postern_controller")
            .register(
                "admission_reviews",
                "Admission reviews answered by the webhook, by decision",
                m.reviews.clone(),
            );
        m
    }

    /// Counts one answer.
    pub(crate) fn count(&self, d: Decision) {
        self.reviews
            .get_or_create(&DecisionLabel {
                decision: d.as_str(),
            })
            .inc();
    }
}
