//! The gateway fleet of a namespace, from the gateways' `GatewayReport`s (pure).
//!
//! A gateway counts when its report is alive (renewed within its `ttlSeconds`, plus a
//! little grace for clock skew) and it says it is ready. It is programmed when it
//! runs the desired hash. `Programmed=True` needs every counted gateway programmed — and,
//! for a Listener, none of them refusing that Listener (a port in use on its host).

use std::collections::BTreeMap;

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::DynamicObject;
use postern_config::protocol::{
    self, CaRevocation, CrlFacts, GatewayReport, ListenerRefusal, ListenerRefusalReason, ReportSpec,
};

/// Extra time a report stays alive past its lease, for clock skew between nodes.
pub(crate) const SKEW_GRACE: SignedDuration = SignedDuration::from_secs(2);

/// One gateway's report as read from its `GatewayReport`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct GatewayState {
    /// The gateway (Pod) name.
    pub name: String,
    /// What it reports.
    pub report: GatewayReport,
    /// When the report stops counting unless renewed.
    pub expires: Option<Timestamp>,
}

impl GatewayState {
    /// Reads a `GatewayReport` object. A report that does not read as one, or whose name
    /// is not `postern-gw-<its gateway>`, never counts (it is only ever written by the
    /// gateways; anything else in its place is not a report).
    pub(crate) fn from_object(object: &DynamicObject) -> Self {
        let name = object.metadata.name.clone().unwrap_or_default();
        let spec = object
            .data
            .get("spec")
            .cloned()
            .and_then(|s| serde_json::from_value::<ReportSpec>(s).ok())
            .filter(|s| protocol::report_name(&s.gateway) == name);
        let Some(spec) = spec else {
            return Self {
                name,
                report: GatewayReport::default(),
                expires: None,
            };
        };
        let expires = spec
            .renew_time
            .parse::<Timestamp>()
            .ok()
            .map(|t| t + SignedDuration::from_secs(spec.ttl_seconds.into()) + SKEW_GRACE);
        Self {
            name: spec.gateway,
            report: spec.report,
            expires,
        }
    }

    /// Whether the report counts at `now`.
    pub(crate) fn alive(&self, now: Timestamp) -> bool {
        self.expires.is_some_and(|e| e > now)
    }
}

/// The ready gateways of a namespace and what they run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Fleet {
    /// Ready gateways with a live report, by name.
    pub ready: Vec<Member>,
    /// The earliest time a live report expires (to re-check then).
    pub next_expiry: Option<Timestamp>,
}

/// A ready gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Member {
    /// Gateway name.
    pub name: String,
    /// The hash it runs.
    pub applied: Option<String>,
    /// The last configuration it refused: hash and why.
    pub refused: Option<(String, String)>,
    /// The Listeners of `applied` it does not run as configured.
    pub refused_listeners: Vec<ListenerRefusal>,
}

/// The fleet at `now`: live, ready gateways.
pub(crate) fn fleet(gateways: &[GatewayState], now: Timestamp) -> Fleet {
    let mut f = Fleet::default();
    let mut sorted: Vec<&GatewayState> = gateways.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    for g in sorted {
        if !g.alive(now) {
            continue;
        }
        f.next_expiry = match (f.next_expiry, g.expires) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if g.report.ready {
            f.ready.push(Member {
                name: g.name.clone(),
                applied: g.report.applied_hash.clone(),
                refused: g
                    .report
                    .refusal
                    .as_ref()
                    .map(|r| (r.hash.clone(), r.message.clone())),
                refused_listeners: g.report.refused_listeners.clone(),
            });
        }
    }
    f
}

/// A `Programmed` verdict: status, reason and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// Whether it holds.
    pub status: bool,
    /// CamelCase reason.
    pub reason: &'static str,
    /// For a human.
    pub message: String,
}

/// Short form of a hash for messages: `sha256:0123456789ab`.
pub(crate) fn short_hash(hash: &str) -> &str {
    let end = hash.find(':').map(|i| i + 13).unwrap_or(12).min(hash.len());
    &hash[..end]
}

