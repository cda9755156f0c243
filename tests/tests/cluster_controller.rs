//! The controller and a gateway against a real API server: publication, status, fleet
//! programming, enforcement of a policy change, broken and fixed references, deletion,
//! and drift repair.

use std::net::SocketAddr;
use std::time::Duration;

use postern_testkit::ports::free_port;
use postern_tests::cluster::{ControllerProcess, ControllerSpec, smtp_greeting, start_gateway};
use postern_tests::kube::{Condition, KubeCluster, User, condition_of, wait_until};

const SECRET: &str = "postern-config";
const HASH: &str = "postern.dev/config-hash";

fn policy(name: &str, action: &str) -> String {
    format!(
        "apiVersion: postern.dev/v1alpha1\nkind: MailFlowPolicy\nmetadata: {{name: {name}}}\n\
         spec: {{action: {action}, tls: Disabled, requireSmtpAuth: false}}\n"
    )
}

fn listener(name: &str, port: u16, policy: &str, extra: &str) -> String {
    format!(
        "apiVersion: postern.dev/v1alpha1\nkind: Listener\nmetadata: {{name: {name}}}\n\
         spec:\n  port: {port}\n  address: 127.0.0.1\n  hostname: mail.test\n\
         \x20 defaultMailFlowPolicyRef: {{name: {policy}}}\n\
         \x20 nextHop: {{host: 127.0.0.1, port: 9, tls: Disabled}}\n{extra}"
    )
}

fn cond(cluster: &KubeCluster, ns: &str, kind: &str, name: &str, t: &str) -> Option<Condition> {
    let obj = cluster.get_json(ns, kind, name).ok()??;
    condition_of(&obj, t)
}

/// Waits for condition `t` of an object to have `status` (and `reason`, if given).
fn wait_cond(
    cluster: &KubeCluster,
    ns: &str,
    kind: &str,
    name: &str,
    t: &str,
    status: &str,
    reason: Option<&str>,
) -> Condition {
    wait_until(
        Duration::from_secs(60),
        &format!("{kind}/{name} {t}={status} {reason:?}"),
        || {
            let c = cond(cluster, ns, kind, name, t);
            match c {
                Some(c) if c.status == status && reason.is_none_or(|r| r == c.reason) => {
                    Ok(Some(c))
                }
                other => anyhow::bail!("now {other:?}"),
            }
        },
    )
    .unwrap()
}

fn secret_hash(cluster: &KubeCluster, ns: &str) -> Option<String> {
    let s = cluster.get_json(ns, "secret", SECRET).ok()??;
    s["metadata"]["annotations"][HASH]
        .as_str()
        .map(str::to_owned)
}

fn applied_hash(cluster: &KubeCluster, ns: &str, gateway: &str) -> Option<String> {
    let r = cluster
        .get_json(ns, "gatewayreport", &format!("postern-gw-{gateway}"))
        .ok()??;
    r["spec"]["appliedHash"].as_str().map(str::to_owned)
}

fn wait_greeting(addr: SocketAddr, prefix: &str) -> String {
    wait_until(
        Duration::from_secs(60),
        &format!("greeting {prefix} on {addr}"),
        || {
            let g = smtp_greeting(addr)?;
            if g.starts_with(prefix) {
                Ok(Some(g))
            } else {
                anyhow::bail!("greeting {g:?}")
            }
        },
    )
    .unwrap()
}

fn events(cluster: &KubeCluster, ns: &str) -> Vec<serde_json::Value> {
    let out = cluster
        .kubectl(&["get", "events.v1.events.k8s.io", "-n", ns, "-o", "json"])
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["items"].as_array().cloned().unwrap_or_default()
}

fn has_event(cluster: &KubeCluster, ns: &str, reason: &str, note_contains: &str) -> bool {
    events(cluster, ns)
        .iter()
        .any(|e| e["reason"] == reason && e["note"].as_str().unwrap_or("").contains(note_contains))
}

