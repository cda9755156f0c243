//! The chart on a real single-node cluster (Kubernetes 1.20, tests/support/k8s), with both
//! images built from the Dockerfile: `helm install --wait` of a fresh namespace succeeds
//! (gateways with nothing published are Ready); the gateway pods read their configuration
//! with their own ServiceAccount and the chart's RBAC only; the PodDisruptionBudget keeps a
//! gateway through evictions; the HPA renders for 1.20 and holds its minimum; each of the three
//! example sets, applied with kubectl, turns Ready and relays mail through the gateway Service
//! (certificate, AUTH, refused users, the Received line at the next hop); the optional
//! admission webhook, turned on by `helm upgrade`, is served by the controller Pods through
//! its Service and refuses a bad object at apply; `helm uninstall`
//! leaves only the CRDs and the objects; `helm upgrade` from the previous chart version works.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use postern_testkit::workspace::workspace_root;
use postern_tests::node::peers::Peers;
use postern_tests::node::release::{
    Images, all_postern_ready, example_manifests, helm_install, machine_load,
};
use postern_tests::node::{NODE_IP, Node};

const RELEASE: &str = "postern";
const GATEWAY_SA: &str = "postern-gateway";
const GATEWAY_SELECTOR: &str = "app.kubernetes.io/component=gateway";

fn install(
    node: &Node,
    ns: &str,
    chart: Option<&Path>,
    images: &Images,
    extra: &[&str],
) -> Result<Duration> {
    helm_install(node, ns, RELEASE, chart, images, extra)
}

fn service_ip(node: &Node, ns: &str) -> Result<String> {
    Ok(node
        .kubectl(&[
            "get",
            "svc",
            "-n",
            ns,
            "postern-gateway",
            "-o",
            "jsonpath={.spec.clusterIP}",
        ])?
        .trim()
        .to_owned())
}

/// swaks through the Service, inside the namespace; its whole transcript.
fn swaks(node: &Node, server: &str, args: &[&str]) -> String {
    let pki = workspace_root().join("examples/pki");
    let out = node
        .in_ns("swaks")
        .args([
            "--server",
            server,
            "--ehlo",
            "node.test",
            "--to",
            "someone@example.net",
            "--timeout",
            "20",
        ])
        .args(args)
        .current_dir(pki)
        .stdin(Stdio::null())
        .output()
        .expect("swaks runs");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// Whether a connection to `server` from the node's client namespace is greeted with
/// `220` (swaks quits after the greeting).
fn greets(node: &Node, server: &str) -> bool {
    node.in_ns("swaks")
        .args([
            "--server",
            server,
            "--quit-after",
            "connect",
            "--timeout",
            "5",
        ])
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success())
}

