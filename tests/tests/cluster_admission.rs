//! The optional admission webhook against a real kube-apiserver: the controller makes its
//! certificate (Secret) and publishes the CA in the ValidatingWebhookConfiguration; an
//! object the compiler refuses in its namespace is refused at `kubectl apply` and
//! `--dry-run=server` with the line `postern plan` prints; a valid one passes; a reference
//! to an object not created yet passes with a warning; with the controller down and
//! `failurePolicy: Ignore`, applies go through.
//!
//! The standalone API server has no kube-proxy, so the configuration calls the controller
//! by `url:` on loopback (the chart's calls it through its Service). It selects only this
//! test's namespace (by a label of its own: v1.20 does not label namespaces by name), so
//! other tests sharing the API server never reach it.

use std::process::Command;
use std::time::Duration;

use anyhow::{Result, bail};
use postern_testkit::ports::free_port;
use postern_testkit::workspace::workspace_bin;
use postern_tests::cluster::{ControllerProcess, ControllerSpec};
use postern_tests::kube::{KubeCluster, User, random_hex, wait_until};

/// `kubectl apply` of `yaml` (with extra `args`): (succeeded, stdout + stderr).
fn kubectl_apply(cluster: &KubeCluster, ns: &str, yaml: &str, args: &[&str]) -> (bool, String) {
    let mut cmd = cluster.kubectl_cmd(User::Admin);
    cmd.args(["apply", "-n", ns, "-f", "-"]).args(args);
    let out = postern_testkit::process::output_with_stdin(&mut cmd, yaml.as_bytes())
        .expect("kubectl runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// What `postern plan` says about `yaml` (its stderr), for comparing messages.
fn plan_lines(yaml: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("objects.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out = Command::new(workspace_bin("postern").unwrap())
        .args(["plan", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const POLICY: &str = "apiVersion: postern.dev/v1alpha1\nkind: MailFlowPolicy\nmetadata: {name: open}\nspec: {action: Relay, tls: Disabled}\n";

fn listener(name: &str, port: u16, policy: &str) -> String {
    format!(
        "apiVersion: postern.dev/v1alpha1\nkind: Listener\nmetadata: {{name: {name}}}\n\
         spec: {{port: {port}, hostname: mx.example.org, defaultMailFlowPolicyRef: {{name: {policy}}}, \
         nextHop: {{host: 127.0.0.1, tls: Disabled}}}}\n"
    )
}

/// An LdapProfile whose SMTP AUTH query uses a placeholder it may not: the v1.20 API
/// server has no CEL rules, so only the webhook can refuse it.
const BAD_FILTER: &str = "apiVersion: postern.dev/v1alpha1\nkind: LdapProfile\nmetadata: {name: corp}\n\
    spec: {servers: [{url: 'ldap://127.0.0.1:389'}], baseDn: 'dc=example,dc=org', \
    smtpAuthQuery: {name: auth, filter: '(uid={cn})'}}\n";

fn webhook_configuration(name: &str, ns: &str, port: u16) -> String {
    format!(
        "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\n\
         metadata: {{name: {name}}}\n\
         webhooks:\n- name: resources.postern.dev\n  admissionReviewVersions: [v1]\n  sideEffects: None\n  \
         failurePolicy: Ignore\n  timeoutSeconds: 5\n  \
         clientConfig: {{url: 'https://127.0.0.1:{port}/validate'}}\n  \
         namespaceSelector: {{matchLabels: {{postern-admission-test: {ns}}}}}\n  \
         rules:\n  - apiGroups: [postern.dev]\n    apiVersions: ['*']\n    operations: [CREATE, UPDATE]\n    \
         resources: [ldapprofiles, smtpauthprofiles, mailflowpolicies, listeners, crlsources]\n"
    )
}

fn ca_bundle(cluster: &KubeCluster, name: &str) -> Result<String> {
    cluster.kubectl(&[
        "get",
        "validatingwebhookconfiguration",
        name,
        "-o",
        "jsonpath={.webhooks[0].clientConfig.caBundle}",
    ])
}

#[test]
fn the_webhook_refuses_what_plan_refuses_and_lets_references_wait() -> Result<()> {
    let cluster = KubeCluster::shared();
    let ns = cluster.create_namespace("admission")?;
    cluster.kubectl(&[
        "label",
        "namespace",
        &ns,
        &format!("postern-admission-test={ns}"),
    ])?;
    let port = free_port();
    let vwc = format!("postern-admission-{}", random_hex(6));
    cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        &webhook_configuration(&vwc, &ns, port),
    )?;
    let mut spec = ControllerSpec::new(&ns, "admission-0");
    spec.extra = [
        "--webhook-address",
        &format!("127.0.0.1:{port}"),
        "--webhook-host",
        "127.0.0.1",
        "--webhook-configuration",
        &vwc,
    ]
    .map(str::to_owned)
    .to_vec();
    let mut controller = ControllerProcess::start(cluster, &spec)?;
    controller.wait_ready()?;
    // The controller made its certificate, stored it, and published its CA.
    wait_until(Duration::from_secs(20), "caBundle published", || {
        Ok((!ca_bundle(cluster, &vwc)?.is_empty()).then_some(()))
    })?;
    let secret = cluster
        .get_json(&ns, "secret", "postern-webhook-tls")?
        .expect("the certificate Secret exists");
    for key in ["ca.crt", "ca.key", "tls.crt", "tls.key"] {
        assert!(secret["data"][key].is_string(), "{key}");
    }

    // A valid object passes, silently.
    let (ok, out) = kubectl_apply(cluster, &ns, POLICY, &[]);
    assert!(ok, "{out}");
    assert!(!out.contains("Warning"), "{out}");
    let (ok, out) = kubectl_apply(cluster, &ns, &listener("first", 2525, "open"), &[]);
    assert!(ok, "{out}");

    // A reference to an object not created yet passes, with a warning.
    let (ok, out) = kubectl_apply(cluster, &ns, &listener("early", 2526, "later"), &[]);
    assert!(ok, "{out}");
    assert!(
        out.contains("Warning: Listener/early: spec.defaultMailFlowPolicyRef: MailFlowPolicy \"later\" not found (RefNotFound)"),
        "{out}"
    );

    // An unknown placeholder: refused at apply and at --dry-run=server, with the plan's line.
    let plan = plan_lines(BAD_FILTER);
    let line = plan
        .lines()
        .find(|l| l.contains("LdapProfile/corp: spec.smtpAuthQuery.filter:"))
        .unwrap_or_else(|| panic!("plan says: {plan}"));
    let expected = &line[line.find("LdapProfile/corp").unwrap()..];
    assert!(expected.ends_with("(InvalidFilter)"), "{expected}");
    for args in [&[][..], &["--dry-run=server"][..]] {
        let (ok, out) = kubectl_apply(cluster, &ns, BAD_FILTER, args);
        assert!(!ok, "{args:?}: accepted: {out}");
        assert!(out.contains("denied the request"), "{args:?}: {out}");
        assert!(
            out.contains(expected),
            "{args:?}: {out}\nexpected: {expected}"
        );
    }
    assert!(cluster.get_json(&ns, "ldapprofile", "corp")?.is_none());

    // Two Listeners on one port: a cross-object problem, in the namespace's context.
    let (ok, out) = kubectl_apply(cluster, &ns, &listener("second", 2525, "open"), &[]);
    assert!(!ok, "accepted: {out}");
    assert!(
        out.contains("Listener/second: spec.port: port 2525")
            && out.contains("Listener \"first\"")
            && out.contains("(PortConflict)"),
        "{out}"
    );
    // Changing the existing object itself is judged against the others, not itself.
    let (ok, out) = kubectl_apply(
        cluster,
        &ns,
        &listener("first", 2525, "open").replace("mx.example.org", "mx2.example.org"),
        &[],
    );
    assert!(ok, "{out}");

    let refused =
        controller.metric("postern_controller_admission_reviews_total{decision=\"refused\"}")?;
    assert!(refused >= 3.0, "{refused}\n{}", controller.metrics_text()?);

    // The webhook down, failurePolicy Ignore: the apply goes through (status will tell).
    controller.stop()?;
    let (ok, out) = kubectl_apply(cluster, &ns, BAD_FILTER, &[]);
    if !ok {
        bail!("with the webhook down and failurePolicy Ignore, the apply failed: {out}");
    }
    cluster.kubectl(&["delete", "validatingwebhookconfiguration", &vwc])?;
    Ok(())
}
