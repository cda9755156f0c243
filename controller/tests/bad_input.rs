//! Table tests: every kind of bad input of the issue gives a precise diagnostic (the
//! exact object, field and reason), and `postern plan` exits 1 on it, printing the file,
//! the object and the field.
//!
//! Each case starts from examples/either (procedure C of the seed, all five kinds in use
//! except CRL sources, which are appended) and breaks one thing.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use postern_controller::cli::manifests::load;
use postern_controller::compile::{Severity, compile};

type Files = BTreeMap<String, String>;

fn example() -> Files {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/either");
    let mut files = Files::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        files.insert(name, std::fs::read_to_string(&path).unwrap());
    }
    files.insert(
        "crl-source.yaml".into(),
        std::fs::read_to_string(dir.join("../certificate-only/crl-source.yaml")).unwrap(),
    );
    files
}

fn replace(files: &mut Files, file: &str, from: &str, to: &str) {
    let text = files.get_mut(file).unwrap_or_else(|| panic!("no {file}"));
    assert!(text.contains(from), "{file} does not contain {from:?}");
    *text = text.replacen(from, to, 1);
}

fn append(files: &mut Files, file: &str, doc: &str) {
    let text = files.entry(file.to_owned()).or_default();
    text.push_str("\n---\n");
    text.push_str(doc);
}