impl Fleet {
    /// The ready gateways by name and what each runs: a change in it may change the
    /// objects' `Programmed`.
    pub(crate) fn membership(&self) -> Vec<(String, Option<String>)> {
        self.ready
            .iter()
            .map(|m| (m.name.clone(), m.applied.clone()))
            .collect()
    }

    /// How many ready gateways run the desired hash.
    pub(crate) fn programmed_count(&self, desired: &str) -> usize {
        self.ready
            .iter()
            .filter(|m| m.applied.as_deref() == Some(desired))
            .count()
    }

    /// `Programmed` for an object of the configuration with hash `desired`. A gateway
    /// counts as programmed for the object when it runs `desired`, or a configuration in
    /// which the object is rendered the same (`same(hash)`), so a change elsewhere in the
    /// namespace does not flip every object while it rolls out — unless the object is
    /// the Listener `listener` and that gateway refuses it: then the verdict names the
    /// gateway, the address and the error (`PortUnavailable` when it cannot be bound).
    pub(crate) fn programmed_verdict(
        &self,
        namespace: &str,
        desired: &str,
        same: impl Fn(&str) -> bool,
        listener: Option<&str>,
    ) -> Verdict {
        let total = self.ready.len();
        if total == 0 {
            return Verdict {
                status: false,
                reason: "NoGateways",
                message: format!(
                    "no ready gateway reports in namespace {namespace}; nothing runs this configuration yet"
                ),
            };
        }
        let (done, lagging): (Vec<&Member>, Vec<&Member>) = self.ready.iter().partition(|m| {
            m.applied
                .as_deref()
                .is_some_and(|h| h == desired || same(h))
        });
        let refusing: Vec<(&Member, &ListenerRefusal)> = done
            .iter()
            .filter_map(|m| {
                let r = m
                    .refused_listeners
                    .iter()
                    .find(|r| Some(r.listener.as_str()) == listener)?;
                Some((*m, r))
            })
            .collect();
        let n = done.len() - refusing.len();
        if !refusing.is_empty() {
            let port = refusing
                .iter()
                .all(|(_, r)| r.reason == ListenerRefusalReason::PortUnavailable);
            let why: Vec<String> = refusing
                .iter()
                .map(|(m, r)| format!("{} {}", m.name, r.describe()))
                .collect();
            return Verdict {
                status: false,
                reason: if port {
                    "PortUnavailable"
                } else {
                    "GatewayRefused"
                },
                message: format!("{n}/{total} gateways programmed; {}", why.join("; ")),
            };
        }
        if lagging.is_empty() {
            return Verdict {
                status: true,
                reason: "Programmed",
                message: format!("{n}/{total} gateways programmed"),
            };
        }
        let refused: Vec<String> = lagging
            .iter()
            .filter_map(|m| {
                m.refused
                    .as_ref()
                    .filter(|(h, _)| h == desired)
                    .map(|(_, why)| format!("{} refused it: {why}", m.name))
            })
            .collect();
        if !refused.is_empty() {
            return Verdict {
                status: false,
                reason: "GatewayRefused",
                message: format!(
                    "{n}/{total} gateways programmed with {}; {}",
                    short_hash(desired),
                    refused.join("; ")
                ),
            };
        }
        let waiting: Vec<String> = lagging
            .iter()
            .map(|m| match &m.applied {
                Some(h) => format!("{} (runs {})", m.name, short_hash(h)),
                None => m.name.clone(),
            })
            .collect();
        Verdict {
            status: false,
            reason: "Pending",
            message: format!(
                "{n}/{total} gateways programmed with {}; waiting for {}",
                short_hash(desired),
                waiting.join(", ")
            ),
        }
    }
}

/// The freshest facts about CRL source `name` among live, ready gateways: the one fetched
/// most recently (RFC 3339 timestamps of one format compare as strings).
pub(crate) fn crl_facts(gateways: &[GatewayState], name: &str, now: Timestamp) -> Option<CrlFacts> {
    let mut best: BTreeMap<Option<String>, CrlFacts> = BTreeMap::new();
    for g in gateways.iter().filter(|g| g.alive(now) && g.report.ready) {
        for f in g.report.crl_sources.iter().filter(|f| f.name == name) {
            let key = f
                .last_fetch_time
                .as_deref()
                .and_then(|t| t.parse::<Timestamp>().ok())
                .map(|t| t.to_string());
            best.insert(key, f.clone());
        }
    }
    best.into_iter().next_back().map(|(_, f)| f)
}

