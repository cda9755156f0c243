//! What the publisher decides for the rendered Secrets as they are found.

use super::*;
use crate::operator::objects;
use kube::api::DynamicObject;
use postern_config::Source;
use postern_config::protocol::{CONFIG_KEY, MAX_PARTS};

const HEAD: &str = "postern-config";

fn config(ns: &str) -> GatewayConfig {
    GatewayConfig {
        source: Some(Source {
            namespace: Some(ns.into()),
        }),
        ..Default::default()
    }
}

fn desired_with(config: &GatewayConfig, limits: &Limits) -> Desired {
    Desired::new(
        config,
        config.hash(),
        vec![OwnerReference {
            api_version: "postern.dev/v1alpha1".into(),
            kind: "Listener".into(),
            name: "l".into(),
            uid: "u1".into(),
            ..Default::default()
        }],
        limits,
    )
    .unwrap()
}

fn desired(ns: &str) -> Desired {
    desired_with(&config(ns), &Limits::default())
}

/// A configuration that takes several Secrets of `part_bytes`: a long, varied source.
fn large(ns: &str) -> (Desired, Limits) {
    let limits = Limits {
        part_bytes: 64,
        max_parts: MAX_PARTS,
    };
    let mut c = config(ns);
    c.source = Some(Source {
        namespace: Some(format!(
            "{ns}-{}",
            (0..40)
                .map(|i| format!("{i:x}{}", i * 7919))
                .collect::<String>()
        )),
    });
    let d = desired_with(&c, &limits);
    assert!(d.encoded.parts.len() > 2, "{}", d.encoded.parts.len());
    (d, limits)
}

/// The Secrets as the publisher writes them.
fn published(d: &Desired) -> Current {
    let mut secrets = (0..d.encoded.parts.len()).map(|i| render("ns", HEAD, i, d, None));
    Current {
        head: secrets.next(),
        parts: secrets.collect(),
    }
}

fn head_data(current: &mut Current) -> &mut BTreeMap<String, ByteString> {
    current.head.as_mut().unwrap().data.as_mut().unwrap()
}

fn plan_of(current: &Current, d: &Desired, last: Option<&str>) -> Action {
    plan(current, HEAD, d, last).action
}

#[test]
fn absent_secret_is_created_or_recreated() {
    let d = desired("a");
    assert_eq!(plan_of(&Current::default(), &d, None), Action::Create);
    assert!(matches!(
        plan_of(&Current::default(), &d, Some(&d.hash)),
        Action::RepairDrift { what } if what.contains("deleted")
    ));
}

#[test]
fn rendered_secrets_are_up_to_date() {
    for d in [desired("a"), large("a").0] {
        let s = published(&d);
        let p = plan(&s, HEAD, &d, Some(&d.hash));
        assert_eq!(p.action, Action::UpToDate);
        assert!(p.write.is_empty() && p.delete.is_empty());
        assert_eq!(plan_of(&s, &d, None), Action::UpToDate);
    }
}

#[test]
fn a_new_configuration_is_published_parts_first() {
    let old = desired("a");
    let (new, _) = large("b");
    let p = plan(&published(&old), HEAD, &new, Some(&old.hash));
    assert_eq!(
        p.action,
        Action::Publish {
            previous: Some(old.hash.clone())
        }
    );
    let n = new.encoded.parts.len();
    assert_eq!(p.write, (1..n).chain([0]).collect::<Vec<_>>());
    // And back to one Secret: the parts no longer listed go.
    let p = plan(&published(&new), HEAD, &old, Some(&new.hash));
    assert_eq!(p.write, [0]);
    assert_eq!(
        p.delete,
        (1..n).map(|i| format!("{HEAD}-{i}")).collect::<Vec<_>>()
    );
}

#[test]
fn hand_edits_are_drift() {
    let d = desired("a");
    // Another consistent configuration put in place of ours.
    let other = published(&desired("evil"));
    assert!(matches!(
        plan_of(&other, &d, Some(&d.hash)),
        Action::RepairDrift { what } if what.contains("replaced by hand")
    ));
    // A key added.
    let mut s = published(&d);
    head_data(&mut s).insert("extra".into(), ByteString(b"x".to_vec()));
    assert!(matches!(
        plan_of(&s, &d, None),
        Action::RepairDrift { what } if what.contains("extra")
    ));
    // The payload replaced.
    let mut s = published(&d);
    head_data(&mut s).insert(PAYLOAD_KEY.into(), ByteString(b"garbage".to_vec()));
    assert!(matches!(
        plan_of(&s, &d, None),
        Action::RepairDrift { what } if what.contains("part 0")
    ));
    // Format 1 edited by hand: content no longer matching its hash.
    let mut s = published(&d);
    let head = s.head.as_mut().unwrap();
    head.data = Some(BTreeMap::from([(
        CONFIG_KEY.to_owned(),
        ByteString(config("evil").to_yaml().into_bytes()),
    )]));
    assert!(matches!(
        plan_of(&s, &d, Some(&d.hash)),
        Action::RepairDrift { what } if what.contains("edited by hand")
    ));
}

