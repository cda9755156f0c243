//! Statuses computed over fixtures: a compiler report, published configurations and
//! gateway reports as plain values (no API server).

use k8s_openapi::jiff::SignedDuration;
use postern_config::protocol::ServedBy;
use postern_config::protocol::{CrlFacts, GatewayReport, Refusal};
use postern_crds::ConditionStatus;

use super::*;
use crate::compile::{Diagnostic, Reason};

const NOW: &str = "2025-01-01T00:00:00Z";

fn now() -> Timestamp {
    NOW.parse().unwrap()
}

/// A configuration with policies `relay` and `other`, each allowing `n` recipients.
fn config(relay: u32, other: u32) -> (String, Arc<GatewayConfig>) {
    let policy = |n: u32| {
        format!(
            "    action: Relay\n    tls: Preferred\n    verifyClientCertificate: false\n    requireSmtpAuth: false\n    requireTlsForSmtpAuth: false\n    limits:\n      maxMessageSize: 10485760\n      maxRecipients: {n}\n      maxMessagesPerSession: 100\n"
        )
    };
    let yaml = format!(
        "apiVersion: postern.dev/gateway/v1\npolicies:\n  relay:\n{}  other:\n{}",
        policy(relay),
        policy(other)
    );
    let config = GatewayConfig::from_yaml(&yaml, "fixture").unwrap();
    (config.hash(), Arc::new(config))
}

fn key(kind: Kind, name: &str) -> ObjectKey {
    ObjectKey::new(kind, name)
}

fn entry(key: &ObjectKey, rendered: Rendered, diagnostics: Vec<Diagnostic>) -> ObjectReport {
    ObjectReport {
        key: key.clone(),
        generation: Some(1),
        rendered,
        diagnostics,
    }
}

fn gateway(name: &str, applied: Option<&str>) -> GatewayState {
    GatewayState {
        name: name.into(),
        report: GatewayReport {
            applied_hash: applied.map(Into::into),
            ready: true,
            ..Default::default()
        },
        expires: Some(now() + SignedDuration::from_secs(30)),
    }
}

/// A namespace: what the compiler said, what is published, what the gateways report.
struct World {
    report: Report,
    published: Option<(String, Arc<GatewayConfig>)>,
    too_large: Option<postern_config::protocol::TooLarge>,
    recent: Vec<(String, Arc<GatewayConfig>)>,
    gateways: Vec<GatewayState>,
    now: Timestamp,
    crl: CrlSettings,
}

impl World {
    /// One object compiled as `rendered` with `diagnostics`, published in `config(10,
    /// 10)`, which one gateway runs.
    fn new(key: &ObjectKey, rendered: Rendered, diagnostics: Vec<Diagnostic>) -> Self {
        let published = config(10, 10);
        Self {
            report: Report {
                objects: vec![entry(key, rendered, diagnostics)],
            },
            gateways: vec![gateway("gw-0", Some(&published.0))],
            recent: vec![published.clone()],
            published: Some(published),
            too_large: None,
            now: now(),
            crl: CrlSettings::default(),
        }
    }

    fn accepted(key: &ObjectKey) -> Self {
        Self::new(key, Rendered::Current, vec![])
    }

    fn desired(&self, key: &ObjectKey, old: &KindStatus) -> DesiredStatus {
        let fleet = fleet::fleet(&self.gateways, self.now);
        let ns = NamespaceInputs {
            namespace: "mail",
            report: &self.report,
            published: self.published.as_ref().map(|(hash, config)| Published {
                hash,
                config,
                recent: &self.recent,
            }),
            too_large: self.too_large.as_ref(),
            fleet: &fleet,
            gateways: &self.gateways,
            now: self.now,
        };
        desired(
            &ns,
            &ObjectInputs {
                key,
                generation: Some(1),
                crl: self.crl,
                old,
            },
        )
    }

    /// The status of an object that had none.
    fn first(&self, key: &ObjectKey) -> DesiredStatus {
        self.desired(key, &KindStatus::new(key.kind, ObjectStatus::default()))
    }
}

/// `(status, reason)` of each condition, in the order written.
fn summary(d: &DesiredStatus) -> Vec<(&str, bool, &str)> {
    d.status
        .conditions()
        .iter()
        .map(|c| {
            (
                c.type_.as_str(),
                c.status == ConditionStatus::True,
                c.reason.as_str(),
            )
        })
        .collect()
}

fn message<'a>(d: &'a DesiredStatus, type_: &str) -> &'a str {
    &conditions::find(d.status.conditions(), type_)
        .unwrap()
        .message
}

