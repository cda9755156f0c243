//! Leadership, restarts and least privilege, with real controller and gateway processes:
//! only the leader writes; a standby takes over when the leader dies; a controller
//! restarted mid-way converges without rewriting what did not change; the documented
//! RBAC rules are enough (and nothing less works).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use postern_testkit::ports::free_port;
use postern_testkit::workspace::workspace_root;
use postern_tests::cluster::{ControllerProcess, ControllerSpec, smtp_greeting, start_gateway};
use postern_tests::kube::{KubeCluster, User, condition_of, wait_until};

fn policy(name: &str, action: &str) -> String {
    format!(
        "apiVersion: postern.dev/v1alpha1\nkind: MailFlowPolicy\nmetadata: {{name: {name}}}\n\
         spec: {{action: {action}, tls: Disabled}}\n"
    )
}

fn listener(name: &str, port: u16, policy: &str) -> String {
    format!(
        "apiVersion: postern.dev/v1alpha1\nkind: Listener\nmetadata: {{name: {name}}}\n\
         spec:\n  port: {port}\n  address: 127.0.0.1\n  hostname: mail.test\n\
         \x20 defaultMailFlowPolicyRef: {{name: {policy}}}\n\
         \x20 nextHop: {{host: 127.0.0.1, port: 9, tls: Disabled}}\n"
    )
}

fn ready(cluster: &KubeCluster, ns: &str, kind: &str, name: &str) -> Option<(String, Option<i64>)> {
    let obj = cluster.get_json(ns, kind, name).ok()??;
    let c = condition_of(&obj, "Ready")?;
    Some((c.status, c.observed_generation))
}

fn wait_ready(cluster: &KubeCluster, ns: &str, kind: &str, name: &str, generation: i64) {
    // Generous: on a loaded machine the controller's first reconcile can take a while.
    wait_until(
        Duration::from_secs(90),
        &format!("{kind}/{name} Ready at generation {generation}"),
        || {
            let r = ready(cluster, ns, kind, name);
            if r == Some(("True".into(), Some(generation))) {
                Ok(Some(()))
            } else {
                anyhow::bail!("now {r:?}")
            }
        },
    )
    .unwrap();
}

fn wait_greeting(addr: SocketAddr, prefix: &str) {
    wait_until(
        Duration::from_secs(60),
        &format!("greeting {prefix}"),
        || {
            let g = smtp_greeting(addr)?;
            Ok(g.starts_with(prefix).then_some(()))
        },
    )
    .unwrap();
}

fn lease_holder(cluster: &KubeCluster, ns: &str) -> Option<String> {
    let l = cluster.get_json(ns, "lease", "postern-controller").ok()??;
    l["spec"]["holderIdentity"].as_str().map(str::to_owned)
}

