//! The status each object should carry, from typed inputs (pure): the compiler's report
//! gives `Accepted` and `ResolvedRefs`, the published configuration and the fleet give
//! `Programmed`, a CRL source's facts its health, a Listener's gateways the revocation
//! coverage of its CAs, and `Ready` is their conjunction. Also
//! decided here: whether the object needs a write, and which Events the change deserves.

use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use postern_config::GatewayConfig;
use postern_config::protocol::TooLarge;
use postern_crds::{Condition, ObjectStatus, condition_type};

use super::conditions::{self, Cond};
use super::crl::{self, CrlSettings};
use super::kind::KindStatus;
use crate::compile::{Kind, ObjectKey, ObjectReport, Rendered, Report};
use crate::operator::fleet::{self, Fleet, GatewayState};

/// The configuration published for a namespace (it validated).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Published<'a> {
    /// Its hash.
    pub hash: &'a str,
    /// The configuration.
    pub config: &'a GatewayConfig,
    /// Configurations published before, by hash: a gateway still running one of them
    /// runs an object already if it renders the object the same.
    pub recent: &'a [(String, Arc<GatewayConfig>)],
}

impl Published<'_> {
    /// Whether the configuration `hash` renders `key` as this one does.
    fn renders_alike<'k>(&'k self, key: &'k ObjectKey) -> impl Fn(&str) -> bool + 'k {
        let want = rendering(self.config, key);
        move |hash: &str| {
            self.recent
                .iter()
                .find(|(h, _)| h == hash)
                .is_some_and(|(_, c)| rendering(c, key) == want)
        }
    }
}

/// An object's entry in a configuration, for comparison.
fn rendering(config: &GatewayConfig, key: &ObjectKey) -> Option<serde_json::Value> {
    let name = key.name.as_str();
    match key.kind {
        Kind::Listener => config.listeners.get(name).map(serde_json::to_value),
        Kind::MailFlowPolicy => config.policies.get(name).map(serde_json::to_value),
        Kind::SmtpAuthProfile => config.auth_profiles.get(name).map(serde_json::to_value),
        Kind::LdapProfile => config.ldap_profiles.get(name).map(serde_json::to_value),
        Kind::CrlSource => config.crl_sources.get(name).map(serde_json::to_value),
    }
    .and_then(Result::ok)
}

/// What the status of every object of a namespace is computed from.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NamespaceInputs<'a> {
    /// The namespace.
    pub namespace: &'a str,
    /// What the compiler found about each object.
    pub report: &'a Report,
    /// The configuration published; `None` when the compiled one did not validate or
    /// did not fit.
    pub published: Option<Published<'a>>,
    /// Why it was not published, when it is too large for the Secrets it may use.
    pub too_large: Option<&'a TooLarge>,
    /// The ready gateways and what they run.
    pub fleet: &'a Fleet,
    /// Every gateway's report (a CRL source's facts come from them).
    pub gateways: &'a [GatewayState],
    /// Now, by the API server's clock; also the time a flipping condition is stamped with.
    pub now: Timestamp,
}

/// One object.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ObjectInputs<'a> {
    /// Kind and name.
    pub key: &'a ObjectKey,
    /// Its `metadata.generation`.
    pub generation: Option<i64>,
    /// For a CRL source, what decides its health (not read for other kinds).
    pub crl: CrlSettings,
    /// The status it carries now.
    pub old: &'a KindStatus,
}

/// An Event about an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Notice {
    /// A Warning Event (else a Normal one).
    pub warning: bool,
    /// CamelCase reason.
    pub reason: String,
    /// For a human.
    pub note: String,
}

/// The status an object should carry, and what to tell once it is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DesiredStatus {
    /// The status.
    pub status: KindStatus,
    /// Whether it says something the object's status does not (a write is needed).
    pub changed: bool,
    /// `Ready` changed (or first says something is wrong): an Event.
    pub ready_event: Option<Notice>,
    /// Warnings of an object in service that are new since the last status: a Warning
    /// Event naming the first warning's reason and listing every one.
    pub warning: Option<Notice>,
}

