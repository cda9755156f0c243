//! The four conditions an object carries, and whether two lists of them differ (pure).
//!
//! `Accepted` and `ResolvedRefs` come from the compiler, `Programmed` from the fleet,
//! and `Ready` is their conjunction, carrying the reason of the first that does not hold.
//! `lastTransitionTime` is kept unless the status flips.

use postern_crds::{Condition, ConditionStatus, condition_type, set_condition};

/// A condition before it is stamped with time and generation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Cond {
    /// Whether it holds.
    pub status: bool,
    /// CamelCase reason.
    pub reason: String,
    /// For a human.
    pub message: String,
}

impl Cond {
    /// A condition.
    pub(crate) fn new(status: bool, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// The order conditions are written in.
pub(crate) const ORDER: [&str; 4] = [
    condition_type::ACCEPTED,
    condition_type::RESOLVED_REFS,
    condition_type::PROGRAMMED,
    condition_type::READY,
];

/// `Ready` from the other three. An object not accepted only because its references do
/// not resolve carries the reference's reason, which says what to fix.
///
/// `health` is what the running gateways say about the object beyond having it (a CRL
/// source's CRL in force and fresh); `None` when nothing more applies.
pub(crate) fn ready(
    accepted: &Cond,
    resolved: &Cond,
    programmed: &Cond,
    health: Option<&Cond>,
) -> Cond {
    let first = if !accepted.status && accepted.reason == "UnresolvedRefs" && !resolved.status {
        resolved
    } else {
        accepted
    };
    match [Some(first), Some(resolved), Some(programmed), health]
        .into_iter()
        .flatten()
        .find(|c| !c.status)
    {
        None => Cond::new(
            true,
            // Ready, but say plainly when it is so because it is switched off.
            match health {
                Some(h) if h.reason == DISABLED => DISABLED,
                _ => "Ready",
            },
            health.map_or_else(
                || programmed.message.clone(),
                |h| format!("{}; {}", programmed.message, h.message),
            ),
        ),
        Some(c) => c.clone(),
    }
}

/// The four conditions, merged into `old` so that `lastTransitionTime` only moves on a
/// flip; `now` is RFC 3339.
pub(crate) fn conditions(
    old: &[Condition],
    accepted: Cond,
    resolved: Cond,
    programmed: Cond,
    health: Option<Cond>,
    generation: Option<i64>,
    now: &str,
) -> Vec<Condition> {
    let ready = ready(&accepted, &resolved, &programmed, health.as_ref());
    let mut list: Vec<Condition> = old
        .iter()
        .filter(|c| ORDER.contains(&c.type_.as_str()))
        .cloned()
        .collect();
    for (type_, c) in ORDER
        .into_iter()
        .zip([accepted, resolved, programmed, ready])
    {
        set_condition(
            &mut list,
            Condition {
                type_: type_.to_owned(),
                status: ConditionStatus::from_bool(c.status),
                reason: c.reason,
                message: c.message,
                last_transition_time: now.to_owned(),
                observed_generation: generation,
            },
        );
    }
    list.sort_by_key(|c| ORDER.iter().position(|t| *t == c.type_));
    list
}

/// Whether two condition lists say different things (order aside).
pub(crate) fn differ(a: &[Condition], b: &[Condition]) -> bool {
    let key = |l: &[Condition]| {
        let mut v: Vec<Condition> = l
            .iter()
            .filter(|c| ORDER.contains(&c.type_.as_str()))
            .cloned()
            .collect();
        v.sort_by(|x, y| x.type_.cmp(&y.type_));
        v
    };
    key(a) != key(b)
}

/// The condition of `type_`.
pub(crate) fn find<'a>(list: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    list.iter().find(|c| c.type_ == type_)
}

/// The `Ready` reason of an object that is ready but switched off (a `CrlSource` with
/// `enabled: false`: revocation is not checked against it).
pub(crate) const DISABLED: &str = "Disabled";

/// Whether a `Ready` reason means something is wrong with the object or the fleet
/// (a Warning Event) rather than work in progress (a Normal one). A disabled object is
/// worth a warning too: what it protects against is off.
pub(crate) fn is_warning(ready: &Condition) -> bool {
    if ready.reason == DISABLED {
        return true;
    }
    ready.status != ConditionStatus::True
        && !matches!(
            ready.reason.as_str(),
            "Pending" | "NoGateways" | "NotFetched"
        )
}

/// Whether a change of `Ready` deserves an Event: any change of status or reason of an
/// object that had one, and a first status that is a warning.
pub(crate) fn event_worthy(old: Option<&Condition>, new: &Condition) -> bool {
    match old {
        Some(o) => o.status != new.status || o.reason != new.reason,
        None => is_warning(new),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(reason: &str) -> Cond {
        Cond::new(true, reason, "fine")
    }

    #[test]
    fn ready_takes_the_first_failing_reason() {
        let r = ready(
            &ok("Accepted"),
            &Cond::new(false, "SecretNotFound", "spec.tls: secret gw-tls not found"),
            &Cond::new(false, "NoGateways", "none"),
            None,
        );
        assert!(!r.status);
        assert_eq!(r.reason, "SecretNotFound");
        let r = ready(
            &Cond::new(false, "UnresolvedRefs", "see ResolvedRefs"),
            &Cond::new(false, "RefNotFound", "spec.defaultMailFlowPolicyRef: x"),
            &Cond::new(false, "NotInConfiguration", "-"),
            None,
        );
        assert_eq!(r.reason, "RefNotFound");
        let r = ready(
            &ok("Accepted"),
            &ok("ResolvedRefs"),
            &ok("Programmed"),
            None,
        );
        assert!(r.status);
        assert_eq!(r.reason, "Ready");
        assert_eq!(r.message, "fine");
    }

    #[test]
    fn transition_time_moves_only_on_flips() {
        let t0 = "2025-01-01T00:00:00Z";
        let t1 = "2025-01-01T00:01:00Z";
        let c0 = conditions(
            &[],
            ok("Accepted"),
            ok("ResolvedRefs"),
            Cond::new(false, "Pending", "0/1"),
            None,
            Some(1),
            t0,
        );
        assert_eq!(c0.len(), 4);
        assert_eq!(
            c0.iter().map(|c| c.type_.as_str()).collect::<Vec<_>>(),
            ORDER
        );
        let c1 = conditions(
            &c0,
            ok("Accepted"),
            ok("ResolvedRefs"),
            ok("Programmed"),
            None,
            Some(2),
            t1,
        );
        let at = |l: &[Condition], t: &str| find(l, t).unwrap().last_transition_time.clone();
        assert_eq!(at(&c1, "Accepted"), t0);
        assert_eq!(at(&c1, "Programmed"), t1);
        assert_eq!(at(&c1, "Ready"), t1);
        assert_eq!(find(&c1, "Accepted").unwrap().observed_generation, Some(2));
        assert!(differ(&c0, &c1));
        // Recomputing the same thing later writes nothing.
        let c2 = conditions(
            &c1,
            ok("Accepted"),
            ok("ResolvedRefs"),
            ok("Programmed"),
            None,
            Some(2),
            "2025-01-01T00:09:00Z",
        );
        assert!(!differ(&c1, &c2));
    }

    #[test]
    fn events_on_changes_and_first_warnings() {
        let mk = |status: bool, reason: &str| Condition {
            type_: "Ready".into(),
            status: ConditionStatus::from_bool(status),
            reason: reason.into(),
            message: String::new(),
            last_transition_time: String::new(),
            observed_generation: None,
        };
        assert!(!event_worthy(None, &mk(false, "NoGateways")));
        assert!(!event_worthy(None, &mk(true, "Ready")));
        assert!(event_worthy(None, &mk(false, "RefNotFound")));
        assert!(event_worthy(
            Some(&mk(false, "Pending")),
            &mk(true, "Ready")
        ));
        assert!(!event_worthy(Some(&mk(true, "Ready")), &mk(true, "Ready")));
        assert!(is_warning(&mk(false, "GatewayRefused")));
        assert!(!is_warning(&mk(false, "Pending")));
    }

    #[test]
    fn health_can_hold_ready_back() {
        let stale = Cond::new(false, "CrlStale", "past nextUpdate");
        let r = ready(
            &ok("Accepted"),
            &ok("ResolvedRefs"),
            &ok("Programmed"),
            Some(&stale),
        );
        assert_eq!(r.reason, "CrlStale");
        assert!(is_warning(&Condition {
            type_: "Ready".into(),
            status: ConditionStatus::False,
            reason: r.reason,
            message: r.message,
            last_transition_time: String::new(),
            observed_generation: None,
        }));
        let fine = Cond::new(true, "CrlInForce", "2 entries");
        let r = ready(
            &ok("Accepted"),
            &ok("ResolvedRefs"),
            &ok("Programmed"),
            Some(&fine),
        );
        assert!(r.status);
        assert_eq!(r.message, "fine; 2 entries");
    }
}
