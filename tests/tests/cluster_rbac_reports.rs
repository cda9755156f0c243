//! Security issue 12, item 11: a gateway's credentials cannot stop the controller.
//!
//! Gateways used to report in Leases, and their Role allowed update and delete on every
//! Lease of their namespace — including the controller's leader-election Lease when both
//! run in one namespace (the chart's default). One patch with a gateway's token made the
//! controller step down and stop applying changes. Now reports are `GatewayReport`
//! objects and a gateway has no rights on Leases.
//!
//! The attack is replayed with the gateway's real token, against a real kube-apiserver,
//! with the documented Roles (examples/rbac, which the chart's RBAC must equal) and the
//! real `postern controller` and `postern-gateway` processes in one namespace: every
//! write to the leader Lease is refused (403), the gateway still writes its own report,
//! and the controller keeps leading and applying changes.

use std::net::SocketAddr;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::api::{DeleteParams, DynamicObject, ObjectMeta, Patch, PatchParams, PostParams};
use postern_config::protocol;
use postern_testkit::ports::free_port;
use postern_testkit::workspace::workspace_root;
use postern_tests::cluster::{ControllerProcess, ControllerSpec, smtp_greeting, start_gateway};
use postern_tests::kube::{KubeCluster, User, condition_of, wait_until};
use serde_json::json;

const LEASE: &str = "postern-controller";

fn policy(action: &str) -> String {
    format!(
        "apiVersion: postern.dev/v1alpha1\nkind: MailFlowPolicy\nmetadata: {{name: default}}\n\
         spec: {{action: {action}, tls: Disabled}}\n"
    )
}

