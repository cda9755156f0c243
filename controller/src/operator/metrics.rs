//! The controller's Prometheus metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// `result` of a reconcile.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ResultLabel {
    /// `ok` or `error`.
    pub result: String,
}

/// `reason` of an error.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabel {
    /// Short CamelCase reason, e.g. `ApiError`, `InvalidConfig`.
    pub reason: String,
}

/// Objects by kind and condition state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ConditionLabels {
    /// Resource kind.
    pub kind: String,
    /// Condition type.
    pub condition: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
}

/// Gateways by namespace and state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct GatewayLabels {
    /// Namespace of the fleet.
    pub namespace: String,
    /// `ready` (serving) or `programmed` (serving the desired configuration).
    pub state: String,
}

/// Every metric of the controller.
#[derive(Debug)]
pub(crate) struct Metrics {
    /// Reconciles by result.
    pub reconciles: Family<ResultLabel, Counter>,
    /// Reconcile duration.
    pub reconcile_duration: Histogram,
    /// Errors by reason (reconcile failures, refused configurations, API errors).
    pub errors: Family<ReasonLabel, Counter>,
    /// Objects by kind and condition.
    pub objects: Family<ConditionLabels, Gauge>,
    /// Rendered Secrets written (new configurations).
    pub published: Counter,
    /// Rendered Secrets restored after a hand edit or deletion.
    pub drift_repairs: Counter,
    /// Status subresource writes.
    pub status_writes: Counter,
    /// Events emitted.
    pub events: Counter,
    /// 1 while this replica leads.
    pub leader: Gauge,
    /// Gateways by namespace and state.
    pub gateways: Family<GatewayLabels, Gauge>,
}

impl Metrics {
    /// Creates the metrics and registers them under `postern_controller_`.
    pub(crate) fn new(registry: &mut Registry) -> Self {
        let m = Self {
            reconciles: Family::default(),
            reconcile_duration: Histogram::new([
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            errors: Family::default(),
            objects: Family::default(),
            published: Counter::default(),
            drift_repairs: Counter::default(),
            status_writes: Counter::default(),
            events: Counter::default(),
            leader: Gauge::default(),
            gateways: Family::default(),
        };
        let r = registry.sub_registry_with_prefix("postern_controller");
        r.register(
            "reconciles",
            "Namespace reconciles by result",
            m.reconciles.clone(),
        );
        r.register(
            "reconcile_duration_seconds",
            "Time to reconcile one namespace",
            m.reconcile_duration.clone(),
        );
        r.register("errors", "Errors by reason", m.errors.clone());
        r.register(
            "objects",
            "Postern objects by kind and condition status",
            m.objects.clone(),
        );
        r.register(
            "published",
            "Rendered configurations published",
            m.published.clone(),
        );
        r.register(
            "drift_repairs",
            "Rendered Secrets restored after a hand edit or a deletion",
            m.drift_repairs.clone(),
        );
        r.register("status_writes", "Status writes", m.status_writes.clone());
        r.register("events", "Kubernetes Events emitted", m.events.clone());
        r.register(
            "leader",
            "1 while this replica is the leader",
            m.leader.clone(),
        );
        r.register(
            "gateways",
            "Gateways reporting, by namespace and state",
            m.gateways.clone(),
        );
        m
    }

    /// Counts an error of `reason`.
    pub(crate) fn error(&self, reason: &str) {
        self.errors
            .get_or_create(&ReasonLabel {
                reason: reason.into(),
            })
            .inc();
    }
}