#[test]
fn a_part_deleted_or_edited_is_drift_and_only_it_is_rewritten() {
    let (d, _) = large("a");
    let mut s = published(&d);
    s.parts.remove(1);
    let p = plan(&s, HEAD, &d, Some(&d.hash));
    assert!(
        matches!(&p.action, Action::RepairDrift { what } if what.contains("postern-config-2")),
        "{p:?}"
    );
    assert_eq!(p.write, [2]);

    let mut s = published(&d);
    s.parts[0]
        .data
        .as_mut()
        .unwrap()
        .insert(PAYLOAD_KEY.into(), ByteString(b"edited".to_vec()));
    let p = plan(&s, HEAD, &d, None);
    assert!(matches!(&p.action, Action::RepairDrift { .. }), "{p:?}");
    assert_eq!(p.write, [1]);
}

#[test]
fn an_interrupted_publish_is_finished_not_reported_as_drift() {
    // Parts of the new configuration were written, the head still lists the old ones.
    let (old, _) = large("a");
    let (new, _) = large("b");
    let mut s = published(&old);
    s.parts[0] = render("ns", HEAD, 1, &new, None);
    assert_eq!(
        plan_of(&s, &new, None),
        Action::Publish {
            previous: Some(old.hash.clone())
        }
    );
}

#[test]
fn format_1_with_the_same_configuration_is_rewritten_quietly() {
    let d = desired("a");
    let mut s = published(&d);
    s.head.as_mut().unwrap().data = Some(BTreeMap::from([(
        CONFIG_KEY.to_owned(),
        ByteString(config("a").to_yaml().into_bytes()),
    )]));
    let p = plan(&s, HEAD, &d, Some(&d.hash));
    assert!(matches!(p.action, Action::Refresh { .. }), "{p:?}");
    assert_eq!(p.write, [0]);
}

#[test]
fn metadata_changes_and_leftovers_refresh_without_a_new_configuration() {
    let d = desired("a");
    let mut s = published(&d);
    s.head.as_mut().unwrap().metadata.owner_references = None;
    assert!(matches!(plan_of(&s, &d, None), Action::Refresh { .. }));
    let mut s = published(&d);
    s.head.as_mut().unwrap().metadata.labels = None;
    assert!(matches!(plan_of(&s, &d, None), Action::Refresh { .. }));
    // A part left over from a larger configuration.
    let (big, _) = large("a");
    let mut s = published(&d);
    s.parts.push(render("ns", HEAD, 3, &big, None));
    let p = plan(&s, HEAD, &d, None);
    assert!(matches!(p.action, Action::Refresh { .. }));
    assert_eq!(p.delete, [format!("{HEAD}-3")]);
}

#[test]
fn rendered_secrets_give_back_their_configuration_and_owners_are_listeners() {
    let (d, _) = large("a");
    let s = published(&d);
    let (_, hash) = s.decode(HEAD).unwrap().unwrap();
    assert_eq!(hash, d.hash);
    assert_eq!(s.claimed_hash(HEAD), Some(d.hash.clone()));
    let mut damaged = s.clone();
    damaged.head.as_mut().unwrap().metadata.annotations = None;
    assert!(matches!(
        damaged.decode(HEAD),
        Some(Err(DecodeError::MissingHash))
    ));
    assert!(Current::default().decode(HEAD).is_none());

    let object = |kind: Kind, name: &str| {
        let mut o = DynamicObject::new(name, &objects::api_resource(kind));
        o.metadata.uid = Some(format!("uid-{name}"));
        (
            crate::compile::ObjectKey::new(kind, name),
            std::sync::Arc::new(objects::StoredObject::read(kind, o)),
        )
    };
    let all: Objects = [
        object(Kind::Listener, "in"),
        object(Kind::MailFlowPolicy, "relay"),
        object(Kind::Listener, "out"),
    ]
    .into_iter()
    .collect();
    let names: Vec<(String, String)> = owners(&all).into_iter().map(|o| (o.name, o.uid)).collect();
    assert_eq!(
        names,
        [
            ("in".to_owned(), "uid-in".to_owned()),
            ("out".to_owned(), "uid-out".to_owned())
        ]
    );
}

#[test]
fn render_keeps_foreign_metadata_and_labels_parts() {
    let d = desired("a");
    let mut current = render("ns", HEAD, 0, &desired("old"), None);
    current
        .metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert("team".into(), "mail".into());
    current.metadata.resource_version = Some("42".into());
    let s = render("ns", HEAD, 0, &d, Some(&current));
    let ann = s.metadata.annotations.unwrap();
    assert_eq!(ann["team"], "mail");
    assert_eq!(ann[HASH_ANNOTATION], d.hash);
    assert_eq!(s.metadata.resource_version.as_deref(), Some("42"));
    assert_eq!(s.data.unwrap().len(), 2);
    let (big, _) = large("a");
    let part = render("ns", HEAD, 2, &big, None);
    assert_eq!(part.metadata.name.as_deref(), Some("postern-config-2"));
    assert_eq!(part.metadata.labels.unwrap()[PART_OF_LABEL], HEAD);
    assert_eq!(part.data.unwrap().len(), 1);
}

#[test]
fn too_large_is_refused_before_anything_is_written() {
    let mut c = config("a");
    c.source = Some(Source {
        namespace: Some(
            (0..5000)
                .map(|i| format!("{:x}", i * 2_654_435_761_u64))
                .collect(),
        ),
    });
    let limits = Limits {
        part_bytes: 64,
        max_parts: 2,
    };
    let err = Desired::new(&c, c.hash(), vec![], &limits).unwrap_err();
    assert_eq!(err.limit_bytes, 128);
    assert!(err.compressed_bytes > 128);
}