fn listener(port: u16) -> String {
    format!(
        "apiVersion: postern.dev/v1alpha1\nkind: Listener\nmetadata: {{name: smtp}}\n\
         spec:\n  port: {port}\n  address: 127.0.0.1\n  hostname: mail.test\n\
         \x20 defaultMailFlowPolicyRef: {{name: default}}\n\
         \x20 nextHop: {{host: 127.0.0.1, port: 9, tls: Disabled}}\n"
    )
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

fn wait_ready(cluster: &KubeCluster, ns: &str, kind: &str, name: &str, generation: i64) {
    wait_until(
        Duration::from_secs(90),
        &format!("{kind}/{name} Ready at generation {generation}"),
        || {
            let obj = cluster.get_json(ns, kind, name)?;
            let c = obj.as_ref().and_then(|o| condition_of(o, "Ready"));
            match c {
                Some(c) if c.status == "True" && c.observed_generation == Some(generation) => {
                    Ok(Some(()))
                }
                other => anyhow::bail!("now {other:?}"),
            }
        },
    )
    .unwrap();
}

fn holder(cluster: &KubeCluster, ns: &str) -> Option<String> {
    cluster
        .get_json(ns, "lease", LEASE)
        .ok()??
        .pointer("/spec/holderIdentity")?
        .as_str()
        .map(str::to_owned)
}

/// What the API server answered: the HTTP status of a refusal, or 200.
fn status<T>(r: Result<T, kube::Error>) -> u16 {
    match r {
        Ok(_) => 200,
        Err(kube::Error::Api(e)) => e.code,
        Err(e) => panic!("not an API answer: {e}"),
    }
}

#[test]
fn a_gateways_token_cannot_touch_the_leader_lease_and_the_controller_keeps_leading() {
    let cluster = KubeCluster::shared();
    // Controller, its leader Lease and the gateway in one namespace, as the chart does.
    let ns = cluster.create_namespace("gwlease").unwrap();
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

    let mut spec = ControllerSpec::new(&ns, "ctl-leader");
    spec.user = User::Controller;
    let ctl = ControllerProcess::start(cluster, &spec).unwrap();
    wait_until(Duration::from_secs(30), "the controller to lead", || {
        Ok((holder(cluster, &ns).as_deref() == Some("ctl-leader")).then_some(()))
    })
    .unwrap();
    let gw = start_gateway(cluster, User::Gateway, &ns, "gw-a").unwrap();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    cluster.apply(&ns, &policy("Relay")).unwrap();
    cluster.apply(&ns, &listener(port)).unwrap();
    wait_ready(cluster, &ns, "listener", "smtp", 1);
    wait_greeting(addr, "220");

    // The gateway reports with its own token, in its own kind.
    let report = protocol::report_name("gw-a");
    let renewed = |cluster: &KubeCluster| -> Option<String> {
        cluster
            .get_json(&ns, "gatewayreport", &report)
            .ok()??
            .pointer("/spec/renewTime")?
            .as_str()
            .map(str::to_owned)
    };
    let first_renewal = renewed(cluster).expect("the gateway's report");

    // The attack: every way to write the leader Lease, with the gateway's token.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let codes = rt.block_on(async {
        let gateway = cluster.client_as(User::Gateway).await.unwrap();
        let admin = cluster.client().await.unwrap();
        let leases: Api<Lease> = Api::namespaced(gateway.clone(), &ns);
        let current = Api::<Lease>::namespaced(admin, &ns)
            .get(LEASE)
            .await
            .unwrap();
        let mut taken = current.clone();
        if let Some(s) = taken.spec.as_mut() {
            s.holder_identity = Some("gw-a".into());
            s.lease_duration_seconds = Some(3600);
        }
        let take_over = json!({"spec": {"holderIdentity": "gw-a", "leaseDurationSeconds": 3600}});
        let apply = json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": LEASE},
            "spec": {"holderIdentity": "gw-a", "leaseDurationSeconds": 3600},
        });
        let decoy = Lease {
            metadata: ObjectMeta {
                name: Some("postern-controller-2".into()),
                ..Default::default()
            },
            spec: None,
        };
        vec![
            (
                "merge patch",
                status(
                    leases
                        .patch(LEASE, &PatchParams::default(), &Patch::Merge(&take_over))
                        .await,
                ),
            ),
            (
                "server-side apply",
                status(
                    leases
                        .patch(
                            LEASE,
                            &PatchParams::apply("x").force(),
                            &Patch::Apply(&apply),
                        )
                        .await,
                ),
            ),
            (
                "replace",
                status(leases.replace(LEASE, &PostParams::default(), &taken).await),
            ),
            (
                "delete",
                status(leases.delete(LEASE, &DeleteParams::default()).await),
            ),
            ("get", status(leases.get(LEASE).await)),
            (
                "create",
                status(leases.create(&PostParams::default(), &decoy).await),
            ),
            (
                "delete all",
                status(
                    leases
                        .delete_collection(&DeleteParams::default(), &Default::default())
                        .await,
                ),
            ),
        ]
    });
    for (what, code) in &codes {
        assert_eq!(
            *code, 403,
            "{what} of the leader Lease with the gateway's token"
        );
    }
    // Its own kind, it may write (the running gateway renews its report meanwhile).
    let own = rt.block_on(async {
        let gateway = cluster.client_as(User::Gateway).await.unwrap();
        let reports: Api<DynamicObject> = Api::namespaced_with(
            gateway,
            &ns,
            &postern_gateway::cluster::report_api_resource(),
        );
        status(
            reports
                .patch(
                    &protocol::report_name("gw-probe"),
                    &PatchParams::apply("probe"),
                    &Patch::Apply(json!({
                        "apiVersion": "postern.dev/v1alpha1", "kind": "GatewayReport",
                        "metadata": {"name": protocol::report_name("gw-probe")},
                        "spec": {"gateway": "gw-probe", "renewTime": "2000-01-01T00:00:00Z",
                                 "ttlSeconds": 1},
                    })),
                )
                .await,
        )
    });
    assert_eq!(own, 200, "a gateway writes reports");
    wait_until(Duration::from_secs(20), "the report renewed", || {
        Ok(renewed(cluster).filter(|t| *t != first_renewal).map(|_| ()))
    })
    .unwrap();

    // The controller still leads, and applies the next change.
    assert_eq!(holder(cluster, &ns).as_deref(), Some("ctl-leader"));
    cluster.apply(&ns, &policy("Reject")).unwrap();
    wait_greeting(addr, "554 5.7.1");
    wait_ready(cluster, &ns, "mailflowpolicy", "default", 2);
    assert_eq!(holder(cluster, &ns).as_deref(), Some("ctl-leader"));
    assert_eq!(ctl.metric("postern_controller_leader").unwrap(), 1.0);
    let logs = ctl.logs();
    assert!(!logs.contains("lost leadership"), "{logs}");
    assert!(!logs.contains("stepping down"), "{logs}");
    assert!(!gw.log().contains("forbidden"), "{}", gw.log());
}