/// How the revocation of each CA of `listener`'s client CA bundle is checked, from the
/// ready gateways' reports: each CA once, in the first report's order, with the view that
/// should worry an operator more where gateways differ (not covered, stale, the earlier
/// `nextUpdate`).
pub(crate) fn revocation(
    gateways: &[GatewayState],
    listener: &str,
    now: Timestamp,
) -> Vec<CaRevocation> {
    let mut out: Vec<CaRevocation> = Vec::new();
    let views = gateways
        .iter()
        .filter(|g| g.alive(now) && g.report.ready)
        .flat_map(|g| {
            g.report
                .revocation
                .iter()
                .filter(|l| l.listeners.iter().any(|n| n == listener))
        })
        .flat_map(|l| l.cas.iter());
    for view in views {
        match out.iter_mut().find(|c| c.ca == view.ca) {
            Some(c) if view.worse_first(c).is_lt() => *c = view.clone(),
            Some(_) => {}
            None => out.push(view.clone()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_config::protocol::{ListenerCoverage, Refusal, RevocationMechanism};

    fn gw(name: &str, hash: Option<&str>, ready: bool, expires_in: i64) -> GatewayState {
        GatewayState {
            name: name.into(),
            report: GatewayReport {
                applied_hash: hash.map(Into::into),
                ready,
                ..Default::default()
            },
            expires: Some(now() + SignedDuration::from_secs(expires_in)),
        }
    }

    fn now() -> Timestamp {
        "2025-01-01T00:00:00Z".parse().unwrap()
    }

    const H1: &str = "sha256:1111111111111111111111";
    const H2: &str = "sha256:2222222222222222222222";

    fn object(name: &str, spec: serde_json::Value) -> DynamicObject {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "postern.dev/v1alpha1", "kind": "GatewayReport",
            "metadata": {"name": name}, "spec": spec,
        }))
        .unwrap()
    }

    /// What the gateways write is what the GatewayReport CRD's schema keeps: a field the
    /// schema did not know would be pruned by the API server without a word.
    #[test]
    fn the_report_the_gateways_write_fits_the_crd() {
        use postern_config::protocol::Refusal;
        let spec = ReportSpec {
            gateway: "gw-0".into(),
            renew_time: "2025-01-01T00:00:00.5Z".into(),
            ttl_seconds: 30,
            report: GatewayReport {
                applied_hash: Some(H1.into()),
                ready: true,
                refusal: Some(Refusal {
                    hash: H2.into(),
                    message: "port 25 in use".into(),
                }),
                refused_listeners: vec![ListenerRefusal {
                    listener: "smtp".into(),
                    address: "0.0.0.0:25".into(),
                    reason: ListenerRefusalReason::PortUnavailable,
                    message: "Address already in use (os error 98)".into(),
                    serving: protocol::ListenerServing::NotServed,
                }],
                crl_sources: vec![CrlFacts {
                    name: "dod".into(),
                    entries: 3,
                    ..Default::default()
                }],
                revocation: vec![ListenerCoverage {
                    listeners: vec!["smtp".into()],
                    cas: vec![CaRevocation {
                        ca: "CN=Root".into(),
                        mechanism: RevocationMechanism::Crl,
                        covered: true,
                        sources: vec!["dod".into()],
                        entries: 3,
                        der_bytes: 100,
                        next_update: None,
                        stale: false,
                    }],
                }],
            },
        };
        let json = serde_json::to_value(&spec).unwrap();
        let crd: postern_crds::GatewayReportSpec =
            serde_json::from_value(json.clone()).expect("every field is in the CRD schema");
        assert_eq!(serde_json::to_value(&crd).unwrap(), json);
    }

    #[test]
    fn reads_reports_and_ignores_what_is_not_one() {
        let g = GatewayState::from_object(&object(
            "postern-gw-a",
            serde_json::json!({"gateway": "a", "renewTime": "2025-01-01T00:00:00.250Z",
                "ttlSeconds": 3, "appliedHash": H1, "ready": true}),
        ));
        assert_eq!(g.name, "a");
        assert_eq!(g.report.applied_hash.as_deref(), Some(H1));
        assert!(g.alive(now() + SignedDuration::from_secs(4)));
        assert!(!g.alive(now() + SignedDuration::from_secs(6)));
        // Named for another gateway, or not a report at all: never alive.
        let g = GatewayState::from_object(&object(
            "postern-gw-b",
            serde_json::json!({"gateway": "a", "renewTime": "2025-01-01T00:00:00Z",
                "ttlSeconds": 3, "ready": true}),
        ));
        assert!(!g.alive(now()));
        let g = GatewayState::from_object(&object("postern-gw-c", serde_json::json!({"x": 1})));
        assert!(!g.alive(now()));
        assert_eq!(g.name, "postern-gw-c");
    }

    #[test]
    fn all_ready_gateways_on_the_hash_is_programmed() {
        let g = [gw("a", Some(H1), true, 10), gw("b", Some(H1), true, 20)];
        let f = fleet(&g, now());
        let v = f.programmed_verdict("mail", H1, |_| false, None);
        assert!(v.status);
        assert_eq!(v.message, "2/2 gateways programmed");
        assert_eq!(f.programmed_count(H1), 2);
        assert_eq!(f.next_expiry, Some(now() + SignedDuration::from_secs(10)));
    }

    #[test]
    fn rolling_says_how_many_and_who_lags() {
        let g = [
            gw("a", Some(H2), true, 10),
            gw("b", Some(H2), true, 10),
            gw("c", Some(H1), true, 10),
        ];
        let f = fleet(&g, now());
        let v = f.programmed_verdict("mail", H2, |_| false, None);
        assert!(!v.status);
        assert_eq!(v.reason, "Pending");
        assert_eq!(
            v.message,
            "2/3 gateways programmed with sha256:222222222222; waiting for c (runs sha256:111111111111)"
        );
        // An object rendered the same in H1 is programmed everywhere already.
        assert!(f.programmed_verdict("mail", H2, |h| h == H1, None).status);
    }

    #[test]
    fn dead_and_unready_gateways_do_not_count() {
        let g = [
            gw("a", Some(H2), true, 10),
            gw("dead", Some(H1), true, -1),
            gw("starting", None, false, 10),
        ];
        let f = fleet(&g, now());
        assert_eq!(f.ready.len(), 1);
        assert_eq!(f.ready[0].name, "a");
        assert!(f.programmed_verdict("mail", H2, |_| false, None).status);
    }

    #[test]
    fn no_gateways_and_refusals_are_explained() {
        let v = fleet(&[], now()).programmed_verdict("mail", H1, |_| false, None);
        assert_eq!(v.reason, "NoGateways");
        assert!(v.message.contains("namespace mail"), "{}", v.message);

        let mut b = gw("b", Some(H1), true, 10);
        b.report.refusal = Some(Refusal {
            hash: H2.into(),
            message: "cannot bind 0.0.0.0:25".into(),
        });
        let g = [gw("a", Some(H2), true, 10), b];
        let v = fleet(&g, now()).programmed_verdict("mail", H2, |_| false, None);
        assert_eq!(v.reason, "GatewayRefused");
        assert_eq!(
            v.message,
            "1/2 gateways programmed with sha256:222222222222; b refused it: cannot bind 0.0.0.0:25"
        );
    }

    /// A gateway that runs the configuration but not one of its Listeners: that Listener
    /// is not programmed (and says where and why); every other object is.
    #[test]
    fn a_refused_listener_is_not_programmed_and_the_rest_is() {
        let mut a = gw("a", Some(H2), true, 10);
        a.report.refused_listeners = vec![ListenerRefusal {
            listener: "smtp".into(),
            address: "127.0.0.1:2525".into(),
            reason: ListenerRefusalReason::PortUnavailable,
            message: "Address already in use (os error 98)".into(),
            serving: protocol::ListenerServing::PreviousVersion {
                address: "127.0.0.1:2524".into(),
            },
        }];
        let g = [a, gw("b", Some(H2), true, 10)];
        let f = fleet(&g, now());
        let v = f.programmed_verdict("mail", H2, |_| false, Some("smtp"));
        assert!(!v.status);
        assert_eq!(v.reason, "PortUnavailable");
        assert_eq!(
            v.message,
            "1/2 gateways programmed; a cannot listen on 127.0.0.1:2525: Address already in use (os error 98); its previous version keeps serving on 127.0.0.1:2524"
        );
        // Another Listener, and any other object, of the same configuration: programmed.
        assert!(
            f.programmed_verdict("mail", H2, |_| false, Some("other"))
                .status
        );
        assert!(f.programmed_verdict("mail", H2, |_| false, None).status);
        // A Listener whose parts cannot be built is refused by the gateway too.
        let mut c = gw("c", Some(H2), true, 10);
        c.report.refused_listeners = vec![ListenerRefusal {
            reason: ListenerRefusalReason::BuildFailed,
            serving: protocol::ListenerServing::NotServed,
            ..g[0].report.refused_listeners[0].clone()
        }];
        let v = fleet(&[c], now()).programmed_verdict("mail", H2, |_| false, Some("smtp"));
        assert_eq!(v.reason, "GatewayRefused");
        assert!(v.message.ends_with("; not served"), "{}", v.message);
    }

    #[test]
    fn freshest_crl_facts_win() {
        let mut a = gw("a", Some(H1), true, 10);
        a.report.crl_sources = vec![CrlFacts {
            name: "dod".into(),
            entries: 1,
            ..Default::default()
        }];
        let mut b = gw("b", Some(H1), true, 10);
        b.report.crl_sources = vec![CrlFacts {
            name: "dod".into(),
            last_fetch_time: Some("2025-01-01T01:00:00+00:00".into()),
            entries: 2,
            ..Default::default()
        }];
        assert_eq!(crl_facts(&[a, b], "dod", now()).unwrap().entries, 2);
        assert!(crl_facts(&[], "dod", now()).is_none());
    }

    #[test]
    fn short_hashes() {
        assert_eq!(short_hash(H1), "sha256:111111111111");
        assert_eq!(short_hash("abc"), "abc");
    }

    #[test]
    fn listener_revocation_shows_each_ca_once_the_worse_view_first() {
        let ca = |name: &str, covered: bool, next: &str| CaRevocation {
            ca: name.into(),
            mechanism: if covered {
                RevocationMechanism::Crl
            } else {
                RevocationMechanism::None
            },
            covered,
            sources: Vec::new(),
            entries: 1,
            der_bytes: 10,
            next_update: Some(next.into()),
            stale: false,
        };
        let with = |name: &str, cas: Vec<CaRevocation>| {
            let mut g = gw(name, Some(H1), true, 30);
            g.report.revocation = vec![
                ListenerCoverage {
                    listeners: vec!["smtp".into()],
                    cas,
                },
                ListenerCoverage {
                    listeners: vec!["other".into()],
                    cas: vec![ca("CN=Elsewhere", false, "2030-01-01T00:00:00Z")],
                },
            ];
            g
        };
        let a = with(
            "a",
            vec![
                ca("CN=Root", true, "2030-01-02T00:00:00Z"),
                ca("CN=Sub", true, "2030-01-02T00:00:00Z"),
            ],
        );
        let b = with(
            "b",
            vec![
                ca("CN=Root", true, "2030-01-01T00:00:00Z"),
                ca("CN=Sub", false, "2030-01-03T00:00:00Z"),
            ],
        );
        let mut gone = with("c", vec![ca("CN=Gone", false, "2030-01-01T00:00:00Z")]);
        gone.report.ready = false;
        let r = revocation(&[a, b, gone], "smtp", now());
        let shape: Vec<(&str, bool, Option<&str>)> = r
            .iter()
            .map(|c| (c.ca.as_str(), c.covered, c.next_update.as_deref()))
            .collect();
        assert_eq!(
            shape,
            [
                ("CN=Root", true, Some("2030-01-01T00:00:00Z")),
                ("CN=Sub", false, Some("2030-01-03T00:00:00Z")),
            ]
        );
        assert!(revocation(&[], "smtp", now()).is_empty());
    }
}