#[test]
fn an_object_every_gateway_runs_is_ready() {
    let relay = key(Kind::MailFlowPolicy, "relay");
    let d = World::accepted(&relay).first(&relay);
    assert_eq!(
        summary(&d),
        [
            ("Accepted", true, "Accepted"),
            ("ResolvedRefs", true, "ResolvedRefs"),
            ("Programmed", true, "Programmed"),
            ("Ready", true, "Ready"),
        ]
    );
    assert_eq!(message(&d, "Ready"), "1/1 gateways programmed");
    assert!(matches!(d.status, KindStatus::MailFlowPolicy(_)));
    assert_eq!(d.status.common().observed_generation, Some(1));
    assert!(
        d.status
            .conditions()
            .iter()
            .all(|c| c.last_transition_time == NOW && c.observed_generation == Some(1))
    );
    assert!(d.changed);
    // A first status that is fine is no news.
    assert_eq!((d.ready_event, d.warning), (None, None));
}

#[test]
fn the_same_status_later_needs_no_write_and_keeps_its_times() {
    let relay = key(Kind::MailFlowPolicy, "relay");
    let mut world = World::accepted(&relay);
    let first = world.first(&relay);
    world.now = now() + SignedDuration::from_secs(20);
    let again = world.desired(&relay, &first.status);
    assert!(!again.changed);
    assert_eq!(again.status, first.status);
    assert_eq!(again.ready_event, None);
}

#[test]
fn a_missing_reference_says_what_to_fix() {
    let listener = key(Kind::Listener, "in");
    let world = World::new(
        &listener,
        Rendered::Absent,
        vec![Diagnostic::error(
            "spec.defaultMailFlowPolicyRef",
            Reason::RefNotFound,
            "MailFlowPolicy relay does not exist",
        )],
    );
    let d = world.first(&listener);
    assert_eq!(
        summary(&d),
        [
            ("Accepted", false, "UnresolvedRefs"),
            ("ResolvedRefs", false, "RefNotFound"),
            ("Programmed", false, "NotInConfiguration"),
            ("Ready", false, "RefNotFound"),
        ]
    );
    assert!(matches!(d.status, KindStatus::Listener(_)));
    // A first status that is a problem is an Event.
    let event = d.ready_event.unwrap();
    assert!(event.warning);
    assert_eq!(event.reason, "RefNotFound");
    assert!(event.note.contains("MailFlowPolicy relay does not exist"));
}

#[test]
fn a_broken_version_says_the_previous_one_serves() {
    let relay = key(Kind::MailFlowPolicy, "relay");
    let world = World::new(
        &relay,
        Rendered::Previous,
        vec![Diagnostic::error(
            "spec.limits.maxRecipients",
            Reason::InvalidValue,
            "must be at least 1",
        )],
    );
    let d = world.first(&relay);
    assert_eq!(
        summary(&d),
        [
            ("Accepted", false, "InvalidValue"),
            ("ResolvedRefs", true, "ResolvedRefs"),
            ("Programmed", false, "PreviousVersionServing"),
            ("Ready", false, "InvalidValue"),
        ]
    );
    assert_eq!(
        message(&d, "Programmed"),
        "this version is not in service; the gateways run its last accepted version (1/1 gateways programmed)"
    );
    assert!(message(&d, "Accepted").ends_with("The previously accepted version stays in service."));
}

#[test]
fn an_invalid_configuration_is_not_published() {
    let relay = key(Kind::MailFlowPolicy, "relay");
    let mut world = World::accepted(&relay);
    world.published = None;
    let d = world.first(&relay);
    assert_eq!(
        summary(&d)[2..],
        [
            ("Programmed", false, "NotPublished"),
            ("Ready", false, "NotPublished")
        ]
    );
    assert!(d.ready_event.unwrap().warning);
}

#[test]
fn a_configuration_too_large_to_publish_says_so_with_its_size_and_the_limit() {
    let relay = key(Kind::MailFlowPolicy, "relay");
    let mut world = World::accepted(&relay);
    world.published = None;
    world.too_large = Some(postern_config::protocol::TooLarge {
        compressed_bytes: 8_000_000,
        uncompressed_bytes: 90_000_000,
        limit_bytes: 7_372_800,
        max_parts: 8,
    });
    let d = world.first(&relay);
    assert_eq!(
        summary(&d)[2..],
        [
            ("Programmed", false, "ConfigTooLarge"),
            ("Ready", false, "ConfigTooLarge")
        ]
    );
    let event = d.ready_event.unwrap();
    assert!(event.warning);
    assert_eq!(event.reason, "ConfigTooLarge");
    assert!(
        event.note.contains("8000000 bytes compressed")
            && event.note.contains("limit of 7372800 bytes"),
        "{}",
        event.note
    );
}

#[test]
fn without_gateways_nothing_is_programmed_and_that_is_no_warning() {
    let relay = key(Kind::MailFlowPolicy, "relay");
    let mut world = World::accepted(&relay);
    world.gateways.clear();
    let d = world.first(&relay);
    assert_eq!(summary(&d)[3], ("Ready", false, "NoGateways"));
    assert_eq!(d.ready_event, None);
}

