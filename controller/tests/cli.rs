//! The built `postern` binary: `render` and `plan` on the examples, exit codes
//! 0 (no change) / 2 (changes) / 1 (errors), stdin, and usage errors.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use postern_config::{GatewayConfig, validate};

fn postern() -> Command {
    Command::new(env!("CARGO_BIN_EXE_postern"))
}

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("run postern");
    (
        status.code().expect("exit code"),
        String::from_utf8(stdout).unwrap(),
        String::from_utf8(stderr).unwrap(),
    )
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
}

#[test]
fn plan_exit_codes_follow_terraform() {
    let tmp = tempfile::tempdir().unwrap();
    let rendered = tmp.path().join("either.yaml");
    let either = example("either");

    // Against nothing: everything is added.
    let (code, out, err) = run(postern().args(["plan", "-f"]).arg(&either));
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        out.contains("Plan: 6 to add, 0 to change, 0 to remove."),
        "{out}"
    );
    assert!(out.contains("  + submission (new)"), "{out}");
    assert!(
        !out.contains("postern-bind-pw"),
        "a secret was printed:\n{out}"
    );
    assert!(out.contains("bind.password: (sensitive value)"), "{out}");

    // Render, then plan against the rendering: no change.
    let (code, _, err) = run(postern()
        .args(["render", "-f"])
        .arg(&either)
        .arg("-o")
        .arg(&rendered));
    assert_eq!(code, 0, "{err}");
    let config = GatewayConfig::load(&rendered).unwrap();
    validate(&config).unwrap();
    let (code, out, err) = run(postern()
        .args(["plan", "-f"])
        .arg(&either)
        .arg("--against")
        .arg(&rendered));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("No changes"), "{out}");

    // A field change in the example: a readable diff, exit 2.
    let changed = tmp.path().join("changed");
    copy_dir(&either, &changed);
    let listener = changed.join("listener.yaml");
    let text = std::fs::read_to_string(&listener)
        .unwrap()
        .replace("port: 2589", "port: 2590");
    std::fs::write(&listener, text).unwrap();
    let secrets = changed.join("secrets.yaml");
    let text = std::fs::read_to_string(&secrets)
        .unwrap()
        .replace("postern-bind-pw", "rotated-pw");
    std::fs::write(&secrets, text).unwrap();
    let (code, out, err) = run(postern()
        .args(["plan", "-f"])
        .arg(&changed)
        .arg("--against")
        .arg(&rendered));
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        out.contains("Plan: 0 to add, 2 to change, 0 to remove."),
        "{out}"
    );
    assert!(
        out.contains("Listeners\n  ~ submission\n      ~ port: 2589 -> 2590"),
        "{out}"
    );
    assert!(
        out.contains("~ bind.password: (sensitive value changed)"),
        "{out}"
    );
    assert!(
        !out.contains("rotated-pw") && !out.contains("postern-bind-pw"),
        "{out}"
    );

    // An error: exit 1, the diagnostic names file, object and field.
    let broken = tmp.path().join("broken");
    copy_dir(&either, &broken);
    let policies = broken.join("mail-flow-policies.yaml");
    let text =
        std::fs::read_to_string(&policies)
            .unwrap()
            .replacen("tls: Preferred", "tls: Off", 1);
    std::fs::write(&policies, text).unwrap();
    let (code, out, err) = run(postern()
        .args(["plan", "-f"])
        .arg(&broken)
        .arg("--against")
        .arg(&rendered));
    assert_eq!(code, 1, "{out}{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_default();
    assert!(
        line.contains("mail-flow-policies.yaml:")
            && line.contains("MailFlowPolicy/relayed: spec.tls: unknown variant `Off`"),
        "{err}"
    );
    // ... and the previous rendering of the broken policy stays: nothing else changes.
    assert!(out.contains("No changes"), "{out}");
    assert!(
        err.contains("its previous rendering (from --against) stays in service"),
        "{err}"
    );

    // render refuses to write a configuration when there are errors.
    let not_written = tmp.path().join("not-written.yaml");
    let (code, _, err) = run(postern()
        .args(["render", "-f"])
        .arg(&broken)
        .arg("-o")
        .arg(&not_written));
    assert_eq!(code, 1, "{err}");
    assert!(!not_written.exists());
}

#[test]
fn stdin_and_files_render_the_same() {
    let dir = example("ldap-auth");
    let (code, from_dir, err) = run(postern().args(["render", "-f"]).arg(&dir));
    assert_eq!(code, 0, "{err}");
    let mut all = String::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        all.push_str(&std::fs::read_to_string(f).unwrap());
        all.push_str("\n---\n");
    }
    let mut child = postern()
        .args(["render", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(all.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), from_dir);
}

