//! `helm install` into the real kube-apiserver test cluster: every object is accepted, the
//! ServiceAccounts get exactly the rights docs/rbac.md lists (checked with their own
//! tokens from the TokenRequest API), upgrades and uninstalls behave, and the CRDs follow
//! the chosen management mode (Helm's crds/, templated with `resource-policy: keep`).

use std::path::Path;
use std::time::Duration;

use postern_tests::helm::{self, Release, get, id};
use postern_tests::kube::{KubeCluster, wait_until};
use serde_json::Value;

/// `kubectl auth can-i VERB RESOURCE[/NAME] [--subresource S] -n NS` with `kubeconfig`;
/// `what` is `resource[/name][#subresource]`.
fn can_i(cluster: &KubeCluster, kubeconfig: &Path, verb: &str, what: &str, ns: &str) -> bool {
    let mut cmd = cluster.kubectl_cmd(postern_tests::kube::User::Admin);
    cmd.env("KUBECONFIG", kubeconfig)
        .args(["auth", "can-i", verb]);
    match what.split_once('#') {
        Some((resource, sub)) => cmd.args([resource, "--subresource", sub]),
        None => cmd.arg(what),
    };
    let out = cmd.args(["-n", ns]).output().unwrap();
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    match answer.as_str() {
        "yes" => true,
        "no" => false,
        _ => panic!(
            "kubectl auth can-i {verb} {what}: {answer} {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// Asserts every (verb, resource, namespace, allowed) of `table` for `kubeconfig`.
fn check_rights(
    cluster: &KubeCluster,
    who: &str,
    kubeconfig: &Path,
    table: &[(&str, &str, &str, bool)],
) {
    // RBAC caches catch up with new bindings within a moment.
    wait_until(Duration::from_secs(15), "RBAC to settle", || {
        let wrong: Vec<String> = table
            .iter()
            .filter(|(verb, what, ns, allowed)| {
                can_i(cluster, kubeconfig, verb, what, ns) != *allowed
            })
            .map(|(verb, what, ns, allowed)| {
                format!(
                    "{who} {verb} {what} -n {ns}: expected {}",
                    if *allowed { "yes" } else { "no" }
                )
            })
            .collect();
        if wrong.is_empty() {
            Ok(Some(()))
        } else {
            Err(anyhow::anyhow!("{}", wrong.join("\n")))
        }
    })
    .unwrap();
}

#[test]
fn install_creates_every_object_and_grants_least_privilege() {
    let cluster = KubeCluster::shared();
    let rel = Release::install(cluster, "inst", &[]);
    let other = cluster.create_namespace("other").unwrap();
    let ns = rel.namespace.as_str();
    let status = rel.helm(&["status", &rel.name, "-o", "json"]);
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["info"]["status"], "deployed");

    // Every recorded object is in the cluster as rendered.
    let objects = rel.manifest();
    assert!(objects.len() >= 15, "{}", objects.len());
    for o in &objects {
        let kind = o["kind"].as_str().unwrap();
        let name = o["metadata"]["name"].as_str().unwrap();
        let live = cluster
            .get_json(
                o["metadata"]["namespace"].as_str().unwrap_or(""),
                kind,
                name,
            )
            .unwrap()
            .unwrap_or_else(|| panic!("{} is not in the cluster", id(o)));
        assert_eq!(
            live["metadata"]["labels"]["app.kubernetes.io/instance"],
            rel.name.as_str(),
            "{}",
            id(o)
        );
    }
    // The server picked the PodDisruptionBudget version it serves.
    let pdb = get(
        &objects,
        "PodDisruptionBudget",
        &format!("{}-gateway", rel.fullname()),
    )
    .unwrap();
    assert_eq!(pdb["apiVersion"], "policy/v1beta1");

    // The controller's rights, with its own token.
    let ctl = rel.service_account_kubeconfig(&format!("{}-controller", rel.fullname()));
    let lease = "leases.coordination.k8s.io";
    let report = "gatewayreports.postern.dev";
    check_rights(
        cluster,
        "controller",
        &ctl,
        &[
            ("list", "listeners.postern.dev", &other, true),
            ("watch", "crlsources.postern.dev", &other, true),
            ("patch", "listeners.postern.dev#status", &other, true),
            ("update", "ldapprofiles.postern.dev#status", &other, true),
            ("update", "listeners.postern.dev", &other, false),
            ("delete", "listeners.postern.dev", &other, false),
            ("create", "mailflowpolicies.postern.dev", &other, false),
            ("watch", "secrets", &other, true),
            ("create", "secrets", &other, true),
            ("delete", "secrets", &other, true),
            ("watch", "configmaps", &other, true),
            ("update", "configmaps", &other, false),
            ("list", report, &other, true),
            ("watch", report, &other, true),
            ("create", report, &other, false),
            ("patch", report, &other, false),
            ("list", lease, &other, false),
            ("create", lease, &other, false),
            ("update", lease, &other, false),
            ("create", lease, ns, true),
            ("update", &format!("{lease}/postern-controller"), ns, true),
            ("get", &format!("{lease}/postern-controller"), ns, true),
            ("update", &format!("{lease}/someone-else"), ns, false),
            ("delete", &format!("{lease}/postern-controller"), ns, false),
            ("create", "events.events.k8s.io", &other, true),
            ("create", "pods", &other, false),
            ("list", "pods", &other, false),
            ("list", "nodes", "", false),
            (
                "create",
                "customresourcedefinitions.apiextensions.k8s.io",
                "",
                false,
            ),
            (
                "create",
                "clusterrolebindings.rbac.authorization.k8s.io",
                "",
                false,
            ),
        ],
    );

    // The gateway's rights: its rendered Secret by name and its own report — and nothing
    // on Leases: the controller's leader Lease lives in this very namespace.
    let gw = rel.service_account_kubeconfig(&format!("{}-gateway", rel.fullname()));
    check_rights(
        cluster,
        "gateway",
        &gw,
        &[
            ("get", "secrets/postern-config", ns, true),
            ("watch", "secrets/postern-config", ns, true),
            ("list", "secrets/postern-config", ns, true),
            ("get", "secrets/gateway-tls", ns, false),
            ("list", "secrets", ns, false),
            ("update", "secrets/postern-config", ns, false),
            ("get", "secrets/postern-config", &other, false),
            ("create", report, ns, true),
            ("patch", report, ns, true),
            ("delete", report, ns, true),
            ("create", report, &other, false),
            ("create", lease, ns, false),
            ("get", &format!("{lease}/postern-controller"), ns, false),
            ("update", &format!("{lease}/postern-controller"), ns, false),
            ("patch", &format!("{lease}/postern-controller"), ns, false),
            ("delete", &format!("{lease}/postern-controller"), ns, false),
            ("list", "pods", ns, false),
            ("get", "listeners.postern.dev", ns, false),
            ("get", "pods", ns, false),
            ("create", "events.events.k8s.io", ns, false),
        ],
    );
}

#[test]
fn upgrade_changes_the_release_and_uninstall_removes_it() {
    let cluster = KubeCluster::shared();
    let rel = Release::install(cluster, "upg", &[]);
    let svc = format!("{}-gateway", rel.fullname());
    let live = cluster
        .get_json(&rel.namespace, "service", &svc)
        .unwrap()
        .unwrap();
    assert_eq!(live["spec"]["type"], "LoadBalancer");

    let chart = helm::chart_dir().display().to_string();
    let values = helm::chart_dir().join("ci/02-nodeport-extras.yaml");
    rel.helm(&[
        "upgrade",
        &rel.name,
        &chart,
        "--values",
        &values.display().to_string(),
    ]);
    let live = cluster
        .get_json(&rel.namespace, "service", &svc)
        .unwrap()
        .unwrap();
    assert_eq!(live["spec"]["type"], "NodePort");
    assert_eq!(live["spec"]["ports"][0]["nodePort"], 30025);
    let gw = cluster
        .get_json(&rel.namespace, "deployment", &svc)
        .unwrap()
        .unwrap();
    assert_eq!(gw["spec"]["replicas"], 3);
    let history = rel.helm(&["history", &rel.name, "-o", "json"]);
    let history: Value = serde_json::from_str(&history).unwrap();
    assert_eq!(history.as_array().unwrap().len(), 2);

    // Rollback, then uninstall: nothing of the release stays.
    rel.helm(&["rollback", &rel.name, "1"]);
    let live = cluster
        .get_json(&rel.namespace, "service", &svc)
        .unwrap()
        .unwrap();
    assert_eq!(live["spec"]["type"], "LoadBalancer");
    let objects = rel.manifest();
    rel.helm(&["uninstall", &rel.name, "--wait"]);
    for o in &objects {
        let ns = o["metadata"]["namespace"].as_str().unwrap_or("");
        let kind = o["kind"].as_str().unwrap();
        let name = o["metadata"]["name"].as_str().unwrap();
        wait_until(Duration::from_secs(20), &format!("{} to go", id(o)), || {
            Ok(cluster.get_json(ns, kind, name)?.is_none().then_some(()))
        })
        .unwrap();
    }
    // The CRDs (and with them everyone's Postern objects) stay.
    assert!(
        cluster
            .get_json("", "crd", "listeners.postern.dev")
            .unwrap()
            .is_some()
    );
}

/// CRD management on a cluster of its own (no CRDs to start with).
#[test]
fn crds_are_installed_managed_upgraded_and_kept() {
    let cluster = KubeCluster::start().unwrap();
    let kc = cluster.kubeconfig();
    let chart = helm::chart_dir().display().to_string();
    let crd_names: Vec<String> = std::fs::read_dir(helm::chart_dir().join("crds"))
        .unwrap()
        .map(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .trim_end_matches(".yaml")
                .to_owned()
        })
        .collect();
    // The five resources and the gateways' reports.
    assert_eq!(crd_names.len(), 6);
    let crd = |name: &str| cluster.get_json("", "crd", name).unwrap();
    cluster.kubectl(&["create", "namespace", "mail"]).unwrap();

    // 1. Default: Helm installs crds/ on first install, not as release objects.
    helm::helm(Some(&kc), &["install", "a", &chart, "-n", "mail"]).unwrap();
    for n in &crd_names {
        let c = crd(n).unwrap_or_else(|| panic!("{n} not installed"));
        assert!(c["metadata"]["annotations"]["meta.helm.sh/release-name"].is_null());
    }
    cluster
        .kubectl(&[
            "wait",
            "--for=condition=Established",
            "crd",
            "--all",
            "--timeout=60s",
        ])
        .unwrap();
    let listener = std::fs::read_to_string(
        postern_testkit::workspace::workspace_root()
            .join("examples/certificate-only/listener.yaml"),
    )
    .unwrap();
    cluster.apply("mail", &listener).unwrap();
    helm::helm(Some(&kc), &["uninstall", "a", "-n", "mail", "--wait"]).unwrap();
    for n in &crd_names {
        assert!(crd(n).is_some(), "{n} removed by uninstall");
    }
    assert!(
        cluster
            .get_json("mail", "listener", "submission")
            .unwrap()
            .is_some()
    );

    // 2. Managed: the same CRDs become release objects, adopted with --take-ownership,
    //    annotated keep, and updated by upgrades.
    let err = helm::helm_fails(
        Some(&kc),
        &[
            "install",
            "b",
            &chart,
            "-n",
            "mail",
            "--skip-crds",
            "--set",
            "crds.managed=true",
        ],
    )
    .unwrap();
    assert!(err.contains("invalid ownership metadata"), "{err}");
    helm::helm(
        Some(&kc),
        &[
            "install",
            "b",
            &chart,
            "-n",
            "mail",
            "--skip-crds",
            "--set",
            "crds.managed=true",
            "--take-ownership",
        ],
    )
    .unwrap();
    for n in &crd_names {
        let c = crd(n).unwrap();
        assert_eq!(
            c["metadata"]["annotations"]["meta.helm.sh/release-name"],
            "b"
        );
        assert_eq!(
            c["metadata"]["annotations"]["helm.sh/resource-policy"],
            "keep"
        );
    }
    helm::helm(
        Some(&kc),
        &[
            "upgrade",
            "b",
            &chart,
            "-n",
            "mail",
            "--skip-crds",
            "--set",
            "crds.managed=true",
            "--set",
            "crds.annotations.example\\.org/reviewed=yes",
        ],
    )
    .unwrap();
    for n in &crd_names {
        assert_eq!(
            crd(n).unwrap()["metadata"]["annotations"]["example.org/reviewed"],
            "yes",
            "{n} not upgraded"
        );
    }
    helm::helm(Some(&kc), &["uninstall", "b", "-n", "mail", "--wait"]).unwrap();
    for n in &crd_names {
        assert!(crd(n).is_some(), "{n} removed despite resource-policy keep");
    }
    assert!(
        cluster
            .get_json("mail", "listener", "submission")
            .unwrap()
            .is_some()
    );
    assert!(
        cluster
            .get_json("mail", "deployment", "b-postern-controller")
            .unwrap()
            .is_none()
    );

    // 3. Managed from the start on a cluster without CRDs.
    let fresh = KubeCluster::start().unwrap();
    fresh.kubectl(&["create", "namespace", "mail"]).unwrap();
    helm::helm(
        Some(&fresh.kubeconfig()),
        &[
            "install",
            "c",
            &chart,
            "-n",
            "mail",
            "--skip-crds",
            "--set",
            "crds.managed=true",
        ],
    )
    .unwrap();
    for n in &crd_names {
        let c = fresh.get_json("", "crd", n).unwrap().unwrap();
        assert_eq!(
            c["metadata"]["annotations"]["meta.helm.sh/release-name"],
            "c"
        );
    }
}
