//! The gateway's cluster config source against a real API server, with the gateway's
//! restricted RBAC: it runs the empty configuration while nothing is published, applies
//! each rendered configuration once, refuses a hand-edited one, reports what it runs in its `GatewayReport`, and withdraws the report on shutdown.
//!
//! The reload path here records what it is given (the full gateway process is exercised
//! by the controller end-to-end tests).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use postern_config::protocol::{self, GatewayReport, ReportSpec};
use postern_config::{GatewayConfig, Source};
use postern_gateway::cluster::{self, ClusterOptions, ConfigSink};
use postern_testkit::workspace::workspace_root;
use postern_tests::kube::{KubeCluster, User};
use tokio_util::sync::CancellationToken;

#[derive(Clone, Default)]
struct Recorder {
    applied: Arc<Mutex<Vec<String>>>,
    refuse: Arc<Mutex<Option<String>>>,
}

impl ConfigSink for Recorder {
    async fn apply(&self, config: GatewayConfig) -> Result<(), String> {
        if let Some(why) = self.refuse.lock().unwrap().clone() {
            return Err(why);
        }
        self.applied.lock().unwrap().push(config.hash());
        Ok(())
    }
}

fn config(ns: &str) -> GatewayConfig {
    GatewayConfig {
        source: Some(Source {
            namespace: Some(ns.into()),
        }),
        ..Default::default()
    }
}

fn rendered(config: &GatewayConfig, hash: &str) -> Secret {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": protocol::RENDERED_SECRET,
                     "annotations": {protocol::HASH_ANNOTATION: hash}},
        "stringData": {protocol::CONFIG_KEY: config.to_yaml()},
    }))
    .unwrap()
}

async fn spec(reports: &Api<DynamicObject>, name: &str) -> Option<ReportSpec> {
    let object = reports.get_opt(name).await.unwrap()?;
    Some(serde_json::from_value(object.data["spec"].clone()).expect("a report spec"))
}

async fn report(reports: &Api<DynamicObject>, name: &str) -> Option<GatewayReport> {
    spec(reports, name).await.map(|s| s.report)
}

