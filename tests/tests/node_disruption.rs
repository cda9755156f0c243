//! Disruptions of the chart's pods on a real single-node cluster (tests/support/k8s), with
//! mail flowing through the gateway Service (examples/either, SMTP AUTH against slapd):
//! - a rolling update (`helm upgrade` to a new gateway image tag) under load loses nothing:
//!   no accepted session fails, every acknowledged message reaches the next hop, the rest
//!   are refused with 4xx (preStop, readiness, drain with `421 4.3.2`);
//! - a gateway force-deleted during DATA acknowledges nothing, the next hop gets no partial
//!   message, and the replacement pod serves within 10 s;
//! - deleting the leader controller pod while objects change: the other replica takes over
//!   and every change is enforced by the gateway pods.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use postern_testkit::workspace::workspace_root;
use postern_tests::gate::Client;
use postern_tests::node::forward::Forward;
use postern_tests::node::load::{Load, LoadSpec, Outcome, session, tally};
use postern_tests::node::peers::Peers;
use postern_tests::node::release::{
    Images, all_postern_ready, example_manifests, helm_install, machine_load,
};
use postern_tests::node::{Node, PodState};

const RELEASE: &str = "postern";
const NS: &str = "postern-disrupt";
const GATEWAY: &str = "app.kubernetes.io/component=gateway";
const CONTROLLER: &str = "app.kubernetes.io/component=controller";

fn helm_upgrade(node: &Node, images: &Images, extra: &[&str]) -> Result<Duration> {
    helm_install(node, NS, RELEASE, None, images, extra)
}

fn ca_pem() -> String {
    std::fs::read_to_string(workspace_root().join("examples/pki/ca.crt")).unwrap()
}

fn spec(addr: SocketAddr, tag: &str, workers: usize) -> LoadSpec {
    LoadSpec {
        addr,
        ca_pem: ca_pem(),
        user: "bob".into(),
        password: "bob-pw".into(),
        workers,
        pause: Duration::from_millis(20),
        tag: tag.into(),
    }
}

fn published_hash(node: &Node) -> String {
    node.get_json(&["secret", "-n", NS, "postern-config"])
        .ok()
        .and_then(|s| {
            s["metadata"]["annotations"]["postern.dev/config-hash"]
                .as_str()
                .map(str::to_owned)
        })
        .unwrap_or_default()
}

