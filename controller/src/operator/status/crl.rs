//! What a CRL source's status says beyond the shared conditions (pure): whether its CRL
//! is in force and fresh on the gateways (a `Ready` that can hold back), and the facts
//! of that CRL as the freshest gateway reports them.

use postern_config::protocol::CrlFacts;
use postern_crds::{CrlFailurePolicy, CrlInForce, CrlSourceSpec, CrlSourceStatus};

use super::conditions::{Cond, DISABLED};

/// The settings of a CRL source that decide what its health means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CrlSettings {
    /// `spec.enabled` (default true): a disabled source has no health to report.
    pub enabled: bool,
    /// `spec.failurePolicy: Open`: certificates pass unchecked while no CRL is in force.
    pub fail_open: bool,
}

impl Default for CrlSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            fail_open: false,
        }
    }
}

impl CrlSettings {
    /// The settings of a `CrlSource`'s spec.
    pub(crate) fn of(spec: &CrlSourceSpec) -> Self {
        Self {
            enabled: spec.enabled,
            fail_open: spec.failure_policy == CrlFailurePolicy::Open,
        }
    }
}

/// Whether a CRL source's CRL is in force and fresh on the gateways. A disabled source
/// holds (nothing to fetch) with reason `Disabled`, saying that revocation is not checked
/// against it — `Ready=True` alone would read as "revocation checked".
pub(crate) fn health(settings: CrlSettings, facts: Option<&CrlFacts>) -> Option<Cond> {
    if !settings.enabled {
        return Some(Cond::new(
            true,
            DISABLED,
            "disabled (spec.enabled: false): not fetched and not enforced; certificates are not checked for revocation against this source",
        ));
    }
    let fail_open = settings.fail_open;
    let error = |f: &CrlFacts| {
        f.last_error
            .as_ref()
            .map(|e| format!("; last fetch failed at {}: {}", e.time, e.message))
            .unwrap_or_default()
    };
    // No CRL in force: what the gateways do meanwhile depends on the failure policy.
    let nothing_in_force = |closed_reason: &str, why: String| {
        if fail_open {
            Cond::new(
                false,
                "FailOpen",
                format!(
                    "{why}; failurePolicy Open: certificates this CRL may be for are accepted without a revocation check until it is in force"
                ),
            )
        } else {
            Cond::new(
                false,
                closed_reason,
                format!(
                    "{why}; certificates this CRL may be for are refused as unverifiable (crl_missing) until it is in force"
                ),
            )
        }
    };
    Some(match facts {
        None => nothing_in_force(
            "NotFetched",
            "no gateway reports a CRL for this source yet".to_owned(),
        ),
        Some(f) if f.stale => Cond::new(
            false,
            "CrlStale",
            format!(
                "the CRL in force{} is past its nextUpdate {}: certificates of its issuer are refused until a fresh CRL is fetched{}",
                f.issuer
                    .as_ref()
                    .map(|i| format!(" (issuer {i})"))
                    .unwrap_or_default(),
                f.next_update.as_deref().unwrap_or("(none)"),
                error(f)
            ),
        ),
        Some(f) if f.this_update.is_none() => match &f.last_error {
            Some(e) => nothing_in_force(
                "FetchFailed",
                format!("no CRL in force: {} ({})", e.message, e.reason),
            ),
            None => nothing_in_force(
                "NotFetched",
                "the gateways have not fetched this CRL yet".to_owned(),
            ),
        },
        Some(f) => Cond::new(
            true,
            "CrlInForce",
            format!(
                "{} entries from {}, next update {}{}",
                f.entries,
                f.served_by.map_or("?", |s| s.as_str()),
                f.next_update.as_deref().unwrap_or("(none)"),
                error(f)
            ),
        ),
    })
}