#[test]
fn publishes_programs_and_enforces_a_policy_change() {
    let cluster = KubeCluster::shared();
    let ns = cluster.create_namespace("flow").unwrap();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    cluster.apply(&ns, &policy("default", "Relay")).unwrap();
    cluster
        .apply(&ns, &listener("smtp", port, "default", ""))
        .unwrap();

    let mut ctl = ControllerProcess::start(cluster, &ControllerSpec::new(&ns, "ctl-a")).unwrap();
    ctl.wait_ready().unwrap();

    // Published, accepted, references resolved; nothing programmed without gateways.
    let h1 = wait_until(Duration::from_secs(60), "the rendered Secret", || {
        Ok(secret_hash(cluster, &ns))
    })
    .unwrap();
    wait_cond(
        cluster,
        &ns,
        "listener",
        "smtp",
        "Accepted",
        "True",
        Some("Accepted"),
    );
    wait_cond(
        cluster,
        &ns,
        "listener",
        "smtp",
        "ResolvedRefs",
        "True",
        None,
    );
    let p = wait_cond(
        cluster,
        &ns,
        "listener",
        "smtp",
        "Programmed",
        "False",
        Some("NoGateways"),
    );
    assert!(p.message.contains(&ns), "{}", p.message);
    let r = wait_cond(
        cluster,
        &ns,
        "listener",
        "smtp",
        "Ready",
        "False",
        Some("NoGateways"),
    );
    assert_eq!(r.observed_generation, Some(1));

    // A gateway picks the configuration up and reports it: Programmed, Ready.
    let _gw = start_gateway(cluster, User::Admin, &ns, "gw-1").unwrap();
    wait_until(
        Duration::from_secs(60),
        "the gateway's applied hash",
        || Ok((applied_hash(cluster, &ns, "gw-1").as_deref() == Some(h1.as_str())).then_some(())),
    )
    .unwrap();
    let p = wait_cond(
        cluster,
        &ns,
        "mailflowpolicy",
        "default",
        "Programmed",
        "True",
        None,
    );
    assert_eq!(p.message, "1/1 gateways programmed");
    wait_cond(
        cluster,
        &ns,
        "listener",
        "smtp",
        "Ready",
        "True",
        Some("Ready"),
    );
    assert!(wait_greeting(addr, "220").contains("mail.test"));

    // Flip the policy to Reject: the gateway enforces it.
    cluster.apply(&ns, &policy("default", "Reject")).unwrap();
    let g = wait_greeting(addr, "554");
    assert!(g.starts_with("554 5.7.1"), "{g}");
    let h2 = secret_hash(cluster, &ns).unwrap();
    assert_ne!(h1, h2);
    let r = wait_until(Duration::from_secs(60), "Ready at generation 2", || {
        let c = cond(cluster, &ns, "mailflowpolicy", "default", "Ready");
        Ok(c.filter(|c| c.status == "True" && c.observed_generation == Some(2)))
    })
    .unwrap();
    assert_eq!(r.reason, "Ready");
    assert_eq!(
        applied_hash(cluster, &ns, "gw-1").as_deref(),
        Some(h2.as_str())
    );
    assert!(has_event(
        cluster,
        &ns,
        "ConfigPublished",
        "published gateway configuration"
    ));
    // The latest publication is visible with its own note, not folded into the first
    // Event's series (which would keep the first note).
    let short = |h: &str| h[..h.find(':').unwrap() + 13].to_owned();
    let latest = format!("published gateway configuration {} (was ", short(&h2));
    wait_until(
        Duration::from_secs(30),
        "the latest ConfigPublished note",
        || Ok(has_event(cluster, &ns, "ConfigPublished", &latest).then_some(())),
    )
    .unwrap();

    // Metrics say what happened.
    assert!(ctl.metric("postern_controller_published_total").unwrap() >= 2.0);
    assert_eq!(ctl.metric("postern_controller_leader").unwrap(), 1.0);
    let text = ctl.metrics_text().unwrap();
    assert!(
        text.contains(
            r#"postern_controller_objects{kind="Listener",condition="Ready",status="True"} 1"#
        ),
        "{text}"
    );
    // The controller metrics the chart's alerts and dashboard read are what it exports.
    let expressions = postern_tests::observability::chart_expressions().unwrap();
    let read_controller = expressions
        .iter()
        .any(|(_, e)| e.contains("postern_controller_"));
    assert!(read_controller, "the chart reads controller metrics");
    let missing = postern_tests::observability::controller_metrics_missing(&text, &expressions);
    assert!(missing.is_empty(), "{missing:#?}\n{text}");
    assert!(ctl.stop().unwrap().success(), "{}", ctl.logs());
}

