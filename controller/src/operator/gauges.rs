//! The gauges one namespace contributes to (objects by kind and condition; ready and
//! programmed gateways), remembered so that they can be replaced or withdrawn whole.

use std::collections::HashMap;

use postern_crds::Condition;

use super::fleet::Fleet;
use super::metrics::{ConditionLabels, GatewayLabels, Metrics};
use crate::compile::Kind;

/// Objects counted by kind and condition state.
pub(crate) type Counts = HashMap<ConditionLabels, i64>;

/// Counts the conditions of one object of `kind` into `counts`.
pub(crate) fn count(counts: &mut Counts, kind: Kind, conditions: &[Condition]) {
    for c in conditions {
        *counts
            .entry(ConditionLabels {
                kind: kind.as_str().into(),
                condition: c.type_.clone(),
                status: format!("{:?}", c.status),
            })
            .or_default() += 1;
    }
}

/// What one namespace contributes to the gauges now.
#[derive(Debug, Default)]
pub(crate) struct Gauges {
    /// Its objects, counted into `objects`.
    objects: Counts,
    /// Whether it has set its series of `gateways`.
    gateways: bool,
}

impl Gauges {
    /// Replaces the namespace's contribution to the object gauge with `counts`.
    pub(crate) fn set_objects(&mut self, metrics: &Metrics, counts: Counts) {
        let old = std::mem::replace(&mut self.objects, counts.clone());
        for (labels, n) in old {
            metrics.objects.get_or_create(&labels).dec_by(n);
        }
        for (labels, n) in counts {
            metrics.objects.get_or_create(&labels).inc_by(n);
        }
    }

    /// Sets the namespace's gateway gauges: ready gateways, and those running the
    /// configuration with hash `desired` (none while nothing valid is published).
    pub(crate) fn set_gateways(
        &mut self,
        metrics: &Metrics,
        namespace: &str,
        fleet: &Fleet,
        desired: Option<&str>,
    ) {
        let ready = fleet.ready.len() as i64;
        let programmed = desired.map_or(0, |h| fleet.programmed_count(h)) as i64;
        self.gateways = true;
        for (state, n) in [("ready", ready), ("programmed", programmed)] {
            metrics
                .gateways
                .get_or_create(&GatewayLabels {
                    namespace: namespace.into(),
                    state: state.into(),
                })
                .set(n);
        }
    }

    /// Withdraws everything the namespace contributed (it has no objects left).
    pub(crate) fn withdraw(&mut self, metrics: &Metrics, namespace: &str) {
        self.set_objects(metrics, Counts::new());
        if std::mem::take(&mut self.gateways) {
            for state in ["ready", "programmed"] {
                metrics.gateways.remove(&GatewayLabels {
                    namespace: namespace.into(),
                    state: state.into(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::fleet::Member;
    use postern_crds::ConditionStatus;
    use prometheus_client::registry::Registry;

    fn ready(status: ConditionStatus) -> Condition {
        Condition {
            type_: "Ready".into(),
            status,
            reason: "X".into(),
            message: String::new(),
            last_transition_time: String::new(),
            observed_generation: None,
        }
    }

    fn labels(status: &str) -> ConditionLabels {
        ConditionLabels {
            kind: "Listener".into(),
            condition: "Ready".into(),
            status: status.into(),
        }
    }

    #[test]
    fn namespaces_add_up_and_withdraw_what_they_added() {
        let metrics = Metrics::new(&mut Registry::default());
        let (mut a, mut b) = (Gauges::default(), Gauges::default());
        let mut counts = Counts::new();
        count(&mut counts, Kind::Listener, &[ready(ConditionStatus::True)]);
        a.set_objects(&metrics, counts.clone());
        b.set_objects(&metrics, counts);
        let value = |s: &str| metrics.objects.get_or_create(&labels(s)).get();
        assert_eq!(value("True"), 2);
        let mut counts = Counts::new();
        count(
            &mut counts,
            Kind::Listener,
            &[ready(ConditionStatus::False)],
        );
        a.set_objects(&metrics, counts);
        assert_eq!((value("True"), value("False")), (1, 1));

        let fleet = Fleet {
            ready: vec![Member {
                name: "gw-0".into(),
                applied: Some("h1".into()),
                refused: None,
                refused_listeners: Vec::new(),
            }],
            next_expiry: None,
        };
        a.set_gateways(&metrics, "a", &fleet, Some("h1"));
        let gateways = |state: &str| {
            metrics
                .gateways
                .get(&GatewayLabels {
                    namespace: "a".into(),
                    state: state.into(),
                })
                .map(|g| g.get())
        };
        assert_eq!(
            (gateways("ready"), gateways("programmed")),
            (Some(1), Some(1))
        );
        a.withdraw(&metrics, "a");
        assert_eq!((value("True"), value("False")), (1, 0));
        assert_eq!(gateways("ready"), None);
    }
}