/// (object, field, reason) of every error, and the plan's exit code and stderr.
fn run(files: &Files) -> (Vec<(String, String, String)>, ExitCode, String) {
    let texts: Vec<(String, String)> = files.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let loaded = load(&texts, None);
    let compiled = compile(&loaded.snapshot, None);
    postern_config::validate(&compiled.config).expect("the output always validates");
    let mut found: Vec<(String, String, String)> = compiled
        .report
        .diagnostics()
        .filter(|(_, d)| d.severity == Severity::Error)
        .map(|(k, d)| (k.to_string(), d.field.clone(), d.reason.to_string()))
        .collect();
    for p in &loaded.problems {
        found.push((
            p.object.clone().unwrap_or_default(),
            p.field.clone().unwrap_or_default(),
            "LoadProblem".into(),
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = postern_controller::cli::run(
        ["postern", "plan", "-f", dir.path().to_str().unwrap()],
        &mut out,
        &mut err,
    );
    (found, code, String::from_utf8(err).unwrap())
}

struct Case {
    name: &'static str,
    breakage: fn(&mut Files),
    /// (object, field, reason) that must be reported.
    expect: (&'static str, &'static str, &'static str),
    /// The file the diagnostic must name.
    file: &'static str,
}

const LISTENER2: &str = "apiVersion: postern.dev/v1alpha1
kind: Listener
metadata: {name: submission-2}
spec:
  port: 2589
  address: 127.0.0.1
  hostname: mail.example.org
  tls: {certificateSecretRef: {name: gateway-tls}}
  smtpAuthProfileRef: {name: ldap-auth}
  defaultMailFlowPolicyRef: {name: relayed}
  nextHop: {host: 127.0.0.1, port: 2525}
";

const SECOND_CERT_PROFILE: &str = "apiVersion: postern.dev/v1alpha1
kind: SmtpAuthProfile
metadata: {name: other-cert}
spec:
  type: Certificate
  certificate: {ldapProfileRef: {name: corp-ldap}}
";

/// A Secret of the namespace that was never meant for Postern (no `postern.dev/secret-use`).
const UNLABELLED_SECRET: &str = "apiVersion: v1
kind: Secret
metadata: {name: db-creds}
type: Opaque
stringData: {root-pw: db-root-password-never-to-leave, replica-pw: db-replica-password}
";

const CASES: &[Case] = &[
    Case {
        name: "unknown field in a spec",
        breakage: |f| replace(f, "ldap-profile.yaml", "  baseDn:", "  baseDN:"),
        expect: ("LdapProfile/corp-ldap", "spec.baseDN", "UnknownField"),
        file: "ldap-profile.yaml",
    },
    Case {
        name: "unknown nested field",
        breakage: |f| {
            replace(
                f,
                "listener.yaml",
                "certificateSecretRef:",
                "certSecretRef:",
            )
        },
        expect: (
            "Listener/submission",
            "spec.tls.certSecretRef",
            "UnknownField",
        ),
        file: "listener.yaml",
    },
    Case {
        name: "unknown top-level field",
        breakage: |f| replace(f, "listener.yaml", "spec:\n", "specification: {}\nspec:\n"),
        expect: ("Listener/submission", "specification", "UnknownField"),
        file: "listener.yaml",
    },
    Case {
        name: "tls: Off (YAML 1.1 boolean) is not an enum value",
        breakage: |f| replace(f, "mail-flow-policies.yaml", "tls: Preferred", "tls: Off"),
        expect: ("MailFlowPolicy/relayed", "spec.tls", "InvalidValue"),
        file: "mail-flow-policies.yaml",
    },
    Case {
        name: "wrong profile type",
        breakage: |f| replace(f, "smtp-auth-profiles.yaml", "type: Ldap", "type: LDAP"),
        expect: ("SmtpAuthProfile/ldap-auth", "spec.type", "InvalidValue"),
        file: "smtp-auth-profiles.yaml",
    },
    Case {
        name: "wrong allowance action",
        breakage: |f| {
            replace(
                f,
                "smtp-auth-profiles.yaml",
                "action: Reject",
                "action: Block",
            )
        },
        expect: (
            "SmtpAuthProfile/ldap-auth",
            "spec.ldap.allowance.action",
            "InvalidValue",
        ),
        file: "smtp-auth-profiles.yaml",
    },
    Case {
        name: "throttle window that is not a duration",
        breakage: |f| {
            replace(
                f,
                "smtp-auth-profiles.yaml",
                "    allowance:\n",
                "    throttle: {perUser: {failures: 5, window: ten minutes}}\n    allowance:\n",
            )
        },
        expect: (
            "SmtpAuthProfile/ldap-auth",
            "spec.ldap.throttle.perUser.window",
            "InvalidValue",
        ),
        file: "smtp-auth-profiles.yaml",
    },
    Case {
        name: "throttle window of zero",
        breakage: |f| {
            replace(
                f,
                "smtp-auth-profiles.yaml",
                "    allowance:\n",
                "    throttle: {perClient: {window: 0s}}\n    allowance:\n",
            )
        },
        expect: (
            "SmtpAuthProfile/ldap-auth",
            "spec.ldap.throttle.perClient.window",
            "InvalidValue",
        ),
        file: "smtp-auth-profiles.yaml",
    },
    Case {
        name: "wrong policy action",
        breakage: |f| {
            replace(
                f,
                "mail-flow-policies.yaml",
                "action: Relay",
                "action: Accept",
            )
        },
        expect: ("MailFlowPolicy/relayed", "spec.action", "InvalidValue"),
        file: "mail-flow-policies.yaml",
    },
    Case {
        name: "wrong CRL format",
        breakage: |f| replace(f, "crl-source.yaml", "format: Asn1", "format: DER"),
        expect: ("CrlSource/example-ca", "spec.format", "InvalidValue"),
        file: "crl-source.yaml",
    },
    Case {
        name: "wrong CRL scope",
        breakage: |f| replace(f, "crl-source.yaml", "[InboundSmtpTls]", "[Inbound]"),
        expect: ("CrlSource/example-ca", "spec.appliesTo[0]", "InvalidValue"),
        file: "crl-source.yaml",
    },
    Case {
        name: "wrong auth method",
        breakage: |f| replace(f, "ldap-profile.yaml", "method: Bind", "method: Compare"),
        expect: (
            "LdapProfile/corp-ldap",
            "spec.smtpAuthQuery.method",
            "InvalidValue",
        ),
        file: "ldap-profile.yaml",
    },
    Case {
        name: "fallback profile is not type Ldap",
        breakage: |f| {
            append(f, "smtp-auth-profiles.yaml", SECOND_CERT_PROFILE);
            replace(
                f,
                "smtp-auth-profiles.yaml",
                "fallbackProfileRef: {name: ldap-auth}",
                "fallbackProfileRef: {name: other-cert}",
            );
        },
        expect: (
            "SmtpAuthProfile/cac-cert",
            "spec.certificate.fallbackProfileRef",
            "InvalidKind",
        ),
        file: "smtp-auth-profiles.yaml",
    },
    Case {
        name: "fallback allowed but not named",
        breakage: |f| {
            replace(
                f,
                "smtp-auth-profiles.yaml",
                "    fallbackProfileRef: {name: ldap-auth}\n",
                "",
            )
        },
        expect: (
            "SmtpAuthProfile/cac-cert",
            "spec.certificate.fallbackProfileRef",
            "InvalidValue",
        ),
        file: "smtp-auth-profiles.yaml",
    },
    Case {
        name: "certificate profile whose LdapProfile lacks a certificate query",
        breakage: |f| {
            replace(
                f,
                "ldap-profile.yaml",
                "  certificateAuthQuery:\n    name: cac-cert\n    filter: (&(caccn={cn})(cacserial={sn})(cacissuer={issuer}))\n    userIdAttribute: uid\n",
                "",
            )
        },
        expect: (
            "SmtpAuthProfile/cac-cert",
            "spec.certificate.ldapProfileRef",
            "InvalidKind",
        ),
        file: "smtp-auth-profiles.yaml",
    },
    Case {
        name: "ldap profile whose LdapProfile lacks an SMTP auth query",
        breakage: |f| {
            let text = f.get_mut("ldap-profile.yaml").unwrap();
            let at = text.find("  smtpAuthQuery:").unwrap();
            text.truncate(at);
        },
        expect: (
            "SmtpAuthProfile/ldap-auth",
            "spec.ldap.ldapProfileRef",
            "InvalidKind",
        ),
        file: "smtp-auth-profiles.yaml",
    },
    Case {
        name: "allowance enabled without an allowance filter",
        breakage: |f| {
            replace(
                f,
                "ldap-profile.yaml",
                "    allowanceFilter: (&(uid={u})(|(!(caccn=*))(cacexempt=*)(cacemergency>={t})))\n",
                "",
            )
        },
        expect: (
            "SmtpAuthProfile/ldap-auth",
            "spec.ldap.allowance.enabled",
            "InvalidKind",
        ),
        file: "smtp-auth-profiles.yaml",
    },
    Case {
        name: "listener Secret missing",
        breakage: |f| {
            replace(
                f,
                "listener.yaml",
                "{name: gateway-tls}",
                "{name: gateway-tls-typo}",
            )
        },
        expect: (
            "Listener/submission",
            "spec.tls.certificateSecretRef",
            "SecretNotFound",
        ),
        file: "listener.yaml",
    },
    Case {
        name: "listener key does not match its certificate",
        breakage: |f| {
            let key = std::fs::read_to_string(
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/pki/alice.key"),
            )
            .unwrap();
            let text = f.get_mut("secrets.yaml").unwrap();
            let start = text.find("  tls.key: |\n").unwrap() + "  tls.key: |\n".len();
            let end = start + text[start..].find("-----END PRIVATE KEY-----\n").unwrap() + 26;
            let indented: String = key.lines().map(|l| format!("    {l}\n")).collect();
            text.replace_range(start..end, &indented);
        },
        expect: (
            "Listener/submission",
            "spec.tls.certificateSecretRef",
            "KeyMismatch",
        ),
        file: "listener.yaml",
    },
    Case {
        name: "listener Secret without tls.key",
        breakage: |f| replace(f, "secrets.yaml", "  tls.key: |", "  tls.pem: |"),
        expect: (
            "Listener/submission",
            "spec.tls.certificateSecretRef",
            "SecretKeyMissing",
        ),
        file: "listener.yaml",
    },
    Case {
        name: "client CA Secret key missing",
        breakage: |f| {
            replace(
                f,
                "listener.yaml",
                "{name: cac-roots, key: ca.crt}",
                "{name: cac-roots, key: ca.pem}",
            )
        },
        expect: (
            "Listener/submission",
            "spec.tls.clientCaSecretRef",
            "SecretKeyMissing",
        ),
        file: "listener.yaml",
    },
    Case {
        name: "client CA is not PEM",
        breakage: |f| {
            append(
                f,
                "secrets.yaml",
                "apiVersion: v1\nkind: Secret\nmetadata: {name: junk, labels: {postern.dev/secret-use: ca}}\nstringData: {ca.crt: hello}\n",
            );
            replace(
                f,
                "listener.yaml",
                "{name: cac-roots, key: ca.crt}",
                "{name: junk, key: ca.crt}",
            );
        },
        expect: (
            "Listener/submission",
            "spec.tls.clientCaSecretRef",
            "InvalidCertificate",
        ),
        file: "listener.yaml",
    },
    Case {
        name: "LDAP bind password Secret missing",
        breakage: |f| {
            replace(
                f,
                "ldap-profile.yaml",
                "{name: ldap-bind, key: password}",
                "{name: ldap-bind-typo, key: password}",
            )
        },
        expect: (
            "LdapProfile/corp-ldap",
            "spec.bind.passwordSecretRef",
            "SecretNotFound",
        ),
        file: "ldap-profile.yaml",
    },
    Case {
        name: "LDAP bind password from a Secret not labelled for Postern",
        breakage: |f| {
            append(f, "secrets.yaml", UNLABELLED_SECRET);
            replace(
                f,
                "ldap-profile.yaml",
                "{name: ldap-bind, key: password}",
                "{name: db-creds, key: root-pw}",
            )
        },
        expect: (
            "LdapProfile/corp-ldap",
            "spec.bind.passwordSecretRef",
            "SecretUseNotAllowed",
        ),
        file: "ldap-profile.yaml",
    },
    Case {
        name: "LDAP bind password from the listener's TLS Secret",
        breakage: |f| {
            replace(
                f,
                "ldap-profile.yaml",
                "{name: ldap-bind, key: password}",
                "{name: gateway-tls, key: tls.key}",
            )
        },
        expect: (
            "LdapProfile/corp-ldap",
            "spec.bind.passwordSecretRef",
            "SecretUseNotAllowed",
        ),
        file: "ldap-profile.yaml",
    },
    Case {
        name: "listener certificate from a Secret labelled for CA certificates",
        breakage: |f| {
            replace(
                f,
                "listener.yaml",
                "certificateSecretRef: {name: gateway-tls}",
                "certificateSecretRef: {name: cac-roots}",
            )
        },
        expect: (
            "Listener/submission",
            "spec.tls.certificateSecretRef",
            "SecretUseNotAllowed",
        ),
        file: "listener.yaml",
    },
    Case {
        name: "client CA from the bind password Secret",
        breakage: |f| {
            replace(
                f,
                "listener.yaml",
                "{name: cac-roots, key: ca.crt}",
                "{name: ldap-bind, key: password}",
            )
        },
        expect: (
            "Listener/submission",
            "spec.tls.clientCaSecretRef",
            "SecretUseNotAllowed",
        ),
        file: "listener.yaml",
    },
    Case {
        name: "duplicate ports",
        breakage: |f| append(f, "listener.yaml", LISTENER2),
        expect: ("Listener/submission-2", "spec.port", "PortConflict"),
        file: "listener.yaml",
    },
    Case {
        name: "filter with unbalanced parentheses",
        breakage: |f| {
            replace(
                f,
                "ldap-profile.yaml",
                "filter: (&(caccn={cn})(cacserial={sn})(cacissuer={issuer}))",
                "filter: (&(caccn={cn})(cacserial={sn})(cacissuer={issuer})",
            )
        },
        expect: (
            "LdapProfile/corp-ldap",
            "spec.certificateAuthQuery.filter",
            "InvalidFilter",
        ),
        file: "ldap-profile.yaml",
    },
    Case {
        name: "filter with an unknown placeholder {x}",
        breakage: |f| {
            replace(
                f,
                "ldap-profile.yaml",
                "filter: (uid={u})",
                "filter: (uid={x})",
            )
        },
        expect: (
            "LdapProfile/corp-ldap",
            "spec.smtpAuthQuery.filter",
            "InvalidFilter",
        ),
        file: "ldap-profile.yaml",
    },
    Case {
        name: "certificate placeholder in an SMTP AUTH query",
        breakage: |f| {
            replace(
                f,
                "ldap-profile.yaml",
                "allowanceFilter: (&(uid={u})",
                "allowanceFilter: (&(uid={cn})",
            )
        },
        expect: (
            "LdapProfile/corp-ldap",
            "spec.smtpAuthQuery.allowanceFilter",
            "InvalidFilter",
        ),
        file: "ldap-profile.yaml",
    },
    Case {
        name: "policy reference not found",
        breakage: |f| {
            replace(
                f,
                "listener.yaml",
                "defaultMailFlowPolicyRef: {name: relayed}",
                "defaultMailFlowPolicyRef: {name: relay}",
            )
        },
        expect: (
            "Listener/submission",
            "spec.defaultMailFlowPolicyRef",
            "RefNotFound",
        ),
        file: "listener.yaml",
    },
    Case {
        name: "profile reference not found",
        breakage: |f| {
            replace(
                f,
                "listener.yaml",
                "smtpAuthProfileRef: {name: cac-cert}",
                "smtpAuthProfileRef: {name: cac}",
            )
        },
        expect: (
            "Listener/submission",
            "spec.smtpAuthProfileRef",
            "RefNotFound",
        ),
        file: "listener.yaml",
    },
    Case {
        name: "dependents of a broken object",
        breakage: |f| {
            replace(
                f,
                "ldap-profile.yaml",
                "filter: (uid={u})",
                "filter: (uid={u}",
            )
        },
        expect: (
            "SmtpAuthProfile/ldap-auth",
            "spec.ldap.ldapProfileRef",
            "RefNotAccepted",
        ),
        file: "smtp-auth-profiles.yaml",
    },
    Case {
        name: "bad duration",
        breakage: |f| replace(f, "ldap-profile.yaml", "connect: 3s", "connect: 3 seconds"),
        expect: (
            "LdapProfile/corp-ldap",
            "spec.timeouts.connect",
            "InvalidValue",
        ),
        file: "ldap-profile.yaml",
    },
    Case {
        name: "bad quantity",
        breakage: |f| {
            replace(
                f,
                "mail-flow-policies.yaml",
                "maxMessageSize: 10Mi",
                "maxMessageSize: 10MB",
            )
        },
        expect: (
            "MailFlowPolicy/relayed",
            "spec.limits.maxMessageSize",
            "InvalidValue",
        ),
        file: "mail-flow-policies.yaml",
    },
    Case {
        name: "bad CIDR",
        breakage: |f| replace(f, "listener.yaml", "[192.0.2.0/24]", "[192.0.2.0/33]"),
        expect: (
            "Listener/submission",
            "spec.hostAccessTable[0].cidrs[0]",
            "InvalidValue",
        ),
        file: "listener.yaml",
    },
    Case {
        name: "bad address",
        breakage: |f| {
            replace(
                f,
                "listener.yaml",
                "address: 127.0.0.1",
                "address: localhost",
            )
        },
        expect: ("Listener/submission", "spec.address", "InvalidValue"),
        file: "listener.yaml",
    },
    Case {
        name: "client certificate over a TLS-less policy (the gateway's validator, mapped back)",
        breakage: |f| {
            replace(
                f,
                "mail-flow-policies.yaml",
                "tls: Preferred\n  verifyClientCertificate: false",
                "tls: Disabled\n  verifyClientCertificate: true",
            )
        },
        expect: (
            "MailFlowPolicy/relayed",
            "spec.verifyClientCertificate",
            "InvalidCombination",
        ),
        file: "mail-flow-policies.yaml",
    },
    Case {
        name: "reply code out of range (the gateway's validator, mapped back)",
        breakage: |f| replace(f, "smtp-auth-profiles.yaml", "code: 525", "code: 250"),
        expect: (
            "SmtpAuthProfile/ldap-auth",
            "spec.ldap.allowance.response.code",
            "InvalidValue",
        ),
        file: "smtp-auth-profiles.yaml",
    },
    Case {
        name: "LDAP URL scheme",
        breakage: |f| {
            replace(
                f,
                "ldap-profile.yaml",
                "url: ldap://127.0.0.1:3389",
                "url: http://127.0.0.1:3389",
            )
        },
        expect: (
            "LdapProfile/corp-ldap",
            "spec.servers[0].url",
            "InvalidValue",
        ),
        file: "ldap-profile.yaml",
    },
    Case {
        name: "unknown kind in the API group",
        breakage: |f| {
            append(
                f,
                "listener.yaml",
                "apiVersion: postern.dev/v1alpha1\nkind: Listner\nmetadata: {name: x}\nspec: {}\n",
            )
        },
        expect: ("Listner/x", "kind", "LoadProblem"),
        file: "listener.yaml",
    },
    Case {
        name: "object defined twice",
        breakage: |f| {
            append(
                f,
                "listener.yaml",
                LISTENER2.replace("submission-2", "submission").leak(),
            )
        },
        expect: ("Listener/submission", "", "LoadProblem"),
        file: "listener.yaml",
    },
];

#[test]
fn the_example_itself_is_clean() {
    let (found, code, stderr) = run(&example());
    assert!(found.is_empty(), "{found:?}\n{stderr}");
    assert_eq!(code, ExitCode::from(2), "{stderr}");
}

#[test]
fn every_bad_input_is_diagnosed_precisely() {
    let mut failures = Vec::new();
    for case in CASES {
        let mut files = example();
        (case.breakage)(&mut files);
        let (found, code, stderr) = run(&files);
        let (object, field, reason) = case.expect;
        if !found
            .iter()
            .any(|(o, f, r)| o == object && f == field && r == reason)
        {
            failures.push(format!(
                "{}: expected {object} {field} {reason}, found {found:?}",
                case.name
            ));
            continue;
        }
        if code != ExitCode::FAILURE {
            failures.push(format!(
                "{}: plan exit code {code:?}, expected 1",
                case.name
            ));
        }
        let line = stderr
            .lines()
            .find(|l| l.starts_with("error: ") && l.contains(object) && l.contains(field));
        match line {
            Some(l) if l.contains(case.file) => {}
            other => failures.push(format!(
                "{}: no error line naming {} and {object} {field}: {other:?}\n{stderr}",
                case.name, case.file
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The confused deputy of issue 12, offline: an editor of the LdapProfile points its bind
/// password at a Secret of the namespace that was never meant for Postern, and its server
/// at a host of their own. The Secret's value must reach neither the configuration nor
/// anything `postern plan` prints; labelling the Secret for the use (its owner's
/// decision) is what lets it through.
#[test]
fn a_secret_not_labelled_for_the_use_never_reaches_the_configuration() {
    const VALUE: &str = "db-root-password-never-to-leave";
    let mut files = example();
    append(&mut files, "secrets.yaml", UNLABELLED_SECRET);
    replace(
        &mut files,
        "ldap-profile.yaml",
        "{name: ldap-bind, key: password}",
        "{name: db-creds, key: root-pw}",
    );
    replace(
        &mut files,
        "ldap-profile.yaml",
        "url: ldap://127.0.0.1:3389",
        "url: ldap://attacker.example.net:389",
    );
    let texts: Vec<(String, String)> = files.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let compiled = compile(&load(&texts, None).snapshot, None);
    let yaml = compiled.config.to_yaml();
    assert!(!yaml.contains(VALUE));
    assert!(
        !yaml.contains("attacker.example.net"),
        "the profile is left out"
    );
    let profile = compiled
        .report
        .get(postern_controller::compile::Kind::LdapProfile, "corp-ldap")
        .unwrap();
    let [_, resolved] = profile.conditions();
    assert!(!resolved.status);
    assert_eq!(resolved.reason, "SecretUseNotAllowed");
    assert!(
        resolved
            .message
            .contains("kubectl label secret db-creds postern.dev/secret-use=ldap-bind"),
        "{}",
        resolved.message
    );
    // Nothing about the Secret's content, not even the names of its keys.
    assert!(
        !resolved.message.contains("replica-pw"),
        "{}",
        resolved.message
    );
    let (_, code, stderr) = run(&files);
    assert_eq!(code, ExitCode::FAILURE);
    assert!(!stderr.contains(VALUE), "{stderr}");
    assert!(stderr.contains("SecretUseNotAllowed"), "{stderr}");

    // `postern render` refuses and writes nothing.
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in &files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let out_file = dir.path().join("rendered.yaml");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = postern_controller::cli::run(
        [
            "postern",
            "render",
            "-f",
            dir.path().to_str().unwrap(),
            "-o",
            out_file.to_str().unwrap(),
        ],
        &mut out,
        &mut err,
    );
    assert_eq!(code, ExitCode::FAILURE);
    assert!(!out_file.exists());
    assert!(!String::from_utf8_lossy(&err).contains(VALUE));

    // The owner labels it for the use: now it is the profile's bind password (and whoever
    // edits the profile is trusted with it; docs/rbac.md).
    replace(
        &mut files,
        "secrets.yaml",
        "metadata: {name: db-creds}",
        "metadata: {name: db-creds, labels: {postern.dev/secret-use: ldap-bind}}",
    );
    let texts: Vec<(String, String)> = files.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let compiled = compile(&load(&texts, None).snapshot, None);
    assert!(!compiled.report.has_errors());
    assert_eq!(
        compiled.config.ldap_profiles["corp-ldap"]
            .bind
            .as_ref()
            .unwrap()
            .password,
        VALUE
    );
}

/// A kubernetes.io/tls Secret labelled `tls` may also be a CA bundle (cert-manager puts
/// the issuer in its ca.crt); nothing else stands in for another use.
#[test]
fn a_tls_secret_may_serve_as_a_ca_bundle() {
    let mut files = example();
    replace(
        &mut files,
        "listener.yaml",
        "{name: cac-roots, key: ca.crt}",
        "{name: gateway-tls, key: tls.crt}",
    );
    let (found, _, stderr) = run(&files);
    assert!(found.is_empty(), "{found:?}\n{stderr}");
}
