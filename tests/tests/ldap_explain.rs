//! `postern explain --ldap` (which runs `postern-gateway explain`) against a real slapd
//! with the example directory and examples/either: the certificate query after
//! substitution and escaping and the entry it finds, an unknown certificate refused, AUTH
//! users allowed and refused by the allowance query, a wrong password, sender binding,
//! and a directory that is down or does not answer (exit 1, the `454` a client gets
//! meanwhile, within the LdapProfile's timeouts).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use postern_config::{GatewayConfig, SenderBinding};
use postern_controller::cli::manifests::{load, read_inputs};
use postern_controller::compile::compile;
use postern_testkit::ports::free_port;
use postern_testkit::process;
use postern_testkit::workspace::workspace_bin;
use postern_tests::slapd::{Slapd, SlapdOptions};

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// examples/either compiled, its directory at `url`, 1 s timeouts, `senderBinding:
/// Enforce` on the relaying policy; written to `dir`.
fn config_file(dir: &Path, url: &str) -> PathBuf {
    let texts = read_inputs(&[examples().join("either").display().to_string()]).unwrap();
    let compiled = compile(&load(&texts, None).snapshot, None);
    assert!(!compiled.report.has_errors());
    let mut config: GatewayConfig = compiled.config;
    let ldap = config.ldap_profiles.get_mut("corp-ldap").unwrap();
    ldap.servers = vec![url.to_owned()];
    ldap.timeouts.connect = postern_config::Duration::from_secs(1);
    ldap.timeouts.operation = postern_config::Duration::from_secs(1);
    config.policies.get_mut("relayed").unwrap().sender_binding = SenderBinding::Enforce;
    let path = dir.join("rendered.yaml");
    std::fs::write(&path, config.to_yaml()).unwrap();
    path
}

/// `postern explain --ldap --config FILE --listener submission --client-ip 127.0.0.1
/// ARGS`, `stdin` written to it: exit code and stdout + stderr.
fn explain(config: &Path, args: &[&str], stdin: &str) -> (i32, String) {
    let out = process::output_with_stdin(
        Command::new(workspace_bin("postern").unwrap())
            .args(["explain", "--ldap", "--config"])
            .arg(config)
            .args(["--listener", "submission", "--client-ip", "127.0.0.1"])
            .args(args),
        stdin.as_bytes(),
    )
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().expect("exit code"), text)
}

fn pki(name: &str) -> String {
    examples().join("pki").join(name).display().to_string()
}

