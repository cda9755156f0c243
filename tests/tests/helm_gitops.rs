//! The GitOps material of deploy/: the Argo CD health script (run by real Lua 5.1 — the
//! dialect of Argo CD's interpreter — and Lua 5.4), the argocd-cm that carries it, the
//! values of the Argo CD Application and the Flux HelmRelease (rendered by the chart, so
//! its schema checks them), the Flux health expressions, and the `postern plan` CI recipe
//! run on a real git repository.

use std::path::{Path, PathBuf};
use std::process::Command;

use postern_testkit::workspace::workspace_bin;
use postern_testkit::workspace::workspace_root;
use postern_tests::helm::{self, Render, find_tool, parse_manifests};
use serde_json::Value;

fn deploy(path: &str) -> PathBuf {
    workspace_root().join("deploy").join(path)
}

fn manifests(path: &str) -> Vec<Value> {
    parse_manifests(&std::fs::read_to_string(deploy(path)).unwrap()).unwrap()
}

/// Runs `deploy/argocd/health_test.lua` with `lua` and extra case files; returns stdout.
pub fn run_lua_tests(lua: &str, cases: &[PathBuf]) -> String {
    let bin = find_tool(lua).unwrap_or_else(|| {
        panic!("{lua} not found: run tests/support/install-deps.sh (Debian package {lua})")
    });
    let out = Command::new(bin)
        .arg(deploy("argocd/health_test.lua"))
        .args(cases)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{lua} health_test.lua failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn the_argocd_health_script_passes_its_tests_in_lua_5_1_and_5_4() {
    for lua in ["lua5.1", "lua5.4"] {
        let out = run_lua_tests(lua, &[]);
        let last = out.lines().last().unwrap();
        assert!(last.ends_with(" passed, 0 failed"), "{lua}: {out}");
        let passed: usize = last.split_whitespace().next().unwrap().parse().unwrap();
        assert!(passed >= 15, "{lua}: {out}");
    }
}

#[test]
fn argocd_cm_carries_the_health_script_for_every_kind() {
    let script = std::fs::read_to_string(deploy("argocd/health.lua")).unwrap();
    let cm = &manifests("argocd/argocd-cm.yaml")[0];
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(cm["metadata"]["name"], "argocd-cm");
    let data = cm["data"].as_object().unwrap();
    assert_eq!(data.len(), postern_crds::KINDS.len());
    for kind in postern_crds::KINDS {
        let key = format!(
            "resource.customizations.health.{}_{kind}",
            postern_crds::GROUP
        );
        assert_eq!(
            data.get(&key).and_then(Value::as_str),
            Some(script.as_str()),
            "{key} differs from deploy/argocd/health.lua"
        );
        // ConfigMap keys allow only [-._a-zA-Z0-9].
        assert!(
            key.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
        );
    }
}

/// Writes `values` to a file and renders the chart with it: the chart's values schema and
/// templates accept what the GitOps examples pass.
fn render_with(values: &Value) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("values.yaml");
    std::fs::write(&file, serde_json::to_string(values).unwrap()).unwrap();
    Render {
        values: vec![file],
        ..Default::default()
    }
    .objects()
    .unwrap()
}