fn received_by_sink(peers: &Peers, id: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(m) = peers.received(id).pop() {
            return m.message;
        }
        assert!(
            Instant::now() < deadline,
            "the next hop never received {id}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A message from `user` with Subject `id` through `server`; swaks's transcript.
fn send(node: &Node, server: &str, id: &str, user: &str, args: &[String]) -> String {
    let from = format!("{user}@example.org");
    let subject = format!("Subject: {id}");
    let mut all = vec!["--from", &from, "--header", &subject];
    all.extend(args.iter().map(String::as_str));
    swaks(node, server, &all)
}

/// swaks arguments: STARTTLS with the example client certificate `name`.
fn cert(name: &str) -> Vec<String> {
    [
        "--tls",
        "--tls-cert",
        &format!("{name}.crt"),
        "--tls-key",
        &format!("{name}.key"),
    ]
    .map(String::from)
    .to_vec()
}

/// swaks arguments: STARTTLS, then AUTH PLAIN as `user` with the example password.
fn auth(user: &str) -> Vec<String> {
    [
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        user,
        "--auth-password",
        &format!("{user}-pw"),
    ]
    .map(String::from)
    .to_vec()
}

/// A message through `server` that must be relayed; checks the Received line the gateway
/// added for `user`.
fn relayed(node: &Node, peers: &Peers, server: &str, id: &str, user: &str, args: &[String]) {
    let t = send(node, server, id, user, args);
    assert!(
        t.contains("<-  250 2.0.0") || t.contains("<~  250 2.0.0"),
        "{id}: not relayed:\n{t}"
    );
    let m = received_by_sink(peers, id);
    let first = m.lines().next().unwrap_or_default();
    assert_eq!(
        first,
        format!("Received: from node.test ([{NODE_IP}])"),
        "{id}:\n{m}"
    );
    assert!(
        m.contains("\tby mail.example.org (Postern) with ESMTPS"),
        "{id}:\n{m}"
    );
    assert!(
        m.contains(&format!("(authenticated as {user} ")),
        "{id}:\n{m}"
    );
}

/// A message through `server` that must be refused with `code` and never relayed.
fn refused(
    node: &Node,
    peers: &Peers,
    server: &str,
    id: &str,
    user: &str,
    args: &[String],
    code: &str,
) {
    let t = send(node, server, id, user, args);
    assert!(
        t.contains(&format!("<~* {code}")) || t.contains(&format!("<** {code}")),
        "{id}: expected {code}:\n{t}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(peers.received(id).is_empty(), "{id} was relayed");
}

fn openssl_verifies(node: &Node, server: &str) {
    let ca = workspace_root().join("examples/pki/ca.crt");
    let out = node
        .in_ns("openssl")
        .args([
            "s_client",
            "-connect",
            server,
            "-starttls",
            "smtp",
            "-CAfile",
        ])
        .arg(ca)
        .args([
            "-verify_hostname",
            "mail.example.org",
            "-verify_return_error",
            "-brief",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Verification: OK"),
        "openssl s_client {server}:\n{text}"
    );
}

fn apply_example(node: &Node, ns: &str, set: &str) -> Result<Duration> {
    let start = Instant::now();
    node.kubectl_stdin(&["apply", "-n", ns, "-f", "-"], &example_manifests(set)?)?;
    node.kubectl(&[
        "wait",
        "-n",
        ns,
        "--for=condition=Ready",
        "postern",
        "--all",
        "--timeout=120s",
    ])
    .with_context(|| format!("examples/{set}: objects Ready"))?;
    Ok(start.elapsed())
}

fn delete_example(node: &Node, ns: &str, set: &str) -> Result<()> {
    node.kubectl_stdin(
        &["delete", "-n", ns, "--wait=true", "-f", "-"],
        &example_manifests(set)?,
    )?;
    Ok(())
}

/// The objects of `ns` (and cluster-wide) that belong to the release.
fn release_leftovers(node: &Node, ns: &str) -> Result<Vec<String>> {
    let selector = format!("app.kubernetes.io/instance={RELEASE}");
    let mut left = Vec::new();
    for (kinds, namespaced) in [
        (
            "deploy,rs,pod,svc,sa,role,rolebinding,pdb,hpa,cm,secret,networkpolicy,lease",
            true,
        ),
        ("clusterrole,clusterrolebinding", false),
    ] {
        let mut args = vec!["get", kinds, "-l", &selector, "-o", "name"];
        if namespaced {
            args.extend(["-n", ns]);
        }
        left.extend(node.kubectl(&args)?.lines().map(str::to_owned));
    }
    // Helm's release records, and what the chart creates without its labels.
    left.extend(
        node.kubectl(&["get", "secret", "-n", ns, "-l", "owner=helm", "-o", "name"])?
            .lines()
            .map(str::to_owned),
    );
    left.extend(
        node.kubectl(&["get", "gatewayreports", "-n", ns, "-o", "name"])?
            .lines()
            .map(str::to_owned),
    );
    Ok(left)
}

/// An LdapProfile whose SMTP AUTH query uses a placeholder it may not: v1.20 has no CEL
/// rules, so only the webhook refuses it at apply.
const BAD_FILTER: &str = "apiVersion: postern.dev/v1alpha1\nkind: LdapProfile\nmetadata: {name: webhook-bad}\n\
    spec: {servers: [{url: 'ldap://127.0.0.1:389'}], baseDn: 'dc=example,dc=org', \
    smtpAuthQuery: {name: auth, filter: '(uid={cn})'}}\n";

/// The admission webhook served by the controller Pods, called by the API server through
/// its Service (kube-proxy on the node): the chart turns it on, the controller makes its
/// certificate and publishes `caBundle`, a bad object is refused at `kubectl apply` and
/// `--dry-run=server` with the line `postern plan` prints, and a reference to an object
/// not created yet passes with a warning. Then it is turned off again.
fn admission_webhook_in_pods(node: &Node, ns: &str, images: &Images) -> Result<()> {
    let upgrade = |on: &str| {
        install(
            node,
            ns,
            None,
            images,
            &[
                "--reuse-values",
                "--set",
                &format!("controller.admissionWebhook.enabled={on}"),
            ],
        )
    };
    let took = upgrade("true")?;
    eprintln!("BENCH helm upgrade enabling the admission webhook, --wait: {took:?}");
    node.wait("caBundle published", Duration::from_secs(90), || {
        node.kubectl(&[
            "get",
            "validatingwebhookconfiguration",
            "postern-controller",
            "-o",
            "jsonpath={.webhooks[0].clientConfig.caBundle}",
        ])
        .is_ok_and(|b| !b.trim().is_empty())
    })?;
    let apply = |yaml: &str, extra: &[&str]| -> Result<(bool, String)> {
        let out =
            node.kubectl_stdin_output(&[&["apply", "-n", ns, "-f", "-"], extra].concat(), yaml)?;
        Ok((
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ))
    };
    // The Service may route to a Pod that is still starting: the first answers can be the
    // `Ignore` policy's pass-through, so wait for the first refusal.
    let mut out = String::new();
    node.wait(
        "the webhook refuses a bad filter",
        Duration::from_secs(60),
        || match apply(BAD_FILTER, &["--dry-run=server"]) {
            Ok((ok, o)) => {
                out = o;
                !ok
            }
            Err(_) => false,
        },
    )
    .with_context(|| out.clone())?;
    for extra in [&["--dry-run=server"][..], &[][..]] {
        let (ok, out) = apply(BAD_FILTER, extra)?;
        if ok
            || !out.contains("denied the request")
            || !out.contains("LdapProfile/webhook-bad: spec.smtpAuthQuery.filter:")
            || !out.contains("(InvalidFilter)")
        {
            bail!("{extra:?}: the webhook did not refuse with the plan's line: {out}");
        }
    }
    if node
        .kubectl(&["get", "ldapprofile", "-n", ns, "-o", "name"])?
        .contains("webhook-bad")
    {
        bail!("the refused LdapProfile was stored");
    }
    let early = "apiVersion: postern.dev/v1alpha1\nkind: Listener\nmetadata: {name: webhook-early}\n\
        spec: {port: 2599, hostname: mx.example.org, defaultMailFlowPolicyRef: {name: not-yet}, \
        nextHop: {host: 127.0.0.1, tls: Disabled}}\n";
    let (ok, out) = apply(early, &["--dry-run=server"])?;
    if !ok || !out.contains("Warning: Listener/webhook-early: spec.defaultMailFlowPolicyRef:") {
        bail!("a reference to an object not created yet: {out}");
    }
    let secret = node.get_json(&["secret", "-n", ns, "postern-controller-webhook-tls"])?;
    for key in ["ca.crt", "tls.crt", "tls.key"] {
        if !secret["data"][key].is_string() {
            bail!("the webhook certificate Secret lacks {key}");
        }
    }
    upgrade("false")?;
    if !node
        .kubectl(&["get", "validatingwebhookconfiguration", "-o", "name"])?
        .trim()
        .is_empty()
    {
        bail!("the webhook configuration outlived `enabled=false`");
    }
    // The controller made the Secret, not Helm: it stays (docs/install.md says so).
    node.kubectl(&[
        "delete",
        "secret",
        "-n",
        ns,
        "postern-controller-webhook-tls",
    ])?;
    Ok(())
}

fn uninstall_leaves_only_crds(node: &Node, ns: &str) -> Result<()> {
    node.helm(&[
        "uninstall",
        RELEASE,
        "-n",
        ns,
        "--wait",
        "--timeout",
        "120s",
    ])?;
    let mut left = Vec::new();
    node.wait(
        "nothing of the release left",
        Duration::from_secs(90),
        || {
            left = release_leftovers(node, ns).unwrap_or_else(|e| vec![e.to_string()]);
            left.is_empty()
        },
    )
    .with_context(|| format!("left after helm uninstall: {left:?}"))?;
    let crds = node.kubectl(&["get", "crd", "-o", "name"])?;
    for kind in [
        "listeners",
        "ldapprofiles",
        "mailflowpolicies",
        "smtpauthprofiles",
        "crlsources",
        "gatewayreports",
    ] {
        if !crds.contains(&format!("{kind}.postern.dev")) {
            bail!("CRD {kind}.postern.dev was removed by helm uninstall:\n{crds}");
        }
    }
    Ok(())
}

fn gateway_rbac_only(node: &Node, ns: &str) -> Result<()> {
    let pods = node.get_json(&["pods", "-n", ns, "-l", GATEWAY_SELECTOR])?;
    let items = pods["items"].as_array().context("pods")?;
    assert!(!items.is_empty());
    for p in items {
        let spec = &p["spec"];
        assert_eq!(
            spec["serviceAccountName"], GATEWAY_SA,
            "{}",
            p["metadata"]["name"]
        );
        // Nothing but the chart's volumes and the ServiceAccount token: no kubeconfig,
        // no other credentials.
        for v in spec["volumes"].as_array().into_iter().flatten() {
            let name = v["name"].as_str().unwrap_or_default();
            assert!(
                ["tmp", "cache"].contains(&name)
                    || name.starts_with(&format!("{GATEWAY_SA}-token-"))
                    || name.starts_with("kube-api-access-"),
                "unexpected volume {v}"
            );
        }
        let env = serde_json::to_string(&spec["containers"][0]["env"])?;
        assert!(!env.contains("KUBECONFIG"), "{env}");
    }
    let who = format!("system:serviceaccount:{ns}:{GATEWAY_SA}");
    let can = |verb: &str, what: &str| -> bool {
        node.kubectl_output(&["auth", "can-i", verb, what, "-n", ns, "--as", &who])
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "yes")
            .unwrap_or(false)
    };
    assert!(
        can("get", "secret/postern-config"),
        "the gateway reads its rendered Secret"
    );
    assert!(
        can("create", "gatewayreports.postern.dev"),
        "the gateway writes its report"
    );
    for (verb, what) in [
        ("get", "secret/other"),
        ("list", "secrets"),
        ("list", "pods"),
        ("update", "leases.coordination.k8s.io"),
        ("get", "listeners.postern.dev"),
        ("update", "listeners.postern.dev/status"),
    ] {
        assert!(!can(verb, what), "the gateway may {verb} {what}");
    }
    Ok(())
}

/// Each gateway pod runs the published configuration (hash of the rendered Secret), which it
/// could only read through the API with its own token.
fn gateways_run_published(node: &Node, ns: &str) -> bool {
    let Ok(secret) = node.get_json(&["secret", "-n", ns, "postern-config"]) else {
        return false;
    };
    let hash = secret["metadata"]["annotations"]["postern.dev/config-hash"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let Ok(pods) = node.pods(ns, GATEWAY_SELECTOR) else {
        return false;
    };
    !hash.is_empty()
        && !pods.is_empty()
        && pods.iter().filter(|p| !p.deleting).all(|p| {
            node.http_get(&format!("http://{}:9090/config", p.ip))
                .ok()
                .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
                .is_some_and(|c| c["hash"] == hash.as_str())
        })
}

fn evict(node: &Node, ns: &str, pod: &str) -> Result<String> {
    let body = serde_json::json!({
        "apiVersion": "policy/v1beta1", "kind": "Eviction",
        "metadata": {"name": pod, "namespace": ns}});
    let path = format!("/api/v1/namespaces/{ns}/pods/{pod}/eviction");
    let out =
        node.kubectl_stdin_output(&["create", "--raw", &path, "-f", "-"], &body.to_string())?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

fn pdb_keeps_a_gateway(node: &Node, ns: &str) -> Result<()> {
    node.wait(
        "two gateways, none terminating",
        Duration::from_secs(120),
        || {
            node.pods(ns, GATEWAY_SELECTOR)
                .is_ok_and(|p| p.len() == 2 && p.iter().all(|p| p.ready && !p.deleting))
        },
    )?;
    let pods = node.pods(ns, GATEWAY_SELECTOR)?;
    node.wait(
        "the PDB counts two healthy gateways",
        Duration::from_secs(30),
        || {
            node.kubectl(&[
                "get",
                "pdb",
                "-n",
                ns,
                "postern-gateway",
                "-o",
                "jsonpath={.status.disruptionsAllowed}",
            ])
            .is_ok_and(|s| s.trim() == "1")
        },
    )?;
    let first = evict(node, ns, &pods[0].name)?;
    assert!(
        !first.contains("disruption budget"),
        "the first eviction is allowed: {first}"
    );
    let second = evict(node, ns, &pods[1].name)?;
    assert!(
        second.contains("disruption budget"),
        "the second eviction must wait for the budget: {second}"
    );
    assert!(
        node.pods(ns, GATEWAY_SELECTOR)?
            .iter()
            .any(|p| p.name == pods[1].name && p.ready && !p.deleting)
    );
    node.kubectl(&[
        "rollout",
        "status",
        "-n",
        ns,
        "deploy/postern-gateway",
        "--timeout=120s",
    ])?;
    Ok(())
}

fn hpa_on_1_20(node: &Node, ns: &str, images: &Images) -> Result<()> {
    let upgrade = |sets: &[&str]| {
        install(
            node,
            ns,
            None,
            images,
            &[&["--reuse-values"], sets].concat(),
        )
    };
    upgrade(&[
        "--set",
        "gateway.autoscaling.enabled=true",
        "--set",
        "gateway.autoscaling.minReplicas=3",
    ])?;
    let hpa = node.get_json(&["hpa.v2beta2.autoscaling", "-n", ns, "postern-gateway"])?;
    assert_eq!(hpa["spec"]["minReplicas"], 3);
    let deploy = node.get_json(&["deploy", "-n", ns, "postern-gateway"])?;
    let managed = serde_json::to_string(&deploy["metadata"]["managedFields"])?;
    // The HPA (no metrics-server here) still raises the Deployment to its minimum.
    node.wait(
        "the HPA scales the gateways to minReplicas",
        Duration::from_secs(90),
        || {
            node.pods(ns, GATEWAY_SELECTOR)
                .is_ok_and(|p| p.iter().filter(|p| p.ready && !p.deleting).count() == 3)
        },
    )
    .with_context(|| managed.clone())?;
    upgrade(&["--set", "gateway.autoscaling.enabled=false"])?;
    assert!(
        node.kubectl(&["get", "hpa", "-n", ns, "-o", "name"])?
            .trim()
            .is_empty()
    );
    node.kubectl(&["scale", "-n", ns, "deploy/postern-gateway", "--replicas=2"])?;
    node.wait("two gateways again", Duration::from_secs(90), || {
        node.pods(ns, GATEWAY_SELECTOR)
            .is_ok_and(|p| p.len() == 2 && p.iter().all(|p| p.ready))
    })?;
    Ok(())
}

/// Applies `examples/<set>`, waits until every object is Ready and every gateway runs it,
/// and checks the certificate the Service presents on `port`; the Service's address.
fn serve_example(node: &Node, ns: &str, ip: &str, set: &str, port: u16) -> Result<String> {
    let took = apply_example(node, ns, set)?;
    eprintln!("BENCH apply examples/{set} -> all Ready through the pods: {took:?}");
    node.wait(
        &format!("the gateways run {set}"),
        Duration::from_secs(60),
        || gateways_run_published(node, ns),
    )?;
    let server = format!("{ip}:{port}");
    openssl_verifies(node, &server);
    Ok(server)
}

fn examples_relay_mail(node: &Node, ns: &str, peers: &Peers) -> Result<()> {
    let ip = service_ip(node, ns)?;
    // A. certificate only.
    let server = serve_example(node, ns, &ip, "certificate-only", 2587)?;
    relayed(
        node,
        peers,
        &server,
        "node-a-alice",
        "alice",
        &cert("alice"),
    );
    refused(
        node,
        peers,
        &server,
        "node-a-mallory",
        "mallory",
        &cert("mallory"),
        "5",
    );
    refused(
        node,
        peers,
        &server,
        "node-a-revoked",
        "revoked",
        &cert("revoked"),
        "5",
    );
    delete_example(node, ns, "certificate-only")?;

    // B. SMTP AUTH against LDAP.
    let server = serve_example(node, ns, &ip, "ldap-auth", 2588)?;
    relayed(node, peers, &server, "node-b-bob", "bob", &auth("bob"));
    refused(
        node,
        peers,
        &server,
        "node-b-carol",
        "carol",
        &auth("carol"),
        "5",
    );
    relayed(
        node,
        peers,
        &format!("{ip}:2598"),
        "node-b-carol-monitor",
        "carol",
        &auth("carol"),
    );
    delete_example(node, ns, "ldap-auth")?;

    // C. certificate, or AUTH for users allowed without a CAC.
    let server = serve_example(node, ns, &ip, "either", 2589)?;
    relayed(
        node,
        peers,
        &server,
        "node-c-alice",
        "alice",
        &cert("alice"),
    );
    relayed(node, peers, &server, "node-c-bob", "bob", &auth("bob"));
    refused(
        node,
        peers,
        &server,
        "node-c-carol",
        "carol",
        &auth("carol"),
        "525",
    );
    delete_example(node, ns, "either")?;
    Ok(())
}

/// The previous version of the chart: `charts/postern` as published before preStop, the
/// HPA and the default spread constraints were added (no chart package or tag exists; the
/// version field stayed 0.1.0). Needs the git history (not a shallow clone).
const PREVIOUS_CHART_COMMIT: &str = "34fa0dd6d329adf5a239d94314e7d37ad97ae754";

fn previous_chart() -> Result<(tempfile::TempDir, PathBuf, String)> {
    let root = workspace_root();
    let git = |args: &[&str]| -> Result<std::process::Output> {
        Ok(std::process::Command::new("git")
            .current_dir(&root)
            .args(args)
            .output()?)
    };
    let previous = PREVIOUS_CHART_COMMIT;
    let archive = git(&["archive", "--format=tar", previous, "charts/postern"])?;
    if !archive.status.success() {
        bail!(
            "the previous chart (charts/postern of {previous}) is not in the git history (a shallow clone? \
             git fetch --unshallow): {}",
            String::from_utf8_lossy(&archive.stderr)
        );
    }
    let dir = tempfile::Builder::new()
        .prefix("postern-prev-chart-")
        .tempdir()?;
    let out = postern_testkit::process::output_with_stdin(
        std::process::Command::new("tar")
            .arg("-x")
            .arg("-C")
            .arg(dir.path()),
        &archive.stdout,
    )?;
    if !out.status.success() {
        bail!(
            "unpacking charts/postern of {previous}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let path = dir.path().join("charts/postern");
    Ok((dir, path, previous.to_owned()))
}

fn upgrade_from_previous(node: &Node, images: &Images, peers: &Peers) -> Result<()> {
    let ns = "postern-upgrade";
    let (_keep, old, commit) = previous_chart()?;
    eprintln!("previous chart: charts/postern of {commit}");
    install(node, ns, Some(&old), images, &[])?;
    apply_example(node, ns, "either")?;
    let ip = service_ip(node, ns)?;
    relayed(
        node,
        peers,
        &format!("{ip}:2589"),
        "node-up-before",
        "bob",
        &auth("bob"),
    );
    let took = install(node, ns, None, images, &["--reuse-values"])?;
    eprintln!("BENCH helm upgrade from the previous chart, --wait: {took:?}");
    let deploy = node.get_json(&["deploy", "-n", ns, "postern-gateway"])?;
    assert!(
        deploy["spec"]["template"]["spec"]["containers"][0]["lifecycle"]["preStop"].is_object()
    );
    node.wait(
        "the upgraded gateways run the configuration",
        Duration::from_secs(60),
        || gateways_run_published(node, ns),
    )?;
    assert!(all_postern_ready(node, ns));
    // `helm --wait` returns once the new pods are Ready, but kube-proxy reprograms the
    // Service's rules on its own schedule: for a moment its address can still lead to a
    // pod the rollout replaced (a connect timeout), and while the rules hold both, one
    // greeting can come from the new pod and the next connection go to the old one. Wait
    // until it greets several times in a row.
    node.wait(
        "the Service to reach only the upgraded gateways",
        Duration::from_secs(90),
        || (0..6).all(|_| greets(node, &format!("{ip}:2589"))),
    )?;
    relayed(
        node,
        peers,
        &format!("{ip}:2589"),
        "node-up-after",
        "bob",
        &auth("bob"),
    );
    uninstall_leaves_only_crds(node, ns)?;
    // The objects stay (documented): the Listener still exists after the uninstall.
    assert!(
        node.kubectl(&["get", "listeners", "-n", ns, "-o", "name"])?
            .contains("listener")
    );
    Ok(())
}

#[test]
fn the_chart_installs_serves_mail_and_uninstalls_on_a_node() {
    let node = Node::up().expect("the single-node cluster");
    eprintln!("cluster up in {:?} ({})", node.startup, machine_load());
    let tag = format!("t{}", std::process::id());
    let images = Images::build(&tag).expect("both images built and loaded");
    let peers =
        Peers::start(&node).expect("slapd, smtp-sink and the CRL server on the node address");
    let ns = "postern-node";

    // A fresh install with no Postern object is healthy: --wait returns.
    let took =
        install(&node, ns, None, &images, &[]).expect("helm install --wait on a fresh namespace");
    eprintln!(
        "BENCH helm install --wait -> all pods Ready (no Postern objects): {took:?} ({})",
        machine_load()
    );
    let pods = node.pods(ns, GATEWAY_SELECTOR).unwrap();
    for p in pods.iter().filter(|p| !p.deleting) {
        let config = node
            .http_get(&format!("http://{}:9090/config", p.ip))
            .unwrap();
        let c: serde_json::Value = serde_json::from_str(&config).unwrap();
        assert_eq!(c["listeners"], serde_json::json!([]), "{config}");
        assert_eq!(c["ready"], true, "{config}");
    }

    gateway_rbac_only(&node, ns).expect("gateway RBAC");
    pdb_keeps_a_gateway(&node, ns).expect("PDB");
    hpa_on_1_20(&node, ns, &images).expect("HPA");
    examples_relay_mail(&node, ns, &peers).expect("the three example sets");
    admission_webhook_in_pods(&node, ns, &images)
        .expect("the admission webhook in the controller Pods");
    uninstall_leaves_only_crds(&node, ns).expect("helm uninstall");
    upgrade_from_previous(&node, &images, &peers).expect("helm upgrade from the previous chart");
}