/// A kubernetes.io/tls Secret with a self-signed certificate for `mail.test`.
fn tls_secret(name: &str) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["mail.test".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let indent = |pem: &str| {
        pem.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, labels: {{postern.dev/secret-use: tls}}}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(&cert.pem()),
        indent(&key.serialize_pem())
    )
}

const TLS_REF: &str = "  tls: {certificateSecretRef: {name: gw-tls}}\n";

#[test]
fn a_broken_reference_is_named_and_fixed() {
    let cluster = KubeCluster::shared();
    let ns = cluster.create_namespace("refs").unwrap();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let ctl = ControllerProcess::start(cluster, &ControllerSpec::new(&ns, "ctl-refs")).unwrap();
    let _gw = start_gateway(cluster, User::Admin, &ns, "gw-refs").unwrap();

    // The Listener names a Secret that does not exist.
    cluster.apply(&ns, &policy("default", "Relay")).unwrap();
    cluster
        .apply(&ns, &listener("smtp", port, "default", TLS_REF))
        .unwrap();
    let r = wait_cond(
        cluster,
        &ns,
        "listener",
        "smtp",
        "ResolvedRefs",
        "False",
        Some("SecretNotFound"),
    );
    assert!(r.message.contains("gw-tls"), "{}", r.message);
    let ready = wait_cond(
        cluster,
        &ns,
        "listener",
        "smtp",
        "Ready",
        "False",
        Some("SecretNotFound"),
    );
    assert!(ready.message.contains("gw-tls"), "{}", ready.message);
    wait_cond(cluster, &ns, "listener", "smtp", "Accepted", "False", None);
    // The policy itself is fine.
    wait_cond(
        cluster,
        &ns,
        "mailflowpolicy",
        "default",
        "Ready",
        "True",
        None,
    );
    assert!(
        smtp_greeting(addr).is_err(),
        "a listener that is not accepted does not listen"
    );
    wait_until(
        Duration::from_secs(10),
        "a SecretNotFound warning event",
        || Ok(has_event(cluster, &ns, "SecretNotFound", "gw-tls").then_some(())),
    )
    .unwrap();

    // The Secret appears: the reference resolves (the controller watches it by name).
    cluster.apply(&ns, &tls_secret("gw-tls")).unwrap();
    wait_cond(
        cluster,
        &ns,
        "listener",
        "smtp",
        "ResolvedRefs",
        "True",
        None,
    );
    wait_cond(
        cluster,
        &ns,
        "listener",
        "smtp",
        "Ready",
        "True",
        Some("Ready"),
    );
    wait_greeting(addr, "220");

    // Point it at another missing Secret: the last good version keeps serving.
    cluster
        .apply(
            &ns,
            &listener(
                "smtp",
                port,
                "default",
                "  tls: {certificateSecretRef: {name: gw-tls-2}}\n",
            ),
        )
        .unwrap();
    let r = wait_cond(
        cluster,
        &ns,
        "listener",
        "smtp",
        "ResolvedRefs",
        "False",
        Some("SecretNotFound"),
    );
    assert!(r.message.contains("gw-tls-2"), "{}", r.message);
    let p = wait_cond(
        cluster,
        &ns,
        "listener",
        "smtp",
        "Programmed",
        "False",
        Some("PreviousVersionServing"),
    );
    assert_eq!(p.observed_generation, Some(2));
    assert!(wait_greeting(addr, "220").contains("mail.test"));
    drop(ctl);
}