#[test]
fn the_argocd_applications_point_at_the_chart_with_valid_values() {
    let app = &manifests("argocd/application.yaml")[0];
    assert_eq!(app["apiVersion"], "argoproj.io/v1alpha1");
    assert_eq!(app["kind"], "Application");
    let source = &app["spec"]["source"];
    assert!(
        workspace_root()
            .join(source["path"].as_str().unwrap())
            .join("Chart.yaml")
            .is_file()
    );
    let objects = render_with(&source["helm"]["valuesObject"]);
    let svc = helm::get(&objects, "Service", "postern-gateway").unwrap();
    assert_eq!(svc["spec"]["ports"].as_array().unwrap().len(), 2);
    let opts: Vec<&str> = app["spec"]["syncPolicy"]["syncOptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_str().unwrap())
        .collect();
    assert!(opts.contains(&"ServerSideApply=true"), "{opts:?}");
    // The objects' application does not wait for the chart's health (the gateways become
    // ready only once the objects exist) and retries until the chart's CRDs exist.
    let config = &manifests("argocd/application-config.yaml")[0];
    for a in [app, config] {
        assert!(
            a["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"].is_null(),
            "no sync-wave ordering between the two applications"
        );
    }
    let opts = config["spec"]["syncPolicy"]["syncOptions"]
        .as_array()
        .unwrap();
    assert!(opts.iter().any(|o| o == "SkipDryRunOnMissingResource=true"));
    assert!(
        config["spec"]["syncPolicy"]["retry"]["limit"]
            .as_i64()
            .unwrap()
            >= 10
    );
    assert_eq!(
        config["spec"]["destination"]["namespace"], app["spec"]["destination"]["namespace"],
        "the objects go where the gateways run"
    );
}

#[test]
fn the_flux_health_expressions_pass_their_tests_in_a_real_cel_evaluator() {
    let out = helm::run_flux_health_tests(&[]).unwrap();
    let last = out.lines().last().unwrap();
    assert!(last.ends_with(" passed, 0 failed"), "{out}");
    let passed: usize = last.split_whitespace().next().unwrap().parse().unwrap();
    assert!(passed >= 5 * 13, "{out}");
}

#[test]
fn the_flux_release_and_kustomizations_are_consistent() {
    let source = &manifests("flux/source.yaml")[0];
    assert_eq!(source["kind"], "GitRepository");
    let hr = &manifests("flux/helmrelease.yaml")[0];
    assert_eq!(hr["apiVersion"], "helm.toolkit.fluxcd.io/v2");
    let chart = &hr["spec"]["chart"]["spec"];
    assert!(
        workspace_root()
            .join(chart["chart"].as_str().unwrap())
            .join("Chart.yaml")
            .is_file()
    );
    assert_eq!(chart["sourceRef"]["name"], source["metadata"]["name"]);
    assert_eq!(
        chart["sourceRef"]["namespace"],
        source["metadata"]["namespace"]
    );
    // Flux, unlike plain Helm, upgrades the CRDs of crds/.
    assert_eq!(hr["spec"]["install"]["crds"], "CreateReplace");
    assert_eq!(hr["spec"]["upgrade"]["crds"], "CreateReplace");
    // Helm's readiness wait would never end: gateways are ready only with a configuration,
    // which comes after the release.
    assert_eq!(hr["spec"]["install"]["disableWait"], true);
    assert_eq!(hr["spec"]["upgrade"]["disableWait"], true);
    render_with(&hr["spec"]["values"]);

    let ks = manifests("flux/kustomizations.yaml");
    let config = ks
        .iter()
        .find(|k| k["metadata"]["name"] == "postern-config")
        .unwrap();
    assert_eq!(config["spec"]["dependsOn"][0]["name"], "postern");
    assert_eq!(config["spec"]["wait"], true);
    assert_eq!(
        config["spec"]["targetNamespace"],
        hr["metadata"]["namespace"]
    );
    let exprs = config["spec"]["healthCheckExprs"].as_array().unwrap();
    let kinds: Vec<&str> = exprs.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, postern_crds::KINDS.to_vec());
    for e in exprs {
        assert_eq!(e["apiVersion"], postern_crds::API_VERSION);
        let current = e["current"].as_str().unwrap();
        let failed = e["failed"].as_str().unwrap();
        // Guarded against objects without status, Ready-based, generation-aware, and the
        // gateways' roll-out is not a failure.
        for expr in [current, failed] {
            assert!(expr.starts_with("has(status.conditions) && "), "{expr}");
            assert!(expr.contains("c.type == 'Ready'"), "{expr}");
            assert!(expr.contains("metadata.generation"), "{expr}");
        }
        assert!(
            failed.contains("['Pending', 'NoGateways', 'NotFetched']"),
            "{failed}"
        );
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=ci", "-c", "user.email=ci@example.org"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git is installed");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Runs the plan recipe in `repo`; returns (exit code, stdout+stderr, summary).
fn plan(repo: &Path, base: &str) -> (i32, String, String) {
    let summary = repo.join("summary.md");
    let _ = std::fs::remove_file(&summary);
    let out = Command::new("bash")
        .arg(deploy("ci/postern-plan.sh"))
        .args(["-b", base, "-n", "mail", "-o"])
        .arg(&summary)
        .arg("postern/mail")
        .env("POSTERN", workspace_bin("postern").unwrap())
        .current_dir(repo)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        std::fs::read_to_string(&summary).unwrap_or_default(),
    )
}