#[test]
fn a_gateway_refusing_the_configuration_is_named() {
    let relay = key(Kind::MailFlowPolicy, "relay");
    let mut world = World::accepted(&relay);
    let (old, config) = config(5, 5);
    world.recent.insert(0, (old.clone(), config));
    let mut refusing = gateway("gw-1", Some(&old));
    refusing.report.refusal = Some(Refusal {
        hash: world.published.as_ref().unwrap().0.clone(),
        message: "cannot bind 0.0.0.0:25".into(),
    });
    world.gateways.push(refusing);
    let d = world.first(&relay);
    assert_eq!(summary(&d)[2], ("Programmed", false, "GatewayRefused"));
    assert!(
        message(&d, "Ready").ends_with("gw-1 refused it: cannot bind 0.0.0.0:25"),
        "{}",
        message(&d, "Ready")
    );
}

#[test]
fn a_rollout_flips_only_the_objects_it_changes() {
    let relay = key(Kind::MailFlowPolicy, "relay");
    let mut world = World::accepted(&relay);
    // gw-1 still runs a configuration in which only `other` differs.
    let (elsewhere, config) = config(10, 99);
    world.recent.insert(0, (elsewhere.clone(), config));
    world.gateways.push(gateway("gw-1", Some(&elsewhere)));
    let d = world.first(&relay);
    assert_eq!(summary(&d)[2], ("Programmed", true, "Programmed"));
    assert_eq!(message(&d, "Programmed"), "2/2 gateways programmed");
    let other = key(Kind::MailFlowPolicy, "other");
    world
        .report
        .objects
        .push(entry(&other, Rendered::Current, vec![]));
    let d = world.first(&other);
    assert_eq!(summary(&d)[2], ("Programmed", false, "Pending"));
    // A configuration not remembered (e.g. from before a restart) is not assumed alike.
    world.recent.remove(0);
    let d = world.first(&relay);
    assert_eq!(summary(&d)[2], ("Programmed", false, "Pending"));
}

#[test]
fn a_change_of_ready_is_an_event() {
    let relay = key(Kind::MailFlowPolicy, "relay");
    let mut world = World::accepted(&relay);
    world.gateways[0].report.applied_hash = None;
    let pending = world.first(&relay);
    assert_eq!(summary(&pending)[3], ("Ready", false, "Pending"));
    assert_eq!(pending.ready_event, None);
    let mut world = World::accepted(&relay);
    world.now = now() + SignedDuration::from_secs(5);
    let ready = world.desired(&relay, &pending.status);
    assert!(ready.changed);
    let event = ready.ready_event.unwrap();
    assert_eq!(
        (event.warning, event.reason.as_str(), event.note.as_str()),
        (false, "Ready", "1/1 gateways programmed")
    );
    // Accepted did not flip: its time stays; Ready's moves.
    let at = |t: &str| {
        conditions::find(ready.status.conditions(), t)
            .unwrap()
            .last_transition_time
            .clone()
    };
    assert_eq!(at("Accepted"), NOW);
    assert_eq!(at("Ready"), "2025-01-01T00:00:05Z");
}

#[test]
fn warnings_are_an_event_when_they_are_new() {
    let lp = key(Kind::LdapProfile, "directory");
    let world = World::new(
        &lp,
        Rendered::Current,
        vec![
            Diagnostic::warning(
                "spec.certificateAuthQuery.filter",
                Reason::IssuerNotBound,
                "binds no issuer",
            ),
            Diagnostic::warning("spec.cache", Reason::Ignored, "has no effect"),
        ],
    );
    let d = world.first(&lp);
    assert_eq!(summary(&d)[0], ("Accepted", true, "Accepted"));
    assert!(message(&d, "Accepted").contains("with warnings"));
    let warning = d.warning.clone().unwrap();
    assert!(warning.warning);
    assert_eq!(warning.reason, "IssuerNotBound");
    assert_eq!(
        warning.note,
        "spec.certificateAuthQuery.filter: binds no issuer; spec.cache: has no effect"
    );
    // Already said in the Accepted message the object carries: nothing new.
    assert_eq!(world.desired(&lp, &d.status).warning, None);
}

fn crl_world(facts: CrlFacts) -> (ObjectKey, World) {
    let source = key(Kind::CrlSource, "root");
    let mut world = World::accepted(&source);
    world.gateways[0].report.crl_sources = vec![facts];
    (source, world)
}

fn in_force() -> CrlFacts {
    CrlFacts {
        name: "root".into(),
        last_fetch_time: Some("2024-12-31T23:59:00Z".into()),
        served_by: Some(ServedBy::Primary),
        this_update: Some("2024-12-31T23:00:00Z".into()),
        next_update: Some("2025-01-01T23:00:00Z".into()),
        entries: 3,
        issuer: Some("CN=Root".into()),
        ..Default::default()
    }
}

