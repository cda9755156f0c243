//! The chart's Deployments doing their job: after `helm install`, the controller and a
//! gateway run as local processes exactly as their Pods would (the chart's args and env,
//! the credentials of the chart's ServiceAccounts from the TokenRequest API). The
//! controller elects itself leader, compiles an example, publishes the rendered Secret,
//! writes every object's status and Events; the gateway reads its configuration, reports,
//! and serves SMTP; every object becomes Ready — and the Argo CD health script and the
//! Flux health expressions read the real status as Healthy/Current (and a broken
//! reference as Degraded/Failed).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use postern_testkit::workspace::workspace_bin;
use postern_testkit::workspace::workspace_root;
use postern_tests::helm::{ChartProcess, Release, get};
use postern_tests::kube::{KubeCluster, condition_of, wait_until};
use serde_json::Value;

const KINDS: [&str; 5] = [
    "ldapprofiles",
    "smtpauthprofiles",
    "mailflowpolicies",
    "listeners",
    "crlsources",
];

fn objects(cluster: &KubeCluster, ns: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for kind in KINDS {
        let list: Value = serde_json::from_str(
            &cluster
                .kubectl(&["get", kind, "-n", ns, "-o", "json"])
                .unwrap(),
        )
        .unwrap();
        out.extend(list["items"].as_array().unwrap().iter().cloned());
    }
    out
}