#[test]
fn deleting_objects_updates_status_and_removes_the_configuration() {
    let cluster = KubeCluster::shared();
    let ns = cluster.create_namespace("del").unwrap();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let _ctl = ControllerProcess::start(cluster, &ControllerSpec::new(&ns, "ctl-del")).unwrap();
    let _gw = start_gateway(cluster, User::Admin, &ns, "gw-del").unwrap();
    cluster.apply(&ns, &policy("default", "Relay")).unwrap();
    cluster.apply(&ns, &policy("spare", "Reject")).unwrap();
    cluster
        .apply(&ns, &listener("smtp", port, "default", ""))
        .unwrap();
    wait_cond(cluster, &ns, "listener", "smtp", "Ready", "True", None);
    wait_greeting(addr, "220");

    // Deleting an unused policy changes the configuration, nothing else.
    let before = secret_hash(cluster, &ns).unwrap();
    cluster.delete(&ns, "mailflowpolicy", "spare").unwrap();
    wait_until(
        Duration::from_secs(60),
        "a new configuration without it",
        || Ok(secret_hash(cluster, &ns).filter(|h| *h != before)),
    )
    .unwrap();
    wait_cond(cluster, &ns, "listener", "smtp", "Ready", "True", None);

    // Deleting the policy the listener uses: the listener says which reference broke.
    cluster.delete(&ns, "mailflowpolicy", "default").unwrap();
    let r = wait_cond(
        cluster,
        &ns,
        "listener",
        "smtp",
        "ResolvedRefs",
        "False",
        Some("RefNotFound"),
    );
    assert!(r.message.contains("default"), "{}", r.message);

    // Deleting everything removes the rendered configuration.
    cluster.delete(&ns, "listener", "smtp").unwrap();
    wait_until(
        Duration::from_secs(60),
        "the rendered Secret removed",
        || {
            Ok(cluster
                .get_json(&ns, "secret", SECRET)?
                .is_none()
                .then_some(()))
        },
    )
    .unwrap();
}

#[test]
fn drift_is_repaired_and_reported() {
    let cluster = KubeCluster::shared();
    let ns = cluster.create_namespace("drift").unwrap();
    let port = free_port();
    let ctl = ControllerProcess::start(cluster, &ControllerSpec::new(&ns, "ctl-drift")).unwrap();
    let _gw = start_gateway(cluster, User::Admin, &ns, "gw-drift").unwrap();
    cluster.apply(&ns, &policy("default", "Relay")).unwrap();
    cluster
        .apply(&ns, &listener("smtp", port, "default", ""))
        .unwrap();
    wait_cond(cluster, &ns, "listener", "smtp", "Ready", "True", None);
    let h = secret_hash(cluster, &ns).unwrap();
    // The configuration as a gateway reads it; `None` while the Secrets do not decode
    // (a hand edit does not: its content no longer matches the annotated hash).
    let config_of = |cluster: &KubeCluster| {
        postern_tests::rendered::published(cluster, &ns)
            .ok()
            .flatten()
            .map(|(c, _)| c)
    };
    let original = config_of(cluster).unwrap();

    // A hand edit of the content (consistently packed, hash annotation left alone):
    // restored, with a Warning Event; the gateway never ran it.
    let mut edited = original.clone();
    edited.policies.get_mut("default").unwrap().action = postern_config::PolicyAction::Reject;
    assert_ne!(edited, original);
    let patch = postern_tests::rendered::hand_edit_patch(&edited).to_string();
    cluster
        .kubectl(&[
            "patch", "secret", SECRET, "-n", &ns, "--type", "merge", "-p", &patch,
        ])
        .unwrap();
    wait_until(Duration::from_secs(60), "the hand edit reverted", || {
        Ok((config_of(cluster).as_ref() == Some(&original)).then_some(()))
    })
    .unwrap();
    assert_eq!(secret_hash(cluster, &ns).as_deref(), Some(h.as_str()));
    wait_until(Duration::from_secs(30), "a DriftRepaired event", || {
        Ok(has_event(cluster, &ns, "DriftRepaired", "edited by hand").then_some(()))
    })
    .unwrap();
    // Another drift of the same Secret: its Event says what this one was (the first
    // note is not the only one ever seen).
    let patch = serde_json::json!({"stringData": {"extra": "x"}}).to_string();
    cluster
        .kubectl(&[
            "patch", "secret", SECRET, "-n", &ns, "--type", "merge", "-p", &patch,
        ])
        .unwrap();
    wait_until(
        Duration::from_secs(30),
        "a DriftRepaired event for the added key",
        || Ok(has_event(cluster, &ns, "DriftRepaired", "extra").then_some(())),
    )
    .unwrap();
    assert!(has_event(cluster, &ns, "DriftRepaired", "edited by hand"));
    assert_eq!(
        applied_hash(cluster, &ns, "gw-drift").as_deref(),
        Some(h.as_str())
    );
    wait_greeting(format!("127.0.0.1:{port}").parse().unwrap(), "220");

    // Deleted: recreated.
    cluster.delete(&ns, "secret", SECRET).unwrap();
    wait_until(
        Duration::from_secs(60),
        "the rendered Secret recreated",
        || Ok(secret_hash(cluster, &ns).filter(|x| *x == h)),
    )
    .unwrap();
    wait_until(
        Duration::from_secs(10),
        "a DriftRepaired event for the deletion",
        || Ok(has_event(cluster, &ns, "DriftRepaired", "deleted").then_some(())),
    )
    .unwrap();
    assert!(
        ctl.metric("postern_controller_drift_repairs_total")
            .unwrap()
            >= 2.0
    );
    // Status never left Ready.
    let ready = cond(cluster, &ns, "listener", "smtp", "Ready").unwrap();
    assert_eq!(ready.status, "True");
}