/// resourceVersion and Ready's lastTransitionTime of each object.
fn fingerprints(
    cluster: &KubeCluster,
    ns: &str,
    objs: &[(&str, &str)],
) -> BTreeMap<String, (String, String)> {
    objs.iter()
        .map(|(kind, name)| {
            let o = cluster.get_json(ns, kind, name).unwrap().unwrap();
            let c = condition_of(&o, "Ready").unwrap();
            (
                format!("{kind}/{name}"),
                (
                    o["metadata"]["resourceVersion"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                    c.last_transition_time,
                ),
            )
        })
        .collect()
}

#[test]
fn only_the_leader_writes_and_a_standby_takes_over() {
    let cluster = KubeCluster::shared();
    let ns = cluster.create_namespace("ha").unwrap();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut a = ControllerProcess::start(cluster, &ControllerSpec::new(&ns, "ctl-a")).unwrap();
    a.wait_ready().unwrap();
    wait_until(Duration::from_secs(30), "a leader", || {
        Ok(lease_holder(cluster, &ns))
    })
    .unwrap();
    let mut b = ControllerProcess::start(cluster, &ControllerSpec::new(&ns, "ctl-b")).unwrap();
    b.wait_ready().unwrap();
    let leader_id = lease_holder(cluster, &ns).unwrap();
    let (leader, standby) = if leader_id == "ctl-a" {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };

    let _gw = start_gateway(cluster, User::Admin, &ns, "gw-ha").unwrap();
    cluster.apply(&ns, &policy("default", "Relay")).unwrap();
    cluster
        .apply(&ns, &listener("smtp", port, "default"))
        .unwrap();
    wait_ready(cluster, &ns, "listener", "smtp", 1);
    wait_greeting(addr, "220");

    // The standby watched everything and wrote nothing.
    assert!(
        leader
            .metric("postern_controller_status_writes_total")
            .unwrap()
            >= 2.0
    );
    assert_eq!(leader.metric("postern_controller_leader").unwrap(), 1.0);
    assert_eq!(standby.metric("postern_controller_leader").unwrap(), 0.0);
    for m in [
        "postern_controller_status_writes_total",
        "postern_controller_published_total",
        "postern_controller_events_total",
    ] {
        assert_eq!(standby.metric(m).unwrap(), 0.0, "{m} of the standby");
    }
    let events = cluster
        .kubectl(&["get", "events.v1.events.k8s.io", "-n", &ns, "-o", "json"])
        .unwrap();
    let events: serde_json::Value = serde_json::from_str(&events).unwrap();
    let instances: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["reportingController"] == "postern-controller")
        .map(|e| e["reportingInstance"].as_str().unwrap_or(""))
        .collect();
    assert!(!instances.is_empty());
    assert!(
        instances.iter().all(|i| *i == leader.identity),
        "{instances:?}"
    );

    // The leader dies without a word; the standby takes over and serves the next change.
    leader.kill();
    cluster.apply(&ns, &policy("default", "Reject")).unwrap();
    wait_greeting(addr, "554 5.7.1");
    wait_ready(cluster, &ns, "mailflowpolicy", "default", 2);
    assert_eq!(
        lease_holder(cluster, &ns).as_deref(),
        Some(standby.identity.as_str())
    );
    assert_eq!(standby.metric("postern_controller_leader").unwrap(), 1.0);
    assert!(
        standby
            .metric("postern_controller_published_total")
            .unwrap()
            >= 1.0
    );

    // Graceful shutdown releases the lease.
    assert!(standby.stop().unwrap().success());
    let holder = lease_holder(cluster, &ns);
    assert_eq!(holder, None, "released on shutdown");
}

#[test]
fn a_controller_restarted_mid_way_converges_without_flapping() {
    let cluster = KubeCluster::shared();
    let ns = cluster.create_namespace("restart").unwrap();
    let port = free_port();
    let _gw = start_gateway(cluster, User::Admin, &ns, "gw-r").unwrap();
    let mut first = ControllerProcess::start(cluster, &ControllerSpec::new(&ns, "ctl-1")).unwrap();
    cluster.apply(&ns, &policy("default", "Relay")).unwrap();
    cluster.apply(&ns, &policy("spare", "Relay")).unwrap();
    cluster
        .apply(&ns, &listener("smtp", port, "default"))
        .unwrap();
    for (k, n) in [
        ("mailflowpolicy", "default"),
        ("mailflowpolicy", "spare"),
        ("listener", "smtp"),
    ] {
        wait_ready(cluster, &ns, k, n, 1);
    }
    let unchanged = [("mailflowpolicy", "default"), ("listener", "smtp")];
    let before = fingerprints(cluster, &ns, &unchanged);

    // A burst of new objects, and the controller dies in the middle of it.
    let mut burst = String::new();
    for i in 0..40 {
        burst.push_str(&policy(&format!("bulk-{i:02}"), "Relay"));
        burst.push_str("---\n");
    }
    burst.push_str(&policy("spare", "Reject"));
    cluster.apply(&ns, &burst).unwrap();
    std::thread::sleep(Duration::from_millis(150));
    first.kill();

    // A new replica (new identity: it waits out the dead one's lease) converges.
    let second = ControllerProcess::start(cluster, &ControllerSpec::new(&ns, "ctl-2")).unwrap();
    wait_ready(cluster, &ns, "mailflowpolicy", "spare", 2);
    for i in 0..40 {
        wait_ready(cluster, &ns, "mailflowpolicy", &format!("bulk-{i:02}"), 1);
    }
    // What did not change was not rewritten: same resourceVersion, same transition time.
    assert_eq!(fingerprints(cluster, &ns, &unchanged), before);

    // And it stays quiet: no flapping.
    let writes = second
        .metric("postern_controller_status_writes_total")
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        second
            .metric("postern_controller_status_writes_total")
            .unwrap(),
        writes,
        "status writes while nothing changes"
    );
    let mut all = unchanged.to_vec();
    all.push(("mailflowpolicy", "spare"));
    let settled = fingerprints(cluster, &ns, &all);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(fingerprints(cluster, &ns, &all), settled);
}