/// A Lua literal of a JSON value (for the Argo CD health script's test runner).
fn lua(v: &Value) -> String {
    match v {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Array(a) => format!("{{{}}}", a.iter().map(lua).collect::<Vec<_>>().join(", ")),
        Value::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("[{k:?}] = {}", lua(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn greeting(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut line = String::new();
    BufReader::new(s.try_clone().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = s.write_all(b"QUIT\r\n");
    line
}

#[test]
fn the_controller_and_a_gateway_do_their_job_with_the_chart_service_accounts() {
    let cluster = KubeCluster::shared();
    let rel = Release::install(cluster, "run", &[]);
    let ns = rel.namespace.clone();
    let manifest = rel.manifest();
    let ctl_name = format!("{}-controller", rel.fullname());
    let gw_name = format!("{}-gateway", rel.fullname());

    // The controller, as replica 1 of its Deployment.
    let ctl_kc = rel.service_account_kubeconfig(&ctl_name);
    let mut controller = ChartProcess::start(
        &workspace_bin("postern").unwrap(),
        get(&manifest, "Deployment", &ctl_name).unwrap(),
        &format!("{ctl_name}-5d8f7c9b4-x2k9q"),
        &ns,
        &ctl_kc,
    )
    .unwrap();
    controller
        .wait_http("/readyz", Duration::from_secs(60))
        .unwrap();
    // It leads, with the Lease the chart's Role allows.
    wait_until(Duration::from_secs(30), "the leader Lease", || {
        let lease = cluster.get_json(&ns, "lease", "postern-controller")?;
        Ok(lease.filter(|l| l["spec"]["holderIdentity"] == controller.pod_name.as_str()))
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", controller.logs()));

    // Procedure A of the manual, as shipped in examples/ (local ports: 127.0.0.1:2587).
    cluster
        .apply_path(&ns, &workspace_root().join("examples/certificate-only"))
        .unwrap();
    wait_until(Duration::from_secs(60), "the rendered Secret", || {
        cluster.get_json(&ns, "secret", "postern-config")
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", controller.logs()));

    // A gateway, as replica 1 of its Deployment, with the gateway's ServiceAccount.
    let gw_kc = rel.service_account_kubeconfig(&gw_name);
    let mut gateway = ChartProcess::start(
        &workspace_bin("postern-gateway").unwrap(),
        get(&manifest, "Deployment", &gw_name).unwrap(),
        &format!("{gw_name}-7c9d5b8f6-q4w7z"),
        &ns,
        &gw_kc,
    )
    .unwrap();
    gateway
        .wait_http("/readyz", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(greeting(2587).starts_with("220 "), "the example's listener");
    let report = format!("postern-gw-{}", gateway.pod_name);
    wait_until(Duration::from_secs(30), "the gateway's report", || {
        cluster.get_json(&ns, "gatewayreport", &report)
    })
    .unwrap();

    // Every object: Accepted, ResolvedRefs, Programmed, Ready — written by the controller
    // with the chart's RBAC.
    let all = wait_until(Duration::from_secs(90), "every object Ready", || {
        let objs = objects(cluster, &ns);
        let not_ready: Vec<String> = objs
            .iter()
            .filter(|o| condition_of(o, "Ready").is_none_or(|c| c.status != "True"))
            .map(|o| {
                format!(
                    "{}/{}: {:?}",
                    o["kind"],
                    o["metadata"]["name"],
                    condition_of(o, "Ready")
                )
            })
            .collect();
        if objs.len() >= 5 && not_ready.is_empty() {
            Ok(Some(objs))
        } else {
            Err(anyhow::anyhow!("{}", not_ready.join("; ")))
        }
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e:#}\ncontroller:\n{}\ngateway:\n{}",
            controller.logs(),
            gateway.logs()
        )
    });
    for o in &all {
        for t in ["Accepted", "ResolvedRefs", "Programmed"] {
            let c = condition_of(o, t).unwrap();
            assert_eq!(c.status, "True", "{} {t}: {c:?}", o["metadata"]["name"]);
            assert_eq!(c.observed_generation, o["metadata"]["generation"].as_i64());
        }
    }
    // The chart's gateway token cannot take over (or delete) the controller's leader Lease,
    // which lives in the same namespace (security issue 12, item 11).
    for args in [
        vec![
            "patch",
            "lease",
            "postern-controller",
            "--type=merge",
            "-p",
            r#"{"spec":{"holderIdentity":"intruder","leaseDurationSeconds":3600}}"#,
        ],
        vec!["delete", "lease", "postern-controller"],
    ] {
        let out = cluster
            .kubectl_cmd(postern_tests::kube::User::Admin)
            .env("KUBECONFIG", &gw_kc)
            .args(&args)
            .args(["-n", &ns])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("forbidden"),
            "kubectl {args:?} with the gateway's token: {err}"
        );
    }
    let lease = cluster
        .get_json(&ns, "lease", "postern-controller")
        .unwrap();
    assert_eq!(
        lease.unwrap()["spec"]["holderIdentity"],
        controller.pod_name.as_str()
    );

    // Events, through events.k8s.io (the chart's ClusterRole).
    let events: Value = serde_json::from_str(
        &cluster
            .kubectl(&["get", "events.events.k8s.io", "-n", &ns, "-o", "json"])
            .unwrap(),
    )
    .unwrap();
    assert!(
        events["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["reportingController"]
                .as_str()
                .is_some_and(|c| c.contains("postern"))),
        "{events}"
    );

    // The Argo CD health script reads the status the controller wrote as Healthy.
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<PathBuf> = all
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let path = dir.path().join(format!("case{i}.lua"));
            std::fs::write(
                &path,
                format!(
                    "return {{name = {:?}, obj = {}, status = \"Healthy\"}}\n",
                    format!(
                        "live {}/{}",
                        o["kind"].as_str().unwrap(),
                        o["metadata"]["name"].as_str().unwrap()
                    ),
                    lua(o)
                ),
            )
            .unwrap();
            path
        })
        .collect();
    let out = run_lua(&cases);
    assert!(out.contains("live Listener/submission"), "{out}");
    // And Flux's health expressions read it as Current.
    let flux_cases: Vec<PathBuf> = all
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let path = dir.path().join(format!("flux{i}.json"));
            let name = format!(
                "live {}/{}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            );
            std::fs::write(
                &path,
                serde_json::json!({"name": name, "obj": o, "status": "Current"}).to_string(),
            )
            .unwrap();
            path
        })
        .collect();
    let out = postern_tests::helm::run_flux_health_tests(&flux_cases).unwrap();
    assert!(out.contains("ok   live Listener/submission"), "{out}");

    // A broken reference: Degraded for Argo CD, with the controller's reason.
    cluster
        .kubectl(&[
            "patch",
            "listener",
            "submission",
            "-n",
            &ns,
            "--type=merge",
            "-p",
            r#"{"spec":{"tls":{"certificateSecretRef":{"name":"no-such-secret"}}}}"#,
        ])
        .unwrap();
    let broken = wait_until(Duration::from_secs(60), "SecretNotFound", || {
        let l = cluster.get_json(&ns, "listener", "submission")?.unwrap();
        Ok(condition_of(&l, "Ready")
            .filter(|c| c.status == "False" && c.reason == "SecretNotFound")
            .map(|_| l))
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", controller.logs()));
    let path = dir.path().join("broken.lua");
    std::fs::write(
        &path,
        format!(
            "return {{name = \"live broken listener\", obj = {}, status = \"Degraded\", message = \"SecretNotFound\"}}\n",
            lua(&broken)
        ),
    )
    .unwrap();
    run_lua(&[path]);
    let path = dir.path().join("broken.json");
    std::fs::write(
        &path,
        serde_json::json!({"name": "live broken listener", "obj": broken, "status": "Failed"})
            .to_string(),
    )
    .unwrap();
    postern_tests::helm::run_flux_health_tests(&[path]).unwrap();

    // Both stop cleanly on SIGTERM (the gateway withdraws its report).
    assert!(gateway.stop().unwrap(), "{}", gateway.logs());
    wait_until(Duration::from_secs(20), "the report withdrawn", || {
        Ok(cluster
            .get_json(&ns, "gatewayreport", &report)?
            .is_none()
            .then_some(()))
    })
    .unwrap();
    assert!(controller.stop().unwrap(), "{}", controller.logs());
}

fn run_lua(cases: &[PathBuf]) -> String {
    let lua = postern_tests::helm::find_tool("lua5.1")
        .expect("lua5.1 not found: run tests/support/install-deps.sh (Debian package lua5.1)");
    let out = std::process::Command::new(lua)
        .arg(workspace_root().join("deploy/argocd/health_test.lua"))
        .args(cases)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// Two replicas of the chart's controller: exactly one leads (the chart's Lease and Role);
/// when it stops, the other takes over and keeps the objects' status current.
#[test]
fn two_controller_replicas_elect_one_leader_and_hand_over() {
    // A cluster of its own: the controllers of another test would manage these objects too.
    let cluster = KubeCluster::start().unwrap();
    cluster.apply_crds().unwrap();
    let rel = Release::install(&cluster, "ha", &[]);
    let ns = rel.namespace.clone();
    let manifest = rel.manifest();
    let ctl_name = format!("{}-controller", rel.fullname());
    let deployment = get(&manifest, "Deployment", &ctl_name).unwrap();
    assert_eq!(deployment["spec"]["replicas"], 2);
    let kc = rel.service_account_kubeconfig(&ctl_name);
    let bin = workspace_bin("postern").unwrap();
    let a = ChartProcess::start(&bin, deployment, &format!("{ctl_name}-a"), &ns, &kc).unwrap();
    let b = ChartProcess::start(&bin, deployment, &format!("{ctl_name}-b"), &ns, &kc).unwrap();
    let holder = || -> anyhow::Result<Option<String>> {
        Ok(cluster
            .get_json(&ns, "lease", "postern-controller")?
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_owned))
            .filter(|h| !h.is_empty()))
    };
    let first = wait_until(Duration::from_secs(30), "a leader", holder).unwrap();
    assert!(first == a.pod_name || first == b.pod_name, "{first}");
    let (mut leader, mut standby) = if first == a.pod_name { (a, b) } else { (b, a) };

    cluster
        .apply_path(&ns, &workspace_root().join("examples/certificate-only"))
        .unwrap();
    wait_until(Duration::from_secs(60), "Accepted by the leader", || {
        let l = cluster.get_json(&ns, "listener", "submission")?;
        Ok(l.and_then(|l| condition_of(&l, "Accepted"))
            .filter(|c| c.status == "True"))
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", leader.logs()));

    // The leader goes (a rolling update, a drained node): it releases the Lease on SIGTERM.
    assert!(leader.stop().unwrap(), "{}", leader.logs());
    let next = wait_until(Duration::from_secs(30), "the standby to lead", || {
        Ok(holder()?.filter(|h| *h == standby.pod_name))
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", standby.logs()));
    assert_eq!(next, standby.pod_name);
    // The new leader does the work: a change is compiled and reported.
    cluster
        .kubectl(&[
            "patch",
            "listener",
            "submission",
            "-n",
            &ns,
            "--type=merge",
            "-p",
            r#"{"spec":{"maxConnections":500}}"#,
        ])
        .unwrap();
    wait_until(Duration::from_secs(60), "status of generation 2", || {
        let l = cluster.get_json(&ns, "listener", "submission")?.unwrap();
        Ok(condition_of(&l, "Accepted").filter(|c| c.observed_generation == Some(2)))
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", standby.logs()));
    assert!(standby.stop().unwrap(), "{}", standby.logs());
}
