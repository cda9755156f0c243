//! End-to-end: STARTTLS, implicit TLS, client certificates and the mail flow policy
//! combinations of DESIGN.md (procedures A, B, C of the seed), with swaks, openssl
//! s_client and Python, relaying to smtp-sink.

use std::path::PathBuf;
use std::time::Duration;

use postern_config::{self as cfg, TlsMode};
use postern_testkit::der::int_bytes;
use postern_testkit::gateway::Gateway;
use postern_testkit::pki::{Ca, ClientKind, Leaf};
use postern_testkit::ports::free_port;
use postern_testkit::sink::Sink;
use postern_tests::clients::{openssl, python, swaks};
use postern_tests::gateway::{listener, policy, single, start_gateway, user};

struct Pki {
    dir: tempfile::TempDir,
    ca: Ca,
    server: Leaf,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::long_lived("Test Client CA");
        let server = ca.localhost_server();
        ca.write(dir.path(), "ca").unwrap();
        let other = Ca::long_lived("Some Other CA");
        let p = Self { dir, ca, server };
        for (name, cn, kind, serial) in [
            ("alice", "ALICE.1", ClientKind::Valid, 11),
            ("stranger", "NOBODY.9", ClientKind::Valid, 12),
            ("expired", "ALICE.1", ClientKind::Expired, 13),
            ("future", "ALICE.1", ClientKind::NotYetValid, 14),
            ("serverish", "ALICE.1", ClientKind::WrongKeyUsage, 15),
        ] {
            p.ca.client_of(cn, kind, &int_bytes(serial))
                .write(p.dir.path(), name)
                .unwrap();
        }
        other
            .client("ALICE.1", &[16])
            .write(p.dir.path(), "otherca")
            .unwrap();
        p
    }

    fn path(&self, name: &str) -> String {
        let p: PathBuf = self.dir.path().join(name);
        p.display().to_string()
    }

    fn cert_args(&self, name: &str) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.path(&format!("{name}.crt")),
            "--tls-key".into(),
            self.path(&format!("{name}.key")),
        ]
    }

    fn tls(&self) -> cfg::ListenerTls {
        cfg::ListenerTls {
            certificate_chain_pem: self.server.cert_pem.clone(),
            private_key_pem: self.server.key_pem.clone(),
            client_ca_pem: Some(self.ca.cert_pem()),
            allow_version1_client_certificates: false,
            revocation: Default::default(),
        }
    }
}

fn users() -> Vec<cfg::StaticUser> {
    vec![
        user("alice", None, Some("ALICE.1"), true),
        user("frank", Some("frankpw"), None, true),
        user("carol", Some("carolpw"), None, false),
    ]
}

fn cert_profile(fallback: Option<cfg::AllowanceAction>) -> cfg::AuthProfile {
    cfg::AuthProfile {
        certificate: Some(cfg::CertificateAuth {
            required_policies: Vec::new(),
            required_ekus: Vec::new(),

            backend: cfg::AuthBackend::Static { users: users() },
        }),
        smtp_auth: fallback.map(ldap_like),
    }
}

fn ldap_like(action: cfg::AllowanceAction) -> cfg::SmtpAuth {
    cfg::SmtpAuth {
        profile: "ldap-auth".into(),
        backend: cfg::AuthBackend::Static { users: users() },
        allowance: Some(cfg::Allowance {
            action,
            response: cfg::Reply {
                code: 525,
                enhanced_code: "5.7.13".into(),
                text: "Dear user, please use your CAC to send email.".into(),
            },
        }),
        throttle: Default::default(),
    }
}

fn auth_profile(action: cfg::AllowanceAction) -> cfg::AuthProfile {
    cfg::AuthProfile {
        certificate: None,
        smtp_auth: Some(ldap_like(action)),
    }
}

fn start(
    pki: &Pki,
    sink: &Sink,
    p: cfg::MailFlowPolicy,
    profile: cfg::AuthProfile,
) -> (Gateway, u16) {
    let port = free_port();
    let mut l = listener(port, sink.port, "relayed");
    l.tls = Some(pki.tls());
    (start_gateway(&single(l, p, Some(profile))).unwrap(), port)
}