#[test]
fn the_documented_rbac_is_enough_and_required() {
    let cluster = KubeCluster::shared();
    let ns = cluster.create_namespace("rbac").unwrap();
    let rbac = workspace_root().join("examples/rbac");
    cluster
        .apply_path(&ns, &rbac.join("controller.yaml"))
        .unwrap();
    cluster.apply_path(&ns, &rbac.join("gateway.yaml")).unwrap();
    cluster
        .bind_cluster_role(User::Controller, "postern-controller")
        .unwrap();
    cluster
        .bind_role(&ns, User::Controller, "Role", "postern-controller-leader")
        .unwrap();
    cluster
        .bind_role(&ns, User::Gateway, "Role", "postern-gateway")
        .unwrap();

    // Without any role the controller cannot start working, and says why.
    let mut spec = ControllerSpec::new(&ns, "ctl-nobody");
    spec.user = User::Viewer;
    let mut nobody = ControllerProcess::start(cluster, &spec).unwrap();
    wait_until(Duration::from_secs(30), "the refusal in the log", || {
        Ok(nobody.logs().contains("forbidden").then_some(()))
    })
    .unwrap();
    assert!(
        !nobody.is_ready(),
        "ready without rights: {}",
        nobody.logs()
    );
    nobody.kill();

    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut spec = ControllerSpec::new(&ns, "ctl-rbac");
    spec.user = User::Controller;
    let ctl = ControllerProcess::start(cluster, &spec).unwrap();
    let gw = start_gateway(cluster, User::Gateway, &ns, "gw-rbac").unwrap();
    cluster.apply(&ns, &policy("default", "Relay")).unwrap();
    cluster
        .apply(&ns, &listener("smtp", port, "default"))
        .unwrap();
    wait_ready(cluster, &ns, "listener", "smtp", 1);
    wait_greeting(addr, "220");
    cluster.apply(&ns, &policy("default", "Reject")).unwrap();
    wait_greeting(addr, "554 5.7.1");
    wait_ready(cluster, &ns, "mailflowpolicy", "default", 2);

    // Drift repair and Events work with these rights too.
    cluster.delete(&ns, "secret", "postern-config").unwrap();
    wait_until(
        Duration::from_secs(60),
        "the rendered Secret recreated",
        || {
            Ok(cluster
                .get_json(&ns, "secret", "postern-config")?
                .map(|_| ()))
        },
    )
    .unwrap();
    let text = ctl.metrics_text().unwrap();
    assert!(!text.contains("reason=\"Forbidden\""), "{text}");
    assert!(ctl.metric("postern_controller_events_total").unwrap() >= 1.0);
    assert!(!ctl.logs().contains("forbidden"), "{}", ctl.logs());
    assert!(!gw.log().contains("forbidden"), "{}", gw.log());
}
