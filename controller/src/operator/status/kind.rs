//! An object's status typed by its kind: the shared conditions for every kind, plus the
//! facts of the CRL in force for a `CrlSource` and the revocation coverage of its CAs for
//! a `Listener` (pure).

use postern_config::protocol::CaRevocation;
use postern_crds::{
    Condition, CrlSourceStatus, LdapProfileStatus, ListenerStatus, MailFlowPolicyStatus,
    ObjectStatus, SmtpAuthProfileStatus,
};
use serde::Serialize;

use super::conditions;
use crate::compile::Kind;

/// The status of one object, in its kind's type. Serializes as that type does (the body
/// of `.status`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub(crate) enum KindStatus {
    /// An `LdapProfile`'s.
    LdapProfile(LdapProfileStatus),
    /// An `SmtpAuthProfile`'s.
    SmtpAuthProfile(SmtpAuthProfileStatus),
    /// A `MailFlowPolicy`'s.
    MailFlowPolicy(MailFlowPolicyStatus),
    /// A `Listener`'s.
    Listener(ListenerStatus),
    /// A `CrlSource`'s.
    CrlSource(CrlSourceStatus),
}

impl KindStatus {
    /// The status of an object of `kind` carrying `common` (and no CRL facts).
    pub(crate) fn new(kind: Kind, common: ObjectStatus) -> Self {
        match kind {
            Kind::LdapProfile => Self::LdapProfile(LdapProfileStatus { common }),
            Kind::SmtpAuthProfile => Self::SmtpAuthProfile(SmtpAuthProfileStatus { common }),
            Kind::MailFlowPolicy => Self::MailFlowPolicy(MailFlowPolicyStatus { common }),
            Kind::Listener => Self::Listener(ListenerStatus {
                common,
                ..Default::default()
            }),
            Kind::CrlSource => Self::CrlSource(CrlSourceStatus {
                common,
                ..Default::default()
            }),
        }
    }

    /// What an object of `kind` carries in `.status`: empty when there is none or it does
    /// not read as the kind's status (it is then rewritten whole).
    pub(crate) fn read(kind: Kind, status: Option<&serde_json::Value>) -> Self {
        fn parse<T: serde::de::DeserializeOwned + Default>(v: Option<&serde_json::Value>) -> T {
            v.and_then(|v| serde_json::from_value(v.clone()).ok())
                .unwrap_or_default()
        }
        match kind {
            Kind::LdapProfile => Self::LdapProfile(parse(status)),
            Kind::SmtpAuthProfile => Self::SmtpAuthProfile(parse(status)),
            Kind::MailFlowPolicy => Self::MailFlowPolicy(parse(status)),
            Kind::Listener => Self::Listener(parse(status)),
            Kind::CrlSource => Self::CrlSource(parse(status)),
        }
    }

    /// The part every kind shares.
    pub(crate) fn common(&self) -> &ObjectStatus {
        match self {
            Self::LdapProfile(s) => &s.common,
            Self::SmtpAuthProfile(s) => &s.common,
            Self::MailFlowPolicy(s) => &s.common,
            Self::Listener(s) => &s.common,
            Self::CrlSource(s) => &s.common,
        }
    }

    /// The conditions.
    pub(crate) fn conditions(&self) -> &[Condition] {
        &self.common().conditions
    }

    /// Everything but the conditions (which compare order aside).
    fn rest(
        &self,
    ) -> (
        std::mem::Discriminant<Self>,
        Option<i64>,
        Option<CrlSourceStatus>,
        &[CaRevocation],
    ) {
        let facts = match self {
            Self::CrlSource(s) => Some(CrlSourceStatus {
                common: ObjectStatus::default(),
                ..s.clone()
            }),
            _ => None,
        };
        let revocation = match self {
            Self::Listener(s) => &s.revocation[..],
            _ => &[],
        };
        (
            std::mem::discriminant(self),
            self.common().observed_generation,
            facts,
            revocation,
        )
    }

    /// Whether `self` and `other` say the same thing, so that no write is needed.
    pub(crate) fn same(&self, other: &Self) -> bool {
        !conditions::differ(self.conditions(), other.conditions()) && self.rest() == other.rest()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_crds::ConditionStatus;

    fn ready(status: bool, time: &str) -> Condition {
        Condition {
            type_: "Ready".into(),
            status: ConditionStatus::from_bool(status),
            reason: "Ready".into(),
            message: String::new(),
            last_transition_time: time.into(),
            observed_generation: Some(1),
        }
    }

    #[test]
    fn each_kind_reads_and_writes_its_own_type() {
        let json = serde_json::json!({
            "conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "",
                "lastTransitionTime": "2025-01-01T00:00:00Z", "observedGeneration": 1}],
            "observedGeneration": 1,
            "entries": 4,
        });
        let crl = KindStatus::read(Kind::CrlSource, Some(&json));
        assert!(matches!(&crl, KindStatus::CrlSource(s) if s.entries == Some(4)));
        assert_eq!(serde_json::to_value(&crl).unwrap(), json);
        // Other kinds have no CRL facts: what is not theirs is not read.
        let listener = KindStatus::read(Kind::Listener, Some(&json));
        assert!(matches!(listener, KindStatus::Listener(_)));
        assert_eq!(listener.conditions(), crl.conditions());
        assert!(
            serde_json::to_value(&listener)
                .unwrap()
                .get("entries")
                .is_none()
        );
        // Absent or unreadable: empty.
        let empty = KindStatus::read(Kind::MailFlowPolicy, None);
        assert_eq!(
            empty,
            KindStatus::new(Kind::MailFlowPolicy, ObjectStatus::default())
        );
        let bad = serde_json::json!({"conditions": "nope"});
        assert_eq!(KindStatus::read(Kind::MailFlowPolicy, Some(&bad)), empty);
    }

    #[test]
    fn sameness_ignores_condition_order_only() {
        let accepted = Condition {
            type_: "Accepted".into(),
            ..ready(true, "t0")
        };
        let a = KindStatus::new(
            Kind::CrlSource,
            ObjectStatus {
                conditions: vec![accepted.clone(), ready(true, "t0")],
                observed_generation: Some(1),
            },
        );
        let b = KindStatus::new(
            Kind::CrlSource,
            ObjectStatus {
                conditions: vec![ready(true, "t0"), accepted],
                observed_generation: Some(1),
            },
        );
        assert!(a.same(&b));
        let KindStatus::CrlSource(mut facts) = b.clone() else {
            unreachable!()
        };
        facts.entries = Some(1);
        assert!(!a.same(&KindStatus::CrlSource(facts)));
        let mut newer = b.clone();
        if let KindStatus::CrlSource(s) = &mut newer {
            s.common.observed_generation = Some(2);
        }
        assert!(!a.same(&newer));
    }
}
