//! The Helm chart without installing it: `helm lint --strict`, the values schema, and
//! `helm template` over every values set of `charts/postern/ci/`, each validated by the
//! real API server (`kubectl apply --dry-run=server`, with kubectl's schema validation from
//! the server's OpenAPI, CRDs included) and checked for what an operator relies on:
//! security contexts, probes on the real admin endpoints, resources, ports, RBAC equal to
//! docs/rbac.md.

use std::collections::BTreeSet;
use std::path::PathBuf;

use postern_testkit::workspace::workspace_root;
use postern_tests::helm::{self, Render, ci_values, find, get, helm_fails, id};
use postern_tests::kube::KubeCluster;
use serde_json::Value;

/// The API server version of the test cluster, for `--kube-version`.
const TEST_KUBE_VERSION: &str = "1.20.2";

fn values(name: &str) -> PathBuf {
    helm::chart_dir().join("ci").join(name)
}

fn render(values_file: Option<&str>, sets: &[&str]) -> Vec<Value> {
    Render {
        values: values_file.map(values).into_iter().collect(),
        sets: sets.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
    .objects()
    .unwrap()
}

fn deployments(objects: &[Value]) -> Vec<&Value> {
    find(objects, "Deployment", None)
}

fn container(deploy: &Value) -> &Value {
    &deploy["spec"]["template"]["spec"]["containers"][0]
}

fn args(deploy: &Value) -> Vec<String> {
    container(deploy)["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn helm_lint_strict_passes_for_every_values_set() {
    let chart = helm::chart_dir().display().to_string();
    helm::helm(None, &["lint", "--strict", &chart]).unwrap();
    for v in ci_values().unwrap() {
        let v = v.display().to_string();
        let out = helm::helm(None, &["lint", "--strict", &chart, "--values", &v]).unwrap();
        assert!(out.contains("0 chart(s) failed"), "{v}: {out}");
    }
}

#[test]
fn the_values_schema_refuses_mistakes_with_the_path() {
    let chart = helm::chart_dir().display().to_string();
    let cases: &[(&str, &str)] = &[
        ("gateway.service.type=Ingress", "/gateway/service/type"),
        ("controller.replica=3", "replica"),
        (
            "gateway.service.ports[0].port=70000",
            "/gateway/service/ports/0/port",
        ),
        (
            "gateway.service.ports[0].name=SMTP_PORT",
            "/gateway/service/ports/0/name",
        ),
        (
            "controller.leaderElection.leaseDuration=15",
            "leaseDuration",
        ),
        ("gateway.shutdownGrace=soon", "/gateway/shutdownGrace"),
        (
            "controller.watchNamespaces[0]=Mail_A",
            "/controller/watchNamespaces/0",
        ),
        ("controller.image.digest=latest", "/controller/image/digest"),
        ("controller.replicas=-1", "/controller/replicas"),
        ("networkPolicy.enabled=maybe", "/networkPolicy/enabled"),
    ];
    for (set, path) in cases {
        let err = helm_fails(None, &["template", "p", &chart, "--set", set]).unwrap();
        assert!(err.contains(path), "--set {set}: expected {path} in: {err}");
    }
    // Template-level refusals.
    let err = helm_fails(
        None,
        &[
            "template",
            "p",
            &chart,
            "--set",
            "controller.leaderElection.enabled=false",
        ],
    )
    .unwrap();
    assert!(err.contains("leaderElection"), "{err}");
}

/// Leader-election timings the controller refuses at start (it exits: a renewal deadline
/// not shorter than the lease would let two leaders overlap) fail `helm template` (and so
/// `helm install`) with a message naming both values; the schema alone cannot compare
/// two fields.
#[test]
fn leader_election_timings_the_controller_refuses_fail_the_install() {
    let chart = helm::chart_dir().display().to_string();
    let le = "controller.leaderElection";
    let refused: &[(&[String], &str)] = &[
        (
            &[format!("{le}.renewDeadline=15s")],
            "controller.leaderElection.renewDeadline (15s) must be shorter than controller.leaderElection.leaseDuration (15s)",
        ),
        (
            &[
                format!("{le}.renewDeadline=1m"),
                format!("{le}.leaseDuration=59s"),
            ],
            "renewDeadline (1m) must be shorter than controller.leaderElection.leaseDuration (59s)",
        ),
        (
            &[format!("{le}.retryPeriod=10s")],
            "retryPeriod (10s) must be shorter than controller.leaderElection.renewDeadline (10s)",
        ),
    ];
    for (sets, message) in refused {
        let mut args = vec!["template", "p", chart.as_str()];
        for set in sets.iter() {
            args.extend(["--set", set.as_str()]);
        }
        let err = helm_fails(None, &args).unwrap();
        assert!(
            err.contains(message),
            "{sets:?}: expected {message:?} in: {err}"
        );
    }
    // What the controller accepts renders, in every form of the duration grammar.
    for sets in [
        [
            format!("{le}.renewDeadline=14.5s"),
            format!("{le}.leaseDuration=15s"),
        ],
        [
            format!("{le}.renewDeadline=1m"),
            format!("{le}.leaseDuration=1m30s"),
        ],
        [
            format!("{le}.renewDeadline=900ms"),
            format!("{le}.leaseDuration=1s"),
        ],
    ] {
        let retry = format!("{le}.retryPeriod=100ms");
        let deploy = render(None, &[&sets[0], &sets[1], &retry]);
        assert!(!deployments(&deploy).is_empty(), "{sets:?}");
    }
    // Without leader election the timings are not used: nothing to refuse.
    render(
        None,
        &[
            "controller.replicas=1",
            &format!("{le}.enabled=false"),
            &format!("{le}.renewDeadline=1h"),
        ],
    );
}

/// Renders `render` and applies the raw YAML (as Helm would send it, so YAML 1.1 surprises
/// show) with `kubectl apply --dry-run=server --validate=true`: kubectl validates against
/// the server's OpenAPI (unknown or mistyped fields fail), the server runs its own
/// validation and admission. ServiceMonitors need the Prometheus Operator's CRD, which this
/// cluster does not have: they are checked against the Services they select instead.
/// Returns the rendered objects.
fn dry_run(cluster: &KubeCluster, render: &Render, what: &str) -> Vec<Value> {
    let yaml = render.yaml().unwrap();
    let mut docs = Vec::new();
    let mut monitors = Vec::new();
    for doc in yaml.split("\n---\n") {
        let objs = helm::parse_manifests(doc).unwrap();
        match objs.as_slice() {
            [] => {}
            [o] if o["kind"] == "ServiceMonitor" => monitors.push(o.clone()),
            // Also the Prometheus Operator's: observability_rules.rs runs promtool on it.
            [o] if o["kind"] == "PrometheusRule" => {}
            [o] => docs.push((doc.to_owned(), o.clone())),
            _ => panic!("{what}: several objects in one document"),
        }
    }
    let objects: Vec<Value> = docs.iter().map(|(_, o)| o.clone()).collect();
    assert!(!objects.is_empty(), "{what}");
    check_service_monitors(&monitors, &objects);
    // Every namespaced object names its namespace (the release's, or a managed one).
    for o in &objects {
        let cluster_scoped = [
            "ClusterRole",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
        ]
        .contains(&o["kind"].as_str().unwrap());
        assert_eq!(
            o["metadata"]["namespace"].is_string(),
            !cluster_scoped,
            "{what}: {}",
            id(o)
        );
    }
    // CRDs (crds.managed) without kubectl's schema check: this v1.20 server's schema of
    // CRDs predates their CEL rules (`x-kubernetes-validations`), which the server itself
    // drops; everything else with it.
    let mut out = String::new();
    for crds in [false, true] {
        let stream: String = docs
            .iter()
            .filter(|(_, o)| (o["kind"] == "CustomResourceDefinition") == crds)
            .map(|(text, _)| format!("---\n{}\n", text.trim_start_matches("---\n")))
            .collect();
        if stream.is_empty() {
            continue;
        }
        let validate = if crds {
            "--validate=false"
        } else {
            "--validate=true"
        };
        out += &cluster
            .kubectl_stdin(&["apply", "--dry-run=server", validate, "-f", "-"], &stream)
            .unwrap_or_else(|e| panic!("{what}: {e:#}"));
    }
    // kubectl prints `<kind>.<group>/<name> created|configured (server dry run)`.
    for o in &objects {
        let kind = o["kind"].as_str().unwrap().to_lowercase();
        let name = o["metadata"]["name"].as_str().unwrap();
        assert!(
            out.lines().any(|l| l.starts_with(&kind)
                && l.contains(&format!("/{name} "))
                && l.ends_with("(server dry run)")),
            "{what}: {kind}/{name} not in the dry-run output:\n{out}"
        );
    }
    objects
}

/// Every values set, rendered for the test server's version, is accepted by the real API
/// server.
#[test]
fn every_values_set_is_accepted_by_the_api_server() {
    let cluster = KubeCluster::shared();
    let ns = cluster.create_namespace("chart").unwrap();
    // Namespaces named by 03-namespaced.yaml.
    for extra in ["mail-a", "mail-b"] {
        let _ = cluster.kubectl(&["create", "namespace", extra]);
    }
    for file in ci_values().unwrap() {
        let render = Render {
            namespace: Some(ns.clone()),
            values: vec![file.clone()],
            kube_version: Some(TEST_KUBE_VERSION.into()),
            ..Default::default()
        };
        dry_run(cluster, &render, &file.display().to_string());
    }
}

/// Names that YAML 1.1 reads as booleans (`y`, `on`, `off`, `n` are valid namespace and
/// release names) stay strings in every object.
#[test]
fn release_and_namespace_names_that_look_like_booleans_stay_strings() {
    let cluster = KubeCluster::shared();
    for extra in ["y", "n", "off"] {
        let _ = cluster.kubectl(&["create", "namespace", extra]);
    }
    let render = Render {
        release: Some("on".into()),
        namespace: Some("y".into()),
        sets: vec![
            "controller.watchNamespaces={n,off}".into(),
            "serviceMonitor.enabled=true".into(),
            "networkPolicy.enabled=true".into(),
        ],
        kube_version: Some(TEST_KUBE_VERSION.into()),
        ..Default::default()
    };
    let objects = dry_run(cluster, &render, "release on in namespace y");
    let d = get(&objects, "Deployment", "on-postern-controller").unwrap();
    assert_eq!(d["metadata"]["namespace"], "y");
    assert_eq!(d["metadata"]["labels"]["app.kubernetes.io/instance"], "on");
}

/// The validation above is not a formality: the same command refuses an unknown field in a
/// rendered object.
#[test]
fn the_dry_run_validation_refuses_unknown_fields() {
    let cluster = KubeCluster::shared();
    let ns = cluster.create_namespace("chart-neg").unwrap();
    let mut objects = Render {
        namespace: Some(ns.clone()),
        kube_version: Some(TEST_KUBE_VERSION.into()),
        ..Default::default()
    }
    .objects()
    .unwrap();
    let d = objects
        .iter_mut()
        .find(|o| o["kind"] == "Deployment")
        .unwrap();
    d["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = serde_json::json!({});
    let err = cluster
        .kubectl_stdin(
            &["apply", "--dry-run=server", "--validate=true", "-f", "-"],
            &serde_json::to_string(d).unwrap(),
        )
        .unwrap_err();
    assert!(format!("{err:#}").contains("readinessProbes"), "{err:#}");
}

fn check_service_monitors(monitors: &[Value], objects: &[Value]) {
    for m in monitors {
        assert_eq!(m["apiVersion"], "monitoring.coreos.com/v1");
        let selector = m["spec"]["selector"]["matchLabels"].as_object().unwrap();
        let services: Vec<&Value> = find(objects, "Service", None)
            .into_iter()
            .filter(|s| {
                selector
                    .iter()
                    .all(|(k, v)| &s["metadata"]["labels"][k] == v)
            })
            .collect();
        assert_eq!(
            services.len(),
            1,
            "{} selects {} Services",
            id(m),
            services.len()
        );
        let ports: Vec<&Value> = services[0]["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| &p["name"])
            .collect();
        for e in m["spec"]["endpoints"].as_array().unwrap() {
            assert!(ports.contains(&&e["port"]), "{}: port {}", id(m), e["port"]);
            assert_eq!(e["path"], "/metrics");
        }
    }
}

/// What the server validated (rendered for 1.20) differs from a rendering for a current
/// cluster only in the version-gated fields.
#[test]
fn renderings_for_old_and_new_clusters_differ_only_in_gated_fields() {
    let old = Render {
        kube_version: Some(TEST_KUBE_VERSION.into()),
        ..Default::default()
    }
    .objects()
    .unwrap();
    let mut new = Render {
        kube_version: Some("1.31.0".into()),
        ..Default::default()
    }
    .objects()
    .unwrap();
    for o in &mut new {
        if o["kind"] == "PodDisruptionBudget" {
            assert_eq!(o["apiVersion"], "policy/v1");
            o["apiVersion"] = "policy/v1beta1".into();
        }
        if id(o) == "Deployment/postern-gateway" {
            let sc = o["spec"]["template"]["spec"]["securityContext"]
                .as_object_mut()
                .unwrap();
            let sysctls = sc.remove("sysctls").expect("sysctl for ports < 1024");
            assert_eq!(
                sysctls,
                serde_json::json!([{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}])
            );
        }
    }
    assert_eq!(old, new);
}

#[test]
fn pods_run_non_root_read_only_without_privileges_with_probes_and_resources() {
    for file in ci_values().unwrap() {
        let objects = Render {
            values: vec![file.clone()],
            ..Default::default()
        }
        .objects()
        .unwrap();
        for d in deployments(&objects) {
            let what = format!("{}: {}", file.display(), id(d));
            let pod = &d["spec"]["template"]["spec"];
            assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{what}");
            assert_ne!(pod["securityContext"]["runAsUser"], 0, "{what}");
            assert_eq!(
                pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
                "{what}"
            );
            let c = container(d);
            let sc = &c["securityContext"];
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{what}");
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{what}");
            assert_eq!(sc["runAsNonRoot"], true, "{what}");
            assert_eq!(
                sc["capabilities"]["drop"],
                serde_json::json!(["ALL"]),
                "{what}"
            );
            assert!(sc["capabilities"]["add"].is_null(), "{what}");
            assert!(c["resources"]["requests"]["cpu"].is_string(), "{what}");
            assert!(c["resources"]["limits"]["memory"].is_string(), "{what}");
            // Probes hit the admin endpoints on a named port of the container.
            let ports: Vec<&Value> = c["ports"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| &p["name"])
                .collect();
            for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
                let get = &c[probe]["httpGet"];
                assert_eq!(get["path"], path, "{what} {probe}");
                assert!(ports.contains(&&get["port"]), "{what} {probe} port");
            }
            // The writable paths are volumes; nothing else is.
            let mounts: BTreeSet<&str> = c["volumeMounts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["mountPath"].as_str().unwrap())
                .collect();
            assert!(mounts.contains("/tmp"), "{what}");
            assert_eq!(pod["serviceAccountName"], d["metadata"]["name"], "{what}");
            let env: Vec<&str> = c["env"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["name"].as_str().unwrap())
                .collect();
            for var in ["POD_NAME", "POD_NAMESPACE", "POD_UID"] {
                assert!(env.contains(&var), "{what}: {var}");
            }
        }
    }
}

#[test]
fn the_controller_runs_two_replicas_with_leader_election_and_a_pdb() {
    let objects = render(None, &[]);
    let d = get(&objects, "Deployment", "postern-controller").unwrap();
    assert_eq!(d["spec"]["replicas"], 2);
    let a = args(d);
    assert_eq!(a[0], "controller");
    for expected in [
        "--leader-elect=true",
        "--lease-name=postern-controller",
        "--lease-duration=15s",
        "--renew-deadline=10s",
        "--retry-period=2s",
        "--metrics-address=0.0.0.0:8080",
        "--config-secret=postern-config",
    ] {
        assert!(a.contains(&expected.to_owned()), "{expected} in {a:?}");
    }
    assert!(!a.iter().any(|x| x.starts_with("--namespace")), "{a:?}");
    let pdb = get(&objects, "PodDisruptionBudget", "postern-controller").unwrap();
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        d["spec"]["selector"]["matchLabels"]
    );
    // Soft anti-affinity by default.
    assert!(
        d["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
            ["preferredDuringSchedulingIgnoredDuringExecution"]
            .is_array()
    );
}

#[test]
fn the_gateway_service_type_and_ports_come_from_values() {
    // Defaults: LoadBalancer, client IPs preserved, 25/587/465 straight through.
    let objects = render(None, &[]);
    let svc = get(&objects, "Service", "postern-gateway").unwrap();
    assert_eq!(svc["spec"]["type"], "LoadBalancer");
    assert_eq!(svc["spec"]["externalTrafficPolicy"], "Local");
    let ports: Vec<(String, i64, String)> = svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["port"].as_i64().unwrap(),
                p["targetPort"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        ports,
        vec![
            ("smtp".into(), 25, "smtp".into()),
            ("submission".into(), 587, "submission".into()),
            ("submissions".into(), 465, "submissions".into())
        ]
    );
    let gw = get(&objects, "Deployment", "postern-gateway").unwrap();
    let cports: Vec<(String, i64)> = container(gw)["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["containerPort"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        cports,
        vec![
            ("smtp".into(), 25),
            ("submission".into(), 587),
            ("submissions".into(), 465),
            ("admin".into(), 9090)
        ]
    );
    let a = args(gw);
    for expected in [
        "--cluster",
        "--config-secret=postern-config",
        "--admin-address=0.0.0.0:9090",
        "--log-format=json",
        "--crl-cache-dir=/var/cache/postern/crl",
    ] {
        assert!(a.contains(&expected.to_owned()), "{expected} in {a:?}");
    }
    // The admin port is never on the SMTP Service.
    let admin = get(&objects, "Service", "postern-gateway-admin").unwrap();
    assert_eq!(admin["spec"]["type"], "ClusterIP");
    assert_eq!(admin["spec"]["ports"][0]["port"], 9090);

    // NodePort with unprivileged Listener ports.
    let objects = render(Some("02-nodeport-extras.yaml"), &[]);
    let svc = get(&objects, "Service", "postern-gateway").unwrap();
    assert_eq!(svc["spec"]["type"], "NodePort");
    assert_eq!(svc["spec"]["ports"][0]["nodePort"], 30025);
    let gw = get(&objects, "Deployment", "postern-gateway").unwrap();
    assert_eq!(container(gw)["ports"][0]["containerPort"], 2525);
    assert!(
        gw["spec"]["template"]["spec"]["securityContext"]["sysctls"].is_null(),
        "no sysctl when every port is >= 1024"
    );
    assert_eq!(gw["spec"]["replicas"], 3);
    let pdb = get(&objects, "PodDisruptionBudget", "postern-gateway").unwrap();
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    assert!(pdb["spec"]["minAvailable"].is_null());

    // ClusterIP: no externalTrafficPolicy (the API server refuses it there).
    let objects = render(Some("03-namespaced.yaml"), &[]);
    let svc = get(&objects, "Service", "postern-gateway").unwrap();
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert!(svc["spec"]["externalTrafficPolicy"].is_null());
}

#[test]
fn extra_env_volumes_annotations_and_scheduling_reach_the_pods() {
    let objects = render(Some("02-nodeport-extras.yaml"), &[]);
    let ctl = get(&objects, "Deployment", "postern-controller").unwrap();
    let gw = get(&objects, "Deployment", "postern-gateway").unwrap();
    let pod = &ctl["spec"]["template"]["spec"];
    assert_eq!(
        ctl["metadata"]["annotations"]["example.org/owner"],
        "mail-team"
    );
    assert_eq!(
        ctl["spec"]["template"]["metadata"]["annotations"]["example.org/scrape"],
        "true"
    );
    assert_eq!(
        ctl["spec"]["template"]["metadata"]["labels"]["tier"],
        "control"
    );
    assert_eq!(ctl["metadata"]["labels"]["team"], "mail");
    assert_eq!(pod["nodeSelector"]["kubernetes.io/os"], "linux");
    assert_eq!(pod["tolerations"][0]["key"], "dedicated");
    assert!(pod["affinity"]["nodeAffinity"].is_object());
    assert!(pod["affinity"]["podAntiAffinity"].is_null());
    assert_eq!(pod["topologySpreadConstraints"][0]["maxSkew"], 1);
    assert_eq!(pod["priorityClassName"], "system-cluster-critical");
    assert_eq!(pod["imagePullSecrets"][0]["name"], "registry-credentials");
    assert_eq!(
        container(ctl)["image"],
        "postern/controller@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    );
    assert!(args(ctl).contains(&"--debounce=200ms".to_owned()));
    let env = container(ctl)["env"].as_array().unwrap();
    assert!(env.iter().any(|e| e["name"] == "RUST_BACKTRACE"));
    assert!(
        env.iter()
            .any(|e| e["name"] == "POSTERN_LOG" && e["value"] == "postern=debug,info")
    );

    assert_eq!(
        container(gw)["image"],
        "registry.example.org/mail/postern-gateway:0.1.0-rc1"
    );
    assert_eq!(container(gw)["imagePullPolicy"], "Always");
    assert_eq!(
        container(gw)["envFrom"][0]["secretRef"]["name"],
        "gateway-extra-env"
    );
    let vols = gw["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap();
    assert!(vols.iter().any(|v| v["name"] == "extra-ca"));
    let mounts = container(gw)["volumeMounts"].as_array().unwrap();
    assert!(
        mounts
            .iter()
            .any(|m| m["mountPath"] == "/etc/postern/extra-ca")
    );
    assert!(args(gw).contains(&"--poll-interval=10s".to_owned()));
    assert!(args(gw).contains(&"--crl-max-bytes=67108864".to_owned()));
    assert!(args(gw).contains(&"--crl-https-ca=/etc/postern/crl-https-ca/bundle.pem".to_owned()));
    assert!(
        vols.iter()
            .any(|v| v["secret"]["secretName"] == "crl-https-ca")
    );
    let sa = get(&objects, "ServiceAccount", "postern-controller").unwrap();
    assert_eq!(
        sa["metadata"]["annotations"]["example.org/role"],
        "postern-controller"
    );
}

/// (apiGroup, resource, verb, resourceNames) of every rule of a Role or ClusterRole.
fn grants(role: &Value) -> BTreeSet<(String, String, String, Vec<String>)> {
    let mut out = BTreeSet::new();
    for rule in role["rules"].as_array().unwrap() {
        let names: Vec<String> = rule["resourceNames"]
            .as_array()
            .map(|a| a.iter().map(|n| n.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default();
        for g in rule["apiGroups"].as_array().unwrap() {
            for r in rule["resources"].as_array().unwrap() {
                for v in rule["verbs"].as_array().unwrap() {
                    out.insert((
                        g.as_str().unwrap().to_owned(),
                        r.as_str().unwrap().to_owned(),
                        v.as_str().unwrap().to_owned(),
                        names.clone(),
                    ));
                }
            }
        }
    }
    out
}

fn example_roles(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(workspace_root().join("examples/rbac").join(file)).unwrap();
    helm::parse_manifests(&text).unwrap()
}

/// The chart grants exactly what docs/rbac.md and examples/rbac/ (which the controller's
/// and gateway's own RBAC tests bind) say — at most narrowed to the objects' names.
fn assert_same_rights(chart: &Value, doc: &Value, names: &[(&str, &str)]) {
    let chart_grants = grants(chart);
    let doc_grants = grants(doc);
    for (g, r, v, n) in &doc_grants {
        let covered = chart_grants.iter().any(|(cg, cr, cv, cn)| {
            cg == g
                && cr == r
                && cv == v
                && (cn.is_empty()
                    || cn == n
                    || (n.is_empty()
                        && names
                            .iter()
                            .any(|(res, name)| res == r && cn == &vec![name.to_string()])))
        });
        assert!(covered, "{}: {g}/{r} {v} {n:?} is missing", id(chart));
    }
    for (g, r, v, n) in &chart_grants {
        let allowed = doc_grants
            .iter()
            .any(|(dg, dr, dv, dn)| dg == g && dr == r && dv == v && (dn.is_empty() || dn == n));
        assert!(
            allowed,
            "{}: {g}/{r} {v} {n:?} is not in docs/rbac.md",
            id(chart)
        );
    }
}

#[test]
fn rbac_is_exactly_what_the_code_uses() {
    let objects = render(None, &[]);
    let docs_controller = example_roles("controller.yaml");
    let docs_gateway = example_roles("gateway.yaml");
    assert_same_rights(
        get(&objects, "ClusterRole", "postern-controller").unwrap(),
        get(&docs_controller, "ClusterRole", "postern-controller").unwrap(),
        &[],
    );
    assert_same_rights(
        get(&objects, "Role", "postern-controller-leader").unwrap(),
        get(&docs_controller, "Role", "postern-controller-leader").unwrap(),
        &[("leases", "postern-controller")],
    );
    assert_same_rights(
        get(&objects, "Role", "postern-gateway").unwrap(),
        get(&docs_gateway, "Role", "postern-gateway").unwrap(),
        &[],
    );
    // Cluster-wide by default; the leader Role only in the release namespace.
    let crb = get(&objects, "ClusterRoleBinding", "postern-controller").unwrap();
    assert_eq!(crb["subjects"][0]["name"], "postern-controller");
    assert_eq!(crb["subjects"][0]["namespace"], "postern-system");
    let leader = get(&objects, "Role", "postern-controller-leader").unwrap();
    assert_eq!(leader["metadata"]["namespace"], "postern-system");
}

#[test]
fn a_namespaced_controller_is_bound_only_in_its_namespaces() {
    let objects = render(Some("03-namespaced.yaml"), &[]);
    assert!(find(&objects, "ClusterRoleBinding", None).is_empty());
    let bindings: BTreeSet<String> = find(&objects, "RoleBinding", Some("postern-controller"))
        .iter()
        .map(|b| b["metadata"]["namespace"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        bindings,
        BTreeSet::from(["mail-a".to_owned(), "mail-b".to_owned()])
    );
    let d = get(&objects, "Deployment", "postern-controller").unwrap();
    assert!(args(d).contains(&"--namespace=mail-a,mail-b".to_owned()));
    assert!(find(&objects, "PodDisruptionBudget", None).is_empty());
    assert!(find(&objects, "ClusterRole", Some("postern-view")).is_empty());
}

/// YAML round trips through Helm turn `0.0` into `0`: compare numbers by value.
fn numbers_as_f64(v: &Value) -> Value {
    match v {
        Value::Number(n) => serde_json::json!(n.as_f64().unwrap()),
        Value::Array(a) => Value::Array(a.iter().map(numbers_as_f64).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), numbers_as_f64(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[test]
fn managed_crds_are_the_generated_ones_kept_on_uninstall() {
    let objects = render(Some("06-managed-crds.yaml"), &[]);
    let crds = find(&objects, "CustomResourceDefinition", None);
    // Every generated CRD: the five resources and the gateways' reports.
    assert_eq!(crds.len(), postern_crds::generate::crd_files().len());
    assert_eq!(crds.len(), 6);
    for crd in crds {
        let name = crd["metadata"]["name"].as_str().unwrap();
        let generated =
            std::fs::read_to_string(helm::chart_dir().join("crds").join(format!("{name}.yaml")))
                .unwrap();
        let generated = &helm::parse_manifests(&generated).unwrap()[0];
        assert_eq!(
            numbers_as_f64(&crd["spec"]),
            numbers_as_f64(&generated["spec"]),
            "{name}"
        );
        assert_eq!(
            crd["metadata"]["annotations"]["helm.sh/resource-policy"],
            "keep"
        );
        assert_eq!(
            crd["metadata"]["annotations"]["example.org/owner"],
            "platform"
        );
        assert_eq!(
            crd["metadata"]["labels"]["app.kubernetes.io/part-of"],
            "postern"
        );
    }
    // Not kept when asked.
    let objects = render(Some("06-managed-crds.yaml"), &["crds.keep=false"]);
    for crd in find(&objects, "CustomResourceDefinition", None) {
        assert!(crd["metadata"]["annotations"]["helm.sh/resource-policy"].is_null());
    }
    // Not templated by default: Helm installs crds/ itself.
    assert!(find(&render(None, &[]), "CustomResourceDefinition", None).is_empty());
}

#[test]
fn network_policies_open_smtp_and_metrics_and_restrict_egress() {
    let objects = render(Some("04-monitoring-networkpolicy.yaml"), &[]);
    let gw = get(&objects, "NetworkPolicy", "postern-gateway").unwrap();
    assert_eq!(
        gw["spec"]["policyTypes"],
        serde_json::json!(["Ingress", "Egress"])
    );
    let ingress = gw["spec"]["ingress"].as_array().unwrap();
    let smtp_ports: Vec<&Value> = ingress[0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["port"])
        .collect();
    assert_eq!(smtp_ports, vec!["smtp", "submission", "submissions"]);
    assert_eq!(ingress[0]["from"][0]["ipBlock"]["cidr"], "10.0.0.0/8");
    assert_eq!(ingress[1]["ports"][0]["port"], "admin");
    let egress = gw["spec"]["egress"].as_array().unwrap();
    assert_eq!(egress[0]["ports"][0]["port"], 53);
    assert_eq!(egress[1]["to"][0]["ipBlock"]["cidr"], "10.96.0.1/32");
    assert_eq!(egress[2]["ports"][0]["port"], 389);
    let ctl = get(&objects, "NetworkPolicy", "postern-controller").unwrap();
    assert_eq!(ctl["spec"]["egress"].as_array().unwrap().len(), 2);
    assert_eq!(ctl["spec"]["ingress"][0]["ports"][0]["port"], "metrics");
    // ServiceMonitors for both components, with the Prometheus selector labels.
    let monitors = find(&objects, "ServiceMonitor", None);
    assert_eq!(monitors.len(), 2);
    for m in &monitors {
        assert_eq!(m["metadata"]["labels"]["release"], "prometheus");
        assert_eq!(m["spec"]["endpoints"][0]["interval"], "15s");
    }
    check_service_monitors(&monitors.into_iter().cloned().collect::<Vec<_>>(), &objects);
    // Off by default.
    let defaults = render(None, &[]);
    assert!(find(&defaults, "NetworkPolicy", None).is_empty());
    assert!(find(&defaults, "ServiceMonitor", None).is_empty());
}

#[test]
fn a_gateway_only_release_has_no_controller_objects() {
    let objects = render(Some("05-gateway-only.yaml"), &[]);
    for o in &objects {
        assert_ne!(
            o["metadata"]["labels"]["app.kubernetes.io/component"],
            "controller",
            "{}",
            id(o)
        );
    }
    assert!(get(&objects, "Deployment", "postern-gateway").is_ok());
    assert!(get(&objects, "Role", "postern-gateway").is_ok());
}

#[test]
fn notes_tell_the_user_what_to_do_next() {
    let chart = helm::chart_dir().display().to_string();
    let out = helm::helm(
        None,
        &[
            "install",
            "mail",
            &chart,
            "-n",
            "mail",
            "--dry-run=client",
            "--set",
            "controller.watchNamespaces={other}",
        ],
    )
    .unwrap();
    let notes = &out[out.find("NOTES:").expect("NOTES in dry-run output")..];
    for expected in [
        "kubectl -n mail rollout status deployment/mail-postern-controller",
        "get lease postern-controller",
        "-f examples/certificate-only/mail-flow-policies.yaml -f deploy/quickstart/",
        "postern plan -n mail -f DIR --live",
        "kubectl -n mail get postern",
        "get service mail-postern-gateway -w",
        "submission: service port 587 -> Listener port 587",
        "WARNING: controller.watchNamespaces does not include \"mail\"",
        "docs/troubleshooting.md",
    ] {
        assert!(notes.contains(expected), "{expected:?} not in:\n{notes}");
    }
}

/// The Postern objects the docs tell operators to apply (deploy/quickstart/) are valid
/// against the CRDs as the API server enforces them.
#[test]
fn the_quickstart_objects_are_accepted_by_the_crds() {
    let cluster = KubeCluster::shared();
    let ns = cluster.create_namespace("quickstart").unwrap();
    let dir = workspace_root().join("deploy/quickstart");
    let out = cluster
        .kubectl(&[
            "apply",
            "--dry-run=server",
            "--validate=true",
            "-n",
            &ns,
            "-f",
            &dir.display().to_string(),
        ])
        .unwrap();
    assert!(
        out.contains("ldapprofile.postern.dev/corp-ldap created (server dry run)"),
        "{out}"
    );
    assert!(
        out.contains("listener.postern.dev/submission created (server dry run)"),
        "{out}"
    );
    // A wrong enum value is refused by the CRD schema.
    let listener = std::fs::read_to_string(dir.join("listener.yaml"))
        .unwrap()
        .replace("tls: Preferred", "tls: Sometimes");
    let err = cluster
        .kubectl_stdin(
            &["apply", "--dry-run=server", "-n", &ns, "-f", "-"],
            &listener,
        )
        .unwrap_err();
    assert!(format!("{err:#}").contains("Sometimes"), "{err:#}");
}

#[test]
fn the_gateway_stop_sequence_is_sized_from_shutdown_grace() {
    let grace = |sets: &[&str]| -> (Value, Value) {
        let objects = render(None, sets);
        let d = find(&objects, "Deployment", Some("postern-gateway"))[0].clone();
        (
            d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"].clone(),
            container(&d)["lifecycle"]["preStop"].clone(),
        )
    };
    // preStop 5 s + shutdownGrace 30 s + 10 s to close the rest.
    let (period, hook) = grace(&[]);
    assert_eq!(period, 45);
    assert_eq!(
        hook,
        serde_json::json!({"httpGet": {"path": "prestop?seconds=5", "port": "admin"}})
    );
    assert_eq!(grace(&["gateway.shutdownGrace=1m30s"]).0, 105);
    assert_eq!(grace(&["gateway.shutdownGrace=500ms"]).0, 16);
    let (period, hook) = grace(&["gateway.preStopDelaySeconds=0"]);
    assert_eq!(period, 40);
    assert!(hook.is_null(), "{hook}");
    assert_eq!(grace(&["gateway.terminationGracePeriodSeconds=120"]).0, 120);
    let err = helm_fails(
        None,
        &[
            "template",
            helm::chart_dir().to_str().unwrap(),
            "--set",
            "gateway.terminationGracePeriodSeconds=20",
        ],
    )
    .unwrap();
    assert!(
        err.contains("gateway.terminationGracePeriodSeconds=20 is shorter than")
            && err.contains("at least 35"),
        "{err}"
    );
}

#[test]
fn the_gateway_hpa_follows_the_served_api_and_owns_the_replicas() {
    let objects = render(None, &[]);
    assert!(find(&objects, "HorizontalPodAutoscaler", None).is_empty());
    let spread = &find(&objects, "Deployment", Some("postern-gateway"))[0]["spec"]["template"]["spec"]
        ["topologySpreadConstraints"];
    assert_eq!(spread.as_array().unwrap().len(), 2, "{spread}");
    assert_eq!(spread[0]["topologyKey"], "topology.kubernetes.io/zone");
    assert_eq!(spread[1]["whenUnsatisfiable"], "ScheduleAnyway");
    assert_eq!(
        spread[1]["labelSelector"]["matchLabels"]["app.kubernetes.io/component"],
        "gateway"
    );

    let sets = [
        "gateway.autoscaling.enabled=true",
        "gateway.autoscaling.targetMemoryUtilizationPercentage=80",
    ];
    // helm template's built-in capabilities serve autoscaling/v2 (a 1.23+ cluster).
    let objects = render(None, &sets);
    let hpa = find(&objects, "HorizontalPodAutoscaler", Some("postern-gateway"))[0];
    assert_eq!(hpa["apiVersion"], "autoscaling/v2");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "postern-gateway");
    assert_eq!(hpa["spec"]["minReplicas"], 2);
    assert_eq!(hpa["spec"]["maxReplicas"], 10);
    let metrics: Vec<&str> = hpa["spec"]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["resource"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(metrics, ["cpu", "memory"]);
    // The Deployment leaves the count to the HPA, so an upgrade does not reset it.
    let d = find(&objects, "Deployment", Some("postern-gateway"))[0];
    assert!(d["spec"]["replicas"].is_null(), "{}", d["spec"]);
    let err = helm_fails(
        None,
        &[
            "template",
            helm::chart_dir().to_str().unwrap(),
            "--set",
            "gateway.autoscaling.enabled=true",
            "--set",
            "gateway.autoscaling.maxReplicas=1",
        ],
    )
    .unwrap();
    assert!(
        err.contains("maxReplicas=1 is below minReplicas=2"),
        "{err}"
    );
    // autoscaling/v2beta2 on 1.20 is checked against a real 1.20 cluster (node_chart.rs).
}