/// The status `object` should carry.
pub(crate) fn desired(ns: &NamespaceInputs<'_>, object: &ObjectInputs<'_>) -> DesiredStatus {
    let key = object.key;
    let entry = ns.report.get(key.kind, &key.name);
    let (accepted, resolved, rendered) = match entry {
        Some(r) => {
            let [a, b] = r.conditions();
            (
                Cond::new(a.status, a.reason, a.message),
                Cond::new(b.status, b.reason, b.message),
                r.rendered,
            )
        }
        None => (
            Cond::new(false, "NotCompiled", "the compiler did not see this object"),
            Cond::new(false, "NotCompiled", "the compiler did not see this object"),
            Rendered::Absent,
        ),
    };
    let warning = warning(entry, object.old, &accepted);
    let programmed = programmed(ns, key, rendered);
    let facts = (key.kind == Kind::CrlSource)
        .then(|| fleet::crl_facts(ns.gateways, &key.name, ns.now))
        .flatten();
    let health = (key.kind == Kind::CrlSource && programmed.status)
        .then(|| crl::health(object.crl, facts.as_ref()))
        .flatten();
    let stamp = ns.now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let conditions = conditions::conditions(
        object.old.conditions(),
        accepted,
        resolved,
        programmed,
        health,
        object.generation,
        &stamp,
    );
    let mut status = KindStatus::new(
        key.kind,
        ObjectStatus {
            conditions,
            observed_generation: object.generation,
        },
    );
    if let (KindStatus::CrlSource(st), Some(f)) = (&mut status, facts) {
        crl::set_facts(st, f);
    }
    if let KindStatus::Listener(st) = &mut status {
        st.revocation = fleet::revocation(ns.gateways, &key.name, ns.now);
    }
    DesiredStatus {
        changed: !object.old.same(&status),
        ready_event: ready_event(object.old, &status),
        status,
        warning,
    }
}

/// `Programmed`: whether the gateways run the object as it is now.
fn programmed(ns: &NamespaceInputs<'_>, key: &ObjectKey, rendered: Rendered) -> Cond {
    let listener = (key.kind == Kind::Listener).then_some(key.name.as_str());
    let verdict = |p: &Published<'_>| {
        ns.fleet
            .programmed_verdict(ns.namespace, p.hash, p.renders_alike(key), listener)
    };
    match (&ns.published, rendered) {
        (None, _) => match ns.too_large {
            Some(too_large) => Cond::new(
                false,
                "ConfigTooLarge",
                format!(
                    "not published: {too_large}; the gateways keep the previous configuration (fewer distinct certificates and CA bundles, or split the Listeners across namespaces)"
                ),
            ),
            None => Cond::new(
                false,
                "NotPublished",
                "the namespace's configuration does not validate, so it was not published; the gateways keep the previous one",
            ),
        },
        (Some(p), Rendered::Current) => {
            let v = verdict(p);
            Cond::new(v.status, v.reason, v.message)
        }
        (Some(p), Rendered::Previous) => {
            let v = verdict(p);
            Cond::new(
                false,
                "PreviousVersionServing",
                format!(
                    "this version is not in service; the gateways run its last accepted version ({})",
                    v.message
                ),
            )
        }
        (Some(_), Rendered::Absent) => Cond::new(
            false,
            "NotInConfiguration",
            "not in the gateway configuration until it is accepted",
        ),
    }
}

/// Warnings of an object in service, when they are not what its `Accepted` message
/// already said (they are in that message, so a restart or an unchanged status emits
/// nothing).
fn warning(entry: Option<&ObjectReport>, old: &KindStatus, accepted: &Cond) -> Option<Notice> {
    let r = entry.filter(|r| r.rendered == Rendered::Current)?;
    let first = r.warnings().next()?;
    let accepted_before = conditions::find(old.conditions(), condition_type::ACCEPTED);
    if accepted_before.is_some_and(|c| c.message == accepted.message) {
        return None;
    }
    Some(Notice {
        warning: true,
        reason: first.reason.as_str().to_owned(),
        note: r
            .warnings()
            .map(|d| format!("{}: {}", d.field, d.message))
            .collect::<Vec<_>>()
            .join("; "),
    })
}

/// The Event a change of `Ready` deserves, if any.
fn ready_event(old: &KindStatus, new: &KindStatus) -> Option<Notice> {
    let before = conditions::find(old.conditions(), condition_type::READY);
    let ready: &Condition = conditions::find(new.conditions(), condition_type::READY)
        .expect("conditions always carry Ready");
    conditions::event_worthy(before, ready).then(|| Notice {
        warning: conditions::is_warning(ready),
        reason: ready.reason.clone(),
        note: ready.message.clone(),
    })
}

#[cfg(test)]
mod tests;
