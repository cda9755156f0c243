//! The built `postern explain` on the examples: exit 0 (accepted), 3 (refused), 1
//! (error); the host access row, the certificate's chain and type, the LDAP filters after
//! substitution and escaping, and the reply — with the examples' certificates and one
//! made here by openssl that no client CA signed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
}

fn explain(args: &[&str]) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_postern"))
        .arg("explain")
        .args(args)
        .output()
        .expect("run postern");
    (
        status.code().expect("exit code"),
        String::from_utf8(stdout).unwrap(),
        String::from_utf8(stderr).unwrap(),
    )
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_card_holder_is_accepted_pending_the_directory() {
    let dir = example("certificate-only");
    let alice = example("pki/alice.crt");
    let (code, out, err) = explain(&[
        "-f",
        path(&dir),
        "--listener",
        "submission",
        "--client-ip",
        "127.0.0.1",
        "--cert",
        path(&alice),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("sender group RELAYLIST, policy relayed"),
        "{out}"
    );
    assert!(
        out.contains("signed by client CA O=Example, CN=Postern Example CA"),
        "{out}"
    );
    assert!(out.contains("(current)"), "{out}");
    assert!(
        out.contains("CrlOnly: no enabled CrlSource applies to inbound TLS (disabled: example-ca)"),
        "{out}"
    );
    // {cn} substituted (and escaped), {sn} and {issuer} left to the gateway.
    assert!(
        out.contains("(caccn=ANDERSON.ALICE.A.1000000001)(cacserial={sn})"),
        "{out}"
    );
    assert!(out.contains("ACCEPTED: 250 2.1.0"), "{out}");
    assert!(
        out.contains("depends on: the directory finds exactly one entry"),
        "{out}"
    );
}

#[test]
fn refusals_exit_3_with_the_reply() {
    let dir = example("certificate-only");
    // The BLOCKLIST row.
    let (code, out, _) = explain(&[
        "-f",
        path(&dir),
        "--listener",
        "submission",
        "--client-ip",
        "192.0.2.7",
    ]);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("sender group BLOCKLIST, policy blocked"),
        "{out}"
    );
    assert!(out.contains("REFUSED: 554 5.7.1"), "{out}");
    // Refused at MAIL with `reply` for a client at 10.1.2.3 with `extra` arguments.
    let refused_at_mail = |example_dir: &Path, extra: &[&str], reply: &str| {
        let mut args = vec![
            "-f",
            path(example_dir),
            "--listener",
            "submission",
            "--client-ip",
            "10.1.2.3",
        ];
        args.extend_from_slice(extra);
        let (code, out, _) = explain(&args);
        assert_eq!(code, 3, "{out}");
        assert!(out.contains(&format!("REFUSED: {reply}")), "{out}");
    };
    // No certificate under `tls: Required` + `verifyClientCertificate`: the gateway
    // refuses MAIL for the missing certificate before it looks at authentication, also
    // for a client that would AUTH (AUTH alone is not enough there).
    let no_certificate = "530 5.7.0 A valid client certificate is required";
    refused_at_mail(&dir, &[], no_certificate);
    refused_at_mail(&dir, &["--user", "bob"], no_certificate);
    // Where the policy asks for no certificate (`either`: tls Preferred): no AUTH, no
    // identity, authentication is required.
    refused_at_mail(&example("either"), &[], "530 5.7.0 Authentication required");

    // A certificate no client CA signed (openssl, self-signed): refused at the handshake.
    let tmp = tempfile::tempdir().unwrap();
    let (key, crt) = (tmp.path().join("k.pem"), tmp.path().join("c.pem"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/O=Elsewhere/CN=STRANGER.SAM.1",
            "-keyout",
            path(&key),
            "-out",
            path(&crt),
        ])
        .output()
        .expect("openssl is installed");
    assert!(status.status.success(), "{status:?}");
    let (code, out, _) = explain(&[
        "-f",
        path(&dir),
        "--listener",
        "submission",
        "--client-ip",
        "127.0.0.1",
        "--cert",
        path(&crt),
    ]);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("no CA of the listener's client CA bundle"),
        "{out}"
    );
    assert!(out.contains("REFUSED: TLS handshake refused"), "{out}");
}

#[test]
fn auth_filters_are_shown_escaped_and_a_rendered_file_works_too() {
    let dir = example("ldap-auth");
    let (code, out, err) = explain(&[
        "-f",
        path(&dir),
        "--listener",
        "submission",
        "--client-ip",
        "127.0.0.1",
        "--user",
        "o*(dd)\\user",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("search (uid=o\\2a\\28dd\\29\\5cuser)"),
        "{out}"
    );
    assert!(out.contains("then BIND as the entry found"), "{out}");

    // The same from `postern render -o`.
    let tmp = tempfile::tempdir().unwrap();
    let rendered = tmp.path().join("r.yaml");
    let st = Command::new(env!("CARGO_BIN_EXE_postern"))
        .args(["render", "-f", path(&dir), "-o", path(&rendered)])
        .output()
        .unwrap();
    assert!(st.status.success(), "{st:?}");
    let (code, out, err) = explain(&[
        "--config",
        path(&rendered),
        "--listener",
        "submission",
        "--client-ip",
        "127.0.0.1",
        "--user",
        "bob",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("search (uid=bob)"), "{out}");
}

#[test]
fn errors_exit_1() {
    let dir = example("ldap-auth");
    let (code, _, err) = explain(&[
        "-f",
        path(&dir),
        "--listener",
        "nope",
        "--client-ip",
        "127.0.0.1",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("no Listener \"nope\""), "{err}");
    // No configuration source.
    let (code, _, _) = explain(&["--listener", "submission", "--client-ip", "127.0.0.1"]);
    assert_eq!(code, 1);
}