fn send(port: u16, args: &[String]) -> postern_tests::clients::Run {
    let mut all: Vec<&str> = vec!["--from", "a@example.org", "--to", "b@example.net"];
    all.extend(args.iter().map(String::as_str));
    swaks(port, &all).unwrap()
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[test]
fn procedure_a_certificate_only() {
    let pki = Pki::new();
    let sink = Sink::start(&[]).unwrap();
    let (gw, port) = start(
        &pki,
        &sink,
        policy(TlsMode::Required, true, true, false),
        cert_profile(None),
    );
    // Plaintext: STARTTLS offered, AUTH not; MAIL and AUTH refused with 530 5.7.0.
    let r = openssl_plain(
        port,
        "EHLO c\r\nAUTH PLAIN AGZyYW5rAGZyYW5rcHc=\r\nMAIL FROM:<a@example.org>\r\nQUIT\r\n",
    );
    assert!(
        r.contains("250-STARTTLS") || r.contains("250 STARTTLS"),
        "{r}"
    );
    assert!(!r.contains("AUTH PLAIN LOGIN"), "{r}");
    assert_eq!(r.matches("530 5.7.0").count(), 2, "{r}");
    // TLS without a certificate: 530 5.7.0 at MAIL; AUTH is not available.
    let r = send(port, &s(&["--tls"]));
    assert!(r.has("530 5.7.0"), "{}", r.output);
    // A valid, mapped certificate: relayed, no AUTH.
    let mut args = s(&["--tls"]);
    args.extend(pki.cert_args("alice"));
    let r = send(port, &args);
    assert!(r.has("250 2.0.0 Ok: queued"), "{}", r.output);
    let m = &sink.wait_for(1, Duration::from_secs(5))[0];
    assert!(m.message.contains("with ESMTPSA id"), "{}", m.message);
    assert!(
        m.message.contains("(using TLSv1.3 with cipher TLS13_"),
        "{}",
        m.message
    );
    assert!(
        m.message
            .contains("(authenticated as alice by certificate)"),
        "{}",
        m.message
    );
    let d = gw.decisions();
    assert!(
        d.iter().any(|v| v["decision"] == "certificate_auth"
            && v["outcome"] == "authenticated"
            && v["cert_subject"] == "CN=ALICE.1"
            && v["cert_serial"] == "0B"),
        "{d:?}"
    );
    // A valid certificate nobody owns: not authenticated.
    let mut args = s(&["--tls"]);
    args.extend(pki.cert_args("stranger"));
    let r = send(port, &args);
    assert!(r.has("530 5.7.0 Authentication required"), "{}", r.output);
    // Invalid certificates fail the handshake with the matching alert.
    for (name, alert) in [
        ("expired", "certificate expired"),
        ("future", "certificate expired"),
        ("otherca", "unknown ca"),
        ("serverish", "unsupported certificate"),
    ] {
        let r = openssl(
            port,
            true,
            &[
                "-cert",
                &pki.path(&format!("{name}.crt")),
                "-key",
                &pki.path(&format!("{name}.key")),
                "-CAfile",
                &pki.path("ca.crt"),
            ],
            "EHLO c\r\nQUIT\r\n",
        )
        .unwrap();
        assert!(r.output.contains(alert), "{name}: {}", r.output);
        assert!(
            !r.output.contains("221 2.0.0"),
            "{name}: session went on: {}",
            r.output
        );
    }
    // The decision line follows the alert; wait for the last one.
    gw.wait_log_line(Duration::from_secs(10), |v| {
        v["decision"] == "tls"
            && v["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("wrong_key_usage"))
    });
    let reasons: Vec<String> = gw
        .decisions()
        .iter()
        .filter(|v| v["decision"] == "tls" && v["outcome"] == "failed")
        .map(|v| v["reason"].as_str().unwrap_or("").to_owned())
        .collect();
    for reason in [
        "expired",
        "not_yet_valid",
        "unknown_issuer",
        "wrong_key_usage",
    ] {
        assert!(
            reasons.iter().any(|r| r.starts_with(reason)),
            "{reason} not in {reasons:?}"
        );
    }
    let (_, metrics) = gw.http_get("/metrics").unwrap();
    assert!(metrics.contains("postern_tls_handshakes_total{listener=\"smtp\",outcome=\"failed\",reason=\"expired\"} 1"), "{metrics}");
}

fn openssl_plain(port: u16, input: &str) -> String {
    // A plaintext conversation through Python (openssl cannot skip TLS).
    let script = format!(
        r#"
import socket, time
s = socket.create_connection(("127.0.0.1", {port}))
s.settimeout(5)
out = s.recv(4096)
for line in {input:?}.split("\r\n"):
    if not line: continue
    s.sendall((line + "\r\n").encode())
    time.sleep(0.1)
    try:
        out += s.recv(65536)
    except Exception:
        pass
print(out.decode())
"#
    );
    python(&script).unwrap().output
}

#[test]
fn procedure_b_smtp_auth_only() {
    let pki = Pki::new();
    let sink = Sink::start(&[]).unwrap();
    let (gw, port) = start(
        &pki,
        &sink,
        policy(TlsMode::Required, false, true, false),
        auth_profile(cfg::AllowanceAction::Reject),
    );
    // Before TLS: no AUTH advertised, AUTH and MAIL refused with 530 5.7.0.
    let r = openssl_plain(
        port,
        "EHLO c\r\nAUTH LOGIN\r\nMAIL FROM:<a@example.org>\r\nQUIT\r\n",
    );
    assert!(!r.contains("AUTH PLAIN"), "{r}");
    assert_eq!(r.matches("530 5.7.0").count(), 2, "{r}");
    // After STARTTLS: AUTH PLAIN and LOGIN.
    for mech in ["PLAIN", "LOGIN"] {
        let r = send(
            port,
            &s(&[
                "--tls",
                "--auth",
                mech,
                "--auth-user",
                "frank",
                "--auth-password",
                "frankpw",
            ]),
        );
        assert!(
            r.has("235 2.7.0") && r.has("250 2.0.0 Ok: queued"),
            "{}",
            r.output
        );
    }
    let m = &sink.wait_for(2, Duration::from_secs(5))[0];
    assert!(
        m.message.contains("with ESMTPSA")
            && m.message.contains("(authenticated as frank by PLAIN)"),
        "{}",
        m.message
    );
    let r = send(
        port,
        &s(&[
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            "frank",
            "--auth-password",
            "nope",
        ]),
    );
    assert!(r.has("535 5.7.8"), "{}", r.output);
    let r = send(
        port,
        &s(&[
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            "nobody",
            "--auth-password",
            "x",
        ]),
    );
    assert!(r.has("535 5.7.8"), "{}", r.output);
    // Not allowed by the allowance check, action Reject: the profile's response.
    let r = send(
        port,
        &s(&[
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            "carol",
            "--auth-password",
            "carolpw",
        ]),
    );
    assert!(
        r.has("525 5.7.13 Dear user, please use your CAC to send email."),
        "{}",
        r.output
    );
    assert!(
        gw.decisions()
            .iter()
            .any(|v| v["decision"] == "auth" && v["outcome"] == "not_allowed")
    );
    // Python smtplib with STARTTLS and AUTH.
    let script = r#"
import smtplib, ssl
ctx = ssl.create_default_context(cafile="CA")
ctx.check_hostname = False
s = smtplib.SMTP("127.0.0.1", PORT, timeout=10)
s.starttls(context=ctx)
s.login("frank", "frankpw")
s.sendmail("frank@example.org", ["b@example.net"], "Subject: py\r\n\r\nfrom python\r\n")
s.quit()
print("SENT")
"#
    .replace("PORT", &port.to_string())
    .replace("CA", &pki.path("ca.crt"));
    let r = python(&script).unwrap();
    assert!(r.has("SENT"), "{}", r.output);
}

#[test]
fn procedure_b_monitor_logs_every_command() {
    let pki = Pki::new();
    let sink = Sink::start(&[]).unwrap();
    let (gw, port) = start(
        &pki,
        &sink,
        policy(TlsMode::Required, false, true, false),
        auth_profile(cfg::AllowanceAction::Monitor),
    );
    let r = send(
        port,
        &s(&[
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            "carol",
            "--auth-password",
            "carolpw",
        ]),
    );
    assert!(
        r.has("235 2.7.0") && r.has("250 2.0.0 Ok: queued"),
        "{}",
        r.output
    );
    assert!(gw.decisions().iter().any(|v| v["decision"] == "auth"
        && v["outcome"] == "authenticated_monitored"
        && v["user"] == "carol"));
    let monitored = gw.wait_log_line(Duration::from_secs(5), |v| {
        v["target"] == "postern::monitor"
            && v["command"].as_str().is_some_and(|c| c.starts_with("QUIT"))
    });
    assert!(monitored.is_some(), "{}", gw.log());
    // The whole session, in order, as sent: what came before AUTH too, credentials masked.
    let commands: Vec<(String, bool)> = gw
        .log()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "postern::monitor")
        .map(|v| {
            assert_eq!(v["user"], "carol", "{v}");
            (
                v["command"].as_str().unwrap_or("").to_owned(),
                v["before_auth"] == true,
            )
        })
        .collect();
    let shown: Vec<&str> = commands.iter().map(|(c, _)| c.as_str()).collect();
    assert!(
        shown[0].starts_with("EHLO ") && commands[0].1,
        "{commands:?}"
    );
    assert_eq!(shown[1], "STARTTLS", "{commands:?}");
    assert!(shown.contains(&"AUTH PLAIN ***"), "{commands:?}");
    assert!(
        shown.iter().any(|c| c.starts_with("MAIL FROM:<")) && shown.contains(&"DATA"),
        "{commands:?}"
    );
    assert!(
        shown.iter().any(|c| c.starts_with("RCPT TO:<")),
        "{commands:?}"
    );
    assert!(
        !gw.log().contains("AGNhcm9sAGNhcm9scHc="),
        "credentials in the log"
    );
}

#[test]
fn procedure_c_certificate_or_auth_over_tls() {
    let pki = Pki::new();
    let sink = Sink::start(&[]).unwrap();
    let (gw, port) = start(
        &pki,
        &sink,
        policy(TlsMode::Preferred, false, true, true),
        cert_profile(Some(cfg::AllowanceAction::Reject)),
    );
    // Plaintext: STARTTLS offered, AUTH only after it (538 5.7.11), MAIL needs auth.
    let r = openssl_plain(
        port,
        "EHLO c\r\nAUTH PLAIN AGZyYW5rAGZyYW5rcHc=\r\nMAIL FROM:<a@example.org>\r\nQUIT\r\n",
    );
    assert!(
        r.contains("STARTTLS") && !r.contains("AUTH PLAIN LOGIN"),
        "{r}"
    );
    assert!(r.contains("538 5.7.11"), "{r}");
    assert!(r.contains("530 5.7.0"), "{r}");
    // Certificate: no AUTH needed.
    let mut args = s(&["--tls"]);
    args.extend(pki.cert_args("alice"));
    assert!(send(port, &args).has("250 2.0.0 Ok: queued"));
    // An expired certificate is ignored here (no verifyClientCertificate): AUTH works.
    let mut args = s(&[
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        "frank",
        "--auth-password",
        "frankpw",
    ]);
    args.extend(pki.cert_args("expired"));
    let r = send(port, &args);
    assert!(
        r.has("235 2.7.0") && r.has("250 2.0.0 Ok: queued"),
        "{}",
        r.output
    );
    assert!(
        gw.decisions()
            .iter()
            .any(|v| v["decision"] == "certificate" && v["outcome"] == "ignored")
    );
    // ... and without AUTH it cannot send.
    let mut args = s(&["--tls"]);
    args.extend(pki.cert_args("expired"));
    assert!(send(port, &args).has("530 5.7.0"));
    // No certificate: AUTH after STARTTLS; a user without the allowance gets 525.
    assert!(
        send(
            port,
            &s(&[
                "--tls",
                "--auth",
                "LOGIN",
                "--auth-user",
                "frank",
                "--auth-password",
                "frankpw"
            ])
        )
        .has("250 2.0.0 Ok: queued")
    );
    let r = send(
        port,
        &s(&[
            "--tls",
            "--auth",
            "LOGIN",
            "--auth-user",
            "carol",
            "--auth-password",
            "carolpw",
        ]),
    );
    assert!(r.has("525 5.7.13"), "{}", r.output);
    // A certificate-authenticated session still offers and takes AUTH (a client set up
    // for both, like swaks with --tls-cert and --auth), but not twice.
    let r = openssl(
        port,
        true,
        &[
            "-cert",
            &pki.path("alice.crt"),
            "-key",
            &pki.path("alice.key"),
        ],
        "EHLO c\r\nAUTH PLAIN AGZyYW5rAGZyYW5rcHc=\r\nAUTH PLAIN AGZyYW5rAGZyYW5rcHc=\r\nQUIT\r\n",
    )
    .unwrap();
    assert!(r.has("AUTH PLAIN LOGIN"), "{}", r.output);
    assert!(r.has("235 2.7.0"), "{}", r.output);
    assert!(r.has("503 5.5.1 Already authenticated"), "{}", r.output);
    let mut args = s(&[
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        "frank",
        "--auth-password",
        "frankpw",
    ]);
    args.extend(pki.cert_args("alice"));
    let r = send(port, &args);
    assert!(
        r.has("235 2.7.0") && r.has("250 2.0.0 Ok: queued"),
        "{}",
        r.output
    );
}

#[test]
fn tls_preferred_with_verify_allows_plaintext_but_refuses_invalid_certificates() {
    let pki = Pki::new();
    let sink = Sink::start(&[]).unwrap();
    let (_gw, port) = start(
        &pki,
        &sink,
        policy(TlsMode::Preferred, true, false, false),
        cert_profile(None),
    );
    assert!(send(port, &[]).has("250 2.0.0 Ok: queued"));
    assert!(send(port, &s(&["--tls"])).has("250 2.0.0 Ok: queued"));
    let r = openssl(
        port,
        true,
        &[
            "-cert",
            &pki.path("otherca.crt"),
            "-key",
            &pki.path("otherca.key"),
        ],
        "EHLO c\r\nQUIT\r\n",
    )
    .unwrap();
    assert!(r.has("unknown ca") && !r.has("221 2.0.0"), "{}", r.output);
    // TLS required + verify, no requireSmtpAuth: a valid certificate is still needed.
    let (_gw2, port2) = start(
        &pki,
        &sink,
        policy(TlsMode::Required, true, false, false),
        cert_profile(None),
    );
    let r = send(port2, &s(&["--tls"]));
    assert!(r.has("530 5.7.0"), "{}", r.output);
    let mut args = s(&["--tls"]);
    args.extend(pki.cert_args("stranger"));
    assert!(send(port2, &args).has("250 2.0.0 Ok: queued"));
}

#[test]
fn implicit_tls_and_no_plaintext_injection_across_starttls() {
    let pki = Pki::new();
    let sink = Sink::start(&[]).unwrap();
    let port = free_port();
    let mut l = listener(port, sink.port, "relayed");
    l.tls = Some(pki.tls());
    l.implicit_tls = true;
    let _gw = start_gateway(&single(
        l,
        policy(TlsMode::Required, true, true, false),
        Some(cert_profile(None)),
    ))
    .unwrap();
    let mut args = s(&["--tlsc"]);
    args.extend(pki.cert_args("alice"));
    let r = send(port, &args);
    assert!(r.has("250 2.0.0 Ok: queued"), "{}", r.output);
    assert!(!r.has("STARTTLS"), "{}", r.output);

    let (_gw2, port2) = start(
        &pki,
        &sink,
        policy(TlsMode::Preferred, false, false, false),
        auth_profile(cfg::AllowanceAction::Reject),
    );
    let script = r#"
import socket, ssl
s = socket.create_connection(("127.0.0.1", PORT)); s.settimeout(5)
f = s.makefile("rb")
def reply(f):
    out = b""
    while True:
        l = f.readline(); out += l
        if len(l) < 4 or l[3:4] != b"-": return out.decode()
reply(f)
s.sendall(b"EHLO c\r\n"); reply(f)
s.sendall(b"STARTTLS\r\nHELP\r\n")
print("STARTTLS:", reply(f).strip())
ctx = ssl._create_unverified_context()
t = ctx.wrap_socket(s)
tf = t.makefile("rb")
t.sendall(b"NOOP\r\n")
print("FIRST:", reply(tf).strip())
"#
    .replace("PORT", &port2.to_string());
    let r = python(&script).unwrap();
    assert!(r.has("STARTTLS: 220 2.0.0"), "{}", r.output);
    assert!(
        r.has("FIRST: 250 2.0.0 Ok"),
        "pipelined plaintext was executed: {}",
        r.output
    );
}

#[test]
fn directory_unreachable_gives_454_4_7_0_for_auth_and_certificates() {
    // An LDAP profile whose only server refuses connections: the `454 4.7.0` row.
    let pki = Pki::new();
    let sink = Sink::start(&[]).unwrap();
    let dead = free_port();
    let ldap = postern_tests::slapd::ldap_profile(&[format!("ldap://127.0.0.1:{dead}")]);
    let backend = cfg::AuthBackend::Ldap {
        ldap_profile: "corp".into(),
    };
    let profile = cfg::AuthProfile {
        certificate: Some(cfg::CertificateAuth {
            required_policies: Vec::new(),
            required_ekus: Vec::new(),

            backend: backend.clone(),
        }),
        smtp_auth: Some(cfg::SmtpAuth {
            profile: "ldap-auth".into(),
            backend,
            allowance: None,
            throttle: Default::default(),
        }),
    };
    let port = free_port();
    let mut l = listener(port, sink.port, "relayed");
    l.tls = Some(pki.tls());
    let mut config = single(
        l,
        policy(TlsMode::Preferred, false, true, false),
        Some(profile),
    );
    config.ldap_profiles.insert("corp".into(), ldap);
    let gw = start_gateway(&config).unwrap();
    let r = send(
        port,
        &s(&[
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            "frank",
            "--auth-password",
            "frankpw",
        ]),
    );
    assert!(r.has("454 4.7.0"), "{}", r.output);
    // A valid certificate that cannot be mapped now: MAIL gets 454 4.7.0, not 530.
    let mut args = s(&["--tls"]);
    args.extend(pki.cert_args("alice"));
    let r = send(port, &args);
    assert!(r.has("454 4.7.0"), "{}", r.output);
    assert!(
        gw.decisions()
            .iter()
            .any(|v| v["decision"] == "certificate_auth" && v["outcome"] == "temp_fail")
    );
    let d = gw.decisions();
    assert!(
        d.iter()
            .any(|v| v["decision"] == "certificate_auth" && v["query"] == "cac-cert"),
        "{d:?}"
    );
    assert!(
        d.iter().any(|v| v["decision"] == "auth"
            && v["outcome"] == "temp_fail"
            && v["query"] == "cac-auth"),
        "{d:?}"
    );
    assert!(sink.messages().is_empty());
}

#[test]
fn implicit_tls_policy_reject_is_spoken_over_tls() {
    let pki = Pki::new();
    let sink = Sink::start(&[]).unwrap();
    let port = free_port();
    let mut l = listener(port, sink.port, "relayed");
    l.tls = Some(pki.tls());
    l.implicit_tls = true;
    let mut p = policy(TlsMode::Required, false, false, false);
    p.action = cfg::PolicyAction::Reject;
    let _gw = start_gateway(&single(l, p, None)).unwrap();
    let r = openssl(port, false, &["-CAfile", &pki.path("ca.crt")], "").unwrap();
    assert!(r.has("554 5.7.1"), "{}", r.output);
}