#[test]
fn the_plan_recipe_reports_changes_and_errors_of_a_pull_request() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    git(repo, &["init", "-q", "-b", "main"]);
    let objects = repo.join("postern/mail");
    copy_dir(
        &workspace_root().join("examples/certificate-only"),
        &objects,
    );
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-qm", "base"]);

    // A pull request that changes nothing the gateways see.
    git(repo, &["checkout", "-qb", "pr"]);
    let (rc, out, summary) = plan(repo, "main");
    assert_eq!(rc, 0, "{out}");
    assert!(summary.contains("No changes"), "{summary}");

    // One that moves the listener.
    let listener = objects.join("listener.yaml");
    let text = std::fs::read_to_string(&listener).unwrap();
    assert!(text.contains("port: 2587"));
    std::fs::write(&listener, text.replace("port: 2587", "port: 2600")).unwrap();
    git(repo, &["commit", "-qam", "move the listener"]);
    let (rc, out, summary) = plan(repo, "main");
    assert_eq!(rc, 0, "{out}");
    assert!(
        summary.contains("The gateway configuration changes"),
        "{summary}"
    );
    assert!(
        summary.contains("2587") && summary.contains("2600"),
        "{summary}"
    );
    assert!(summary.contains("```diff"), "{summary}");

    // One with a mistake: the check fails and says where.
    std::fs::write(
        &listener,
        text.replace("port: 2587", "port: 2600\n  hostnme: typo.example.org"),
    )
    .unwrap();
    git(repo, &["commit", "-qam", "typo"]);
    let (rc, out, summary) = plan(repo, "main");
    assert_eq!(rc, 1, "{out}");
    assert!(summary.contains("Errors"), "{summary}");
    assert!(summary.contains("hostnme"), "{summary}");

    // A base without the directory yet: everything is new.
    git(repo, &["checkout", "-qb", "first", "main"]);
    git(repo, &["rm", "-rq", "postern"]);
    git(repo, &["commit", "-qm", "nothing yet"]);
    git(repo, &["checkout", "-qb", "add", "main"]);
    let (rc, out, summary) = plan(repo, "first");
    assert_eq!(rc, 0, "{out}");
    assert!(summary.contains("has none of"), "{summary}");
    assert!(
        summary.contains("The gateway configuration changes"),
        "{summary}"
    );
}

/// The README's cluster quickstart compiles: the example's Secrets, profile and policies
/// with deploy/quickstart's LdapProfile and Listener, whose port is the one the chart's
/// default Service forwards to.
#[test]
fn the_cluster_quickstart_compiles_and_matches_the_chart_ports() {
    let ex = workspace_root().join("examples/certificate-only");
    let out = Command::new(workspace_bin("postern").unwrap())
        .arg("render")
        .arg("-f")
        .arg(ex.join("secrets.yaml"))
        .arg("-f")
        .arg(ex.join("smtp-auth-profile.yaml"))
        .arg("-f")
        .arg(ex.join("mail-flow-policies.yaml"))
        .arg("-f")
        .arg(deploy("quickstart"))
        .args(["-n", "postern-system"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("error"), "{stderr}");
    let rendered = helm::parse_yaml(std::str::from_utf8(&out.stdout).unwrap()).unwrap();
    let text = serde_json::to_string(&rendered).unwrap();
    assert!(text.contains("0.0.0.0"), "{text}");
    let listener = &manifests("quickstart/listener.yaml")[0];
    let port = listener["spec"]["port"].as_i64().unwrap();
    let objects = Render::default().objects().unwrap();
    let svc = helm::get(&objects, "Service", "postern-gateway").unwrap();
    let gw = helm::get(&objects, "Deployment", "postern-gateway").unwrap();
    let submission = svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "submission")
        .unwrap();
    let container_port = gw["spec"]["template"]["spec"]["containers"][0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == submission["targetPort"])
        .unwrap();
    assert_eq!(container_port["containerPort"].as_i64(), Some(port));
}
