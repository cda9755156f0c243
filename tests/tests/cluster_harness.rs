//! The test control plane itself: it starts, serves kubectl and kube-rs, and enforces RBAC
//! for the restricted users.

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use postern_tests::kube::{KubeCluster, User, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_cluster_serves_kubectl_kube_rs_and_rbac() {
    let cluster = KubeCluster::start().expect("start etcd + kube-apiserver");
    let ns = cluster.create_namespace("harness").unwrap();
    cluster
        .apply(
            &ns,
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: probe}\ndata: {k: v}\n",
        )
        .unwrap();

    let client = cluster.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client, &ns);
    let cm = cms.get("probe").await.unwrap();
    assert_eq!(cm.data.unwrap()["k"], "v");

    // The viewer has no rights until a role is bound.
    let err = cluster
        .kubectl_as(User::Viewer, &["get", "configmaps", "-n", &ns])
        .unwrap_err();
    assert!(format!("{err:#}").contains("forbidden"), "{err:#}");
    // Built-in aggregated roles (view, edit) stay empty here: no controller-manager runs.
    cluster
        .apply(
            &ns,
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: cm-reader}\n\
             rules:\n- apiGroups: ['']\n  resources: [configmaps]\n  verbs: [get, list, watch]\n",
        )
        .unwrap();
    cluster
        .bind_role(&ns, User::Viewer, "Role", "cm-reader")
        .unwrap();
    // RBAC caches refresh quickly but not instantly.
    wait_until(
        Duration::from_secs(10),
        "viewer may list configmaps",
        || {
            let out = cluster.kubectl_as(
                User::Viewer,
                &["get", "configmaps", "-n", &ns, "-o", "name"],
            )?;
            Ok(out.contains("configmap/probe").then_some(()))
        },
    )
    .unwrap();
    let viewer = cluster.client_as(User::Viewer).await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(viewer, &ns);
    assert!(cms.get("probe").await.is_ok());
    let denied = cms.delete("probe", &Default::default()).await.unwrap_err();
    assert!(denied.to_string().contains("forbidden"), "{denied}");

    let obj = cluster
        .get_json(&ns, "configmap", "probe")
        .unwrap()
        .unwrap();
    assert_eq!(obj["data"]["k"], "v");
    assert!(
        cluster
            .get_json(&ns, "configmap", "absent")
            .unwrap()
            .is_none()
    );
    drop(cluster);
}
