//! Leader election against a real API server: one leader at a time, a standby takes over
//! when the leader dies (after the lease runs out) or at once when it releases the lease.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use postern_controller::operator::leader::{self, Leadership, LeaseSettings};
use postern_tests::kube::KubeCluster;
use tokio_util::sync::CancellationToken;

fn settings(ns: &str, id: &str) -> LeaseSettings {
    LeaseSettings {
        lease_duration: Duration::from_secs(2),
        renew_deadline: Duration::from_millis(1500),
        retry_period: Duration::from_millis(200),
        ..LeaseSettings::new(ns, "postern-controller", id)
    }
}

/// Waits until exactly one of `cands` leads, checking that never two do at once.
async fn sole_leader(cands: &[(&str, &Leadership)], timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let leading: Vec<&str> = cands
            .iter()
            .filter(|(_, l)| l.is_leader())
            .map(|(n, _)| *n)
            .collect();
        assert!(leading.len() <= 1, "two leaders at once: {leading:?}");
        if let [one] = leading.as_slice() {
            return (*one).to_owned();
        }
        assert!(Instant::now() < deadline, "no leader after {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_takeover_on_death_and_on_release() {
    let cluster = KubeCluster::start().expect("start etcd + kube-apiserver");
    let ns = cluster.create_namespace("leader").unwrap();
    let client = cluster.client().await.unwrap();

    let stop_a = CancellationToken::new();
    let stop_b = CancellationToken::new();
    let (la, task_a) = leader::spawn(client.clone(), settings(&ns, "a"), stop_a.clone());
    let (lb, task_b) = leader::spawn(client.clone(), settings(&ns, "b"), stop_b.clone());
    let first = sole_leader(&[("a", &la), ("b", &lb)], Duration::from_secs(5)).await;

    // Stays stable: no flapping over a few renewals.
    for _ in 0..50 {
        assert_eq!(
            sole_leader(&[("a", &la), ("b", &lb)], Duration::from_secs(1)).await,
            first
        );
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let lease = leases.get("postern-controller").await.unwrap();
    assert_eq!(
        lease.spec.as_ref().unwrap().holder_identity.as_deref(),
        Some(first.as_str())
    );

    // The leader dies without releasing: the standby waits out the lease, then leads.
    let (dead_task, standby, standby_name) = if first == "a" {
        (task_a, lb.clone(), "b")
    } else {
        (task_b, la.clone(), "a")
    };
    dead_task.abort();
    let died = Instant::now();
    let dead = if first == "a" { la.clone() } else { lb.clone() };
    // Sample until the standby leads; the dead one must not count as leader past its
    // renew deadline.
    loop {
        if standby.is_leader() {
            break;
        }
        assert!(
            died.elapsed() < Duration::from_secs(6),
            "standby never took over"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let takeover = died.elapsed();
    assert!(
        takeover >= Duration::from_millis(1500),
        "took over before the lease could have expired: {takeover:?}"
    );
    assert!(!dead.is_leader(), "a dead leader still claims leadership");
    let lease = leases.get("postern-controller").await.unwrap();
    let spec = lease.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some(standby_name));
    assert_eq!(spec.lease_transitions, Some(1));

    // A new candidate waits; the leader shuts down gracefully and releases: fast takeover.
    let stop_c = CancellationToken::new();
    let (lc, task_c) = leader::spawn(client.clone(), settings(&ns, "c"), stop_c.clone());
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!lc.is_leader());
    let stop_standby = if standby_name == "a" {
        &stop_a
    } else {
        &stop_b
    };
    stop_standby.cancel();
    let released = Instant::now();
    sole_leader(&[("c", &lc)], Duration::from_secs(3)).await;
    assert!(
        released.elapsed() < Duration::from_millis(1500),
        "release did not hand over quickly: {:?}",
        released.elapsed()
    );
    stop_c.cancel();
    task_c.await.unwrap();
    let lease = leases.get("postern-controller").await.unwrap();
    assert_eq!(
        lease.spec.unwrap().holder_identity,
        None,
        "released on shutdown"
    );
}