#[test]
fn usage_errors_exit_1_not_2() {
    let (code, _, err) = run(postern().args(["plan"]));
    assert_eq!(code, 1, "{err}");
    let (code, _, err) = run(postern().args(["plan", "-f", "x", "--bogus"]));
    assert_eq!(code, 1, "{err}");
    let (code, _, err) = run(postern().args(["plan", "-f", "/nonexistent/manifests"]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("/nonexistent/manifests"), "{err}");
    let (code, out, _) = run(postern().args(["--help"]));
    assert_eq!(code, 0);
    assert!(out.contains("render") && out.contains("plan"), "{out}");
}

#[test]
fn namespaces() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a.yaml");
    std::fs::write(
        &a,
        "apiVersion: postern.dev/v1alpha1\nkind: MailFlowPolicy\nmetadata: {name: p, namespace: mail}\nspec: {action: Reject}\n---\n\
         apiVersion: postern.dev/v1alpha1\nkind: MailFlowPolicy\nmetadata: {name: q, namespace: other}\nspec: {action: Reject}\n",
    )
    .unwrap();
    let (code, _, err) = run(postern().args(["render", "-f"]).arg(&a));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("several namespaces (mail, other)"), "{err}");
    let (code, out, err) = run(postern().args(["render", "-n", "mail", "-f"]).arg(&a));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("namespace: mail") && out.contains("  p:") && !out.contains("  q:"),
        "{out}"
    );
    assert!(err.contains("skipped 1 document"), "{err}");
}

/// Security issue 12, item 10: a certificate query that binds neither `{issuer}` nor
/// `{fp}` on a Listener that trusts two CAs is a warning — on the LdapProfile, naming the
/// field, the Listener and why — in `postern plan`'s and `postern render`'s output; the
/// configuration still renders (a single-CA setup stays valid), and the issuer-bound form
/// of the examples gives no warning.
#[test]
fn plan_and_render_warn_when_a_certificate_query_is_not_bound_to_the_issuer() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("either");
    copy_dir(&example("either"), &dir);
    // The example is issuer-bound: no warning, even with a second CA.
    let ca = std::fs::read_to_string(example("pki/ca.crt")).unwrap();
    let server = std::fs::read_to_string(example("pki/server.crt")).unwrap();
    let second: String = server.lines().map(|l| format!("    {l}\n")).collect();
    let secrets = std::fs::read_to_string(dir.join("secrets.yaml")).unwrap();
    let last_ca_line = format!("    {}\n", ca.trim_end().lines().last().unwrap());
    let at = secrets.rfind(&last_ca_line).unwrap() + last_ca_line.len();
    let two_cas = format!("{}{second}{}", &secrets[..at], &secrets[at..]);
    std::fs::write(dir.join("secrets.yaml"), two_cas).unwrap();
    let (code, out, err) = run(postern().args(["plan", "-f"]).arg(&dir));
    assert_eq!(code, 2, "{out}{err}");
    assert!(!err.contains("IssuerNotBound"), "{err}");

    // The appliance manual's CN + serial filter.
    let profile = dir.join("ldap-profile.yaml");
    let text = std::fs::read_to_string(&profile).unwrap();
    std::fs::write(&profile, text.replace("(cacissuer={issuer})", "")).unwrap();
    let (code, out, err) = run(postern().args(["plan", "-f"]).arg(&dir));
    assert_eq!(code, 2, "warnings do not fail the plan: {out}{err}");
    let line = err
        .lines()
        .find(|l| l.contains("IssuerNotBound"))
        .unwrap_or_else(|| panic!("no warning:\n{err}"));
    for part in [
        "warning: ",
        "ldap-profile.yaml:",
        "LdapProfile/corp-ldap: spec.certificateAuthQuery.filter: ",
        "{cn} {sn} only",
        "Listener \"submission\" trusts 2 CA certificates",
        "(cacissuer={issuer})",
    ] {
        assert!(line.contains(part), "{part:?} not in {line}");
    }
    let (code, out, err) = run(postern()
        .args(["render", "-f"])
        .arg(&dir)
        .arg("-o")
        .arg(tmp.path().join("out.yaml")));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.lines()
            .any(|l| l.starts_with("warning: ") && l.contains("IssuerNotBound")),
        "{err}"
    );
}

/// A GitOps directory holds kustomize's own file beside the objects (often without
/// `apiVersion`/`kind`): it is skipped with a note, not an error, and the plan is the same.
#[test]
fn a_kustomization_file_is_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("either");
    copy_dir(&example("either"), &dir);
    let (code, plain, err) = run(postern().args(["plan", "-f"]).arg(&dir));
    assert_eq!(code, 2, "{err}");
    std::fs::write(
        dir.join("kustomization.yaml"),
        "resources:\n- ldap-profile.yaml\n- listener.yaml\n- mail-flow-policies.yaml\n\
         - secrets.yaml\n- smtp-auth-profiles.yaml\nnamespace: mail\n",
    )
    .unwrap();
    let (code, out, err) = run(postern().args(["plan", "-f"]).arg(&dir));
    assert_eq!(code, 2, "{err}");
    assert_eq!(out, plain);
    assert!(
        err.contains("skipped 1 document") && err.contains("kustomization"),
        "{err}"
    );
}