/// Puts the facts of the CRL in force, as a gateway reports them, into the status.
pub(crate) fn set_facts(st: &mut CrlSourceStatus, f: CrlFacts) {
    st.last_fetch_time = f.last_fetch_time;
    st.served_by = f.served_by;
    st.this_update = f.this_update;
    st.next_update = f.next_update;
    st.entries = Some(f.entries);
    st.issuer = f.issuer;
    st.crls = f.crls.into_iter().map(CrlInForce::from).collect();
    st.discovered = f.discovered;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::status::conditions::is_warning;
    use postern_config::protocol::CrlError;
    use postern_crds::Condition;

    fn source(spec: serde_json::Value) -> CrlSettings {
        let mut spec = spec;
        let defaults = serde_json::json!({"format": "Asn1", "primaryUrl": "http://crl.test/root.crl",
            "schedule": {"interval": "1h"}, "appliesTo": ["InboundSmtpTls"]});
        for (k, v) in defaults.as_object().unwrap() {
            spec.as_object_mut()
                .unwrap()
                .entry(k.clone())
                .or_insert(v.clone());
        }
        CrlSettings::of(&serde_json::from_value(spec).unwrap())
    }

    /// `c` as the `Ready` condition of a status.
    fn as_ready(c: &Cond) -> Condition {
        Condition {
            type_: "Ready".into(),
            status: postern_crds::ConditionStatus::from_bool(c.status),
            reason: c.reason.clone(),
            message: c.message.clone(),
            last_transition_time: String::new(),
            observed_generation: None,
        }
    }

    fn failed() -> CrlFacts {
        CrlFacts {
            name: "root".into(),
            last_error: Some(CrlError {
                time: "2025-01-01T00:00:00Z".into(),
                reason: "network".into(),
                message: "connection refused".into(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn settings_are_read_from_the_spec() {
        assert_eq!(
            source(serde_json::json!({"format": "Asn1"})),
            CrlSettings::default()
        );
        let off = source(serde_json::json!({"enabled": false, "failurePolicy": "Open"}));
        assert_eq!(
            off,
            CrlSettings {
                enabled: false,
                fail_open: true
            }
        );
        let c = health(off, Some(&failed())).unwrap();
        assert_eq!((c.status, c.reason.as_str()), (true, "Disabled"));
        assert!(
            c.message.contains("not checked for revocation"),
            "{}",
            c.message
        );
        let ready = super::super::conditions::ready(
            &Cond::new(true, "Accepted", "ok"),
            &Cond::new(true, "ResolvedRefs", "ok"),
            &Cond::new(true, "Programmed", "1/1 gateways programmed"),
            Some(&c),
        );
        assert_eq!((ready.status, ready.reason.as_str()), (true, "Disabled"));
        assert!(
            ready.message.contains("not checked for revocation"),
            "{}",
            ready.message
        );
        assert!(
            is_warning(&as_ready(&ready)),
            "revocation off is worth a Warning Event"
        );
    }

    #[test]
    fn crl_sources_without_a_crl_say_what_the_gateways_do_meanwhile() {
        let closed = source(serde_json::json!({"format": "Asn1"}));
        let c = health(closed, None).unwrap();
        assert_eq!((c.status, c.reason.as_str()), (false, "NotFetched"));
        assert!(
            c.message.contains("refused as unverifiable (crl_missing)"),
            "{}",
            c.message
        );
        let c = health(closed, Some(&failed())).unwrap();
        assert_eq!(c.reason, "FetchFailed");
        assert!(
            c.message.contains("connection refused (network)"),
            "{}",
            c.message
        );

        // Open: a warning while nothing is in force, whatever the reason.
        let open = source(serde_json::json!({"format": "Asn1", "failurePolicy": "Open"}));
        for facts in [None, Some(failed())] {
            let c = health(open, facts.as_ref()).unwrap();
            assert_eq!((c.status, c.reason.as_str()), (false, "FailOpen"));
            assert!(
                c.message.contains("accepted without a revocation check"),
                "{}",
                c.message
            );
            assert!(is_warning(&as_ready(&c)));
        }
        // In force: ready either way.
        let in_force = CrlFacts {
            this_update: Some("2025-01-01T00:00:00Z".into()),
            entries: 2,
            ..failed()
        };
        assert!(health(open, Some(&in_force)).unwrap().status);
        assert!(health(closed, Some(&in_force)).unwrap().status);
    }
}