fn gateway_hash(node: &Node, pod: &PodState) -> String {
    node.http_get(&format!("http://{}:9090/config", pod.ip))
        .ok()
        .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
        .and_then(|c| c["hash"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn all_gateways_run(node: &Node, hash: &str) -> bool {
    node.pods(NS, GATEWAY).is_ok_and(|pods| {
        let live: Vec<_> = pods.iter().filter(|p| !p.deleting).collect();
        !live.is_empty()
            && live
                .iter()
                .all(|p| p.ready && gateway_hash(node, p) == hash)
    })
}

/// Every acknowledged message must reach the next hop.
fn assert_delivered(peers: &Peers, outcomes: &[(Instant, Outcome)]) {
    let acked: Vec<&String> = outcomes
        .iter()
        .filter_map(|(_, o)| match o {
            Outcome::Delivered(id) => Some(id),
            _ => None,
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let received: std::collections::HashSet<String> = peers
            .messages()
            .into_iter()
            .filter_map(|m| {
                m.message
                    .lines()
                    .find_map(|l| l.strip_prefix("Subject: ").map(str::to_owned))
            })
            .collect();
        let missing: Vec<&&String> = acked
            .iter()
            .filter(|id| !received.contains(id.as_str()))
            .collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "acknowledged but never received: {missing:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn rolling_update_loses_nothing(
    node: &Node,
    images: &Images,
    peers: &Peers,
    fwd: &Forward,
) -> Result<()> {
    let load = Load::start(&spec(fwd.local, "roll", 4));
    std::thread::sleep(Duration::from_secs(5));
    let before: Vec<String> = node
        .pods(NS, GATEWAY)?
        .into_iter()
        .map(|p| p.name)
        .collect();
    let newer = images.retag(&format!("{}-next", images.tag))?;
    let start = Instant::now();
    let during_start = load.count();
    helm_upgrade(
        node,
        images,
        &[
            "--reuse-values",
            "--set",
            &format!("gateway.image.tag={}", newer.tag),
        ],
    )?;
    node.wait("the old gateways gone", Duration::from_secs(180), || {
        node.pods(NS, GATEWAY)
            .is_ok_and(|p| p.len() == 2 && p.iter().all(|p| p.ready && !before.contains(&p.name)))
    })?;
    let rollout = start.elapsed();
    let during = load.count() - during_start;
    std::thread::sleep(Duration::from_secs(3));
    let outcomes = load.stop();
    let (not_accepted, delivered, deferred, failed) = tally(&outcomes);
    eprintln!(
        "BENCH rolling update of 2 gateways (helm upgrade --wait + old pods gone): {rollout:?}; \
         sessions during it: {during}; in all: delivered {delivered}, deferred (4xx) {deferred}, \
         not accepted {not_accepted}, failed {failed} ({})",
        machine_load()
    );
    let failures: Vec<&Outcome> = outcomes
        .iter()
        .map(|(_, o)| o)
        .filter(|o| matches!(o, Outcome::Failed(_)))
        .collect();
    assert!(
        failures.is_empty(),
        "accepted sessions failed during the rollout: {failures:?}"
    );
    assert!(
        during > 10,
        "the load kept flowing during the rollout ({during} sessions)"
    );
    assert_delivered(peers, &outcomes);
    Ok(())
}

fn active_connections(node: &Node, pod: &PodState) -> f64 {
    node.http_get(&format!("http://{}:9090/metrics", pod.ip))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("postern_connections_active"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn pod_death_during_data(node: &Node, peers: &Peers, fwd: &Forward) -> Result<()> {
    let mut c = Client::connect(fwd.local)?;
    c.cmd("EHLO death.test")?;
    c.starttls(&ca_pem(), None)?;
    c.cmd("EHLO death.test")?;
    assert_eq!(c.auth_plain(b"bob", b"bob-pw")?.0, 235);
    assert_eq!(c.cmd("MAIL FROM:<bob@example.org>")?.0, 250);
    assert_eq!(c.cmd("RCPT TO:<someone@example.net>")?.0, 250);
    assert_eq!(c.cmd("DATA")?.0, 354);
    c.send(b"Subject: node-death\r\n\r\nfirst half\r\n")?;
    let pods = node.pods(NS, GATEWAY)?;
    let victim = pods
        .iter()
        .find(|p| active_connections(node, p) >= 1.0)
        .context("no gateway pod holds the session")?
        .clone();
    let start = Instant::now();
    node.kubectl(&[
        "delete",
        "pod",
        "-n",
        NS,
        &victim.name,
        "--grace-period=0",
        "--force",
    ])?;
    // The kubelet kills a force-deleted pod's containers within seconds: only then is the
    // rest of the message sent, so the transaction cannot finish.
    node.wait(
        "the killed gateway stops answering",
        Duration::from_secs(30),
        || {
            node.http_get(&format!("http://{}:9090/healthz", victim.ip))
                .is_err()
        },
    )?;
    let end = c.send(b"second half\r\n.\r\n").and_then(|()| c.reply());
    assert!(
        !matches!(&end, Ok((250, _))),
        "a message of a killed gateway was acknowledged: {end:?}"
    );
    let replacement = node.wait(
        "a replacement gateway Ready",
        Duration::from_secs(30),
        || {
            node.pods(NS, GATEWAY).is_ok_and(|p| {
                p.iter()
                    .any(|p| p.ready && !p.deleting && !pods.iter().any(|o| o.name == p.name))
            })
        },
    )?;
    let new = node
        .pods(NS, GATEWAY)?
        .into_iter()
        .find(|p| p.ready && !pods.iter().any(|o| o.name == p.name))
        .context("the replacement")?;
    let direct = Forward::start(node, format!("{}:2589", new.ip).parse()?)?;
    let served = session(&spec(direct.local, "replacement", 1), "node-replacement");
    let serving = start.elapsed();
    eprintln!(
        "BENCH force-deleted gateway during DATA: replacement Ready {replacement:?} after the killed pod stopped, \
         serving mail {serving:?} after the delete ({}); the client got {end:?}",
        machine_load()
    );
    assert_eq!(served, Outcome::Delivered("node-replacement".into()));
    assert!(
        serving < Duration::from_secs(10),
        "the replacement served only after {serving:?}"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        peers.received("node-death").is_empty(),
        "a partial message reached the next hop"
    );
    assert_delivered(peers, &[(Instant::now(), served)]);
    Ok(())
}

fn leader(node: &Node) -> String {
    node.kubectl(&[
        "get",
        "lease",
        "-n",
        NS,
        "postern-controller",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ])
    .map(|s| s.trim().to_owned())
    .unwrap_or_default()
}

fn controller_failover(node: &Node) -> Result<()> {
    let controllers = node.pods(NS, CONTROLLER)?;
    assert_eq!(controllers.len(), 2, "{controllers:?}");
    let old = leader(node);
    let victim = controllers
        .iter()
        .find(|p| old.contains(&p.name))
        .with_context(|| format!("the Lease holder {old:?} is not a controller pod"))?
        .clone();
    let start = Instant::now();
    node.kubectl(&["delete", "pod", "-n", NS, &victim.name, "--wait=false"])?;
    // Objects change while the leader goes: five edits, one a second.
    let mut last = 0;
    let mut took_over = None;
    for i in 1..=5 {
        last = 900 + i;
        node.kubectl(&[
            "patch",
            "listener",
            "submission",
            "-n",
            NS,
            "--type=merge",
            "-p",
            &format!("{{\"spec\":{{\"maxConnections\":{last}}}}}"),
        ])?;
        let l = leader(node);
        if took_over.is_none() && !l.is_empty() && l != old {
            took_over = Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let changed = Instant::now();
    let took_over = match took_over {
        Some(t) => t,
        None => {
            node.wait("another controller leads", Duration::from_secs(60), || {
                let l = leader(node);
                !l.is_empty() && l != old
            })? + (changed - start)
        }
    };
    let new_leader = leader(node);
    assert!(
        controllers
            .iter()
            .any(|p| new_leader.contains(&p.name) && p.name != victim.name)
            || (!new_leader.is_empty() && !new_leader.contains(&victim.name)),
        "{new_leader} took over"
    );
    let enforced = node.wait(
        "the last change enforced by every gateway",
        Duration::from_secs(90),
        || {
            let hash = published_hash(node);
            let text = node
                .get_json(&["secret", "-n", NS, "postern-config"])
                .ok()
                .and_then(|s| postern_tests::rendered::decode_single(&s).ok())
                .map(|(config, _)| config.to_yaml())
                .unwrap_or_default();
            text.contains(&format!("maxConnections: {last}"))
                && all_gateways_run(node, &hash)
                && all_postern_ready(node, NS)
        },
    )?;
    eprintln!(
        "BENCH controller failover: {new_leader} (the other replica or the deleted one's replacement) leads {took_over:?} after the leader pod's delete; \
         the last of 5 changes enforced by all gateways {enforced:?} after it was made ({})",
        machine_load()
    );
    Ok(())
}

#[test]
fn rollouts_pod_deaths_and_failovers_lose_no_mail() {
    let node = Node::up().expect("the single-node cluster");
    let images = Images::build(&format!("d{}", std::process::id())).expect("both images");
    let peers = Peers::start(&node).expect("slapd, smtp-sink, CRL server");
    helm_upgrade(&node, &images, &[]).expect("helm install --wait");
    let start = Instant::now();
    node.kubectl_stdin(
        &["apply", "-n", NS, "-f", "-"],
        &example_manifests("either").unwrap(),
    )
    .unwrap();
    node.kubectl(&[
        "wait",
        "-n",
        NS,
        "--for=condition=Ready",
        "postern",
        "--all",
        "--timeout=120s",
    ])
    .unwrap();
    node.wait(
        "both gateways run examples/either",
        Duration::from_secs(60),
        || all_gateways_run(&node, &published_hash(&node)),
    )
    .unwrap();
    eprintln!(
        "BENCH apply examples/either -> Ready and run by both gateway pods: {:?}",
        start.elapsed()
    );
    let ip = node
        .kubectl(&[
            "get",
            "svc",
            "-n",
            NS,
            "postern-gateway",
            "-o",
            "jsonpath={.spec.clusterIP}",
        ])
        .unwrap();
    let fwd = Forward::start(&node, format!("{}:2589", ip.trim()).parse().unwrap()).unwrap();
    assert_eq!(
        session(&spec(fwd.local, "warm", 1), "node-warm"),
        Outcome::Delivered("node-warm".into())
    );

    rolling_update_loses_nothing(&node, &images, &peers, &fwd).expect("rolling update");
    pod_death_during_data(&node, &peers, &fwd).expect("pod death");
    controller_failover(&node).expect("controller failover");
    node.helm(&["uninstall", RELEASE, "-n", NS, "--wait"])
        .unwrap();
}