/// An SmtpAuthProfile with both sections (DESIGN.md's snippet shows `certificate:` and
/// `ldap:` in one spec): in service, the other type's section ignored with a warning in
/// its `Accepted` message and a Warning Event `Ignored`. (From Kubernetes 1.25 its CEL
/// rule refuses such a profile at apply; this 1.20 API server does not run CEL rules.)
#[test]
fn a_profile_with_both_sections_is_in_service_with_a_warning() {
    let cluster = KubeCluster::shared();
    let ns = cluster.create_namespace("both").unwrap();
    let ctl = ControllerProcess::start(cluster, &ControllerSpec::new(&ns, "ctl-both")).unwrap();
    cluster
        .apply(
            &ns,
            "apiVersion: postern.dev/v1alpha1\nkind: LdapProfile\nmetadata: {name: dir}\nspec:\n\
             \x20 servers: [{url: 'ldap://127.0.0.1:3389'}]\n  baseDn: dc=example,dc=org\n\
             \x20 certificateAuthQuery: {name: cert, filter: '(caccn={cn})'}\n\
             \x20 smtpAuthQuery: {name: auth, filter: '(uid={u})', allowanceFilter: '(uid={u})'}\n\
             ---\n\
             apiVersion: postern.dev/v1alpha1\nkind: SmtpAuthProfile\nmetadata: {name: cac}\nspec:\n\
             \x20 type: Certificate\n  certificate: {ldapProfileRef: {name: dir}}\n\
             \x20 ldap: {ldapProfileRef: {name: dir}, allowance: {enabled: true}}\n",
        )
        .unwrap();
    let accepted = wait_cond(
        cluster,
        &ns,
        "smtpauthprofile",
        "cac",
        "Accepted",
        "True",
        None,
    );
    assert!(
        accepted.message.contains("with warnings") && accepted.message.contains("spec.ldap"),
        "{}",
        accepted.message
    );
    wait_until(Duration::from_secs(30), "an Ignored warning event", || {
        Ok(has_event(cluster, &ns, "Ignored", "spec.ldap").then_some(()))
    })
    .unwrap();
    drop(ctl);
}