#[test]
fn the_directory_answers_certificates_users_and_senders() {
    let ldif = std::fs::read_to_string(examples().join("ldap/users.ldif")).unwrap();
    let slapd = Slapd::start(SlapdOptions {
        ldif: Some(ldif),
        ..SlapdOptions::default()
    })
    .expect("slapd with the example directory");
    let tmp = tempfile::tempdir().unwrap();
    let config = config_file(tmp.path(), &slapd.url());

    // alice's certificate: the query with every placeholder filled and escaped, her
    // entry, and her own address under Enforce.
    let alice = pki("alice.crt");
    let (code, out) = explain(
        &config,
        &["--cert", &alice, "--mail-from", "alice@example.org"],
        "",
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("search (&(caccn=ANDERSON.ALICE.A.1000000001)(cacserial="),
        "{out}"
    );
    assert!(
        out.contains("(cacissuer=O=Example, CN=Postern Example CA)")
            || out.contains("(cacissuer=CN=Postern Example CA,O=Example)"),
        "{out}"
    );
    assert!(
        out.lines().any(
            |l| l.contains("certificate search: query cac-cert: search (&") && !l.contains('{')
        ),
        "{out}"
    );
    assert!(
        out.contains("uid=alice,ou=people,dc=example,dc=org → user alice"),
        "{out}"
    );
    assert!(out.contains("<alice@example.org> is one of them"), "{out}");
    assert!(out.contains("authenticated as alice"), "{out}");
    assert!(out.contains("ACCEPTED: 250 2.1.0"), "{out}");

    // The same certificate sending as bob: 553 under Enforce.
    let (code, out) = explain(
        &config,
        &["--cert", &alice, "--mail-from", "bob@example.org"],
        "",
    );
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("<bob@example.org> is NOT one of them"),
        "{out}"
    );
    assert!(out.contains("REFUSED: 553 5.7.1"), "{out}");

    // mallory's certificate chains to the CA, but no entry has its subject: the filter
    // shown, nobody found, 530 at MAIL.
    let (code, out) = explain(&config, &["--cert", &pki("mallory.crt")], "");
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("certificate search: query cac-cert: search (&(caccn="),
        "{out}"
    );
    assert!(out.contains("no entry found"), "{out}");
    assert!(out.contains("REFUSED: 530 5.7.0"), "{out}");

    // AUTH (the certificate profile's fallback): bob has no CAC, the allowance query
    // finds him; his password binds.
    let (code, out) = explain(&config, &["--user", "bob", "--password-stdin"], "bob-pw\n");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("search (uid=bob)"), "{out}");
    assert!(
        out.contains("uid=bob,ou=people,dc=example,dc=org → user bob"),
        "{out}"
    );
    assert!(
        out.contains("allowance search: search (&(uid=bob)"),
        "{out}"
    );
    assert!(
        out.contains("right (the BIND as the entry succeeded)"),
        "{out}"
    );
    assert!(out.contains("allowance: an entry found: allowed"), "{out}");
    assert!(out.contains("ACCEPTED"), "{out}");

    // Without a password: the allowance is still asked, the BIND is what remains.
    let (code, out) = explain(&config, &["--user", "bob"], "");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("depends on: the password of uid=bob"), "{out}");

    // alice holds a CAC: the allowance query refuses her before her password is sent.
    let (code, out) = explain(
        &config,
        &["--user", "alice", "--password-stdin"],
        "alice-pw\n",
    );
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("not allowed (the password was not sent)"),
        "{out}"
    );
    assert!(out.contains("REFUSED: 525 5.7.13 Dear user"), "{out}");

    // A wrong password.
    let (code, out) = explain(&config, &["--user", "bob", "--password-stdin"], "nope\n");
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("REFUSED: 535 5.7.8"), "{out}");

    // A directory that accepts connections and answers nothing (SIGSTOP): no hang, the
    // operation timeout ends it; exit 1 with the 454 a client gets meanwhile.
    slapd.pause();
    let started = Instant::now();
    let (code, out) = explain(&config, &["--cert", &alice], "");
    slapd.resume();
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("NO ANSWER from the directory"), "{out}");
    assert!(out.contains("454 4.7.0"), "{out}");
    assert!(started.elapsed() < Duration::from_secs(20), "{out}");
}

#[test]
fn a_directory_that_is_down_is_an_error_not_a_refusal() {
    let tmp = tempfile::tempdir().unwrap();
    let config = config_file(tmp.path(), &format!("ldap://127.0.0.1:{}", free_port()));
    let (code, out) = explain(&config, &["--user", "bob", "--password-stdin"], "bob-pw\n");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("auth entry: no answer: directory unavailable"),
        "{out}"
    );
    assert!(out.contains("a client gets 454 4.7.0"), "{out}");

    // `postern-gateway explain` itself (the gateway image has no `postern`): the same.
    let out = Command::new(workspace_bin("postern-gateway").unwrap())
        .args(["explain", "--config"])
        .arg(&config)
        .args(["--listener", "submission", "--client-ip", "127.0.0.1"])
        .args(["--cert", &pki("alice.crt")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("certificate entry: no answer: directory unavailable"),
        "{text}"
    );

    // `postern` with no `postern-gateway` beside it or on PATH: a clear error, exit 1.
    let alone = tmp.path().join("bin");
    std::fs::create_dir(&alone).unwrap();
    std::fs::copy(workspace_bin("postern").unwrap(), alone.join("postern")).unwrap();
    let out = Command::new(alone.join("postern"))
        .args(["explain", "--ldap", "--config"])
        .arg(&config)
        .args(["--listener", "submission", "--client-ip", "127.0.0.1"])
        .env("PATH", &alone)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--ldap needs postern-gateway"), "{err}");
}