async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_source_applies_reports_and_refuses_drift() {
    let cluster = KubeCluster::start().expect("start etcd + kube-apiserver");
    cluster
        .apply_crds()
        .expect("the CRDs, GatewayReport among them");
    let ns = cluster.create_namespace("gwsrc").unwrap();
    cluster
        .apply_path(&ns, &workspace_root().join("examples/rbac/gateway.yaml"))
        .unwrap();
    cluster
        .bind_role(&ns, User::Gateway, "Role", "postern-gateway")
        .unwrap();

    let admin = cluster.client().await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &ns);
    let reports: Api<DynamicObject> =
        Api::namespaced_with(admin.clone(), &ns, &cluster::report_api_resource());
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({
                "metadata": {"name": "other"}, "stringData": {"k": "v"}}))
            .unwrap(),
        )
        .await
        .unwrap();

    // The gateway's identity: only its Secret, only reports.
    let gw = cluster.client_as(User::Gateway).await.unwrap();
    let gw_secrets: Api<Secret> = Api::namespaced(gw.clone(), &ns);
    let denied = gw_secrets.get("other").await.unwrap_err();
    assert!(denied.to_string().contains("forbidden"), "{denied}");

    let sink = Recorder::default();
    let mut opts = ClusterOptions::new(&ns, "gw-1");
    opts.heartbeat = Duration::from_millis(300);
    opts.report_ttl = Duration::from_secs(2);
    let stop = CancellationToken::new();
    let task = tokio::spawn(cluster::run(
        gw.clone(),
        opts,
        sink.clone(),
        cluster::no_revocation_facts(),
        stop.clone(),
    ));
    let report_name = protocol::report_name("gw-1");

    // No Postern objects, so nothing published: once the API server said so, the gateway
    // runs the empty configuration (no listeners) and is ready, with no hash applied.
    let nothing = config(&ns);
    eventually("the empty configuration run, ready", || async {
        report(&reports, &report_name)
            .await
            .is_some_and(|r| r.ready && r.applied_hash.is_none())
    })
    .await;
    assert_eq!(*sink.applied.lock().unwrap(), vec![nothing.hash()]);

    // A rendered configuration arrives: applied once, reported.
    let c1 = config(&ns);
    secrets
        .create(&PostParams::default(), &rendered(&c1, &c1.hash()))
        .await
        .unwrap();
    eventually("the first configuration applied", || async {
        report(&reports, &report_name)
            .await
            .is_some_and(|r| r.ready && r.applied_hash.as_deref() == Some(c1.hash().as_str()))
    })
    .await;
    assert_eq!(
        *sink.applied.lock().unwrap(),
        vec![nothing.hash(), c1.hash()]
    );
    let written = spec(&reports, &report_name).await.unwrap();
    assert_eq!(written.gateway, "gw-1");
    assert_eq!(written.ttl_seconds, 2);

    // Hand edit: content no longer matches the annotated hash -> not applied, refusal said.
    let mut edited = config(&ns);
    edited.source = Some(Source {
        namespace: Some("hand-edited".into()),
    });
    let patch = serde_json::json!({"stringData": {protocol::CONFIG_KEY: edited.to_yaml()}});
    secrets
        .patch(
            protocol::RENDERED_SECRET,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .unwrap();
    eventually("the hand edit refused", || async {
        report(&reports, &report_name).await.is_some_and(|r| {
            r.refusal
                .is_some_and(|x| x.message.contains("does not match"))
                && r.applied_hash.as_deref() == Some(c1.hash().as_str())
        })
    })
    .await;
    assert_eq!(sink.applied.lock().unwrap().len(), 2);

    // Restored (as the controller does): the refusal clears, nothing is re-applied.
    secrets
        .replace(protocol::RENDERED_SECRET, &PostParams::default(), &{
            let mut s = rendered(&c1, &c1.hash());
            s.metadata.resource_version = secrets
                .get(protocol::RENDERED_SECRET)
                .await
                .unwrap()
                .metadata
                .resource_version;
            s
        })
        .await
        .unwrap();
    eventually("the refusal cleared", || async {
        report(&reports, &report_name)
            .await
            .is_some_and(|r| r.refusal.is_none())
    })
    .await;
    assert_eq!(sink.applied.lock().unwrap().len(), 2);

    // The reload path refuses a new configuration: the old one is still reported.
    *sink.refuse.lock().unwrap() = Some("port 25 already in use".into());
    let mut c2 = config(&ns);
    c2.source = Some(Source {
        namespace: Some(format!("{ns}-2")),
    });
    let annotations = BTreeMap::from([(protocol::HASH_ANNOTATION.to_owned(), c2.hash())]);
    let patch = serde_json::json!({
        "metadata": {"annotations": annotations},
        "stringData": {protocol::CONFIG_KEY: c2.to_yaml()}});
    secrets
        .patch(
            protocol::RENDERED_SECRET,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .unwrap();
    eventually("the refusal reported", || async {
        report(&reports, &report_name).await.is_some_and(|r| {
            r.refusal
                .as_ref()
                .is_some_and(|x| x.hash == c2.hash() && x.message == "port 25 already in use")
                && r.applied_hash.as_deref() == Some(c1.hash().as_str())
        })
    })
    .await;

    // Heartbeat: renewTime keeps moving.
    let t1 = spec(&reports, &report_name).await.unwrap().renew_time;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let t2 = spec(&reports, &report_name).await.unwrap().renew_time;
    assert_ne!(t1, t2, "the report is renewed");

    // Shutdown withdraws the report.
    stop.cancel();
    task.await.unwrap().unwrap();
    assert!(reports.get_opt(&report_name).await.unwrap().is_none());
}
