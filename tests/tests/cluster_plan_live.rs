//! `postern plan --live` on a real repository layout, against kube-apiserver with the
//! controller running and the example sets applied: a partial directory is laid over the
//! live objects (one changed file shows that change only), Secrets kept out of git are
//! read from the cluster (presence, type and key names, never content), an invalid change shows
//! its own error, and `--prune` plans the removal of live objects not in the files.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use postern_testkit::workspace::workspace_bin;
use postern_tests::cluster::{ControllerProcess, ControllerSpec};
use postern_tests::kube::{KubeCluster, wait_until};

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// Exit code, stdout, stderr of `postern plan --live -n NS -f DIR [extra]`.
fn plan(cluster: &KubeCluster, ns: &str, dir: &Path, extra: &[&str]) -> (i32, String, String) {
    let out = Command::new(workspace_bin("postern").unwrap())
        .args(["plan", "--live", "-n", ns, "-f"])
        .arg(dir)
        .args(extra)
        .env("KUBECONFIG", cluster.kubeconfig())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A directory holding copies of `files` of example set `set`, each passed through `edit`.
fn partial(set: &str, files: &[&str], edit: impl Fn(&str, String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in files {
        let text = std::fs::read_to_string(examples().join(set).join(f)).unwrap();
        std::fs::write(dir.path().join(f), edit(f, text)).unwrap();
    }
    dir
}

/// The example set's files but its Secrets (as docs/gitops.md recommends keeping them).
fn without_secrets(set: &str) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(examples().join(set))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".yaml") && f != "secrets.yaml")
        .collect();
    files.sort();
    files
}

/// Applies example set `set` into a new namespace with a controller, and waits until
/// the files (all of them) plan as "no change".
fn applied(cluster: &KubeCluster, set: &str) -> (String, ControllerProcess) {
    let ns = cluster.create_namespace(&format!("plan-{set}")).unwrap();
    let ctl = ControllerProcess::start(cluster, &ControllerSpec::new(&ns, &format!("ctl-{set}")))
        .unwrap();
    cluster.apply_path(&ns, &examples().join(set)).unwrap();
    wait_until(Duration::from_secs(60), &format!("{set} published"), || {
        let (code, stdout, stderr) = plan(cluster, &ns, &examples().join(set), &[]);
        if code == 0 {
            Ok(Some(()))
        } else {
            anyhow::bail!("exit {code}: {stdout}{stderr}")
        }
    })
    .unwrap();
    (ns, ctl)
}

#[test]
fn a_directory_without_its_secrets_plans_against_the_live_namespace() {
    let cluster = KubeCluster::shared();
    for set in ["certificate-only", "ldap-auth", "either"] {
        let (ns, _ctl) = applied(cluster, set);
        let files = without_secrets(set);
        let names: Vec<&str> = files.iter().map(String::as_str).collect();
        let dir = partial(set, &names, |_, t| t);
        let (code, stdout, stderr) = plan(cluster, &ns, dir.path(), &[]);
        assert_eq!(code, 0, "{set}: {stdout}{stderr}");
        assert!(stdout.contains("No changes."), "{set}: {stdout}{stderr}");
        assert!(
            stderr.contains(
                "note: Secret/gateway-tls: read from the cluster (kubernetes.io/tls; keys tls.crt, tls.key)"
            ),
            "{set}: {stderr}"
        );
        // Presence, type and key names only: no key, certificate or password is printed,
        // nor a digest of one.
        let all = format!("{stdout}{stderr}");
        assert!(!all.contains("BEGIN"), "{set}: {all}");
        assert!(!all.contains("postern-bind-pw"), "{set}: {all}");
    }
}

#[test]
fn one_changed_file_shows_that_change_its_errors_and_with_prune_the_removals() {
    let cluster = KubeCluster::shared();
    let (ns, _ctl) = applied(cluster, "either");

    // One changed file, nothing else: that change only, no removals.
    let one = partial("either", &["mail-flow-policies.yaml"], |_, t| {
        t.replace("maxRecipients: 100", "maxRecipients: 50")
    });
    let (code, stdout, stderr) = plan(cluster, &ns, one.path(), &[]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stdout.contains("Objects (the files against namespace")
            && stdout.contains("0 to add, 1 to change, 0 to remove; 1 unchanged")
            && stdout.contains("  ~ MailFlowPolicy/relayed\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Plan: 0 to add, 1 to change, 0 to remove."),
        "{stdout}"
    );
    assert!(stdout.contains("maxRecipients: 100 -> 50"), "{stdout}");
    assert!(!stderr.contains("error"), "{stderr}");

    // An invalid change in that one file: its own error, exit 1, nothing removed.
    let broken = partial("either", &["listener.yaml"], |_, t| {
        t.replace(
            "defaultMailFlowPolicyRef: {name: relayed}",
            "defaultMailFlowPolicyRef: {name: nope}",
        )
    });
    let (code, stdout, stderr) = plan(cluster, &ns, broken.path(), &[]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains("Listener/submission") && stderr.contains("nope"),
        "{stderr}"
    );
    assert!(stdout.contains("  ~ Listener/submission\n"), "{stdout}");
    assert!(!stdout.contains("(removed)"), "{stdout}");
    assert_eq!(
        stderr.matches("error:").count(),
        1,
        "only the listener's error: {stderr}"
    );

    // A new object in the files is an addition.
    let added = partial("either", &["mail-flow-policies.yaml"], |_, t| {
        format!(
            "{t}---\napiVersion: postern.dev/v1alpha1\nkind: MailFlowPolicy\n\
             metadata: {{name: quarantine}}\nspec: {{action: Reject, tls: Disabled}}\n"
        )
    });
    let (code, stdout, stderr) = plan(cluster, &ns, added.path(), &[]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stdout.contains("  + MailFlowPolicy/quarantine (new)"),
        "{stdout}"
    );

    // --prune: the files are the whole set; the live objects not in them are removed.
    let (code, stdout, stderr) = plan(cluster, &ns, one.path(), &["--prune"]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    for removed in [
        "Listener/submission",
        "SmtpAuthProfile/cac-cert",
        "SmtpAuthProfile/ldap-auth",
        "LdapProfile/corp-ldap",
    ] {
        assert!(
            stdout.contains(&format!("  - {removed} (removed)")),
            "{removed}: {stdout}"
        );
    }
    assert!(stdout.contains("(--prune)"), "{stdout}");
    assert!(stdout.contains("  - submission (removed)"), "{stdout}");
}