#[test]
fn crl_sources_carry_the_facts_of_the_crl_in_force() {
    let (source, world) = crl_world(in_force());
    let d = world.first(&source);
    assert_eq!(summary(&d)[3], ("Ready", true, "Ready"));
    assert_eq!(
        message(&d, "Ready"),
        "1/1 gateways programmed; 3 entries from primary, next update 2025-01-01T23:00:00Z"
    );
    let KindStatus::CrlSource(st) = &d.status else {
        panic!("{:?}", d.status)
    };
    assert_eq!(st.entries, Some(3));
    assert_eq!(st.served_by, Some(ServedBy::Primary));
    assert_eq!(st.issuer.as_deref(), Some("CN=Root"));
    assert_eq!(st.next_update.as_deref(), Some("2025-01-01T23:00:00Z"));
    // New facts alone are a write.
    let mut fresher = in_force();
    fresher.entries = 4;
    let (_, world) = crl_world(fresher);
    assert!(world.desired(&source, &d.status).changed);
}

#[test]
fn a_stale_crl_holds_ready_back_and_a_disabled_source_says_revocation_is_off() {
    let (source, mut world) = crl_world(CrlFacts {
        stale: true,
        ..in_force()
    });
    let d = world.first(&source);
    assert_eq!(
        summary(&d)[2..],
        [
            ("Programmed", true, "Programmed"),
            ("Ready", false, "CrlStale")
        ]
    );
    assert!(d.ready_event.unwrap().warning);
    world.crl.enabled = false;
    world.gateways[0].report.crl_sources.clear();
    let d = world.first(&source);
    assert_eq!(summary(&d)[3], ("Ready", true, "Disabled"));
    assert_eq!(
        message(&d, "Ready"),
        "1/1 gateways programmed; disabled (spec.enabled: false): not fetched and not enforced; certificates are not checked for revocation against this source"
    );
    let event = d.ready_event.expect("revocation off is worth an Event");
    assert!(event.warning);
    assert_eq!(event.reason, "Disabled");
}

#[test]
fn only_crl_sources_carry_crl_facts() {
    let listener = key(Kind::Listener, "root");
    let mut world = World::accepted(&listener);
    world.gateways[0].report.crl_sources = vec![in_force()];
    let d = world.first(&listener);
    assert_eq!(summary(&d)[3], ("Ready", true, "Ready"));
    assert_eq!(
        serde_json::to_value(&d.status)
            .unwrap()
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["conditions", "observedGeneration"]
    );
}

#[test]
fn an_object_the_compiler_did_not_see_is_not_compiled() {
    let relay = key(Kind::MailFlowPolicy, "relay");
    let mut world = World::accepted(&relay);
    world.report = Report::default();
    let d = world.first(&relay);
    assert_eq!(
        summary(&d),
        [
            ("Accepted", false, "NotCompiled"),
            ("ResolvedRefs", false, "NotCompiled"),
            ("Programmed", false, "NotInConfiguration"),
            ("Ready", false, "NotCompiled"),
        ]
    );
}

#[test]
fn a_listener_a_gateway_cannot_bind_says_so_and_the_rest_is_programmed() {
    use postern_config::protocol::{ListenerRefusal, ListenerRefusalReason, ListenerServing};
    let smtp = key(Kind::Listener, "smtp");
    let relay = key(Kind::MailFlowPolicy, "relay");
    let mut world = World::accepted(&smtp);
    world
        .report
        .objects
        .push(entry(&relay, Rendered::Current, vec![]));
    world.gateways[0].report.refused_listeners = vec![ListenerRefusal {
        listener: "smtp".into(),
        address: "0.0.0.0:25".into(),
        reason: ListenerRefusalReason::PortUnavailable,
        message: "Address already in use (os error 98)".into(),
        serving: ListenerServing::NotServed,
    }];
    let d = world.first(&smtp);
    assert_eq!(summary(&d)[0], ("Accepted", true, "Accepted"));
    assert_eq!(summary(&d)[2], ("Programmed", false, "PortUnavailable"));
    assert_eq!(summary(&d)[3], ("Ready", false, "PortUnavailable"));
    assert_eq!(
        message(&d, "Programmed"),
        "0/1 gateways programmed; gw-0 cannot listen on 0.0.0.0:25: Address already in use (os error 98); not served"
    );
    let event = d.ready_event.expect("a Warning Event");
    assert!(event.warning);
    assert_eq!(event.reason, "PortUnavailable");
    // The policy of the same configuration runs.
    let d = world.first(&relay);
    assert_eq!(summary(&d)[3], ("Ready", true, "Ready"));
}
